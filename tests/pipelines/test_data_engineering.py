"""The data_engineering pipeline: node logic on small tables, and a tiny end-to-end run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from conftest import kedro_run

from face_health.pipelines.data_engineering.nodes import build_qc_report


def test_qc_report_joins_scans_and_clinical_rows() -> None:
    ingest_qc = pd.DataFrame(
        {
            "subject_id": ["A", "B", "C"],
            "status": ["ok", "failed", "ok"],
            "reason": ["", "empty file", ""],
        }
    )
    clinical = pd.DataFrame({"subject_id": ["A", "B", "D"]})
    issues = pd.DataFrame(
        {
            "row": [1],
            "subject_id": ["A"],
            "column": ["hemoglobin"],
            "severity": ["error"],
            "message": ["13.5 looks like g/dL"],
        }
    )
    landmark_qc = pd.DataFrame(
        {
            "subject_id": ["A", "C"],
            "landmark_status": ["ok", "warning"],
            "landmark_reason": ["", "low confidence: prn"],
        }
    )
    alignment_qc = pd.DataFrame(
        {"subject_id": ["A", "C"], "alignment_status": ["ok", "ok"], "alignment_reason": ["", ""]}
    )
    report = build_qc_report(ingest_qc, clinical, issues, landmark_qc, alignment_qc)
    report = report.set_index("subject_id")
    assert report.loc["A", "status"] == "ok" and report.loc["A", "clinical_cell_errors"] == 1
    assert report.loc["B", "status"] == "failed" and report.loc["B", "reason"] == "empty file"
    assert report.loc["C", "status"] == "warning" and "no clinical row" in report.loc["C", "reason"]
    assert "landmark: low confidence: prn" in report.loc["C", "reason"]
    assert report.loc["D", "status"] == "failed" and report.loc["D", "reason"] == "no scan"


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_tiny_data_engineering_run_end_to_end(project_copy: Path) -> None:
    kedro_run(project_copy, "--env", "tiny", "--pipelines", "data_engineering")
    data = project_copy / "data" / "tiny"
    raw = data / "01_raw" / "synthetic_cohort"
    before = _hashes(raw)
    assert any(k.startswith("scans/") for k in before)

    qc = pd.read_csv(sorted((data / "08_reporting" / "qc_report.csv").rglob("*.csv"))[-1])
    assert len(qc) == 8
    assert (qc["status"] != "failed").all(), qc[["subject_id", "status", "reason"]]
    assert {"landmark_status", "alignment_status", "residual_mm"} <= set(qc.columns)
    splits = pd.read_csv(data / "03_primary" / "splits.csv")
    assert set(splits["split"]) == {"train", "validation", "test"}
    assert (project_copy / "mlflow.db").is_file()

    assert len(list((data / "02_intermediate" / "clean_meshes").glob("*.glb"))) == 8
    assert len(list((data / "03_primary" / "landmarks").glob("*.csv"))) == 8
    assert len(list((data / "03_primary" / "aligned_meshes").glob("*.glb"))) == 8
    assert len(sorted((data / "04_feature" / "face_views").rglob("*.png"))) == 8 * 13
    for picture in ("cohort_contact_sheet.png", "template.png", "views_contact_sheet.png"):
        assert (data / "08_reporting" / picture).stat().st_size > 0
    alignment = pd.read_csv(data / "03_primary" / "alignment_qc.csv")
    assert (alignment["residual_mm"] < 6.0).all()

    # A second run reuses the cohort and never touches a raw file.
    kedro_run(project_copy, "--env", "tiny", "--pipelines", "data_engineering")
    assert _hashes(raw) == before
