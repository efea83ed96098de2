"""Nodes of the data_engineering pipeline: raw cohort -> clean meshes, QC, clinical, splits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import trimesh

from face_health.alignment import landmark_table_to_dict
from face_health.clinical import validate_clinical
from face_health.parallel import map_subjects
from face_health.raw_cohort import prepare_raw_cohort
from face_health.reporting import contact_sheet, pick_diverse_subjects
from face_health.scan import group_scan_files, ingest_scan
from face_health.splits import make_splits

logger = logging.getLogger(__name__)


def prepare_cohort(cohort: dict[str, Any]) -> dict[str, Any]:
    """Simulate the synthetic default when absent, or check a real cohort's folder."""
    return prepare_raw_cohort(cohort)


def _ingest_one(job: tuple[str, Callable[[], trimesh.Trimesh]], **options: Any):
    subject_id, load = job
    return ingest_scan(load, subject_id, **options)


def ingest_scans(
    raw_scans: dict[str, Callable[[], trimesh.Trimesh]],
    raw_cohort: dict[str, Any],
    ingest: dict[str, Any],
) -> tuple[dict[str, trimesh.Trimesh], pd.DataFrame]:
    """Read, convert to millimetres and clean every scan; one QC row per subject.

    A scan that cannot be used gets a ``failed`` row with the reason; the others go on.
    """
    logger.info("ingesting the %s cohort at %s", raw_cohort["source"], raw_cohort["path"])
    scans, rejected = group_scan_files(raw_scans)
    jobs = {sid: (sid, raw_scans[key]) for sid, key in scans.items()}
    outcomes = map_subjects(
        _ingest_one,
        jobs,
        n_jobs=int(ingest.get("n_jobs", 0)),
        desc="ingesting scans",
        units=ingest.get("units", "auto"),
        vertex_budget=int(ingest.get("vertex_budget", 60000)),
        min_component_fraction=float(ingest.get("min_component_fraction", 0.05)),
    )
    meshes: dict[str, trimesh.Trimesh] = {}
    rows = []
    for sid, outcome in outcomes.items():
        if not outcome.ok:  # ingest_scan never raises on bad input; this is a crashed worker
            rows.append({"subject_id": sid, "status": "failed", "reason": outcome.error})
            continue
        mesh, qc = outcome.value
        rows.append(qc)
        if mesh is not None:
            meshes[sid] = mesh
    for sid, reason in rejected.items():
        rows.append({"subject_id": sid, "status": "failed", "reason": reason})
    qc = pd.DataFrame(rows).sort_values("subject_id", ignore_index=True)
    n_failed = int((qc["status"] == "failed").sum())
    logger.info("ingested %d scans, %d failed QC", len(meshes), n_failed)
    return meshes, qc


def validate_clinical_table(
    raw_clinical: pd.DataFrame, raw_cohort: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check the clinical table against the target schema (units, ranges, ids).

    ``raw_cohort`` is taken only so that this runs after the cohort exists.
    """
    clinical, issues = validate_clinical(raw_clinical)
    for level, count in issues["severity"].value_counts().items():
        logger.warning("clinical table: %d %s(s); see clinical_issues", count, level)
    return clinical, issues


def build_qc_report(
    ingest_qc: pd.DataFrame, clinical: pd.DataFrame, clinical_issues: pd.DataFrame
) -> pd.DataFrame:
    """One row per subject seen anywhere (scan or clinical table), with its status and why."""
    report = ingest_qc.copy()
    report["has_clinical"] = report["subject_id"].isin(clinical["subject_id"])
    no_clinical = ~report["has_clinical"] & (report["status"] != "failed")
    report.loc[no_clinical, "status"] = "warning"
    report.loc[no_clinical, "reason"] = _append(
        report.loc[no_clinical, "reason"], "no clinical row"
    )

    errors = clinical_issues[clinical_issues["severity"] == "error"]
    n_errors = errors.groupby("subject_id").size()
    report["clinical_cell_errors"] = report["subject_id"].map(n_errors).fillna(0).astype(int)

    scanless = sorted(set(clinical["subject_id"]) - set(report["subject_id"]))
    if scanless:
        extra = pd.DataFrame(
            {"subject_id": scanless, "status": "failed", "reason": "no scan", "has_clinical": True}
        )
        report = pd.concat([report, extra], ignore_index=True)
    return report.sort_values("subject_id", ignore_index=True)


def _append(reasons: pd.Series, text: str) -> pd.Series:
    return reasons.fillna("").map(lambda r: f"{r}; {text}" if r else text)


def split_subjects(
    clinical: pd.DataFrame, qc_report: pd.DataFrame, splits: dict[str, Any]
) -> pd.DataFrame:
    """Subject-level train / validation / test over subjects with a usable scan and labels."""
    usable = qc_report.loc[qc_report["status"] != "failed", "subject_id"]
    table = clinical[clinical["subject_id"].isin(usable)]
    return make_splits(
        table,
        fractions=tuple(splits.get("fractions", (0.7, 0.15, 0.15))),
        seed=int(splits.get("seed", 0)),
        stratify_by=tuple(splits.get("stratify_by", ("sex", "age"))),
    )


def cohort_contact_sheet(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    annotations: dict[str, Callable[[], pd.DataFrame]],
    clinical: pd.DataFrame,
    ingest_qc: pd.DataFrame,
    contact_sheet_options: dict[str, Any],
) -> plt.Figure:
    """Faces of the cohort from young to old, both sexes, with age, sex and BMI.

    Faces are turned frontal with the cohort's landmark annotations (given in each raw scan's
    own units, hence the scale from ingest QC).
    """
    landmarks = {k.removesuffix(".csv"): load for k, load in annotations.items()}
    have = clinical[
        clinical["subject_id"].isin(clean_meshes) & clinical["subject_id"].isin(landmarks)
    ]
    chosen = pick_diverse_subjects(have, int(contact_sheet_options.get("n_subjects", 8)))
    if not chosen:
        raise ValueError(
            "no subject has both a clean mesh and an annotation table; the contact sheet needs "
            "landmark annotations (landmarks/<subject_id>.csv) to turn faces frontal"
        )
    info = clinical.set_index("subject_id")
    scale = ingest_qc.set_index("subject_id")["scale_to_mm"]
    labels = {
        sid: f"{info.at[sid, 'sex']}, {info.at[sid, 'age']:.0f} y, BMI {info.at[sid, 'bmi']:.1f}"
        for sid in chosen
    }
    return contact_sheet(
        {sid: clean_meshes[sid]() for sid in chosen},
        {
            sid: {
                n: p * float(scale[sid])
                for n, p in landmark_table_to_dict(landmarks[sid]()).items()
            }
            for sid in chosen
        },
        labels,
        image_size=int(contact_sheet_options.get("image_size", 320)),
        columns=int(contact_sheet_options.get("columns", 4)),
        title="Synthetic cohort: faces by age, sex and BMI (scans as captured, turned frontal)",
    )
