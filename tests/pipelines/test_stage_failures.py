"""At node level: bad data becomes QC rows, too much of it (or a bug) stops the stage."""

from __future__ import annotations

import pytest
import trimesh

from face_health.config import base_section
from face_health.parallel import SubjectCrashedError, TooManyFailuresError
from face_health.pipelines.data_engineering.nodes import ingest_scans

COHORT = {"source": "folder", "path": "cohort"}


def _face() -> trimesh.Trimesh:
    ball = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    ball.visual.vertex_colors = [200, 150, 130, 255]
    return ball


def _unreadable() -> trimesh.Trimesh:
    raise OSError("disk read error")


def _scans(n_good: int, n_bad: int) -> dict:
    scans = {f"S{i:04d}.ply": _face for i in range(n_good)}
    scans |= {f"B{i:04d}.ply": _unreadable for i in range(n_bad)}
    return scans


def _params(**ingest) -> tuple[dict, dict]:
    return base_section("ingest", n_jobs=1, **ingest).to_parameters(), {"max_failed_fraction": 0.2}


def test_one_bad_scan_is_a_qc_row_and_the_cohort_goes_on() -> None:
    ingest, qc = _params()
    meshes, table = ingest_scans(_scans(5, 1), COHORT, ingest, qc)
    assert len(meshes) == 5
    bad = table.set_index("subject_id").loc["B0000"]
    assert bad["status"] == "failed" and "disk read error" in bad["reason"]


def test_more_failures_than_allowed_stop_the_stage_with_the_reasons() -> None:
    ingest, qc = _params()
    with pytest.raises(TooManyFailuresError, match=r"2 of 5 subjects \(40 %\).*disk read error"):
        ingest_scans(_scans(3, 2), COHORT, ingest, qc)
    meshes, _ = ingest_scans(_scans(3, 2), COHORT, ingest, {"max_failed_fraction": 0.5})
    assert len(meshes) == 3


def test_a_bug_in_a_stage_fails_the_node_naming_the_subject(monkeypatch) -> None:
    import face_health.ingest.scan as scan

    def broken(*args, **kwargs):
        raise KeyError("a key a change forgot")

    monkeypatch.setattr(scan, "clean_mesh", broken)
    ingest, qc = _params()
    with pytest.raises((KeyError, SubjectCrashedError), match="a key a change forgot"):
        ingest_scans(_scans(2, 0), COHORT, ingest, qc)
