"""The out-of-distribution score of every prediction (``modelling.ood``): Mahalanobis
distances per feature space, fitted on training subjects, thresholds at the 99th percentile
of the validation subjects."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from face_health import schema
from face_health.modelling.ood import DistributionMonitor, feature_spaces, score_distributions
from face_health.serving.scorer import (
    ScanScorer,
    check_settings,
    json_record,
    predictions_table,
)

ID = schema.ID_COLUMN


def _cohort(
    rng: np.random.Generator,
    n: int,
    *,
    p_global: int = 12,
    p_local: int = 6,
    shift: float = 0.0,
    prefix: str = "S",
    mixing: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """``n`` subjects with correlated Gaussian ``emb_*`` and ``pc_*`` features (the same law
    for every call with the same ``mixing``), moved by ``shift`` in every feature."""
    a, b = mixing if mixing is not None else _mixing(p_global, p_local)
    g = rng.standard_normal((n, p_global)) @ a + shift
    loc = rng.standard_normal((n, p_local)) @ b * 5.0 + 10.0 + shift * 5.0
    table = pd.DataFrame(g, columns=[f"emb_{i:03d}" for i in range(p_global)])
    table = table.join(pd.DataFrame(loc, columns=[f"pc_{i:03d}" for i in range(p_local)]))
    table.insert(0, ID, [f"{prefix}{i:05d}" for i in range(n)])
    return table


def _mixing(p_global: int, p_local: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    a = np.eye(p_global) + 0.5 * rng.standard_normal((p_global, p_global))
    b = np.eye(p_local) + 0.5 * rng.standard_normal((p_local, p_local))
    return a, b


def _splits(train: pd.DataFrame, validation: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ID: list(train[ID]) + list(validation[ID]),
            "split": ["train"] * len(train) + ["validation"] * len(validation),
        }
    )


def _fitted(rng, n_train=400, n_val=2000, **kwargs):
    train = _cohort(rng, n_train, prefix="T", **kwargs)
    validation = _cohort(rng, n_val, prefix="V", **kwargs)
    features = pd.concat([train, validation], ignore_index=True)
    return DistributionMonitor().fit(features, _splits(train, validation))


def test_feature_spaces_group_embedding_blocks_and_local_features() -> None:
    assert feature_spaces(["subject_id", "emb_000", "emb_001", "pc_000", "age"]) == {
        "global": ["emb_000", "emb_001"],
        "local": ["pc_000"],
    }
    columns = ["subject_id", "pc_000", "emb_f1_000", "emb_f0_000", "emb_f0_001", "emb_f10_000"]
    assert feature_spaces(columns) == {
        "global_f0": ["emb_f0_000", "emb_f0_001"],
        "global_f1": ["emb_f1_000"],
        "global_f10": ["emb_f10_000"],
        "local": ["pc_000"],
    }
    with pytest.raises(ValueError, match="mix plain emb_"):
        feature_spaces(["emb_000", "emb_f0_000"])


def test_held_out_draws_of_the_training_law_are_flagged_at_about_one_percent() -> None:
    rng = np.random.default_rng(0)
    monitor = _fitted(rng)
    assert monitor.threshold_source_ == "validation"
    assert monitor.n_validation_ == {"global": 2000, "local": 2000}
    held_out = monitor.score(_cohort(rng, 20_000, prefix="H"))
    for space in ("global", "local"):  # each space's threshold is its 99th percentile
        rate = float((held_out[f"ood_{space}"] > monitor.threshold_[space]).mean())
        assert 0.004 < rate < 0.02, (space, rate)
    # Flagged when beyond in either space: between 1 % and 2 % for two spaces.
    rate = float(held_out["ood_flag"].mean())
    assert 0.008 < rate < 0.03, rate
    assert (held_out["ood_flag"] == (held_out["ood_score"] > 1.0)).all()
    assert held_out["ood_score"].median() < 0.8
    assert (held_out.loc[~held_out["ood_flag"], "ood_reason"] == "").all()


def test_a_shifted_cloud_is_flagged_with_the_space_named() -> None:
    rng = np.random.default_rng(1)
    monitor = _fitted(rng)
    shifted = monitor.score(_cohort(rng, 500, prefix="X", shift=4.0))
    assert shifted["ood_flag"].mean() > 0.99
    assert shifted["ood_score"].min() > 1.0
    reason = shifted["ood_reason"].iloc[0]
    assert reason.startswith("out of distribution: features ")
    assert "x beyond the 99th percentile of validation subjects (" in reason
    assert "global" in reason and "local" in reason  # both moved, most beyond first
    # Only the embedding moved: only "global" is named.
    only_global = _cohort(rng, 200, prefix="G")
    emb = [c for c in only_global if c.startswith("emb_")]
    only_global[emb] += 6.0
    scored = monitor.score(only_global)
    assert scored["ood_flag"].all()
    assert scored["ood_reason"].str.endswith("(global)").mean() > 0.95  # local: ~1 % beyond
    assert (scored["ood_local"] < 2 * monitor.threshold_["local"]).mean() > 0.9


def test_fewer_training_subjects_than_features_works() -> None:
    """A tiny cohort: 5 training subjects, 128 embedding dimensions, 3 validation subjects."""
    rng = np.random.default_rng(2)
    mixing = (np.eye(128), np.eye(5))
    train = _cohort(rng, 5, p_global=128, p_local=5, prefix="T", mixing=mixing)
    validation = _cohort(rng, 3, p_global=128, p_local=5, prefix="V", mixing=mixing)
    monitor = DistributionMonitor().fit(pd.concat([train, validation]), _splits(train, validation))
    assert monitor.n_train_ == {"global": 5, "local": 5}
    assert monitor.n_validation_ == {"global": 3, "local": 3}
    assert 0 < monitor.shrinkage_["global"] <= 1
    assert all(np.isfinite(p).all() for p in monitor.precision_.values())
    scores = monitor.score(_cohort(rng, 50, p_global=128, p_local=5, prefix="H", mixing=mixing))
    assert np.isfinite(scores[["ood_global", "ood_local", "ood_score"]].to_numpy()).all()
    far = _cohort(rng, 5, p_global=128, p_local=5, prefix="F", mixing=mixing, shift=10.0)
    assert monitor.score(far)["ood_flag"].all()


def test_a_feature_constant_in_training_does_not_break_the_fit() -> None:
    rng = np.random.default_rng(3)
    train = _cohort(rng, 30, prefix="T")
    validation = _cohort(rng, 10, prefix="V")
    train["pc_000"] = 1.0
    monitor = DistributionMonitor().fit(pd.concat([train, validation]), _splits(train, validation))
    assert np.isfinite(monitor.scale_["local"]).all() and (monitor.scale_["local"] > 0).all()
    assert np.isfinite(monitor.score(validation)["ood_score"]).all()


def test_missing_features_are_skipped_in_fit_and_flag_the_scan() -> None:
    rng = np.random.default_rng(4)
    train = _cohort(rng, 100, prefix="T")
    validation = _cohort(rng, 40, prefix="V")
    train.loc[:9, "pc_002"] = np.nan  # 10 training subjects without a local feature
    validation.loc[:4, "emb_003"] = np.nan
    monitor = DistributionMonitor().fit(pd.concat([train, validation]), _splits(train, validation))
    assert monitor.n_train_ == {"global": 100, "local": 90}
    assert monitor.n_validation_ == {"global": 35, "local": 40}
    assert np.isfinite(monitor.center_["local"]).all()

    scan = _cohort(rng, 1, prefix="N")
    scan["pc_001"] = np.nan
    row = monitor.score(scan).iloc[0]
    assert math.isnan(row["ood_local"]) and math.isfinite(row["ood_global"])
    assert row["ood_flag"]  # the check could not be made in one space: flagged
    assert row["ood_score"] == pytest.approx(row["ood_global"] / monitor.threshold_["global"])
    assert "missing features in local" in row["ood_reason"]

    nothing = scan.assign(**{c: np.nan for c in scan.columns if c != ID})
    row = monitor.score(nothing).iloc[0]
    assert math.isnan(row["ood_score"]) and row["ood_flag"]
    assert "missing features in global, local" in row["ood_reason"]


def test_fold_spaces_are_fitted_on_their_folds_training_subjects_only() -> None:
    """Cross-fitted embeddings: block ``emb_f{j}_*`` is out-of-sample for network ``j`` on the
    training subjects of fold ``j`` only, so space ``global_f{j}`` is fitted on those."""
    rng = np.random.default_rng(5)
    n, p = 60, 4
    ids = [f"T{i:03d}" for i in range(n)] + [f"V{i:03d}" for i in range(20)]
    folds = {s: i % 2 for i, s in enumerate(ids[:n])}
    block0 = rng.standard_normal((len(ids), p))
    block1 = rng.standard_normal((len(ids), p))
    # In-sample embeddings (the net trained on them) sit elsewhere: fold 1's rows in block 0
    # and fold 0's rows in block 1 are moved, and must not enter those spaces' fits.
    in_sample_0 = np.array([folds.get(s) == 1 for s in ids])
    in_sample_1 = np.array([folds.get(s) == 0 for s in ids])
    block0[in_sample_0] += 50.0
    block1[in_sample_1] -= 50.0
    features = pd.DataFrame({ID: ids})
    for j, block in enumerate((block0, block1)):
        for k in range(p):
            features[f"emb_f{j}_{k:03d}"] = block[:, k]
    features["pc_000"] = rng.standard_normal(len(ids))
    splits = pd.DataFrame({ID: ids, "split": ["train"] * n + ["validation"] * 20})

    monitor = DistributionMonitor().fit(features, splits, folds=folds)
    assert set(monitor.spaces_) == {"global_f0", "global_f1", "local"}
    assert monitor.n_train_ == {"global_f0": 30, "global_f1": 30, "local": 60}
    fold0 = [i for i, s in enumerate(ids[:n]) if folds[s] == 0]
    np.testing.assert_allclose(monitor.center_["global_f0"], block0[fold0].mean(axis=0))
    assert np.abs(monitor.center_["global_f0"]).max() < 1.0  # the moved rows stayed out
    assert np.abs(monitor.center_["global_f1"]).max() < 1.0
    assert set(monitor.training_distances_["global_f1"].index) == {
        s for s, j in folds.items() if j == 1
    }
    new = features.iloc[n:].assign(**{ID: [f"N{i}" for i in range(20)]})
    scored = monitor.score(new)
    assert {"ood_global_f0", "ood_global_f1", "ood_local", "ood_score"} <= set(scored)
    assert scored["ood_score"].max() == pytest.approx(1.0, abs=0.3)

    # Without folds every block is fitted on all training subjects (with a warning).
    pooled = DistributionMonitor().fit(features, splits)
    assert pooled.n_train_["global_f0"] == 60
    with pytest.raises(ValueError, match="no training subjects in fold 1"):
        DistributionMonitor().fit(features, splits, folds={s: 0 for s in folds})


def test_without_validation_subjects_the_threshold_comes_from_training_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(6)
    train = _cohort(rng, 50, prefix="T")
    splits = pd.DataFrame({ID: train[ID], "split": "train"})
    with caplog.at_level(logging.WARNING, logger="face_health.modelling.ood"):
        monitor = DistributionMonitor().fit(train, splits)
    assert monitor.threshold_source_ == "training"
    assert "no validation subjects" in caplog.text and "TRAINING distances" in caplog.text
    far = _cohort(rng, 1, prefix="F", shift=8.0)
    assert "percentile of training subjects" in monitor.score(far)["ood_reason"].iloc[0]


def test_clear_errors() -> None:
    rng = np.random.default_rng(7)
    table = _cohort(rng, 10)
    with pytest.raises(ValueError, match="no training subjects"):
        DistributionMonitor().fit(table, pd.DataFrame({ID: table[ID], "split": "validation"}))
    one = pd.DataFrame({ID: table[ID], "split": ["train"] + ["validation"] * 9})
    with pytest.raises(ValueError, match="at least 2"):
        DistributionMonitor().fit(table, one)
    with pytest.raises(ValueError, match="no feature columns"):
        DistributionMonitor().fit(table[[ID]], one)
    with pytest.raises(ValueError, match="percentile"):
        DistributionMonitor(percentile=0).fit(table, one)
    with pytest.raises(RuntimeError, match="not fitted"):
        DistributionMonitor().score(table)
    splits = pd.DataFrame({ID: table[ID], "split": ["train"] * 7 + ["validation"] * 3})
    monitor = DistributionMonitor().fit(table, splits)
    with pytest.raises(KeyError, match="lack 1 column"):
        monitor.score(table.drop(columns="pc_003"))


def test_the_monitor_pickles_and_reports_its_distributions() -> None:
    rng = np.random.default_rng(8)
    monitor = _fitted(rng, n_train=80, n_val=40)
    restored = pickle.loads(pickle.dumps(monitor))
    probe = _cohort(rng, 20, prefix="P")
    pd.testing.assert_frame_equal(restored.score(probe), monitor.score(probe))
    summary = monitor.summary()
    assert summary["spaces"]["global"]["n_validation"] == 40
    scores = score_distributions(monitor)
    assert len(scores["training"]) == 80 and len(scores["validation"]) == 40
    assert scores["validation"].max() >= 1.0 >= scores["validation"].quantile(0.9)


def test_the_figure_node_draws_every_space() -> None:
    import matplotlib.pyplot as plt

    from face_health.config import base_section
    from face_health.pipelines.modelling.nodes import fit_ood_monitor

    rng = np.random.default_rng(9)
    train, validation = _cohort(rng, 40, prefix="T"), _cohort(rng, 15, prefix="V")
    modelling = base_section("modelling").to_parameters()
    assert modelling["ood_percentile"] == 99
    monitor, figure, metrics = fit_ood_monitor(
        pd.concat([train, validation]), _splits(train, validation), object(), modelling
    )
    assert isinstance(monitor, DistributionMonitor) and len(figure.axes) == 3
    assert metrics["global.n_validation"]["value"] == 15.0
    assert metrics["local.threshold"]["value"] == pytest.approx(monitor.threshold_["local"])
    plt.close(figure)


# --------------------------------------------------------------- the scorer's outputs


def _record(monitor: DistributionMonitor, features: pd.DataFrame) -> dict:
    scorer = ScanScorer(None, None, None, {}, None, None, ood_monitor=monitor)
    record = {ID: features[ID].iloc[0], "qc_status": "ok", "qc_reason": "", "model_run_id": "r"}
    ood = scorer.out_of_distribution(features)
    record["ood_reason"] = ood.pop("ood_reason")
    return record | ood


def test_records_tables_and_json_carry_the_ood_score() -> None:
    rng = np.random.default_rng(10)
    monitor = _fitted(rng, n_train=80, n_val=40)
    near = _record(monitor, _cohort(rng, 1, prefix="N"))
    far = _record(monitor, _cohort(rng, 1, prefix="F", shift=6.0))
    assert {"ood_global", "ood_local", "ood_score", "ood_flag"} <= set(far)
    assert far["ood_flag"] is True and isinstance(far["ood_score"], float)
    failed = {ID: "Z", "qc_status": "failed", "qc_reason": "zero faces", "model_run_id": "r"}

    table = predictions_table([near, far, failed])
    assert {"ood_score", "ood_flag"} <= set(table.columns)
    assert list(table.columns).index("ood_score") < list(table.columns).index("qc_status")
    assert table["ood_flag"].tolist() == [near["ood_flag"], True, None]
    assert math.isnan(table["ood_score"].iloc[2])

    body = json_record(far)
    assert body["ood"]["flag"] is True and body["ood"]["score"] > 1.0
    assert set(body["ood"]["spaces"]) == {"global", "local"}
    assert json_record(failed)["ood"] == {"score": None, "flag": None, "spaces": {}}

    from face_health.serving.responses import Prediction

    assert "ood" in Prediction.model_fields


def test_a_model_without_an_ood_monitor_is_refused_at_load() -> None:
    from face_health import config

    parameters = config.project_parameters("base")
    options = {name: parameters[name] for name in config.SCAN_SECTIONS}
    with pytest.raises(LookupError, match=r"no out-of-distribution monitor.*retrain"):
        check_settings(ScanScorer(None, None, None, {}, None, None, options=options), "runs:/x")
    # An old pickle (no ood_monitor attribute at all) reads as None and is refused too.
    old = ScanScorer(None, None, None, {}, None, None, options=options)
    del old.__dict__["ood_monitor"]
    restored = pickle.loads(pickle.dumps(old))
    assert restored.ood_monitor is None
    with pytest.raises(LookupError, match="retrain"):
        check_settings(restored)


# ------------------------------------------------------------------- the tiny model


@pytest.mark.slow
def test_the_logged_model_scores_carry_the_ood_score(trained_tiny_project: Path) -> None:
    from face_health.serving.scorer import load_scorer

    project = trained_tiny_project
    data = project / "data" / "tiny"
    assert (data / "08_reporting" / "ood.png").stat().st_size > 0
    scorer = load_scorer("face_health@newest", f"sqlite:///{project / 'mlflow.db'}")
    assert isinstance(scorer.ood_monitor, DistributionMonitor)
    assert set(scorer.ood_monitor.spaces_) >= {"local"}
    scan = data / "01_raw" / "synthetic_cohort" / "scans" / "S0004.obj"
    record = scorer.score(scan)
    assert record["qc_status"] != "failed", record["qc_reason"]
    spaces = [f"ood_{name}" for name in scorer.ood_monitor.spaces_]
    assert {"ood_score", "ood_flag", *spaces} <= set(record)
    assert math.isfinite(record["ood_score"]) and isinstance(record["ood_flag"], bool)
    if record["ood_flag"]:
        assert record["qc_status"] == "warning" and "out of distribution" in record["qc_reason"]
    table = predictions_table([record])
    assert {"ood_score", "ood_flag"} <= set(table.columns)
    assert json_record(record)["ood"]["score"] == pytest.approx(record["ood_score"], abs=1e-4)
