"""Test-set metrics with bootstrap intervals, the figures that show them, and a model card.

Everything here sees only the test split (``evaluate`` takes the test ids explicitly), and
every headline number carries a 95% percentile bootstrap interval over resampled subjects,
because with ~45 test subjects a single figure without its spread says little. Two models
are compared with ``paired_differences``: the interval of the difference on the same
resamples, on each target's headline metric (``HEADLINE_METRIC``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from face_health.schema import ID_COLUMN, TARGET_BY_NAME, TARGETS  # noqa: E402

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]

#: Display names of the model kinds in tables and legends.
MODEL_LABELS = {
    "chosen": "chosen on validation",
    "mlp": "MLP",
    "average": "MLP + linear average",
    "mean": "mean baseline",
    "linear": "linear baseline",
}
#: How the candidates of a per-target choice are named in the model card.
CHOICE_LABELS = {"mlp": "MLP", "linear": "linear", "average": "average of MLP and linear"}
#: The one number per target that the summary figure shows.
HEADLINE = {"regression": "pearson_r", "binary": "auroc"}
#: The headline metric of each target, the one that claims about models are made on: MAE
#: for age (years are the unit people read an age model in), Pearson r for the other
#: regression targets (their units differ, r compares them), AUROC for binary targets and
#: conditions. The README's tables and its model comparisons use this and nothing else.
HEADLINE_METRIC: dict[str, str] = {
    t.name: ("mae" if t.name == "age" else "pearson_r") if t.kind == "regression" else "auroc"
    for t in TARGETS
}
#: Metrics where a smaller value is the better model (errors); every other one is a score.
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse", "brier", "ece"})


def _ordered_models(test_metrics: pd.DataFrame) -> list[str]:
    """Model names, the chosen model and the MLP first and then the baselines, whatever
    order they came in."""
    models = list(dict.fromkeys(test_metrics["model"]))
    return sorted(models, key=lambda m: list(MODEL_LABELS).index(m) if m in MODEL_LABELS else 99)


def _pairs(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values, y_pred {p.size}")
    keep = ~(np.isnan(t) | np.isnan(p))
    return t[keep], p[keep]


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, R^2 and Pearson r of the pairs where neither value is NaN.

    R^2 is nan when ``y_true`` is constant, r when either side is constant.
    """
    t, p = _pairs(y_true, y_pred)
    if len(t) == 0:
        return {"mae": np.nan, "rmse": np.nan, "r2": np.nan, "pearson_r": np.nan}
    err = p - t
    dt, dp = t - t.mean(), p - p.mean()
    # Test constancy exactly (ptp), not by a tiny denominator: a constant prediction's
    # deviations from its own float mean are rounding noise, which would give r = 1e-16.
    t_varies, p_varies = np.ptp(t) > 0, np.ptp(p) > 0
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": 1.0 - float((err**2).sum() / (dt**2).sum()) if t_varies else np.nan,
        "pearson_r": (
            float((dt * dp).sum() / np.sqrt((dt**2).sum() * (dp**2).sum()))
            if t_varies and p_varies
            else np.nan
        ),
    }


def _auroc(t: np.ndarray, p: np.ndarray) -> float:
    # Mann-Whitney U on mid-ranks: equal to the ROC area, ties counted half, and far faster
    # than sklearn's validated version inside a 1000-fold bootstrap.
    pos = t == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return np.nan
    return (rankdata(p)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def _average_precision(t: np.ndarray, p: np.ndarray) -> float:
    # Same step-wise definition as sklearn's average_precision_score (no interpolation).
    if t.sum() == 0 or t.sum() == len(t):
        return np.nan
    order = np.argsort(-p, kind="mergesort")
    t, p = t[order], p[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tps = np.cumsum(t)[last_of_tie]
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def expected_calibration_error(t: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean |observed rate - mean probability| over equal-width bins."""
    if len(t) == 0:
        return np.nan
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)  # p = 1 joins the top bin
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, t, n_bins) - np.bincount(bins, p, n_bins))
    return float(gap.sum() / counts.sum())


def binary_metrics(y_true, p) -> dict[str, float]:
    """AUROC, AUPRC (average precision), Brier score and ECE (10 equal-width bins).

    AUROC and AUPRC are nan when only one class is present.
    """
    t, q = _pairs(y_true, p)
    if len(t) == 0:
        return {"auroc": np.nan, "auprc": np.nan, "brier": np.nan, "ece": np.nan}
    return {
        "auroc": _auroc(t, q),
        "auprc": _average_precision(t, q),
        "brier": float(((q - t) ** 2).mean()),
        "ece": expected_calibration_error(t, q),
    }


# --- the same metrics over many resamples at once --------------------------------------------
# A bootstrap scores 1000 resamples of every target and model: one (B, n) array each instead
# of a Python loop (the ablation's intervals took 33 s of the default run). Each row gives the
# value the one-sample function above gives for that resample, to rounding.


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` subject indices: the draws of ``n_boot`` calls of
    ``rng.integers(0, n, n)`` in turn, from ``default_rng(seed)`` (one call, same stream)."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def _rowwise_regression(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """``regression_metrics`` of each row of ``t, p (B, n)``."""
    err = p - t
    dt = t - t.mean(axis=1, keepdims=True)
    dp = p - p.mean(axis=1, keepdims=True)
    t_varies, p_varies = np.ptp(t, axis=1) > 0, np.ptp(p, axis=1) > 0
    ss_t, ss_p = (dt**2).sum(axis=1), (dp**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(t_varies, 1.0 - (err**2).sum(axis=1) / ss_t, np.nan)
        r = np.where(t_varies & p_varies, (dt * dp).sum(axis=1) / np.sqrt(ss_t * ss_p), np.nan)
    return {
        "mae": np.abs(err).mean(axis=1),
        "rmse": np.sqrt((err**2).mean(axis=1)),
        "r2": r2,
        "pearson_r": r,
    }


def _rowwise_auroc(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    pos = t == 1
    n1 = pos.sum(axis=1)
    n0 = t.shape[1] - n1
    ranks = rankdata(p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = ((ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 == 0) | (n0 == 0), np.nan, value)


def _rowwise_average_precision(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    order = np.argsort(-p, axis=1, kind="mergesort")
    t = np.take_along_axis(t, order, axis=1)
    p = np.take_along_axis(p, order, axis=1)
    n = t.shape[1]
    last_of_tie = np.ones(t.shape, dtype=bool)
    last_of_tie[:, :-1] = np.diff(p, axis=1) != 0
    tps = np.cumsum(t, axis=1)
    total = tps[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tps / total
        precision = tps / np.arange(1, n + 1)
    at_ties = np.where(last_of_tie, recall, 0.0)
    # recall at the previous tie's end: recall only grows, so the running maximum before k
    before = np.zeros_like(at_ties)
    before[:, 1:] = np.maximum.accumulate(at_ties, axis=1)[:, :-1]
    value = np.where(last_of_tie, (recall - before) * precision, 0.0).sum(axis=1)
    positives = total[:, 0]
    return np.where((positives == 0) | (positives == n), np.nan, value)


def _rowwise_ece(t: np.ndarray, p: np.ndarray, n_bins: int = 10) -> np.ndarray:
    b, n = t.shape
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1) + n_bins * np.arange(b)[:, None]
    observed = np.bincount(bins.ravel(), t.ravel(), b * n_bins).reshape(b, n_bins)
    expected = np.bincount(bins.ravel(), p.ravel(), b * n_bins).reshape(b, n_bins)
    return np.abs(observed - expected).sum(axis=1) / n


def _rowwise_binary(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """``binary_metrics`` of each row of ``t, p (B, n)``."""
    return {
        "auroc": _rowwise_auroc(t, p),
        "auprc": _rowwise_average_precision(t, p),
        "brier": ((p - t) ** 2).mean(axis=1),
        "ece": _rowwise_ece(t, p),
    }


#: The row-wise twin of each metric function the bootstrap knows.
_ROWWISE: dict[Callable, Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]] = {
    regression_metrics: _rowwise_regression,
    binary_metrics: _rowwise_binary,
}


def bootstrap_ci(
    metric_fn: MetricFn,
    y_true,
    y_pred,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float, float]]:
    """Point estimate and percentile interval of each metric over subject resamples.

    Returns
    -------
    dict
        metric -> ``(value on the full sample, low, high)``. Resamples where a metric is
        undefined (e.g. one class only) are skipped for that metric; the same ``seed`` gives
        the same intervals, and the same resamples for every model of a target.
    """
    t, p = _pairs(y_true, y_pred)
    point = metric_fn(t, p)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in point}
    rowwise = _ROWWISE.get(metric_fn)
    if len(t) and n_boot > 0 and rowwise is not None:
        idx = _resamples(len(t), n_boot, seed)
        for m, values in rowwise(t[idx], p[idx]).items():
            draws[m] = values[np.isfinite(values)].tolist()
    elif len(t):
        for _ in range(n_boot):
            idx = rng.integers(0, len(t), len(t))
            for m, v in metric_fn(t[idx], p[idx]).items():
                if np.isfinite(v):
                    draws[m].append(v)
    out = {}
    for m, v in point.items():
        if draws[m]:
            low, high = np.percentile(draws[m], [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out[m] = (float(v), float(low), float(high))
        else:
            out[m] = (float(v), np.nan, np.nan)
    return out


def evaluate(
    predictions: dict[str, pd.DataFrame],
    truth: pd.DataFrame,
    *,
    test_ids: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The long ``test_metrics`` table of every model on the test subjects only.

    Parameters
    ----------
    predictions : dict of str to pandas.DataFrame
        Model name -> ``subject_id`` plus target columns (values or probabilities).
    truth : pandas.DataFrame
        ``subject_id`` plus target columns, NaN where a label is missing.
    test_ids : sequence of str
        The test subjects; every other row of both tables is ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``target, unit, model, metric, value, ci_low, ci_high, n`` where ``n`` counts
        test subjects with both a label and a prediction.
    """
    ids = list(dict.fromkeys(test_ids))
    labels = truth.set_index(ID_COLUMN).reindex(ids)
    rows = []
    for target in (t.name for t in TARGETS):
        if target not in labels.columns:
            continue
        spec = TARGET_BY_NAME[target]
        fn = regression_metrics if spec.kind == "regression" else binary_metrics
        y = labels[target].to_numpy(float)
        for model, table in predictions.items():
            if target not in table.columns:
                continue
            p = table.set_index(ID_COLUMN)[target].reindex(ids).to_numpy(float)
            n = int((~(np.isnan(y) | np.isnan(p))).sum())
            for metric, (v, lo, hi) in bootstrap_ci(fn, y, p, n_boot=n_boot, seed=seed).items():
                rows.append((target, spec.unit, model, metric, v, lo, hi, n))
    columns = ["target", "unit", "model", "metric", "value", "ci_low", "ci_high", "n"]
    return pd.DataFrame(rows, columns=columns)


def _comparison_value(metric: str, t: np.ndarray, p: np.ndarray) -> float:
    """``metric`` of one sample for a paired comparison. A constant prediction (the mean
    baseline) has no Pearson r; here it counts as r = 0, no association, so that "does the
    model beat the mean" has an answer on r too. AUROC gives a constant 0.5 by itself."""
    if metric == "mae":
        return float(np.abs(p - t).mean()) if len(t) else np.nan
    if metric == "pearson_r":
        if len(t) == 0 or np.ptp(t) == 0:
            return np.nan
        if np.ptp(p) == 0:
            return 0.0
        return regression_metrics(t, p)["pearson_r"]
    if metric == "auroc":
        return _auroc(t, p)
    if metric in ("rmse", "r2"):
        return regression_metrics(t, p)[metric]
    return binary_metrics(t, p)[metric]


def _rowwise_comparison(metric: str, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``_comparison_value`` of each row of ``t, p (B, n)``."""
    if metric == "pearson_r":
        r = _rowwise_regression(t, p)["pearson_r"]
        constant_p = (np.ptp(p, axis=1) == 0) & (np.ptp(t, axis=1) > 0)
        return np.where(constant_p, 0.0, r)
    if metric in ("mae", "rmse", "r2"):
        return _rowwise_regression(t, p)[metric]
    return _rowwise_binary(t, p)[metric]


def paired_differences(
    predictions: dict[str, pd.DataFrame],
    truth: pd.DataFrame,
    *,
    test_ids: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metrics: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Model A minus model B on each target's headline metric, with a paired bootstrap
    interval: both models are scored on the same subject resamples, so the interval is that
    of the difference, not two overlapping intervals.

    Parameters
    ----------
    predictions : dict of str to pandas.DataFrame
        Model name -> ``subject_id`` plus target columns, as for :func:`evaluate`.
    truth : pandas.DataFrame
        ``subject_id`` plus target columns, NaN where a label is missing.
    test_ids : sequence of str
        The subjects compared on; every other row is ignored. Per target and pair, only the
        subjects with a label and both predictions count (``n``).
    pairs : sequence of (str, str)
        ``(model_a, model_b)``: the difference is A - B.
    n_boot, seed, alpha
        Resamples, their seed, and the interval's level (``0.05``: percentile 95 %). With
        the same seed and ``n`` the resamples are those :func:`evaluate` uses.
    metrics : dict of str to str, optional
        Target -> metric; default :data:`HEADLINE_METRIC`. A constant prediction counts as
        Pearson r = 0 (see :func:`_comparison_value`).

    Returns
    -------
    pandas.DataFrame
        One row per target and pair: ``target, unit, metric, higher_is_better, model_a,
        model_b, value_a, value_b, difference, ci_low, ci_high, n, n_resamples, better,
        excludes_zero``. ``better`` is the model with the better point estimate under the
        metric's sign convention (lower MAE, higher r or AUROC), ``"tie"`` for a difference
        of exactly 0 and ``""`` when undefined; ``excludes_zero`` says whether the interval
        lies wholly on one side of 0 (only then is a claim made).
    """
    ids = list(dict.fromkeys(test_ids))
    labels = truth.set_index(ID_COLUMN).reindex(ids)
    chosen = HEADLINE_METRIC if metrics is None else metrics
    tables = {name: table.set_index(ID_COLUMN).reindex(ids) for name, table in predictions.items()}
    for a, b in pairs:
        missing = [m for m in (a, b) if m not in tables]
        if missing:
            raise ValueError(f"no predictions of model(s) {missing}; have {sorted(tables)}")
    rows = []
    for target in (t.name for t in TARGETS):
        if target not in labels.columns or target not in chosen:
            continue
        metric = chosen[target]
        higher = metric not in LOWER_IS_BETTER
        y = labels[target].to_numpy(float)
        for a, b in pairs:
            if target not in tables[a].columns or target not in tables[b].columns:
                continue
            pa = tables[a][target].to_numpy(float)
            pb = tables[b][target].to_numpy(float)
            keep = ~(np.isnan(y) | np.isnan(pa) | np.isnan(pb))
            t, qa, qb = y[keep], pa[keep], pb[keep]
            va, vb = _comparison_value(metric, t, qa), _comparison_value(metric, t, qb)
            draws = []
            if len(t) and n_boot > 0:
                idx = _resamples(len(t), n_boot, seed)
                d = _rowwise_comparison(metric, t[idx], qa[idx]) - _rowwise_comparison(
                    metric, t[idx], qb[idx]
                )
                draws = d[np.isfinite(d)].tolist()
            diff = va - vb
            if draws:
                low, high = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            else:
                low = high = np.nan
            if not np.isfinite(diff):
                better = ""
            elif diff == 0:
                better = "tie"
            else:
                better = a if (diff > 0) == higher else b
            excludes = bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))
            spec = TARGET_BY_NAME[target]
            rows.append(
                (target, spec.unit, metric, higher, a, b, va, vb, diff, float(low), float(high),
                 int(keep.sum()), len(draws), better, excludes)
            )  # fmt: skip
    columns = [
        "target", "unit", "metric", "higher_is_better", "model_a", "model_b", "value_a",
        "value_b", "difference", "ci_low", "ci_high", "n", "n_resamples", "better",
        "excludes_zero",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def age_plots(truth_age, predicted_age) -> Figure:
    """Predicted vs chronological age, and the facial age gap against age."""
    t, p = _pairs(truth_age, predicted_age)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    mae = regression_metrics(t, p)["mae"]
    ax1.scatter(t, p, s=18, alpha=0.7)
    if len(t):
        lims = [min(t.min(), p.min()) - 2, max(t.max(), p.max()) + 2]
        ax1.plot(lims, lims, "k--", lw=1, label="identity")
        ax1.legend(loc="upper left")
    ax1.set(
        xlabel="chronological age (years)",
        ylabel="predicted age (years)",
        title=f"Predicted vs true age (MAE {mae:.1f} years, n = {len(t)})",
    )
    gap = p - t
    ax2.scatter(t, gap, s=18, alpha=0.7)
    ax2.axhline(0, color="k", lw=1, ls="--")
    if len(t) >= 4:
        # Binned means on age quantiles: enough smoothing to show regression to the mean.
        edges = np.unique(np.quantile(t, np.linspace(0, 1, min(8, len(t) // 4) + 1)))
        which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
        centres = [t[which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        means = [gap[which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
        ax2.plot(centres, means, "o-", color="C3", lw=2, label="binned mean")
        ax2.legend(loc="upper right")
    ax2.set(
        xlabel="chronological age (years)",
        ylabel="facial age gap (years)",
        title="Facial age gap (predicted - chronological)",
    )
    return fig


def condition_plots(
    truth: pd.DataFrame, probabilities: pd.DataFrame, conditions: Sequence[str]
) -> Figure:
    """ROC curves (AUROC in the legend) and reliability diagrams (10 bins), one line each."""
    labels = truth.set_index(ID_COLUMN)
    probs = probabilities.set_index(ID_COLUMN).reindex(labels.index)
    fig, (roc_ax, cal_ax) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    for i, name in enumerate(conditions):
        t, p = _pairs(labels[name], probs[name])
        auc = _auroc(t, p)
        if np.isfinite(auc):
            fpr, tpr, _ = roc_curve(t, p)
            roc_ax.plot(fpr, tpr, color=f"C{i}", label=f"{name} (AUROC {auc:.2f}, n = {len(t)})")
        else:
            roc_ax.plot([], [], color=f"C{i}", label=f"{name} (one class only)")
        if len(t):
            bins = np.minimum((p * 10).astype(int), 9)
            used = np.unique(bins)
            cal_ax.plot(
                [p[bins == b].mean() for b in used],
                [t[bins == b].mean() for b in used],
                "o-",
                color=f"C{i}",
                label=name,
            )
    roc_ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    roc_ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title="ROC curves (test subjects)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    roc_ax.legend(loc="lower right", fontsize="small")
    cal_ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    cal_ax.set(
        xlabel="mean predicted probability (10 bins)",
        ylabel="observed fraction",
        title="Calibration (reliability diagram)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    cal_ax.legend(loc="upper left", fontsize="small")
    return fig


def summary_figure(test_metrics: pd.DataFrame) -> Figure:
    """Headline metric per target (Pearson r / AUROC) with 95% CIs, models side by side."""
    models = _ordered_models(test_metrics)
    panels = [
        (metric, title, reference)
        for metric, title, reference in [
            ("pearson_r", "Pearson r, regression targets", 0.0),
            ("auroc", "AUROC, binary targets and conditions", 0.5),
        ]
        if (test_metrics["metric"] == metric).any()
    ]
    n_rows = max(
        [test_metrics.loc[test_metrics["metric"] == m, "target"].nunique() for m, _, _ in panels]
        + [1]
    )
    fig, axes = plt.subplots(
        1,
        max(len(panels), 1),
        figsize=(12, 1.5 + 0.45 * n_rows),
        layout="constrained",
        squeeze=False,
    )
    width = 0.7 / max(len(models), 1)
    for ax, (metric, title, reference) in zip(axes[0], panels, strict=False):
        rows = test_metrics[test_metrics["metric"] == metric]
        targets = list(dict.fromkeys(rows["target"]))
        for m, model in enumerate(models):
            sub = rows[rows["model"] == model].set_index("target").reindex(targets)
            y = np.arange(len(targets)) + (m - (len(models) - 1) / 2) * width
            err = np.vstack([sub["value"] - sub["ci_low"], sub["ci_high"] - sub["value"]])
            ax.errorbar(
                sub["value"],
                y,
                xerr=np.nan_to_num(err),
                fmt="o",
                capsize=3,
                color=f"C{m}",
                label=MODEL_LABELS.get(model, model),
            )
        ax.axvline(reference, color="grey", lw=1, ls=":")  # no skill
        ax.set_yticks(np.arange(len(targets)), targets)
        ax.set_ylim(len(targets) - 0.5, -0.5)  # first target on top
        ax.set(xlabel=f"{title.split(',')[0]} on the test split (95% bootstrap CI)", title=title)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=max(len(models), 1))
    fig.suptitle("Test-set performance by target: MLP vs baselines")
    return fig


def _number(x: float) -> str:
    # Decimals by magnitude: "4.20" years, "0.874" AUROC, "412" umol/L; never "-3.3e-16".
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:.{digits}f}"


def _fmt(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return _number(value)
    return f"{_number(value)} [{_number(low)}, {_number(high)}]"


def model_card(
    *,
    test_metrics: pd.DataFrame,
    data: dict,
    splits: dict[str, int],
    limitations: Sequence[str],
    baselines: Sequence[str],
    model_choice: dict[str, dict] | None = None,
) -> str:
    """A markdown model card: data, splits, targets, the per-target model choice made on the
    validation subjects, test metrics with 95% CIs, caveats.

    Parameters
    ----------
    test_metrics : pandas.DataFrame
        The table ``evaluate`` returns.
    data : dict
        Facts about the cohort (source, number of subjects, seed, ...), listed as given.
    splits : dict of str to int
        Number of subjects per split.
    limitations, baselines : sequence of str
        One bullet each.
    model_choice : dict, optional
        ``HealthModels.choice_summary()``: per target the served candidate, the metric and
        the validation values it was chosen on; the section says so when absent or empty.
    """
    lines = ["# Model card: face_health", "", "## Data", ""]
    lines += [f"- **{key}**: {value}" for key, value in data.items()]
    lines += ["", "## Splits", "", "| split | subjects |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in splits.items()]
    lines += [
        "",
        "Subject-level splits; models see train only, validation is used for early "
        "stopping and for choosing each target's served model, and test is touched once "
        "for the numbers below.",
        "",
    ]
    lines += _choice_section(model_choice)
    targets = list(dict.fromkeys(test_metrics["target"]))
    lines += ["## Targets", "", "| target | unit | kind | test n |", "|---|---|---|---|"]
    for target in targets:
        spec = TARGET_BY_NAME.get(target)
        n = int(test_metrics.loc[test_metrics["target"] == target, "n"].max())
        lines.append(
            f"| {target} | {spec.unit if spec else ''} | {spec.kind if spec else ''} | {n} |"
        )
    models = list(dict.fromkeys(test_metrics["model"]))
    # The chosen model and the MLP first, then the baselines, whatever order they came in.
    models.sort(key=lambda m: list(MODEL_LABELS).index(m) if m in MODEL_LABELS else 99)
    header = " | ".join(f"{MODEL_LABELS.get(m, m)} [95% CI]" for m in models)
    lines += [
        "",
        "## Test metrics",
        "",
        "Point estimate on the test split with a 95% percentile bootstrap interval over subjects.",
        "",
        f"| target | metric | {header} |",
        "|---|---|" + "---|" * len(models),
    ]
    table = test_metrics.set_index(["target", "metric", "model"])
    for target in targets:
        for metric in dict.fromkeys(test_metrics.loc[test_metrics["target"] == target, "metric"]):
            cells = []
            for m in models:
                key = (target, metric, m)
                cells.append(
                    _fmt(*table.loc[key, ["value", "ci_low", "ci_high"]])
                    if key in table.index
                    else ""
                )
            lines.append(f"| {target} | {metric} | " + " | ".join(cells) + " |")
    lines += ["", "## Baselines", ""] + [f"- {b}" for b in baselines]
    lines += ["", "## Limitations", ""] + [f"- {item}" for item in limitations]
    return "\n".join(lines) + "\n"


def _choice_section(model_choice: dict[str, dict] | None) -> list[str]:
    """The model card's ``Model choice`` section: per target the served candidate and the
    validation metrics (lower is better) it was chosen on."""
    lines = ["## Model choice", ""]
    if not model_choice:
        return lines + [
            "The MLP is served for every target: these models hold no per-target choice "
            "(no linear model was fitted beside the MLP, or they predate the choice).",
            "",
        ]
    candidates = list(CHOICE_LABELS)
    lines += [
        "Each target is served by the MLP, the linear model (ridge / logistic) or their "
        "average (the mean of the two predictions; of the two probabilities for yes/no "
        "targets), whichever has the best metric on the **validation subjects** (never the "
        "test subjects): MAE on the target's own scale for measurements, the Brier score for "
        "yes/no targets and conditions; lower is better, and a tie goes to the MLP. The "
        "test metrics below are the chosen model's ('"
        + MODEL_LABELS["chosen"]
        + "') beside each candidate's.",
        "",
        "| target | metric | "
        + " | ".join(CHOICE_LABELS[c] for c in candidates)
        + " | validation n | chosen | note |",
        "|---|---|" + "---|" * (len(candidates) + 3),
    ]
    for target, entry in model_choice.items():
        values = entry.get("validation", {})
        cells = [
            _number(values[c]) if np.isfinite(values.get(c, np.nan)) else "n/a" for c in candidates
        ]
        choice = entry.get("choice", "mlp")
        cells = [
            f"**{c}**" if name == choice else c for c, name in zip(cells, candidates, strict=True)
        ]
        lines.append(
            f"| {target} | {entry.get('metric', '')} | "
            + " | ".join(cells)
            + f" | {int(values.get('n', 0))} | {CHOICE_LABELS.get(choice, choice)} | "
            + f"{entry.get('reason', '')} |"
        )
    return lines + [""]
