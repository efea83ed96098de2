"""Nodes of the inference pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from face_health.config import InferenceSettings
from face_health.ingest.scan import group_scan_files
from face_health.serving.scorer import load_scorer, predictions_table
from face_health.synthetic import CohortSettings, ensure_cohort

logger = logging.getLogger(__name__)


def prepare_new_scans(inference: dict[str, Any]) -> dict[str, Any]:
    """Check the folder of new scans; for the synthetic default, simulate a few new subjects
    (a seed no training cohort uses) when the folder is absent."""
    settings = InferenceSettings.from_parameters(inference)
    path = Path(settings.scans_path).parent
    simulate = settings.simulate_if_missing
    if not path.exists() and simulate.n > 0:
        ensure_cohort(
            path,
            n=simulate.n,
            seed=simulate.seed,
            settings=CohortSettings(),
            n_jobs=simulate.n_jobs,
        )
    if not Path(settings.scans_path).is_dir():
        raise FileNotFoundError(
            f"no folder of new scans at {settings.scans_path}; set inference.scans_path"
        )
    return {"path": settings.scans_path}


def score_new_scans(
    new_scans: dict[str, Callable], new_scans_manifest: dict[str, Any], inference: dict[str, Any]
) -> pd.DataFrame:
    """Predict every target for every new scan with the configured model (default: the
    newest that ``training`` logged). A scan that fails QC gets a row saying why."""
    scorer = load_scorer(InferenceSettings.from_parameters(inference).model)
    logger.info("scoring %s with the model of run %s", new_scans_manifest["path"], scorer.run_id)
    scans, rejected = group_scan_files(new_scans)
    records = [
        scorer.score(new_scans[key], subject_id)
        for subject_id, key in tqdm(sorted(scans.items()), desc="scoring scans", unit="scan")
    ]
    records += [
        {
            "subject_id": sid,
            "qc_status": "failed",
            "qc_reason": reason,
            "model_run_id": scorer.run_id,
        }
        for sid, reason in rejected.items()
    ]
    table = predictions_table(records)
    flagged = table["ood_flag"].eq(True)
    if flagged.any():
        logger.warning(
            "%d of %d scans are out of distribution (ood_flag; ood_score up to %.2f): their "
            "features lie beyond the training cohort's validation subjects",
            int(flagged.sum()),
            len(table),
            float(table.loc[flagged, "ood_score"].max()),
        )
    return table
