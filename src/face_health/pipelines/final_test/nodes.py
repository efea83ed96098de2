"""Nodes of the final_test pipeline: the final test cohort, scored and evaluated.

The README's headline numbers come from here (DESIGN.md, evaluation protocol): a cohort
simulated with its own seed, on which nothing was ever chosen, scored scan by scan with the
served model (``ScanScorer.ingest`` + ``ScanScorer.features``: the exact per-subject stages
of the training pipeline, with the training run's settings), every model kind predicted,
metrics with bootstrap intervals, and paired bootstrap intervals of the differences between
models.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

from face_health import schema
from face_health.config import (
    CohortSourceSettings,
    FinalTestSettings,
    InferenceSettings,
    ModellingSettings,
    QcSettings,
    SettingsError,
)
from face_health.errors import DataError
from face_health.evaluation.metrics import evaluate, paired_differences
from face_health.ingest.clinical import validate_clinical
from face_health.ingest.scan import group_scan_files
from face_health.parallel import check_failures, map_subjects
from face_health.serving.scorer import ScanScorer, load_scorer, resolve_model_uri
from face_health.synthetic import CohortSettings, ensure_cohort

logger = logging.getLogger(__name__)

#: Seeds taken outside the configuration: a final test cohort must not share them.
RESERVED_SEEDS: dict[int, str] = {
    777: "the latent pool of benchmarks/oracle_bench.py",
    1: "the cohort the shipped landmark checkpoint was trained on (benchmarks/README.md)",
}


def prepare_final_test_cohort(
    final_test: dict[str, Any], cohort: dict[str, Any], inference: dict[str, Any]
) -> dict[str, Any]:
    """Find the served model, then simulate the final test cohort when its folder is absent
    (with the training cohort's simulator settings and a seed of its own); say what it is
    and which model will score it (``model_uri``).

    Raises
    ------
    LookupError
        If there is no trained model (before anything is simulated): run training first.
    SettingsError
        If the seed is one another cohort uses, or the folder is the training cohort's.
    FileExistsError
        If the folder holds another cohort (other n, seed, settings or simulator version).
    """
    import mlflow

    settings = FinalTestSettings.from_parameters(final_test)
    try:
        model_uri = resolve_model_uri(settings.model, mlflow.get_tracking_uri())
    except LookupError as exc:  # the message says what to do: no traceback chain needed
        raise LookupError(f"final_test: {exc}") from None
    training = CohortSourceSettings.from_parameters(cohort)
    new_scans = InferenceSettings.from_parameters(inference).simulate_if_missing
    in_use = {
        **RESERVED_SEEDS,
        new_scans.seed: "the inference pipeline's new scans (inference.simulate_if_missing)",
        training.synthetic.seed: "the training cohort (cohort.synthetic.seed)",
    }
    seed = settings.cohort.seed
    if seed in in_use:
        raise SettingsError(
            f"{FinalTestSettings.FILE}: final_test.cohort.seed {seed} is the seed of "
            f"{in_use[seed]}; the final test cohort needs a seed no other cohort uses"
        )
    if Path(settings.path).resolve() == Path(training.path).resolve():
        raise SettingsError(
            f"{FinalTestSettings.FILE}: final_test.path is the training cohort's folder "
            f"({training.path}); the final test cohort needs a folder of its own"
        )
    manifest = ensure_cohort(
        settings.path,
        n=settings.cohort.n,
        seed=seed,
        settings=CohortSettings.from_dict(training.synthetic.settings),
        n_jobs=settings.cohort.n_jobs,
    )
    return {
        "path": settings.path,
        "generator": manifest["generator"],
        "generator_version": manifest["generator_version"],
        "n": manifest["n"],
        "seed": manifest["seed"],
        "settings": manifest["settings"],
        "subjects": list(manifest["subjects"]),
        "training_cohort": {
            "source": training.source,
            "path": training.path,
            "seed": training.synthetic.seed if training.source == "synthetic" else None,
        },
        "model_uri": model_uri,
    }


# --- scoring: one served model per worker process -----------------------------------------

#: The scorer of this process, keyed by (model URI, tracking URI): a worker loads the model
#: (~100+ MB with the ResNet-50) once for all its scans instead of receiving it per scan.
_SCORERS: dict[tuple[str, str | None], ScanScorer] = {}


def _cached_scorer(model_uri: str, tracking_uri: str | None) -> tuple[ScanScorer, float]:
    """This process's scorer of ``model_uri`` and the seconds it took to load (0 if cached)."""
    key = (model_uri, tracking_uri)
    if key in _SCORERS:
        return _SCORERS[key], 0.0
    started = perf_counter()
    _SCORERS.clear()  # one model per process: two would double the memory
    _SCORERS[key] = load_scorer(model_uri, tracking_uri)
    return _SCORERS[key], perf_counter() - started


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a and b else a or b


def _score_one(job: tuple[str, Any], *, model_uri: str, tracking_uri: str | None) -> dict[str, Any]:
    """Ingest one raw scan and compute its features with the served model's stages.

    Returns ``{"qc": row, "features": DataFrame or None, "load_seconds": float}``; a scan
    whose data fails a stage gets a ``failed`` row with the stage and the reason.
    """
    subject_id, source = job
    scorer, load_seconds = _cached_scorer(model_uri, tracking_uri)
    started = perf_counter()
    mesh, ingest = scorer.ingest(source, subject_id)
    row: dict[str, Any] = {
        schema.ID_COLUMN: subject_id,
        "status": "failed" if mesh is None else ingest["status"],
        "reason": ingest["reason"],
        "failed_stage": "ingest" if mesh is None else "",
    }
    row |= {f"ingest_{k}": v for k, v in ingest.items() if k != schema.ID_COLUMN}
    features = None
    if mesh is not None:
        try:
            features, stage_qc = scorer.features(mesh, subject_id)
        except DataError as exc:  # the scan's data, not the code: a QC row
            row |= {"status": "failed", "failed_stage": "features"}
            row["reason"] = _join(row["reason"], f"{type(exc).__name__}: {exc}")
        else:
            row |= stage_qc
            for key, value in stage_qc.items():
                if not key.endswith("_status") or value not in ("warning", "failed"):
                    continue
                stage = key.removesuffix("_status")
                row["reason"] = _join(row["reason"], str(stage_qc.get(f"{stage}_reason") or ""))
                if value == "failed":  # the pipeline drops such a subject: so does this
                    row |= {"status": "failed", "failed_stage": stage}
                    features = None
                elif row["status"] == "ok":
                    row["status"] = "warning"
    row["seconds"] = round(perf_counter() - started, 2)
    return {"qc": row, "features": features, "load_seconds": load_seconds}


def _training_seed(scorer: ScanScorer) -> int | None:
    """The seed of the synthetic cohort the model was trained on, if its options say."""
    cohort = scorer.options.get("cohort") or {}
    if cohort.get("source") != "synthetic":
        return None
    return (cohort.get("synthetic") or {}).get("seed")


def score_final_test_scans(
    final_test_scans: dict[str, Any],
    final_test_cohort: dict[str, Any],
    final_test: dict[str, Any],
    qc: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every final-test scan through the served model: features, predictions of every model
    kind, and one QC row per subject (a failed scan says why and the cohort goes on, unless
    more than ``qc.max_failed_fraction`` fail).

    The model is ``final_test.model`` (a run id, ``models:/...`` or ``runs:/...`` URI, a
    model folder) or, when null, the newest one ``training`` logged.

    Returns
    -------
    features : pandas.DataFrame
        One row per scored subject: ``subject_id`` plus the model's feature columns.
    predictions : pandas.DataFrame
        Long: ``subject_id, model`` and every target (values, probabilities), plus
        ``model_run_id``.
    qc : pandas.DataFrame
        One row per subject of the cohort: ``status`` (``ok``, ``warning``, ``failed``),
        ``reason``, ``failed_stage``, ``seconds`` and each stage's QC (``ingest_*``, ...),
        with the out-of-distribution score when the model has a monitor.
    """
    import mlflow

    settings = FinalTestSettings.from_parameters(final_test)
    scans, rejected = group_scan_files(final_test_scans)
    expected, found = set(final_test_cohort["subjects"]), set(scans) | set(rejected)
    if found != expected:
        raise ValueError(
            f"the catalog's final_test_scans lists {len(found)} subjects, the final test "
            f"cohort at {final_test_cohort['path']} has {len(expected)} "
            f"({len(expected - found)} missing, {len(found - expected)} unknown): the catalog "
            "entry and final_test.path must name the same folder"
        )
    tracking_uri = mlflow.get_tracking_uri()
    model_uri = final_test_cohort["model_uri"]
    scorer, load_seconds = _cached_scorer(model_uri, tracking_uri)
    trained_on = _training_seed(scorer)
    if trained_on == final_test_cohort["seed"]:
        raise SettingsError(
            f"the model {model_uri} was trained on a cohort of seed {trained_on}, the final "
            "test cohort's: choose another final_test.cohort.seed"
        )
    logger.info(
        "final test: %d scans of %s, model %s (run %s, loaded in %.1f s)",
        len(scans),
        final_test_cohort["path"],
        model_uri,
        scorer.run_id,
        load_seconds,
    )
    started = perf_counter()
    try:
        outcomes = map_subjects(
            _score_one,
            {sid: (sid, final_test_scans[key]) for sid, key in scans.items()},
            n_jobs=settings.n_jobs,
            desc="scoring final test scans",
            model_uri=model_uri,
            tracking_uri=tracking_uri,
        )
        rows, tables, loads = [], [], []
        for sid, outcome in outcomes.items():
            if not outcome.ok:  # a DataError outside the stages (the loader)
                rows.append({schema.ID_COLUMN: sid, "status": "failed", "reason": outcome.error})
                continue
            rows.append(outcome.value["qc"])
            if outcome.value["load_seconds"]:
                loads.append(outcome.value["load_seconds"])
            if outcome.value["features"] is not None:
                tables.append(outcome.value["features"])
        rows += [
            {schema.ID_COLUMN: sid, "status": "failed", "reason": why, "failed_stage": "ingest"}
            for sid, why in rejected.items()
        ]
        table = pd.DataFrame(rows).sort_values(schema.ID_COLUMN, ignore_index=True)
        table["model_run_id"] = scorer.run_id
        seconds = [r["seconds"] for r in rows if "seconds" in r]
        logger.info(
            "scored %d of %d final-test scans in %.0f s: %.2f s per scan (median, one process),"
            " the model loaded by %d worker(s) in %s s",
            len(tables),
            len(rows),
            perf_counter() - started,
            statistics.median(seconds) if seconds else float("nan"),
            len(loads),
            ", ".join(f"{s:.1f}" for s in loads) or "0",
        )
        check_failures(
            table,
            "final_test",
            max_failed_fraction=QcSettings.from_parameters(qc).max_failed_fraction,
        )
        if not tables:
            raise ValueError("no final-test scan could be scored; see final_test_qc")
        features = pd.concat(tables, ignore_index=True).sort_values(
            schema.ID_COLUMN, ignore_index=True
        )
        predictions = pd.concat(
            [
                p.assign(model=kind)
                for kind, p in scorer.health_models.predict_all(features).items()
            ],
            ignore_index=True,
        )
        predictions.insert(1, "model", predictions.pop("model"))
        predictions["model_run_id"] = scorer.run_id
        table = _with_ood(table, scorer, features)
    finally:
        _SCORERS.clear()  # the model is large: don't keep it past this node
    return features, predictions, table


def _with_ood(table: pd.DataFrame, scorer: ScanScorer, features: pd.DataFrame) -> pd.DataFrame:
    """The QC table with the model's out-of-distribution scores (``ood_*``), a flagged scan a
    warning, as the scorer marks it; unchanged for a model without a monitor."""
    monitor = getattr(scorer, "ood_monitor", None)
    if monitor is None:
        return table
    ood = monitor.score(features)
    table = table.merge(ood, on=schema.ID_COLUMN, how="left")
    flagged = table["ood_flag"].fillna(False).astype(bool)
    table.loc[flagged & (table["status"] == "ok"), "status"] = "warning"
    table.loc[flagged, "reason"] = [
        _join(str(a) if isinstance(a, str) else "", str(b))
        for a, b in zip(table.loc[flagged, "reason"], table.loc[flagged, "ood_reason"], strict=True)
    ]
    return table


def evaluate_final_test(
    final_test_predictions: pd.DataFrame,
    final_test_clinical: pd.DataFrame,
    final_test_qc: pd.DataFrame,
    final_test_cohort: dict[str, Any],
    final_test: dict[str, Any],
    modelling: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Metrics of every model kind on every scored final-test subject (95 % bootstrap
    intervals), the paired differences of ``final_test.pairs`` on each target's headline
    metric (the same resamples for both models), the numbers for MLflow, and a summary of
    what was evaluated (cohort, model, counts)."""
    settings = FinalTestSettings.from_parameters(final_test)
    training = ModellingSettings.from_parameters(modelling)
    truth, issues = validate_clinical(final_test_clinical)
    if len(issues):
        logger.warning("the final test cohort's clinical table has %d issue(s)", len(issues))
    kinds = list(dict.fromkeys(final_test_predictions["model"]))
    predictions = {
        kind: final_test_predictions[final_test_predictions["model"] == kind].drop(
            columns=["model", "model_run_id"]
        )
        for kind in kinds
    }
    scored = sorted(set(final_test_predictions[schema.ID_COLUMN]))
    metrics = evaluate(
        predictions, truth, test_ids=scored, n_boot=training.n_bootstrap, seed=training.seed
    )
    differences = paired_differences(
        predictions,
        truth,
        test_ids=scored,
        pairs=[tuple(pair) for pair in settings.pairs],
        n_boot=training.n_bootstrap,
        seed=training.seed,
    )
    mlflow_metrics = {
        f"{r.target}.{r.model}.{r.metric}{suffix}": {"value": float(value), "step": 0}
        for r in metrics.itertuples()
        for suffix, value in (("", r.value), ("_ci_low", r.ci_low), ("_ci_high", r.ci_high))
        if np.isfinite(value)
    }
    mlflow_metrics |= {
        f"{r.target}.{r.model_a}_minus_{r.model_b}.{r.metric}{suffix}": {
            "value": float(value),
            "step": 0,
        }
        for r in differences.itertuples()
        for suffix, value in (("", r.difference), ("_ci_low", r.ci_low), ("_ci_high", r.ci_high))
        if np.isfinite(value)
    }
    status = final_test_qc["status"].value_counts()
    failed = int((final_test_qc["status"] == "failed").sum())
    mlflow_metrics |= {
        f"subjects.{name}": {"value": float(count), "step": 0}
        for name, count in (
            ("cohort", len(final_test_qc)),
            ("scored", len(scored)),
            ("failed", failed),
        )
    }
    seconds = (
        pd.to_numeric(final_test_qc["seconds"], errors="coerce")
        if "seconds" in final_test_qc
        else pd.Series(dtype=float)
    )
    summary = {
        "cohort": {
            k: final_test_cohort[k]
            for k in ("path", "generator", "generator_version", "n", "seed", "settings")
        },
        "training_cohort": final_test_cohort["training_cohort"],
        "model_run_id": str(final_test_predictions["model_run_id"].iloc[0]),
        "subjects": {
            "cohort": len(final_test_qc),
            "scored": len(scored),
            **{str(k): int(v) for k, v in status.items()},
        },
        "ood_flagged": (
            int(final_test_qc["ood_flag"].fillna(False).astype(bool).sum())
            if "ood_flag" in final_test_qc
            else None
        ),
        "seconds_per_scan_median": (float(seconds.median()) if seconds.notna().any() else None),
        "bootstrap": {"n": training.n_bootstrap, "seed": training.seed},
        "models": kinds,
        "pairs": [list(pair) for pair in settings.pairs],
    }
    logger.info(
        "final test: %d subjects scored, metrics of %s; %d of %d paired differences exclude 0",
        len(scored),
        ", ".join(kinds),
        int(differences["excludes_zero"].sum()),
        len(differences),
    )
    return metrics, differences, mlflow_metrics, summary
