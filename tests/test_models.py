"""The masked MLP, the baselines and the all-targets wrapper, on small synthetic data.

Fits are full-batch and short so the module runs in seconds on a busy two-core machine.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from face_health.evaluation.metrics import binary_metrics, regression_metrics
from face_health.modelling.models import (
    HealthModels,
    LinearBaseline,
    MaskedMLP,
    MeanBaseline,
    MLPEnsemble,
    target_groups,
)
from face_health.schema import TARGET_NAMES, TARGETS

FAST = {"hidden": (32,), "batch_size": 512, "lr": 1e-2, "max_epochs": 150, "patience": 20}


def _quadratic(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, X[:, 0] ** 2 + 0.2 * rng.normal(size=n)


def _r2(y, p) -> float:
    return regression_metrics(y, p)["r2"]


def test_mlp_learns_a_nonlinear_function():
    X, y = _quadratic()
    model = MaskedMLP(**FAST).fit(X[:200], y[:200], X[200:250], y[200:250])
    assert model.predict(X[250:]).shape == (50, 1)
    assert _r2(y[250:], model.predict(X[250:])[:, 0]) > 0.7


def test_mlp_learns_a_binary_target():
    X, _ = _quadratic()
    y = (X[:, 1] + X[:, 2] > 0).astype(float)
    model = MaskedMLP(kinds=("binary",), **FAST).fit(X[:200], y[:200], X[200:250], y[200:250])
    p = model.predict(X[250:])[:, 0]
    assert ((p >= 0) & (p <= 1)).all()
    assert binary_metrics(y[250:], p)["auroc"] > 0.85


def test_mlp_masks_missing_labels():
    X, y = _quadratic()
    b = (X[:, 1] > 0).astype(float)
    Y = np.c_[y, b]
    Y[::2, 1] = np.nan  # half the binary labels missing
    Y[1::4, 0] = np.nan
    model = MaskedMLP(kinds=("regression", "binary"), **FAST).fit(X[:200], Y[:200])
    pred = model.predict(X[250:])
    assert np.isfinite(pred).all()
    assert _r2(y[250:], pred[:, 0]) > 0.6
    # Garbage in the masked positions of the (scaled) labels leaves the loss unchanged.
    out = torch.randn(6, 2)
    z = torch.tensor(np.c_[np.zeros(6), np.r_[0, 1, 0, 1, 0, 1]], dtype=torch.float32)
    mask = torch.tensor([[True, False]] * 3 + [[False, True]] * 3)
    garbage = torch.where(mask, z, torch.full_like(z, 1e6))
    assert model._loss(out, z, mask) == model._loss(out, garbage, mask)
    with pytest.raises(ValueError, match="binary"):
        MaskedMLP(kinds=("binary",)).fit(X[:3], [0.0, 1.0, 2.0])


def test_mlp_is_deterministic_clones_and_pickles():
    X, y = _quadratic(n=120)
    params = {**FAST, "max_epochs": 30}
    a = MaskedMLP(**params, seed=5).fit(X[:80], y[:80])
    b = MaskedMLP(**params, seed=5).fit(X[:80], y[:80])
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    twin = clone(a)
    assert twin.get_params() == a.get_params() and not hasattr(twin, "model_")
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X), a.predict(X))


def test_seed_ensemble_is_the_mean_of_its_members_and_the_setting_builds_it(cohort):
    X, y = _quadratic(n=120)
    params = {**FAST, "max_epochs": 30}
    ensemble = MLPEnsemble(n_members=3, mlp_params=params, seed=5).fit(X[:80], y[:80])
    assert [m.seed for m in ensemble.members_] == [5, 6, 7]
    singles = [MaskedMLP(**params, seed=s).fit(X[:80], y[:80]).predict(X) for s in (5, 6, 7)]
    np.testing.assert_allclose(ensemble.predict(X), np.mean(singles, axis=0))
    assert not np.allclose(singles[0], singles[1])  # the members differ: the mean is not one
    restored = pickle.loads(pickle.dumps(ensemble))
    np.testing.assert_array_equal(restored.predict(X), ensemble.predict(X))
    with pytest.raises(ValueError, match="at least one member"):
        MLPEnsemble(n_members=0).fit(X, y)
    features, targets, splits = cohort
    models = HealthModels(mlp_params={**MLP_PARAMS, "ensemble": 2}).fit(features, targets, splits)
    assert all(isinstance(m, MLPEnsemble) for m in models.estimators_["mlp"].values())
    single = HealthModels(mlp_params={**MLP_PARAMS, "ensemble": 1}).fit(features, targets, splits)
    assert all(isinstance(m, MaskedMLP) for m in single.estimators_["mlp"].values())


def test_mlp_early_stopping_restores_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 20))
    y = X[:, 0] + rng.normal(size=80)  # few, noisy rows: a wide net overfits quickly
    model = MaskedMLP(
        hidden=(128,),
        dropout=0.0,
        weight_decay=0.0,
        lr=1e-2,
        batch_size=512,
        max_epochs=300,
        patience=15,
    ).fit(X[:40], y[:40], X[40:], y[40:])
    val = np.asarray(model.history_["val_loss"])
    assert model.best_epoch_ == int(np.argmin(val))
    assert model.n_epochs_ == model.best_epoch_ + model.patience + 1 < model.max_epochs
    restored = np.mean(((model.predict(X[40:])[:, 0] - y[40:]) / model.y_scale_[0]) ** 2)
    assert restored == pytest.approx(val.min(), rel=1e-4)


def test_mean_baseline_is_training_mean_and_prevalence():
    Y = np.array([[1.0, 0], [3.0, 1], [np.nan, 1], [5.0, np.nan]])
    model = MeanBaseline(kinds=("regression", "binary")).fit(np.zeros((4, 2)), Y)
    np.testing.assert_allclose(model.predict(np.zeros((2, 2))), [[3.0, 2 / 3]] * 2)


def test_linear_baseline_fits_with_and_without_validation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[::7, 3] = np.nan  # imputed
    Y = np.c_[2 * X[:, 0] + 0.1 * rng.normal(size=200), (X[:, 1] > 0).astype(float)]
    Y[::5, 0] = np.nan
    for val in [(X[150:], Y[150:]), (None, None)]:
        model = LinearBaseline(kinds=("regression", "binary")).fit(X[:150], Y[:150], *val)
        pred = model.predict(X[150:])
        assert _r2(Y[150:, 0], pred[:, 0]) > 0.9
        assert binary_metrics(Y[150:, 1], pred[:, 1])["auroc"] > 0.9


def test_target_groups():
    groups = target_groups("group")
    assert [g.name for g in groups] == ["age", "clinical", "conditions"]
    assert sum(len(g.targets) for g in groups) == len(TARGETS)
    clinical = groups[1]
    assert clinical.kinds[clinical.targets.index("smoking")] == "binary"
    assert set(groups[2].kinds) == {"binary"}
    assert [g.targets for g in target_groups("target")] == [[t] for t in TARGET_NAMES]
    with pytest.raises(ValueError):
        target_groups("region")


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """120 subjects; every target is a noisy function of emb_0 / pc_0."""
    rng = np.random.default_rng(0)
    n = 120
    ids = [f"s{i:03d}" for i in range(n)]
    emb = rng.normal(size=(n, 6))
    pc = rng.normal(size=(n, 3))
    features = pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(6)])
    features[[f"pc_{i}" for i in range(3)]] = pc
    features.insert(0, "subject_id", ids)
    signal = emb[:, 0] + pc[:, 0]
    targets = pd.DataFrame({"subject_id": ids})
    for t in TARGETS:
        if t.kind == "regression":
            targets[t.name] = 50 + 10 * signal + 3 * rng.normal(size=n)
        else:
            targets[t.name] = (signal + 0.5 * rng.normal(size=n) > 0).astype(float)
    targets.loc[::6, "alt"] = np.nan
    split = np.array(["train"] * 80 + ["validation"] * 20 + ["test"] * 20)
    splits = pd.DataFrame({"subject_id": ids, "split": rng.permutation(split)})
    return features, targets, splits


MLP_PARAMS = {"hidden": (16,), "batch_size": 512, "lr": 1e-2, "max_epochs": 100, "patience": 15}


def test_health_models_fit_on_train_only(cohort):
    features, targets, splits = cohort
    models = HealthModels(mlp_params=MLP_PARAMS).fit(features, targets, splits)
    train_ids = splits.loc[splits["split"] == "train", "subject_id"]
    assert sorted(models.fitted_on_) == sorted(train_ids)
    test = splits["split"].eq("test").to_numpy()
    # Scrambled test labels must not change any model.
    scrambled = targets.copy()
    scrambled.loc[test, TARGET_NAMES] = scrambled.loc[test, TARGET_NAMES].to_numpy()[::-1] * 7
    again = HealthModels(mlp_params=MLP_PARAMS).fit(features, scrambled, splits)
    for kind in ("mlp", "mean", "linear"):
        pd.testing.assert_frame_equal(models.predict(features, kind), again.predict(features, kind))
    pred = models.predict_all(features)
    assert list(pred["mlp"].columns) == ["subject_id", *TARGET_NAMES]
    truth, mlp, mean = (t[test] for t in (targets, pred["mlp"], pred["mean"]))
    assert (
        regression_metrics(truth["age"], mlp["age"])["mae"]
        < regression_metrics(truth["age"], mean["age"])["mae"]
    )
    assert binary_metrics(truth["obesity"], mlp["obesity"])["auroc"] > 0.8
    with pytest.raises(ValueError):
        models.predict(features, "forest")


def test_health_models_inputs_and_per_target(cohort):
    features, targets, splits = cohort
    params = {**MLP_PARAMS, "max_epochs": 10}
    local = HealthModels(inputs="local", per="target", kinds=("mlp", "mean"), mlp_params=params)
    local.fit(features, targets[["subject_id", "age", "bmi", "obesity"]], splits)
    assert local.feature_columns_ == ["pc_0", "pc_1", "pc_2"]
    assert [g.name for g in local.groups_] == ["age", "bmi", "obesity"]
    assert list(local.predict(features).columns) == ["subject_id", "age", "bmi", "obesity"]
    glob = HealthModels(inputs="global", kinds=("mean",)).fit(features, targets, splits)
    assert glob.feature_columns_ == [f"emb_{i}" for i in range(6)]
    with pytest.raises(ValueError, match="no feature columns"):
        HealthModels(inputs="local").fit(
            features.filter(like="emb_").assign(subject_id=features["subject_id"]), targets, splits
        )
    with pytest.raises(ValueError):
        HealthModels(inputs="mesh").fit(features, targets, splits)


def test_liver_enzymes_are_modelled_on_a_log_scale_and_predictions_are_bounded() -> None:
    """ALT and GGT are right-skewed: fitted on log values they cannot come out negative; and
    no prediction leaves its target's plausible range (schema.py), however odd the input."""
    import numpy as np
    import pandas as pd

    from face_health import schema
    from face_health.modelling.models import HealthModels

    rng = np.random.default_rng(0)
    n = 60
    ids = [f"S{i:03d}" for i in range(n)]
    x = rng.normal(size=(n, 4))
    features = pd.DataFrame(x, columns=[f"emb_{i:03d}" for i in range(4)])
    features.insert(0, "subject_id", ids)
    alt = np.exp(3.0 + 0.6 * x[:, 0] + rng.normal(0, 0.2, n))  # log-normal, median 20 U/L
    targets = pd.DataFrame({"subject_id": ids, "alt": alt, "age": 45 + 10 * x[:, 1]})
    splits = pd.DataFrame({"subject_id": ids, "split": ["train"] * 40 + ["validation"] * 20})
    models = HealthModels(per="target", inputs="global", kinds=("linear", "mean")).fit(
        features, targets, splits
    )
    # the mean baseline on the log scale is the geometric mean: the median of a log-normal
    mean = models.predict(features, model="mean")["alt"].iloc[0]
    assert abs(mean - np.exp(np.log(alt[:40]).mean())) < 1e-6
    extreme = features.copy()
    extreme.iloc[:, 1:] = -1e3  # far outside anything seen: a linear model extrapolates wildly
    raw = models.predict(extreme, model="linear", bounded=False)
    bounded = models.predict(extreme, model="linear")
    assert (raw["alt"] > 0).all()  # exp of anything is positive
    for name in ("alt", "age"):
        low, high = schema.TARGET_BY_NAME[name].plausible
        assert bounded[name].between(low, high).all()
    assert not raw["age"].between(*schema.TARGET_BY_NAME["age"].plausible).all()


# --- the per-target choice among the MLP, the linear model and their average ---------------

#: An MLP this short is far from converged: the linear model is clearly better on the
#: cohort's linear signal, so a choice on validation must pick it.
SHORT = {**MLP_PARAMS, "max_epochs": 3}


def _validation_metric(models, features, targets, splits, target, candidate) -> float:
    """The choice's metric of one candidate on the validation rows, recomputed here."""
    from face_health.modelling.models import CHOICE_METRIC

    val = splits.loc[splits["split"] == "validation", "subject_id"]
    rows = features[features["subject_id"].isin(val)]
    pred = models.predict(rows, model=candidate).set_index("subject_id")[target]
    truth = targets.set_index("subject_id").loc[pred.index, target]
    keep = truth.notna()
    err = pred[keep] - truth[keep]
    regression = TARGETS[TARGET_NAMES.index(target)].kind == "regression"
    assert CHOICE_METRIC["regression" if regression else "binary"] == (
        "mae" if regression else "brier"
    )
    return float(err.abs().mean() if regression else (err**2).mean())


def test_choice_is_made_on_validation_rows_only(cohort):
    features, targets, splits = cohort
    models = HealthModels(mlp_params=SHORT).fit(features, targets, splits)
    assert set(models.choice_) == set(TARGET_NAMES)
    assert set(models.choice_.values()) <= {"mlp", "linear", "average"}
    # The linear model is clearly better on validation for age: it is chosen.
    age = models.validation_metrics_["age"]
    assert age["linear"] < 0.8 * age["mlp"]
    assert models.choice_["age"] == "linear"
    assert models.choice_reason_["age"] == ""
    # The stored metrics are those of the validation rows (n: labelled validation subjects).
    val = splits["split"].eq("validation").to_numpy()
    for target in ("age", "alt", "obesity"):
        stored = models.validation_metrics_[target]
        assert stored["n"] == int(targets.loc[val, target].notna().sum())
        for candidate in ("mlp", "linear", "average"):
            expected = _validation_metric(models, features, targets, splits, target, candidate)
            assert stored[candidate] == pytest.approx(expected, rel=1e-9)
    # Changing the test labels changes neither the choice nor what it was made on.
    test = splits["split"].eq("test").to_numpy()
    scrambled = targets.copy()
    scrambled.loc[test, TARGET_NAMES] = 1.0 - scrambled.loc[test, TARGET_NAMES].to_numpy()
    again = HealthModels(mlp_params=SHORT).fit(features, scrambled, splits)
    assert again.choice_ == models.choice_
    assert again.validation_metrics_ == models.validation_metrics_


def test_predict_chosen_assembles_the_chosen_candidates(cohort):
    features, targets, splits = cohort
    models = HealthModels(mlp_params=SHORT).fit(features, targets, splits)
    models.choice_ = {**models.choice_, "age": "mlp", "bmi": "average", "obesity": "linear"}
    for bounded in (True, False):
        chosen = models.predict(features, model="chosen", bounded=bounded)
        assert list(chosen.columns) == ["subject_id", *TARGET_NAMES]
        for target in TARGET_NAMES:
            candidate = models.predict(features, model=models.choice_[target], bounded=bounded)
            np.testing.assert_array_equal(chosen[target], candidate[target])
    # The average is the mean of the two predictions (of the two probabilities if binary).
    mlp, linear, average = (
        models.predict(features, model=m, bounded=False) for m in ("mlp", "linear", "average")
    )
    for target in ("age", "obesity", "anemia"):
        np.testing.assert_allclose(average[target], (mlp[target] + linear[target]) / 2)
    assert set(models.predict_all(features)) == {"mlp", "mean", "linear", "chosen"}


def test_choice_falls_back_to_the_mlp_with_a_reason(cohort):
    features, targets, splits = cohort
    no_linear = HealthModels(kinds=("mlp", "mean"), mlp_params=SHORT)
    no_linear.fit(features, targets[["subject_id", "age", "obesity"]], splits)
    assert no_linear.choice_ == {"age": "mlp", "obesity": "mlp"}
    assert "linear" in no_linear.choice_reason_["age"]
    with pytest.raises(ValueError, match="average"):
        no_linear.predict(features, model="average")
    # No validation label for a target (or no validation subjects): the MLP, and why.
    unlabelled = targets[["subject_id", "age", "obesity"]].copy()
    unlabelled.loc[splits["split"].eq("validation").to_numpy(), "age"] = np.nan
    models = HealthModels(per="target", mlp_params=SHORT).fit(features, unlabelled, splits)
    assert models.choice_["age"] == "mlp"
    assert models.validation_metrics_["age"] == {"n": 0}
    assert "no validation" in models.choice_reason_["age"]
    no_val = splits.replace({"split": {"validation": "train"}})
    models = HealthModels(per="target", mlp_params=SHORT).fit(features, unlabelled, no_val)
    assert set(models.choice_.values()) == {"mlp"}
    assert models.choice_reason_["obesity"] == "no validation subjects"


def test_models_without_a_choice_still_serve_the_mlp(cohort):
    """A model pickled before the choice existed has no ``choice_``: it serves the MLP."""
    from face_health.modelling.models import served_model
    from face_health.serving.scorer import ScanScorer

    features, targets, splits = cohort
    models = HealthModels(mlp_params=SHORT).fit(features, targets, splits)
    old = pickle.loads(pickle.dumps(models))
    for name in ("choice_", "validation_metrics_", "choice_metric_", "choice_reason_"):
        delattr(old, name)
    assert served_model(models) == "chosen" and served_model(old) == "mlp"
    assert set(old.predict_all(features)) == {"mlp", "mean", "linear"}
    with pytest.raises(ValueError, match="not fitted"):
        old.predict(features, model="chosen")
    assert old.choice_summary() == {}

    one = features.iloc[[0]].reset_index(drop=True)
    for fitted, expected in ((models, "chosen"), (old, "mlp")):
        scorer = ScanScorer({}, pd.DataFrame(), None, {}, None, fitted)
        scorer.ingest = lambda source, sid: (object(), {"status": "ok", "reason": ""})
        scorer.features = lambda mesh, sid: (one, {})
        scorer.refusal = lambda predictions, ood: ""
        record = scorer.score("scan.obj", "s000")
        want = fitted.predict(one, model=expected, bounded=False).iloc[0]
        for target in TARGET_NAMES:
            assert record[target] == pytest.approx(want[target], rel=1e-12)


def test_cross_fitted_models_choose_on_their_averaged_validation_predictions(cohort):
    from face_health.modelling.models import CrossFittedHealthModels

    features, targets, splits = cohort
    rng = np.random.default_rng(1)
    emb = features.filter(like="emb_").to_numpy()
    crossed = features[["subject_id"]].copy()
    for j in range(2):  # two networks: the same signal, each with its own noise
        block = emb + 0.1 * rng.normal(size=emb.shape)
        for k in range(emb.shape[1]):
            crossed[f"emb_f{j}_{k:03d}"] = block[:, k]
    crossed[["pc_0", "pc_1", "pc_2"]] = features[["pc_0", "pc_1", "pc_2"]].to_numpy()
    train = splits.loc[splits["split"] == "train", "subject_id"].tolist()
    folds = {s: i % 2 for i, s in enumerate(train)}
    small = targets[["subject_id", "age", "bmi", "obesity"]]

    def fit(labels):
        return CrossFittedHealthModels(folds=folds, mlp_params=SHORT).fit(crossed, labels, splits)

    models = fit(small)
    assert set(models.choice_) == {"age", "bmi", "obesity"}
    for target in models.choice_:
        for candidate in ("mlp", "linear", "average"):
            expected = _validation_metric(models, crossed, small, splits, target, candidate)
            assert models.validation_metrics_[target][candidate] == pytest.approx(expected)
    chosen = models.predict(crossed, model="chosen")
    for target, candidate in models.choice_.items():
        np.testing.assert_array_equal(
            chosen[target], models.predict(crossed, model=candidate)[target]
        )
    assert "chosen" in models.predict_all(crossed)
    test = splits["split"].eq("test").to_numpy()
    scrambled = small.copy()
    scrambled.loc[test, ["age", "bmi"]] = -scrambled.loc[test, ["age", "bmi"]].to_numpy()
    again = fit(scrambled)
    assert again.choice_ == models.choice_
    assert again.validation_metrics_ == models.validation_metrics_
