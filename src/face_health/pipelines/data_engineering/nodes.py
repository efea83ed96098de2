"""Nodes of the data_engineering pipeline: raw cohort -> clean meshes, QC, clinical, splits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import trimesh

from face_health.alignment.similarity import landmark_table_to_dict
from face_health.config import ContactSheetSettings, IngestSettings, QcSettings, SplitSettings
from face_health.ingest.clinical import raise_if_unusable, validate_clinical
from face_health.ingest.raw_cohort import prepare_raw_cohort
from face_health.ingest.scan import group_scan_files, ingest_scan
from face_health.ingest.splits import make_splits
from face_health.ingest.storage import EncodedMesh
from face_health.parallel import check_failures, map_subjects
from face_health.reporting import contact_sheet, pick_diverse_subjects
from face_health.spool import spooled

logger = logging.getLogger(__name__)


def prepare_cohort(cohort: dict[str, Any]) -> dict[str, Any]:
    """Simulate the synthetic default when absent, or check a real cohort's folder."""
    return prepare_raw_cohort(cohort)


def _ingest_one(job: tuple[str, Callable[[], trimesh.Trimesh]], **options: Any):
    subject_id, load = job
    mesh, record = ingest_scan(load, subject_id, **options)
    # encoded here, in the worker, and left in the run's spool: the main process then only
    # writes the GLB, one subject at a time
    return (None if mesh is None else spooled(EncodedMesh.of(mesh, ".glb"))), record


def ingest_scans(
    raw_scans: dict[str, Callable[[], trimesh.Trimesh]],
    raw_cohort: dict[str, Any],
    ingest: dict[str, Any],
    qc_parameters: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read, convert to millimetres and clean every scan; one QC row per subject. The clean
    meshes come encoded as GLB (``EncodedMesh``, what ``clean_meshes`` stores; in a Kedro run
    each behind a ``face_health.spool.Spooled`` handle, written when the partition is saved).

    A scan that cannot be used gets a ``failed`` row with the reason; the others go on,
    unless more than ``qc.max_failed_fraction`` of the cohort fails.
    """
    settings = IngestSettings.from_parameters(ingest)
    logger.info("ingesting the %s cohort at %s", raw_cohort["source"], raw_cohort["path"])
    scans, rejected = group_scan_files(raw_scans)
    jobs = {sid: (sid, raw_scans[key]) for sid, key in scans.items()}
    outcomes = map_subjects(
        _ingest_one,
        jobs,
        n_jobs=settings.n_jobs,
        desc="ingesting scans",
        **settings.as_kwargs(),
    )
    meshes: dict[str, Any] = {}  # EncodedMesh, or its Spooled handle in a Kedro run
    rows = []
    for sid, outcome in outcomes.items():
        if not outcome.ok:  # a data error the reader raised (unreadable scan, ...)
            rows.append({"subject_id": sid, "status": "failed", "reason": outcome.error})
            continue
        mesh, record = outcome.value
        rows.append(record)
        if mesh is not None:
            meshes[sid] = mesh
    for sid, reason in rejected.items():
        rows.append({"subject_id": sid, "status": "failed", "reason": reason})
    table = pd.DataFrame(rows).sort_values("subject_id", ignore_index=True)
    n_failed = int((table["status"] == "failed").sum())
    logger.info("ingested %d scans, %d failed QC", len(meshes), n_failed)
    limit = QcSettings.from_parameters(qc_parameters).max_failed_fraction
    check_failures(table, "ingest", max_failed_fraction=limit)
    return meshes, table


def validate_clinical_table(
    raw_clinical: pd.DataFrame, raw_cohort: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check the clinical table against the target schema (units, ranges, ids, required
    cells, unknown columns).

    Table-level problems (missing or duplicate ids) are issue rows here, so that
    ``clinical_issues`` is written before :func:`check_clinical_table` stops the run on them.
    ``raw_cohort`` is taken only so that this runs after the cohort exists.
    """
    clinical, issues = validate_clinical(raw_clinical, raise_unusable=False)
    for level, count in issues["severity"].value_counts().items():
        logger.warning("clinical table: %d %s(s); see clinical_issues", count, level)
    return clinical, issues


def validate_and_report_clinical(
    raw_clinical: pd.DataFrame, raw_cohort: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`validate_clinical_table`, with its issues twice: ``clinical_issues`` (the
    report, saved when this node ends) and an in-memory copy for
    :func:`check_clinical_table`, which then never reads a reporting-layer dataset (a cycle
    of data layers would make kedro viz drop them all)."""
    clinical, issues = validate_clinical_table(raw_clinical, raw_cohort)
    return clinical, issues, issues.copy()


def check_clinical_table(checked: pd.DataFrame, clinical_issues: pd.DataFrame) -> pd.DataFrame:
    """The validated table as ``clinical``, once its issues are written: a table with
    missing or duplicate ids stops the run here with one line (``ClinicalTableError``)."""
    try:
        raise_if_unusable(clinical_issues, "clinical_issues.csv (08_reporting)")
    except ValueError as exc:  # one line, no chained parser traceback
        raise type(exc)(str(exc)) from None
    return checked


def build_qc_report(
    ingest_qc: pd.DataFrame,
    clinical: pd.DataFrame,
    clinical_issues: pd.DataFrame,
    landmark_qc: pd.DataFrame,
    alignment_qc: pd.DataFrame,
) -> pd.DataFrame:
    """One row per subject seen anywhere (scan or clinical table): the worst status of its
    stages and every reason, then each stage's own columns."""
    report = ingest_qc.copy()
    # Read back from CSV, an all-empty reason column comes as floats (NaN).
    report["reason"] = report["reason"].fillna("").astype(str)
    for stage, table in (("landmark", landmark_qc), ("alignment", alignment_qc)):
        report = report.merge(table, on="subject_id", how="left")
        status, reason = report[f"{stage}_status"], report[f"{stage}_reason"].fillna("")
        worse = status.map(_SEVERITY).fillna(-1) > report["status"].map(_SEVERITY)
        report.loc[worse, "status"] = status[worse]
        has_reason = reason != ""
        report.loc[has_reason, "reason"] = _append(
            report.loc[has_reason, "reason"], stage + ": " + reason[has_reason]
        )
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


_SEVERITY = {"ok": 0, "warning": 1, "failed": 2}


def _append(reasons: pd.Series, text: str | pd.Series) -> pd.Series:
    texts = text if isinstance(text, pd.Series) else pd.Series(text, index=reasons.index)
    return pd.Series(
        [f"{r}; {t}" if r else t for r, t in zip(reasons.fillna(""), texts, strict=True)],
        index=reasons.index,
        dtype=object,
    )


def split_subjects(
    clinical: pd.DataFrame, ingest_qc: pd.DataFrame, splits: dict[str, Any]
) -> pd.DataFrame:
    """Subject-level train / validation / test over subjects with a usable scan and labels."""
    settings = SplitSettings.from_parameters(splits)
    usable = ingest_qc.loc[ingest_qc["status"] != "failed", "subject_id"]
    table = clinical[clinical["subject_id"].isin(usable)]
    return make_splits(
        table,
        fractions=settings.fractions,
        seed=settings.seed,
        stratify_by=settings.stratify_by,
    )


def cohort_contact_sheet(
    clean_meshes: dict[str, Callable[[], trimesh.Trimesh]],
    detected_landmarks: dict[str, Callable[[], pd.DataFrame]],
    clinical: pd.DataFrame,
    contact_sheet_options: dict[str, Any],
) -> plt.Figure:
    """Faces of the cohort from young to old, both sexes, lean and heavy, as scanned (holes,
    lighting and all), turned frontal with their detected landmarks."""
    settings = ContactSheetSettings.from_parameters(contact_sheet_options)
    landmarks = {k.removesuffix(".csv"): load for k, load in detected_landmarks.items()}
    ids = clinical["subject_id"]
    have = clinical[ids.isin(clean_meshes) & ids.isin(landmarks)]
    chosen = pick_diverse_subjects(have, settings.n_subjects)
    if not chosen:
        raise ValueError("no subject has both a clean mesh and landmarks for a contact sheet")
    info = clinical.set_index("subject_id")
    labels = {
        sid: f"{info.at[sid, 'sex']}, {info.at[sid, 'age']:.0f} y, BMI {info.at[sid, 'bmi']:.1f}"
        for sid in chosen
    }
    return contact_sheet(
        {sid: clean_meshes[sid]() for sid in chosen},
        {sid: landmark_table_to_dict(landmarks[sid]()) for sid in chosen},
        labels,
        image_size=settings.image_size,
        columns=settings.columns,
        title="The cohort as scanned (holes, lighting and all), turned frontal: age, sex, BMI",
    )
