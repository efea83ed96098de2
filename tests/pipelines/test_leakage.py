"""Leakage at node level: what a node fits on the training split cannot depend on the
validation or test subjects' data, and a node that would fit on them stops with a
:class:`~face_health.errors.LeakageError`.

Each perturbation test calls the node twice, on clean inputs and on inputs where the held-out
subjects' rows are garbage (huge numbers, NaN, noise), and requires the fitted state to be
*bit-identical* (``np.array_equal`` / ``torch.equal``), with a control showing that the same
comparison does see a change in one training subject. Where validation legitimately steers a
fit (early stopping of the MLPs and the ResNet, the logistic baseline's ``C``), only the test
split is perturbed for that part, and the test says so.

The guards are explicit ``raise`` statements, not ``assert``s, so these tests also pass
under ``python -O``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import trimesh

from face_health import schema
from face_health.config import base_section
from face_health.errors import DataError, LeakageError
from face_health.pipelines.data_engineering import geometry_nodes
from face_health.pipelines.data_engineering.geometry_nodes import make_template
from face_health.pipelines.feature.nodes import fit_facial_omics, train_embedding_model
from face_health.pipelines.modelling.nodes import train_health_models

ID = schema.ID_COLUMN
GARBAGE = ("huge", "nan", "noise")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- helpers ------------------------------------------------------------------------------


def _splits(n_train: int, n_val: int, n_test: int) -> pd.DataFrame:
    labels = ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test
    return pd.DataFrame({ID: [f"S{i:04d}" for i in range(len(labels))], "split": labels})


def _held_out(splits: pd.DataFrame, which=("validation", "test")) -> list[str]:
    return splits.loc[splits["split"].isin(which), ID].tolist()


def _garbage(kind: str, shape: tuple[int, ...], seed: int = 99) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "huge":
        return np.where(rng.random(shape) < 0.5, -1e12, 1e12)
    if kind == "nan":
        return np.full(shape, np.nan)
    return rng.normal(0.0, 1e3, shape)


def assert_identical(a: Any, b: Any, where: str = "model", depth: int = 0) -> None:
    """Bit-identical fitted state, recursively: arrays by ``np.array_equal`` (NaN equal to
    NaN), tensors and module state dicts by ``torch.equal``, estimators by their ``vars``.
    The message names the first attribute that differs."""
    assert depth < 30, f"{where}: nested too deep"
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.nn.Module):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb), f"{where}: state dict keys differ"
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{where}.{key} differs"
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: shape or dtype differs"
        nan_ok = a.dtype.kind in "fc"
        assert np.array_equal(a, b, equal_nan=nan_ok), f"{where} differs"
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys differ"
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]", depth + 1)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]", depth + 1)
    elif isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        assert_identical(vars(a), vars(b), where, depth + 1)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _differs(a: Any, b: Any) -> bool:
    try:
        assert_identical(a, b)
    except AssertionError:
        return True
    return False


# --- facial omics (standardise + PCA) ----------------------------------------------------


def _radiomics(splits: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(splits)
    latent, mixing = rng.normal(size=(n, 3)), rng.normal(size=(3, 24))
    values = latent @ mixing + 0.1 * rng.normal(size=(n, 24))
    columns = [f"{r}__f{k}" for r in schema.REGIONS[:6] for k in range(4)]
    table = pd.DataFrame(values, columns=columns)
    table.iloc[1, 3] = np.nan  # a missing value in a training row, imputed by its median
    table.insert(0, ID, splits[ID].to_numpy())
    return table


def _omics_state(model) -> dict[str, Any]:
    """What the facial-omics model learned (``face_health.omics.pca.FacialOmics``)."""
    state: dict[str, Any] = {"columns_": model.columns_, "fitted_on_": model.fitted_on_}
    for name, pipeline in model.fitted_pipelines().items():
        steps = pipeline.named_steps
        state |= {
            f"{name}.impute.statistics_": steps["impute"].statistics_,
            f"{name}.scale.mean_": steps["scale"].mean_,
            f"{name}.scale.scale_": steps["scale"].scale_,
            f"{name}.pca.mean_": steps["pca"].mean_,
            f"{name}.pca.components_": steps["pca"].components_,
            f"{name}.pca.explained_variance_": steps["pca"].explained_variance_,
            f"{name}.pca.n_components_": steps["pca"].n_components_,
        }
    return state


@pytest.mark.parametrize("kind", [*GARBAGE, "absent"])
def test_facial_omics_ignores_validation_and_test_rows(kind: str) -> None:
    splits = _splits(10, 3, 3)
    params = base_section("facial_omics").to_parameters()
    clean = _radiomics(splits)
    held = clean[ID].isin(_held_out(splits))
    dirty = clean.copy()
    if kind == "absent":
        dirty = dirty[~held]
    else:
        dirty.loc[held, dirty.columns[1:]] = _garbage(kind, (int(held.sum()), clean.shape[1] - 1))

    model, local, _ = fit_facial_omics(clean, splits, params)
    model_dirty, local_dirty, _ = fit_facial_omics(dirty, splits, params)
    assert model.fitted_on_ == splits.loc[splits["split"] == "train", ID].tolist()
    assert_identical(_omics_state(model), _omics_state(model_dirty), "facial omics")
    train = local[ID].isin(model.fitted_on_)
    pd.testing.assert_frame_equal(
        local[train].reset_index(drop=True),
        local_dirty[local_dirty[ID].isin(model.fitted_on_)].reset_index(drop=True),
        check_exact=True,
    )

    # Control: the same comparison sees a change in one training subject.
    nudged = clean.copy()
    nudged.iloc[0, 2] += 1.0
    assert _differs(_omics_state(model), _omics_state(fit_facial_omics(nudged, splits, params)[0]))


def test_facial_omics_stops_when_a_split_lists_a_subject_twice() -> None:
    splits = _splits(10, 3, 3)
    twice = pd.concat([splits, pd.DataFrame({ID: ["S0010"], "split": ["train"]})])  # S0010: val
    params = base_section("facial_omics").to_parameters()
    with pytest.raises(LeakageError, match=r"facial-omics PCA.*S0010 \(train\+validation\)"):
        fit_facial_omics(_radiomics(splits), twice, params)


def test_facial_omics_stops_when_the_fit_sees_held_out_rows(monkeypatch) -> None:
    """A regression that fits the PCA on every row (the row filter forgotten) is caught."""
    import face_health.pipelines.feature.nodes as nodes

    real = nodes.FacialOmics

    class FitsOnEverything(real):
        def fit(self, table, y=None):
            return super().fit(everything, y)

    splits = _splits(10, 3, 3)
    everything = _radiomics(splits)
    monkeypatch.setattr(nodes, "FacialOmics", FitsOnEverything)
    with pytest.raises(LeakageError, match=r"6 subject\(s\).*S0010 \(validation\).*S0013 \(test\)"):
        fit_facial_omics(everything, splits, base_section("facial_omics").to_parameters())


# --- the template face --------------------------------------------------------------------


def _base_face() -> np.ndarray:
    from face_health.synthetic.anatomy import template

    points = template().landmarks
    return np.array([points[name] for name in schema.LANDMARK_NAMES], float)


def _landmark_table(points: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(points, columns=["x", "y", "z"])
    table.insert(0, "name", list(schema.LANDMARK_NAMES))
    table["status"] = "ok"
    return table


def _template_inputs(splits: pd.DataFrame) -> tuple[dict, dict, pd.DataFrame]:
    rng = np.random.default_rng(1)
    base = _base_face()
    landmarks: dict[str, Callable[[], pd.DataFrame]] = {}
    meshes: dict[str, Callable[[], trimesh.Trimesh]] = {}
    for i, sid in enumerate(splits[ID]):
        table = _landmark_table(base + rng.normal(0.0, 1.5, base.shape))
        landmarks[f"{sid}.csv"] = lambda t=table: t.copy()
        # A mesh of its own per subject, so a changed medoid would change the template mesh.
        meshes[sid] = lambda r=70.0 + i: trimesh.creation.icosphere(subdivisions=1, radius=r)
    qc = pd.DataFrame({ID: splits[ID], "landmark_status": "ok"})
    return landmarks, meshes, qc


@pytest.mark.parametrize("kind", [*GARBAGE, "unreadable"])
def test_template_ignores_validation_and_test_landmarks(kind: str, monkeypatch) -> None:
    # The node's picture renders with pyrender, whose EGL set-up runs inside ``assert``
    # statements (pyrender/platforms/egl.py) and so fails under ``python -O``; the picture
    # is no fitted state, so it is left out here.
    monkeypatch.setattr(geometry_nodes, "template_figure", lambda template: plt.figure())
    splits = _splits(6, 2, 2)
    landmarks, meshes, qc = _template_inputs(splits)
    table, mesh, _ = make_template(landmarks, meshes, splits, qc)

    dirty_landmarks, dirty_meshes = dict(landmarks), dict(meshes)
    for j, sid in enumerate(_held_out(splits)):
        if kind == "unreadable":  # never even read: a loader that explodes when called

            def explode(sid=sid):
                raise AssertionError(f"make_template read held-out subject {sid}")

            dirty_landmarks[f"{sid}.csv"], dirty_meshes[sid] = explode, explode
        else:
            garbage = _landmark_table(_garbage(kind, (len(schema.LANDMARK_NAMES), 3), seed=j))
            dirty_landmarks[f"{sid}.csv"] = lambda t=garbage: t.copy()
            dirty_meshes[sid] = lambda: trimesh.creation.icosphere(subdivisions=1, radius=1e6)
    dirty_table, dirty_mesh, _ = make_template(dirty_landmarks, dirty_meshes, splits, qc)

    pd.testing.assert_frame_equal(table, dirty_table, check_exact=True)
    assert np.array_equal(mesh.vertices, dirty_mesh.vertices)
    assert np.array_equal(mesh.faces, dirty_mesh.faces)

    # Control: moving one training subject's landmarks changes the template.
    nudged = dict(landmarks)
    moved = landmarks["S0000.csv"]().assign(x=lambda t: t["x"] + 2.0)
    nudged["S0000.csv"] = lambda: moved.copy()
    assert not table.equals(make_template(nudged, meshes, splits, qc)[0])


# --- the health models ---------------------------------------------------------------------


def _model_tables(splits: pd.DataFrame, seed: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = len(splits)
    features = pd.DataFrame(
        rng.normal(size=(n, 6)),
        columns=[f"emb_{k:03d}" for k in range(3)] + [f"pc_{k:03d}" for k in range(3)],
    )
    features.insert(0, ID, splits[ID].to_numpy())
    signal = features["emb_000"].to_numpy() + features["pc_000"].to_numpy()
    clinical = pd.DataFrame({ID: splits[ID].to_numpy()})
    for target in schema.TARGETS:
        if target.kind == "regression":
            low, high = target.plausible
            clinical[target.name] = (low + high) / 2 + 5 * signal + rng.normal(0, 2, n)
        else:
            clinical[target.name] = (signal + rng.normal(0, 1, n) > 0).astype(float)
    clinical.loc[3, "alt"] = np.nan  # a missing label in a training row
    return features, clinical


def _model_inputs(splits: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every regression target and two binary ones (one clinical, one condition): each
    group of models is fitted, and fewer logistic fits keep the tests fast."""
    features, clinical = _model_tables(splits)
    binary = [t.name for t in schema.TARGETS if t.kind != "regression"]
    return features, clinical.drop(columns=[b for b in binary if b not in ("smoking", "obesity")])


#: ``embedding_folds`` of a single (not cross-fitted) embedding network.
NO_FOLDS = pd.DataFrame({ID: pd.Series(dtype=str), "fold": pd.Series(dtype=int)})


def _cross_fitted(
    features: pd.DataFrame, splits: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features as two networks' blocks (``emb_f0_*``, ``emb_f1_*``: the second a
    shuffled copy) and each training subject's fold."""
    emb = [c for c in features.columns if c.startswith("emb_")]
    rng = np.random.default_rng(5)
    f0 = features[emb].rename(columns=lambda c: "emb_f0_" + c[4:])
    f1 = features[emb].sample(frac=1.0, random_state=3, axis=1).set_axis(
        ["emb_f1_" + c[4:] for c in emb], axis=1
    ) + rng.normal(0, 0.1, (len(features), len(emb)))
    table = pd.concat([features.drop(columns=emb), f0, f1], axis=1)
    train = splits.loc[splits["split"].eq("train"), ID].tolist()
    return table, pd.DataFrame({ID: train, "fold": [i % 2 for i in range(len(train))]})


def _modelling_params() -> dict[str, Any]:
    base = base_section("modelling")
    mlp = dataclasses.replace(base.mlp, hidden=(8,), max_epochs=8, patience=3, batch_size=8)
    return base_section("modelling", mlp=mlp, n_bootstrap=10).to_parameters()


def _garble_rows(table: pd.DataFrame, ids: list[str], kind: str) -> pd.DataFrame:
    out = table.copy()
    rows, columns = out[ID].isin(ids), out.columns[1:]
    out.loc[rows, columns] = _garbage(kind, (int(rows.sum()), len(columns)))
    return out


def _garble_labels(clinical: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    out = clinical.copy()
    rows = out[ID].isin(ids)
    for target in (t for t in schema.TARGETS if t.name in out):
        if target.kind == "regression":
            out.loc[rows, target.name] = 1e9
        else:  # still 0/1, so a leak would not simply fail the binary check
            out.loc[rows, target.name] = 1.0 - out.loc[rows, target.name]
    return out


@pytest.mark.parametrize("kind", GARBAGE)
def test_health_models_ignore_test_features_and_labels(kind: str) -> None:
    """Garbage TEST rows (features and labels): every fitted model is bit-identical, MLP
    weights included (the MLPs early-stop on validation, which is left clean here)."""
    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    params = _modelling_params()
    test_ids = _held_out(splits, ("test",))

    models = train_health_models(features, clinical, splits, NO_FOLDS, params)
    dirty = train_health_models(
        _garble_rows(features, test_ids, kind),
        _garble_labels(clinical, test_ids),
        splits,
        NO_FOLDS,
        params,
    )
    assert set(models.estimators_) == {"mlp", "mean", "linear"}
    assert [group.name for group in models.groups_] == ["age", "clinical", "conditions"]
    assert_identical(models, dirty, "health models")

    if kind != "huge":
        return
    # Control (once): the comparison sees a change in one training subject's features.
    nudged = features.copy()
    nudged.loc[0, "pc_000"] += 0.5  # a local feature: every inputs setting uses them
    assert _differs(models, train_health_models(nudged, clinical, splits, NO_FOLDS, params))


@pytest.mark.parametrize("in_sample", [False, True])
def test_cross_fitted_health_models_ignore_test_rows_and_keep_their_folds(in_sample) -> None:
    """Cross-fitted members: garbage TEST rows change nothing, member j is fitted on fold
    j's subjects only (out-of-fold) or on the others (the ablation's in-sample variant), and
    a member sees only its own network's block."""
    from face_health.modelling.models import CrossFittedHealthModels, fold_features
    from face_health.pipelines.modelling.nodes import _health_models

    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    features, folds = _cross_fitted(features, splits)
    # inputs with the embedding: cross-fitting applies to them (the default may not use it)
    params = {**_modelling_params(), "kinds": ["mlp", "linear"], "inputs": "both"}
    fold_of = dict(zip(folds[ID], folds["fold"], strict=True))
    test_ids = _held_out(splits, ("test",))

    def fit(table, labels):
        models = _health_models(params, folds=fold_of, in_sample=in_sample)
        return models.fit(table, labels, splits)

    models = fit(features, clinical)
    assert isinstance(models, CrossFittedHealthModels)
    for j, member in enumerate(models.members_):
        expected = {s for s, f in fold_of.items() if (f == j) != in_sample}
        assert set(member.fitted_on_) == expected
        assert not any(c.startswith("emb_f") for c in member.feature_columns_)
    assert set(models.fitted_on_) == set(fold_of)
    dirty = fit(_garble_rows(features, test_ids, "huge"), _garble_labels(clinical, test_ids))
    assert_identical(models, dirty, "cross-fitted health models")
    predictions = models.predict(features)
    assert predictions[ID].tolist() == features[ID].tolist()
    # A member's own block matters; the other network's block does not reach it.
    changed = features.copy()
    changed[[c for c in features if c.startswith("emb_f1_")]] = 0.0
    first = models.members_[0].predict(fold_features(changed, 0))
    assert_identical(first, models.members_[0].predict(fold_features(features, 0)), "member 0")
    assert not np.allclose(models.predict(changed)["age"].to_numpy(), predictions["age"].to_numpy())


def test_cross_fitted_models_refuse_features_of_another_run() -> None:
    from face_health.pipelines.modelling.nodes import _health_models

    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    _, folds = _cross_fitted(features, splits)
    fold_of = dict(zip(folds[ID], folds["fold"], strict=True))
    with pytest.raises(ValueError, match="different runs"):
        params = {**_modelling_params(), "inputs": "both"}
        _health_models(params, folds=fold_of).fit(features, clinical, splits)


def test_health_models_use_validation_only_to_stop_and_choose() -> None:
    """Garbage VALIDATION features: validation legitimately picks the MLPs' best epoch and
    the logistic baseline's C, so those may change; everything learned from the training
    rows (the mean baseline, the ridge models, the MLPs' scalers and their training-loss
    curve up to the earlier stop) must not."""
    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    params = _modelling_params()
    val_ids = _held_out(splits, ("validation",))
    models = train_health_models(features, clinical, splits, NO_FOLDS, params)
    dirty = train_health_models(
        _garble_rows(features, val_ids, "huge"), clinical, splits, NO_FOLDS, params
    )

    assert_identical(models.estimators_["mean"], dirty.estimators_["mean"], "mean")
    binary = {t.name for t in schema.TARGETS if t.kind != "regression"}
    for spec in models.groups_:
        clean_mlp, dirty_mlp = (
            models.estimators_["mlp"][spec.name],
            dirty.estimators_["mlp"][spec.name],
        )
        for name in ("x_median_", "x_mean_", "x_scale_", "y_mean_", "y_scale_"):
            assert_identical(
                getattr(clean_mlp, name), getattr(dirty_mlp, name), f"{spec.name}.{name}"
            )
        n = min(clean_mlp.n_epochs_, dirty_mlp.n_epochs_)
        assert_identical(
            clean_mlp.history_["train_loss"][:n], dirty_mlp.history_["train_loss"][:n], "train loss"
        )
        linear = models.estimators_["linear"][spec.name].estimators_
        dirty_linear = dirty.estimators_["linear"][spec.name].estimators_
        for target, a, b in zip(spec.targets, linear, dirty_linear, strict=True):
            if target not in binary:  # ridge: no validation involved
                assert_identical(a, b, f"ridge {target}")


def test_health_models_stop_when_fitted_on_test_subjects(monkeypatch) -> None:
    """A regression that fits on test subjects (here: one that reads them as training) is
    caught by the node's check against the real splits."""
    from face_health.modelling.models import HealthModels

    real_fit = HealthModels.fit

    def fit_on_test_too(self, features, targets, splits):
        return real_fit(self, features, targets, splits.replace({"split": {"test": "train"}}))

    monkeypatch.setattr(HealthModels, "fit", fit_on_test_too)
    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    with pytest.raises(LeakageError, match=r"4 subject\(s\).*'S0018': \['test'\]"):
        params = {**_modelling_params(), "kinds": ["mean"]}  # which model does not matter
        train_health_models(features, clinical, splits, NO_FOLDS, params)


def test_health_models_stop_when_a_split_lists_a_subject_twice() -> None:
    splits = _splits(14, 4, 4)
    features, clinical = _model_inputs(splits)
    twice = pd.concat([splits, splits.iloc[:1].assign(split="test")], ignore_index=True)
    with pytest.raises(LeakageError, match="not a partition"):
        train_health_models(
            features, clinical, twice, NO_FOLDS, {**_modelling_params(), "kinds": ["mean"]}
        )


# --- the ResNet embedding -----------------------------------------------------------------

VIEWS = ("front", "yaw_left_15", "yaw_right_15", "pitch_up_15", "pitch_down_15")


def _face_views(splits: pd.DataFrame, garbage_for: tuple[str, ...] = ()) -> dict[str, Callable]:
    rng = np.random.default_rng(4)
    views = {}
    for sid in splits[ID]:
        for view in VIEWS:
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            if sid in garbage_for:  # saturated noise instead of the face
                image = np.where(rng.random((32, 32, 3)) < 0.5, 0, 255).astype(np.uint8)
            views[f"{sid}/{view}"] = lambda a=image: a
    return views


def _embedding_params(cross_fit_folds: int = 0) -> dict[str, Any]:
    base = base_section("embedding")
    return base_section(
        "embedding",
        cross_fit_folds=cross_fit_folds,
        image_size=32,
        batch_size=4,
        views_per_subject_per_epoch=2,
        seed=0,
        module={**base.module, "backbone": "resnet10t", "embedding_dim": 101, "max_epochs": 1},
        trainer={
            **base.trainer,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    ).to_parameters()


@pytest.mark.parametrize("folds", [0, 2])
def test_embedding_weights_ignore_test_views_and_labels(folds: int) -> None:
    """Garbage TEST views and labels: the trained ResNet (weights and BatchNorm statistics)
    is bit-identical, one network or each of a cross-fit's. Validation views legitimately
    drive early stopping and the kept checkpoint, so only the test split is perturbed."""
    splits = _splits(6, 2, 2)
    _, clinical = _model_tables(splits)
    test_ids = tuple(_held_out(splits, ("test",)))
    params = _embedding_params(folds)

    module, metrics = train_embedding_model(_face_views(splits), clinical, splits, params)
    dirty, dirty_metrics = train_embedding_model(
        _face_views(splits, garbage_for=test_ids),
        _garble_labels(clinical, list(test_ids)),
        splits,
        params,
    )
    assert_identical(module, dirty, "embedding module")
    assert metrics["best_val_loss"] == dirty_metrics["best_val_loss"]
    assert metrics["scaler_fitted_on"] == dirty_metrics["scaler_fitted_on"] == 6

    # Control: training moved the weights, so equal weights are not equal initialisations.
    import lightning as L

    from face_health.embedding.model import EmbeddingModule

    L.seed_everything(0, workers=True, verbose=False)
    names = list(schema.TARGET_NAMES)
    start = EmbeddingModule(
        names,
        [schema.TARGET_BY_NAME[n].kind for n in names],
        backbone="resnet10t",
        embedding_dim=101,
    )
    trained = module.members[0] if folds else module
    assert _differs(start.net, trained.net)
    if folds:  # each network blind to its own fold of the training subjects
        assert sorted(module.folds) == sorted(_held_out(splits, ("train",)))
        assert sorted(set(module.folds.values())) == [0, 1]


@pytest.mark.parametrize("what", ["views", "scaler"])
def test_embedding_stops_when_its_training_data_holds_a_test_subject(monkeypatch, what) -> None:
    import face_health.embedding.model as model

    real = model.ViewDataModule

    def leaky(*args, **kwargs):
        data = real(*args, **kwargs)
        if what == "views":
            data.subjects["train"].append("S0009")
        else:
            data.scaler.fitted_on.append("S0009")
        return data

    monkeypatch.setattr(model, "ViewDataModule", leaky)
    splits = _splits(6, 2, 2)
    _, clinical = _model_tables(splits)
    label = "training views" if what == "views" else "target scaler"
    with pytest.raises(LeakageError, match=rf"{label} saw 1 subject\(s\).*S0009 \(test\)"):
        train_embedding_model(_face_views(splits), clinical, splits, _embedding_params())


def test_leakage_error_is_a_bug_not_a_data_error() -> None:
    assert issubclass(LeakageError, RuntimeError)
    assert not issubclass(LeakageError, DataError | ValueError)
