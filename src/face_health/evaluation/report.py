"""The README's final-test results, generated from the result tables (no number typed by hand).

:func:`final_test_block` turns the ``final_test`` pipeline's ``final_test_metrics.csv`` and
``final_test_differences.csv`` (and its ``final_test_summary.json``), with the simulator's
ceilings (``benchmarks/results/oracle_ceilings.csv``), into a markdown block: the headline
metric of every target for the MLP and its two baselines with 95 % intervals, beside the
asymptotic and same-n ceilings; the paired differences between the models; and sentences
that claim a model is better only where the paired 95 % interval of the difference excludes
0. :func:`replace_block` puts the block between the README's markers;
``scripts/update_readme_results.py`` does both and ``tests/test_report.py`` checks that the
committed README is what the committed tables give.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from face_health import schema
from face_health.evaluation.metrics import HEADLINE_METRIC, LOWER_IS_BETTER

START = "<!-- final-test-results:start -->"
END = "<!-- final-test-results:end -->"

#: The files of a final-test run that the README is generated from (committed copies live in
#: ``benchmarks/results/final_test/``); the summary is optional.
RESULT_FILES = ("final_test_metrics.csv", "final_test_differences.csv")
SUMMARY_FILE = "final_test_summary.json"

#: The development block: the default cohort's own test split (45 subjects; development
#: runs looked at it, so never the headline) with the ablation and its paired differences.
DEV_START = "<!-- development-results:start -->"
DEV_END = "<!-- development-results:end -->"
DEV_FILES = ("test_metrics.csv", "ablation_metrics.csv", "ablation_differences.csv")

#: How models are named in the tables and in the prose.
MODEL_NAMES = {
    "chosen": "chosen on validation",
    "mlp": "MLP",
    "average": "MLP + ridge / logistic average",
    "linear": "ridge / logistic",
    "mean": "mean / prevalence",
    "mlp_both": "MLP, global + local",
    "mlp_global": "MLP, global only",
    "mlp_local": "MLP, local only",
    "mlp_shape": "MLP, shape only",
    "mlp_local_shape": "MLP, local + shape",
    "mlp_all": "MLP, all three",
    "mlp_both_in_sample": "MLP, global + local, in-sample embeddings",
    "mlp_all_in_sample": "MLP, all three, in-sample embeddings",
}
#: Short names for sentences.
SHORT_NAMES = {
    "chosen": "the model chosen per target on validation",
    "mlp": "the MLP",
    "average": "the MLP + ridge / logistic average",
    "linear": "ridge / logistic",
    "mean": "the mean baseline",
    "mlp_both": "the MLP on global + local features",
    "mlp_global": "the MLP on global features only",
    "mlp_local": "the MLP on local features only",
    "mlp_shape": "the MLP on shape features only",
    "mlp_local_shape": "the MLP on local + shape features",
    "mlp_all": "the MLP on all three families",
    "mlp_both_in_sample": "the MLP on global + local, in-sample embeddings",
    "mlp_all_in_sample": "the MLP on all three, in-sample embeddings",
}
METRIC_NAMES = {"mae": "MAE", "pearson_r": "r", "auroc": "AUROC", "rmse": "RMSE", "r2": "R²"}
ORDER = ("chosen", "mlp", "linear", "mean")

REPRODUCE = (
    "`kedro run --pipelines=final_test` after the default training run, then "
    "`.venv/bin/python scripts/update_readme_results.py --from data/08_reporting`"
)


def _digits(x: float) -> int:
    return 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3


def number(x: float, *, signed: bool = False, digits: int | None = None) -> str:
    """Decimals by magnitude ("4.20" years, "0.874" AUROC, "412" umol/L), "n/a" if missing;
    a minus sign, not a hyphen."""
    if x is None or not math.isfinite(x):
        return "n/a"
    digits = _digits(x) if digits is None else digits
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "−")


def interval(value: float, low: float, high: float, *, signed: bool = False) -> str:
    """``value [low, high]``, all three with the value's decimals; the value alone when the
    interval is missing."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return number(value, signed=signed)
    digits = _digits(max(abs(value), abs(low), abs(high)) if value == 0 else value)
    low_text = number(low, signed=signed, digits=digits)
    high_text = number(high, signed=signed, digits=digits)
    return f"{number(value, signed=signed, digits=digits)} [{low_text}, {high_text}]"


def _targets(table: pd.DataFrame) -> list[str]:
    present = set(table["target"])
    return [t for t in schema.TARGET_NAMES if t in present]


def _models(metrics: pd.DataFrame) -> list[str]:
    found = list(dict.fromkeys(metrics["model"]))
    return sorted(found, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))


def _ceiling(ceilings: pd.DataFrame | None, target: str, metric: str, kind: str) -> str:
    """The better model family's ceiling (value [low, high], which family)."""
    if ceilings is None:
        return "n/a"
    rows = ceilings[
        (ceilings["target"] == target)
        & (ceilings["metric"] == metric)
        & (ceilings["ceiling"] == kind)
    ]
    rows = rows[rows["value"].notna()]
    if rows.empty:
        return "n/a"
    best = rows.sort_values("value", ascending=metric in LOWER_IS_BETTER).iloc[0]
    name = "ridge" if best["model"] == "linear" else MODEL_NAMES.get(best["model"], best["model"])
    return f"{interval(best['value'], best['low'], best['high'])} ({name})"


def _labelled(target: str) -> str:
    spec = schema.TARGET_BY_NAME.get(target)
    return f"{target} ({spec.unit})" if spec is not None else target


def headline_table(
    metrics: pd.DataFrame, ceilings: pd.DataFrame | None, *, with_ceilings: bool = True
) -> list[str]:
    """One row per target: its headline metric for each model [95 % CI], and the ceilings
    (unless ``with_ceilings`` is false)."""
    models = _models(metrics)
    table = metrics.set_index(["target", "model", "metric"])
    header = ["target", "metric"]
    header += [f"{MODEL_NAMES.get(m, m)} [95% CI]" for m in models]
    if with_ceilings:
        header += ["ceiling, asymptotic", "ceiling, same n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target in _targets(metrics):
        metric = HEADLINE_METRIC[target]
        cells = [_labelled(target), METRIC_NAMES.get(metric, metric)]
        for model in models:
            key = (target, model, metric)
            if key not in table.index:
                cells.append("")
                continue
            row = table.loc[key]
            text = interval(row["value"], row["ci_low"], row["ci_high"])
            cells.append("n/a (constant)" if text == "n/a" and model == "mean" else text)
        if with_ceilings:
            cells += [_ceiling(ceilings, target, metric, k) for k in ("asymptotic", "same_n")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pairs(differences: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(differences["model_a"], differences["model_b"], strict=True)))


def _pair_name(a: str, b: str) -> str:
    return f"{MODEL_NAMES.get(a, a)} − {MODEL_NAMES.get(b, b)}"


def differences_table(differences: pd.DataFrame) -> list[str]:
    """One row per target, one column per pair: A − B [paired 95 % CI], bold when the
    interval excludes 0."""
    pairs = _pairs(differences)
    table = differences.set_index(["target", "model_a", "model_b"])
    header = ["target", "metric"] + [_pair_name(a, b) for a, b in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target in _targets(differences):
        metric = HEADLINE_METRIC[target]
        cells = [_labelled(target), METRIC_NAMES.get(metric, metric)]
        for a, b in pairs:
            key = (target, a, b)
            if key not in table.index:
                cells.append("")
                continue
            row = table.loc[key]
            text = interval(row["difference"], row["ci_low"], row["ci_high"], signed=True)
            cells.append(f"**{text}**" if _excludes_zero(row) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _excludes_zero(row: pd.Series) -> bool:
    value = row["excludes_zero"]
    return str(value).strip().lower() == "true" if isinstance(value, str) else bool(value)


def _listing(targets: Sequence[str]) -> str:
    return ", ".join(targets) if targets else "none"


def claims(differences: pd.DataFrame) -> list[str]:
    """Sentences about each pair of models, one bullet each. A model is said to beat another
    on a target only where the paired 95 % interval of the difference excludes 0; the counts
    of point estimates are given beside them, as such."""
    lines = []
    for a, b in _pairs(differences):
        rows = differences[(differences["model_a"] == a) & (differences["model_b"] == b)]
        rows = rows[rows["better"].isin([a, b, "tie"])]
        n = len(rows)
        if n == 0:
            continue
        sure = rows[[_excludes_zero(r) for _, r in rows.iterrows()]]
        a_ahead, b_ahead = rows[rows["better"] == a], rows[rows["better"] == b]
        a_sure = list(sure.loc[sure["better"] == a, "target"])
        b_sure = list(sure.loc[sure["better"] == b, "target"])
        name_a, name_b = SHORT_NAMES.get(a, a), SHORT_NAMES.get(b, b)
        if b == "mean":
            not_beaten = [t for t in rows["target"] if t not in a_sure]
            text = (
                f"**{_capital(name_a)} vs {name_b}**: {name_a} beats {name_b} on "
                f"{len(a_sure)} of {n} headline metrics (paired 95 % CI of the difference "
                f"excludes 0): {_listing(a_sure)}. It does not beat {name_b} on: "
                f"{_listing(not_beaten)}"
            )
            if b_sure:
                text += f"; {name_b} is better on: {_listing(b_sure)}"
            lines.append(f"- {text}.")
            continue
        text = (
            f"**{_capital(name_a)} vs {name_b}**: {name_b} is ahead on {len(b_ahead)} of {n} "
            f"headline metrics by the point estimate and {name_a} on {len(a_ahead)}; the "
            f"paired 95 % CI excludes 0 on {len(b_sure)} in favour of {name_b} "
            f"({_listing(b_sure)}) and {len(a_sure)} in favour of {name_a} "
            f"({_listing(a_sure)})."
        )
        if len(a_sure) + len(b_sure) < n:
            text += " Elsewhere the difference is not established."
        lines.append(f"- {text}")
    defined = differences["better"].fillna("").astype(str) != ""
    undefined = [
        t for t in _targets(differences) if t not in set(differences.loc[defined, "target"])
    ]
    if undefined:
        lines.append(
            "- **Not compared** (the metric is undefined on this cohort, e.g. one class only): "
            f"{_listing(undefined)}."
        )
    return lines


def ceiling_gaps(metrics: pd.DataFrame, ceilings: pd.DataFrame | None) -> list[str]:
    """Where the MLP's whole 95 % interval is worse than the same-n ceiling's whole range
    (the better family's): what more images of this kind could still give."""
    if ceilings is None or "mlp" not in set(metrics["model"]):
        return []
    below, checked = [], 0
    for target in _targets(metrics):
        metric = HEADLINE_METRIC[target]
        mlp = metrics[
            (metrics["target"] == target)
            & (metrics["model"] == "mlp")
            & (metrics["metric"] == metric)
        ]
        rows = ceilings[
            (ceilings["target"] == target)
            & (ceilings["metric"] == metric)
            & (ceilings["ceiling"] == "same_n")
        ].dropna(subset=["value"])
        if mlp.empty or rows.empty or not math.isfinite(mlp["ci_low"].iloc[0]):
            continue
        checked += 1
        lower = metric in LOWER_IS_BETTER
        best = rows.sort_values("value", ascending=lower).iloc[0]
        if (lower and mlp["ci_low"].iloc[0] > best["high"]) or (
            not lower and mlp["ci_high"].iloc[0] < best["low"]
        ):
            below.append(target)
    if not checked:
        return []
    return [
        f"- **Against the same-n ceiling** (the simulator's face-visible latents, as many "
        f"training subjects): the MLP's whole 95 % interval is worse than the ceiling's range "
        f"on {len(below)} of {checked} headline metrics: {_listing(below)}."
    ]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _intro(summary: dict[str, Any] | None, metrics: pd.DataFrame) -> str:
    n = int(metrics["n"].max()) if len(metrics) else 0
    if not summary:
        return (
            f"Final test cohort: {n} scored subjects. 95 % bootstrap intervals over subjects in "
            "brackets."
        )
    cohort = summary["cohort"]
    subjects = summary["subjects"]
    failed = int(subjects["failed"]) if "failed" in subjects else 0
    boot = summary["bootstrap"]
    run = str(summary["model_run_id"])[:8]
    training_seed = (summary.get("training_cohort") or {}).get("seed")
    trained = f" (trained on seed {training_seed})" if training_seed is not None else ""
    return (
        f"{cohort['n']} subjects simulated with seed {cohort['seed']} (simulator version "
        f"{cohort['generator_version']}), a cohort nothing was chosen on, scored scan by scan "
        f"with the served model of run `{run}`{trained}: {subjects['scored']} scored, "
        f"{failed} failed QC. Headline metric per target (MAE for age, Pearson r for the other "
        f"measurements, AUROC for the yes/no targets) with 95 % bootstrap intervals "
        f"({boot['n']:,} subject resamples); ceilings from `benchmarks/oracle_bench.py` (the "
        "better model family's, with its interval or 2.5-97.5 % range)."
    )


def final_test_block(
    metrics: pd.DataFrame | None,
    differences: pd.DataFrame | None,
    ceilings: pd.DataFrame | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    """The markdown between the README's markers (the markers not included)."""
    lines = [
        "<!-- generated by scripts/update_readme_results.py from benchmarks/results/"
        "final_test/ and benchmarks/results/oracle_ceilings.csv: do not edit by hand -->",
        "",
    ]
    if metrics is None or differences is None or metrics.empty:
        lines += [
            "Not yet produced: no final-test results are committed in "
            "`benchmarks/results/final_test/`. To produce them: " + REPRODUCE + ".",
        ]
        return "\n".join(lines) + "\n"
    lines += [_intro(summary, metrics), ""]
    lines += headline_table(metrics, ceilings)
    lines += [
        "",
        "Paired differences A − B on the same subject resamples (95 % percentile interval of "
        "the difference); **bold** where the interval excludes 0. For MAE a negative "
        "difference means A is better; for r and AUROC a positive one. A constant prediction "
        "(the mean baseline) counts as r = 0 and AUROC 0.5.",
        "",
    ]
    lines += differences_table(differences)
    lines += ["", "What this says (generated from the tables above):", ""]
    lines += claims(differences)
    lines += ceiling_gaps(metrics, ceilings)
    lines += ["", f"Reproduce: {REPRODUCE}."]
    return "\n".join(lines) + "\n"


def load_results(
    results_dir: str | Path, ceilings_csv: str | Path | None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None, dict | None]:
    """The committed result tables (None for each that is absent)."""
    folder = Path(results_dir)
    metrics_path, differences_path = (folder / name for name in RESULT_FILES)
    metrics = pd.read_csv(metrics_path) if metrics_path.exists() else None
    differences = pd.read_csv(differences_path) if differences_path.exists() else None
    summary_path = folder / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    ceilings = (
        pd.read_csv(ceilings_csv)
        if ceilings_csv is not None and Path(ceilings_csv).exists()
        else None
    )
    return metrics, differences, ceilings, summary


def block_from_files(results_dir: str | Path, ceilings_csv: str | Path | None) -> str:
    """:func:`final_test_block` of the tables in ``results_dir`` and the ceilings file."""
    return final_test_block(*load_results(results_dir, ceilings_csv))


def replace_block(readme: str, block: str, start: str = START, end: str = END) -> str:
    """``readme`` with the text between the markers replaced by ``block``.

    Raises
    ------
    ValueError
        If the markers are missing, repeated or out of order.
    """
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise ValueError(f"the README needs exactly one {start} and one {end} marker")
    head, rest = readme.split(start)
    if end not in rest:
        raise ValueError(f"{end} comes before {start} in the README")
    _, tail = rest.split(end)
    return f"{head}{start}\n{block}{end}{tail}"


def current_block(readme: str, start: str = START, end: str = END) -> str:
    """The text between the README's markers."""
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise ValueError(f"the README needs exactly one {start} and one {end} marker")
    return readme.split(start)[1].split(end)[0].removeprefix("\n")


def development_block(
    test_metrics: pd.DataFrame | None,
    ablation_metrics: pd.DataFrame | None,
    ablation_differences: pd.DataFrame | None,
) -> str:
    """The markdown between the development markers: the default run's test split, every
    model and ablation variant on each target's headline metric, the ablation's paired
    differences against the method's MLP and the claims they support."""
    lines = [
        "<!-- generated by scripts/update_readme_results.py from benchmarks/results/"
        "development/: do not edit by hand -->",
        "",
    ]
    if test_metrics is None or ablation_metrics is None or ablation_differences is None:
        lines.append(
            "Not yet produced: no development results are committed in "
            "`benchmarks/results/development/`. To produce them: the default training run, "
            "then `.venv/bin/python scripts/update_readme_results.py --from data/08_reporting`."
        )
        return "\n".join(lines) + "\n"
    n = int(test_metrics["n"].max()) if len(test_metrics) else 0
    pairs = ablation_differences["model_a"]
    method = str(pairs.iloc[0]) if len(pairs) else "mlp_both"
    variants = ablation_metrics[ablation_metrics["model"] != method]
    lines += [
        f"The default cohort's own test split ({n} subjects). Development runs looked at it, "
        "so it is not the headline (that is the final test cohort above); it is where the "
        "ablation runs. Headline metric per target with 95 % bootstrap intervals; "
        f'"MLP" is the method ({MODEL_NAMES.get(method, method).removeprefix("MLP, ")} '
        "features, cross-fitted embedding); "
        "the other MLP columns are the ablation's variants fitted beside it.",
        "",
    ]
    both = pd.concat([test_metrics, variants], ignore_index=True)
    lines += headline_table(both, None, with_ceilings=False)
    lines += [
        "",
        "Paired differences of the ablation (same subject resamples; **bold** where the 95 % "
        "interval excludes 0). For MAE a negative difference means the first model is better; "
        "for r and AUROC a positive one.",
        "",
    ]
    lines += differences_table(ablation_differences)
    lines += ["", "What this says (generated from the tables above):", ""]
    lines += claims(ablation_differences)
    return "\n".join(lines) + "\n"


def development_from_files(results_dir: str | Path) -> str:
    """:func:`development_block` of the tables in ``results_dir`` (None where absent)."""
    folder = Path(results_dir)
    tables = [
        pd.read_csv(folder / name) if (folder / name).exists() else None for name in DEV_FILES
    ]
    return development_block(*tables)
