"""The facial-omics model: fitted on training rows only, PCA by explained variance."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from face_health.omics.pca import FacialOmics, explained_variance_figure


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    mixing = rng.normal(size=(3, 40))
    features = latent @ mixing + 0.05 * rng.normal(size=(n, 40))
    table = pd.DataFrame(features, columns=[f"r{i // 10}__f{i % 10}" for i in range(40)])
    table["constant__f"] = 1.0
    table["mostly_missing__f"] = np.where(rng.random(n) < 0.5, np.nan, 1.0)
    table.insert(0, "subject_id", [f"S{i:03d}" for i in range(n)])
    return table


def test_pca_keeps_the_variance_asked_for_and_drops_useless_columns() -> None:
    table = _table(120)
    model = FacialOmics(n_components=0.95).fit(table)
    assert len(model.explained_variance_ratio_) == 3  # three latent factors
    assert "constant__f" not in model.columns_ and "mostly_missing__f" not in model.columns_
    local = model.transform(table)
    assert list(local.columns) == ["subject_id", "pc_000", "pc_001", "pc_002"]
    assert np.allclose(local[["pc_000", "pc_001", "pc_002"]].mean(), 0.0, atol=1e-8)


def _learned(model: FacialOmics) -> list[np.ndarray]:
    steps = model.pipeline_.named_steps
    return [
        steps["impute"].statistics_,
        steps["scale"].mean_,
        steps["scale"].scale_,
        steps["pca"].components_,
        steps["pca"].explained_variance_,
    ]


def test_fitted_on_training_rows_only() -> None:
    table = _table(100)
    model = FacialOmics(n_components=3).fit(table.iloc[:70])
    assert model.fitted_on_ == list(table["subject_id"].iloc[:70])
    # Garbage in the held-out rows of the same table: the model fitted on the training rows
    # is bit-identical, and so are the training rows' scores from the whole garbage table
    # (this fails if transform standardised with the transformed table's own statistics).
    garbage = table.copy()
    rows = np.where(np.arange(30)[:, None] % 2, 1e12, np.nan)  # huge or NaN, row by row
    garbage.iloc[70:, 1:] = rows.repeat(garbage.shape[1] - 1, axis=1)
    refit = FacialOmics(n_components=3).fit(garbage.iloc[:70])
    assert refit.columns_ == model.columns_ and refit.fitted_on_ == model.fitted_on_
    for learned, relearned in zip(_learned(model), _learned(refit), strict=True):
        assert np.array_equal(learned, relearned)
    pd.testing.assert_frame_equal(
        refit.transform(garbage).iloc[:70], model.transform(table).iloc[:70], check_exact=True
    )
    # The check can fail: a model that also fitted on the garbage rows is not the same.
    leaky = FacialOmics(n_components=3).fit(garbage)
    assert not np.array_equal(_learned(leaky)[1], _learned(model)[1])
    assert leaky.fitted_on_ != model.fitted_on_


def test_missing_values_are_imputed_and_model_pickles() -> None:
    table = _table(60)
    table.iloc[3, 5] = np.nan
    model = pickle.loads(pickle.dumps(FacialOmics(n_components=2).fit(table)))
    assert np.isfinite(model.transform(table).iloc[:, 1:].to_numpy()).all()


def test_no_usable_column_is_a_clear_error() -> None:
    table = pd.DataFrame({"subject_id": ["a", "b", "c"], "x__f": [1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="no radiomic feature"):
        FacialOmics().fit(table)


def test_explained_variance_figure(tmp_path) -> None:
    fig = explained_variance_figure(FacialOmics(n_components=0.9).fit(_table(50)))
    fig.savefig(tmp_path / "ev.png")
    assert (tmp_path / "ev.png").stat().st_size > 1000


def test_per_region_pca_names_each_score_by_its_region_and_fits_on_training_rows() -> None:
    table = _table(120)
    model = FacialOmics(n_components=2, per_region=True).fit(table.iloc[:80])
    local = model.transform(table)
    regions = ["r0", "r1", "r2", "r3"]  # constant__f and mostly_missing__f are dropped
    assert list(model.region_columns_) == regions
    assert list(local.columns) == ["subject_id"] + [
        f"pc_{r}_{i:02d}" for r in regions for i in (0, 1)
    ]
    # Each region's scores come from its own columns only: changing r0 moves no other region.
    changed = table.copy()
    changed.loc[:, [c for c in table.columns if c.startswith("r0__")]] *= 3.0
    moved = (model.transform(changed).iloc[:, 1:] != local.iloc[:, 1:]).any()
    assert moved[[c for c in moved.index if c.startswith("pc_r0_")]].all()
    assert not moved[[c for c in moved.index if not c.startswith("pc_r0_")]].any()
    # Training rows only, and the shares add up over the regions.
    assert model.fitted_on_ == list(table["subject_id"].iloc[:80])
    assert set(model.fitted_pipelines()) == set(regions)
    ratio = model.explained_variance_ratio_
    assert len(ratio) == 8 and 0.0 < ratio.sum() <= 1.0 + 1e-9
    assert model.transform(table).equals(pickle.loads(pickle.dumps(model)).transform(table))
