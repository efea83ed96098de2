"""Metrics against hand-computed values, bootstrap intervals, the test-only evaluation,
figures and the model card."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from face_health.evaluation.metrics import (
    HEADLINE_METRIC,
    age_plots,
    binary_metrics,
    bootstrap_ci,
    condition_plots,
    evaluate,
    model_card,
    paired_differences,
    regression_metrics,
    summary_figure,
)

T = np.array([0.0, 0.0, 1.0, 1.0])
P = np.array([0.1, 0.4, 0.35, 0.8])


def test_regression_metrics_by_hand():
    m = regression_metrics([1, 2, 3, 4, np.nan], [2, 2, 3, 6, 5])  # NaN pair dropped
    assert m["mae"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert m["r2"] == pytest.approx(0.0)  # ss_res = ss_tot = 5
    assert m["pearson_r"] == pytest.approx(6.5 / np.sqrt(5 * 10.75))


def test_regression_metrics_constant_gives_nan_r():
    m = regression_metrics([1, 2, 3, 4, 5, 6, 7], [0.1] * 7)  # float mean: rounding noise
    assert np.isnan(m["pearson_r"])
    assert np.isnan(regression_metrics([2, 2, 2], [1, 2, 3])["r2"])


def test_binary_metrics_by_hand():
    m = binary_metrics(T, P)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ranked right
    # Thresholds 0.8 (P=1, R=.5), 0.4 (P=.5, R=.5), 0.35 (P=2/3, R=1).
    assert m["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)  # one subject per bin


def test_ece_shared_bins():
    # Bin [0.1, 0.2): mean p .15 vs rate .5; bin [0.9, 1]: .9 vs 1 (p = 1 joins the top bin).
    m = binary_metrics([0, 1, 1, 1], [0.12, 0.18, 0.9, 1.0])
    assert m["ece"] == pytest.approx((2 * 0.35 + abs(2 - 1.9)) / 4)


def test_binary_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2, 60)
    p = np.round(rng.random(60), 1)  # many ties
    m = binary_metrics(t, p)
    assert m["auroc"] == pytest.approx(roc_auc_score(t, p))
    assert m["auprc"] == pytest.approx(average_precision_score(t, p))


def test_binary_metrics_one_class_is_nan():
    m = binary_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"])
    assert np.isfinite(m["brier"])


def test_bootstrap_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 50)
    p = np.clip(0.3 * t + 0.7 * rng.random(50), 0, 1)
    a = bootstrap_ci(binary_metrics, t, p, n_boot=200, seed=3)
    assert a == bootstrap_ci(binary_metrics, t, p, n_boot=200, seed=3)
    assert a != bootstrap_ci(binary_metrics, t, p, n_boot=200, seed=4)
    for value, low, high in a.values():
        assert low <= value <= high
    y = rng.normal(size=40)
    for value, low, high in bootstrap_ci(
        regression_metrics, y, y + rng.normal(size=40), n_boot=200
    ).values():
        assert low <= value <= high


def test_bootstrap_skips_undefined_resamples():
    t = np.r_[1, np.zeros(19)]  # one positive: most resamples have one class only
    ci = bootstrap_ci(binary_metrics, t, np.linspace(0, 1, 20), n_boot=100)
    assert all(np.isfinite(v) for v in ci["auroc"])


def _tables(n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    ids = [f"s{i:03d}" for i in range(n)]
    age = rng.uniform(20, 70, n)
    obesity = rng.integers(0, 2, n).astype(float)
    truth = pd.DataFrame({"subject_id": ids, "age": age, "obesity": obesity})
    pred = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age + rng.normal(0, 4, n),
            "obesity": np.clip(0.5 * obesity + 0.5 * rng.random(n), 0, 1),
        }
    )
    return truth, pred, ids[: n // 2]


def test_evaluate_uses_only_test_subjects():
    truth, pred, test_ids = _tables()
    mean = pred.assign(age=truth["age"].mean(), obesity=truth["obesity"].mean())
    table = evaluate({"mlp": pred, "mean": mean}, truth, test_ids=test_ids, n_boot=50)
    assert list(table.columns) == [
        "target",
        "unit",
        "model",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
    ]
    assert set(table["n"]) == {len(test_ids)}
    assert table.loc[table["target"] == "age", "unit"].iloc[0] == "years"
    planted = pred.copy()
    planted.loc[planted["subject_id"] == "s030", "age"] = 1e6  # a train subject
    again = evaluate({"mlp": planted, "mean": mean}, truth, test_ids=test_ids, n_boot=50)
    pd.testing.assert_frame_equal(table, again)
    mae = table.query("target == 'age' and metric == 'mae' and model == 'mlp'")["value"].item()
    expected = np.abs(pred["age"] - truth["age"])[: len(test_ids)].mean()
    assert mae == pytest.approx(expected)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_figures_render_to_png():
    truth, pred, test_ids = _tables()
    assert _png(age_plots(truth["age"], pred["age"])).startswith(b"\x89PNG")
    truth["anemia"] = np.r_[np.ones(5), np.zeros(35)]
    pred["anemia"] = np.linspace(0, 1, 40)
    fig = condition_plots(truth, pred, ["obesity", "anemia"])
    assert _png(fig).startswith(b"\x89PNG")
    table = evaluate({"mlp": pred, "linear": pred}, truth, test_ids=test_ids, n_boot=30)
    assert _png(summary_figure(table)).startswith(b"\x89PNG")


def test_model_card_has_table_and_limitations():
    truth, pred, test_ids = _tables()
    mean = pred.assign(age=truth["age"].mean(), obesity=truth["obesity"].mean())
    table = evaluate(
        {"mlp": pred, "mean": mean, "linear": pred}, truth, test_ids=test_ids, n_boot=30
    )
    card = model_card(
        test_metrics=table,
        data={"source": "synthetic cohort", "n_subjects": 40, "seed": 0},
        splits={"train": 20, "validation": 0, "test": 20},
        limitations=["Synthetic data: no real population."],
        baselines=["mean / prevalence", "ridge / logistic"],
    )
    assert "| target | metric | MLP [95% CI] | mean baseline [95% CI] | linear baseline" in card
    assert "| age | mae |" in card
    assert "Synthetic data: no real population." in card
    assert "synthetic cohort" in card and "| test | 20 |" in card
    assert "| age | years | regression | 20 |" in card
    assert "## Model choice" in card and "The MLP is served for every target" in card


def test_model_card_records_the_choice_made_on_validation():
    truth, pred, test_ids = _tables()
    table = evaluate({"chosen": pred, "mlp": pred}, truth, test_ids=test_ids, n_boot=30)
    choice = {
        "age": {
            "choice": "linear",
            "metric": "mae",
            "validation": {"mlp": 5.2, "average": 4.6, "linear": 4.31, "n": 18},
            "reason": "",
        },
        "obesity": {
            "choice": "mlp",
            "metric": "brier",
            "validation": {"n": 0},
            "reason": "no validation subject has this label",
        },
    }
    card = model_card(
        test_metrics=table,
        data={"source": "synthetic cohort"},
        splits={"train": 20, "validation": 18, "test": 20},
        limitations=[],
        baselines=[],
        model_choice=choice,
    )
    section = card.split("## Model choice")[1].split("## Targets")[0]
    assert "**validation subjects**" in section and "Brier" in section
    assert "| age | mae | 5.20 | **4.31** | 4.60 | 18 | linear |  |" in section
    assert "| obesity | brier | **n/a** | n/a | n/a | 0 | MLP | no validation subject" in section
    assert "| target | metric | chosen on validation [95% CI] | MLP [95% CI] |" in card


def _three_models(n: int = 120) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """Truth for age, bmi and obesity; a good model, a poor one (much noisier, the same
    signal) and the mean baseline."""
    rng = np.random.default_rng(1)
    ids = [f"s{i:03d}" for i in range(n)]
    age = rng.uniform(20, 70, n)
    bmi = rng.normal(24, 3, n)
    obesity = (bmi + rng.normal(0, 1, n) > 26).astype(float)
    truth = pd.DataFrame({"subject_id": ids, "age": age, "bmi": bmi, "obesity": obesity})
    good = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age + rng.normal(0, 2, n),
            "bmi": bmi + rng.normal(0, 1, n),
            "obesity": 1 / (1 + np.exp(-(bmi - 26))),
        }
    )
    poor = pd.DataFrame(
        {
            "subject_id": ids,
            "age": age + rng.normal(0, 12, n),
            "bmi": bmi + rng.normal(0, 8, n),
            "obesity": 1 / (1 + np.exp(-(bmi + rng.normal(0, 6, n) - 26))),
        }
    )
    mean = pd.DataFrame(
        {"subject_id": ids, "age": age.mean(), "bmi": bmi.mean(), "obesity": obesity.mean()}
    )
    return truth, {"good": good, "poor": poor, "mean": mean}, ids


def test_headline_metric_is_mae_for_age_r_for_regression_auroc_for_binary():
    assert HEADLINE_METRIC["age"] == "mae"
    assert HEADLINE_METRIC["bmi"] == HEADLINE_METRIC["hemoglobin"] == "pearson_r"
    assert HEADLINE_METRIC["smoking"] == HEADLINE_METRIC["anemia"] == "auroc"


def test_a_clearly_better_model_has_a_paired_interval_excluding_zero():
    truth, models, ids = _three_models()
    table = paired_differences(
        models, truth, test_ids=ids, pairs=[("good", "poor"), ("poor", "good")], n_boot=300
    )
    assert set(table["target"]) == {"age", "bmi", "obesity"}
    for row in table.itertuples():
        assert row.better == "good" and row.excludes_zero, row
        assert row.ci_low <= row.difference <= row.ci_high
        assert row.n == len(ids) and row.n_resamples == 300
    age = table.query("target == 'age' and model_a == 'good'").iloc[0]
    # MAE: lower is better, so the better model has the negative difference A - B
    assert age.metric == "mae" and not age.higher_is_better and age.ci_high < 0
    expected = (
        np.abs(models["good"]["age"] - truth["age"]).mean()
        - np.abs(models["poor"]["age"] - truth["age"]).mean()
    )
    assert age.difference == pytest.approx(expected)
    bmi = table.query("target == 'bmi' and model_a == 'good'").iloc[0]
    assert bmi.metric == "pearson_r" and bmi.higher_is_better and bmi.ci_low > 0


def test_identical_models_differ_by_exactly_zero():
    truth, models, ids = _three_models()
    twin = {"a": models["good"], "b": models["good"].copy()}
    table = paired_differences(twin, truth, test_ids=ids, pairs=[("a", "b")], n_boot=100)
    assert (table["difference"] == 0).all()
    assert (table["ci_low"] == 0).all() and (table["ci_high"] == 0).all()
    assert (table["better"] == "tie").all() and not table["excludes_zero"].any()


def test_paired_differences_use_only_the_given_subjects_and_the_same_resamples():
    truth, models, ids = _three_models()
    test_ids = ids[:60]
    pairs = [("good", "mean"), ("poor", "mean")]
    table = paired_differences(models, truth, test_ids=test_ids, pairs=pairs, n_boot=200, seed=3)
    planted = {k: v.copy() for k, v in models.items()}
    planted["good"].loc[planted["good"]["subject_id"] == "s100", "age"] = 1e6  # not compared
    again = paired_differences(planted, truth, test_ids=test_ids, pairs=pairs, n_boot=200, seed=3)
    pd.testing.assert_frame_equal(table, again)
    assert set(table["n"]) == {60}
    # A constant prediction counts as r = 0 and AUROC 0.5, so "beats the mean" is defined.
    vs_mean = table[table["model_b"] == "mean"].set_index(["model_a", "target"])
    assert vs_mean.loc[("good", "bmi"), "value_b"] == 0.0
    assert vs_mean.loc[("good", "obesity"), "value_b"] == pytest.approx(0.5)
    assert vs_mean.loc[("good", "bmi"), "excludes_zero"]
    # The same seed and n as evaluate: the difference with the mean's r = 0 is the model's
    # own r, and its paired interval is evaluate's interval of r.
    metrics = evaluate(models, truth, test_ids=test_ids, n_boot=200, seed=3)
    r = metrics.query("target == 'bmi' and model == 'good' and metric == 'pearson_r'").iloc[0]
    assert vs_mean.loc[("good", "bmi"), "difference"] == pytest.approx(r.value)
    assert vs_mean.loc[("good", "bmi"), "ci_low"] == pytest.approx(r.ci_low)
    assert vs_mean.loc[("good", "bmi"), "ci_high"] == pytest.approx(r.ci_high)


def test_paired_differences_refuse_an_unknown_model():
    truth, models, ids = _three_models()
    with pytest.raises(ValueError, match="no predictions of model"):
        paired_differences(models, truth, test_ids=ids, pairs=[("good", "ridge")], n_boot=10)


def test_rowwise_bootstrap_metrics_equal_the_one_sample_ones_resample_by_resample() -> None:
    """The bootstrap scores all resamples at once; each row must be what the one-sample
    metric gives that resample (ties, one class only and constant predictions included)."""
    from face_health.evaluation import metrics as m

    rng = np.random.default_rng(3)
    for n in (7, 45):
        t = rng.normal(size=n)
        cases = [(t, t + rng.normal(size=n)), (t, np.ones(n))]
        labels = (rng.random(n) < 0.3).astype(float)
        binary = [(labels, np.round(rng.random(n), 1)), (np.zeros(n), rng.random(n))]
        idx = m._resamples(n, 200, seed=0)
        draws = np.random.default_rng(0)
        for row in idx:
            np.testing.assert_array_equal(row, draws.integers(0, n, n))  # the same stream
        for fn, rowwise, pairs in (
            (m.regression_metrics, m._rowwise_regression, cases),
            (m.binary_metrics, m._rowwise_binary, binary),
        ):
            for y, p in pairs:
                batch = rowwise(y[idx], p[idx])
                for i, row in enumerate(idx[:50]):
                    for name, value in fn(y[row], p[row]).items():
                        np.testing.assert_allclose(batch[name][i], value, rtol=1e-12, atol=1e-12)
        for metric, (y, p) in (("pearson_r", cases[1]), ("mae", cases[0]), ("auroc", binary[0])):
            batch = m._rowwise_comparison(metric, y[idx], p[idx])
            for i, row in enumerate(idx[:50]):
                expected = m._comparison_value(metric, y[row], p[row])
                np.testing.assert_allclose(batch[i], expected, rtol=1e-12, atol=1e-12)
