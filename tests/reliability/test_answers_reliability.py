"""No impossible answers (issue 14, part 1): surface noise, mirrored and inside-out scans,
a landmark network unsure it sees a face, empty regions, and predictions no person has or
from a face far from the training cohort. Each case: the exit code or QC status, a reason
that names the problem, no traceback, no input byte changed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import trimesh
from click.testing import CliRunner

from face_health import schema
from face_health.config import base_section
from face_health.errors import NoFaceFoundError, RegionError
from face_health.ingest.scan import ingest_scan
from face_health.ingest.surface import orient_outward, outward_score, surface_noise_deg
from face_health.landmarks.locate import locate_landmarks
from face_health.serving.scorer import ScanScorer
from face_health.synthetic import write_cohort
from reliability.corpus import assert_clean_failure


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> trimesh.Trimesh:
    """A simulated face (seed no cohort of the project uses) with vertex colours, in mm."""
    out = tmp_path_factory.mktemp("answers") / "cohort"
    write_cohort(out, 1, 24680, progress=False)
    mesh = trimesh.load(out / "scans" / "S0001.obj", process=False)
    mesh.visual = mesh.visual.to_color()
    return mesh


def _write(mesh: trimesh.Trimesh, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ply"
    path.write_bytes(mesh.export(file_type="ply"))
    return path


def _noisy(face: trimesh.Trimesh, sigma_mm: float) -> trimesh.Trimesh:
    noisy = face.copy()
    noisy.vertices = face.vertices + np.random.default_rng(0).normal(
        0, sigma_mm, face.vertices.shape
    )
    return noisy


# --- surface noise --------------------------------------------------------------------


def test_a_clean_face_is_smooth(face) -> None:
    assert surface_noise_deg(face) < 10
    assert outward_score(face) > 0


@pytest.mark.parametrize("sigma", [1.0, 5.0])
def test_a_scan_drowned_in_noise_fails_check_scan(face, tmp_path, check_scan, unchanged, sigma):
    path = _write(_noisy(face, sigma), tmp_path, f"noise{sigma:g}")
    check = unchanged(tmp_path)
    assert_clean_failure(check_scan(path), "surface noise", "median", "degrees")
    check()


def test_mild_noise_is_a_warning(face) -> None:
    mesh, record = ingest_scan(lambda: _noisy(face, 0.3), "s", warn_surface_noise_deg=20)
    assert mesh is not None and record["status"] == "warning"
    assert 20 < record["surface_noise_deg"] <= 45
    assert "surface noise" in record["reason"]


def test_a_single_triangle_has_no_surface(tmp_path, check_scan) -> None:
    tri = trimesh.Trimesh([[0, 0, 0], [100, 0, 0], [0, 100, 0]], [[0, 1, 2]])
    tri.visual.vertex_colors = [200, 150, 120, 255]
    assert_clean_failure(check_scan(_write(tri, tmp_path, "triangle")), "no surface")


# --- mirrored and inside-out scans ------------------------------------------------------


@pytest.mark.parametrize("how", ["mirrored", "inverted"])
def test_faces_wound_inward_are_rewound(face, tmp_path, unchanged, how) -> None:
    wrong = face.copy()
    if how == "mirrored":  # x -> -x, as a tool that mirrors without re-winding writes it
        wrong.vertices = face.vertices * [-1, 1, 1]
    else:
        wrong.invert()
    assert outward_score(wrong) < 0
    path = _write(wrong, tmp_path, how)
    check = unchanged(tmp_path)
    mesh, record = ingest_scan(path, how)
    assert record["status"] == "warning" and record["rewound"] is True
    assert "faces wound inward" in record["reason"]
    assert outward_score(mesh) > 0
    if how == "inverted":  # the same surface as the original, wound the right way again
        assert np.allclose(mesh.face_normals.mean(0), face.face_normals.mean(0), atol=1e-3)
    check()


def test_a_rightly_wound_face_is_left_alone(face) -> None:
    mesh = face.copy()
    assert orient_outward(mesh) is False
    assert np.array_equal(mesh.faces, face.faces)


def test_a_mirrored_face_gets_landmarks(face, tmp_path) -> None:
    """A mirrored face is still a face: after re-winding, the landmarks command reads it."""
    from face_health.command_line import main

    mirrored = face.copy()
    mirrored.vertices = face.vertices * [-1, 1, 1]
    path = _write(mirrored, tmp_path, "mirrored")
    result = CliRunner().invoke(main, ["landmarks", str(path), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "m.csv").set_index("name")
    # the subject's right eye of the mirrored face is the original's left, mirrored
    width = abs(table.loc["ex_r", "x"] - table.loc["ex_l", "x"])
    assert 70 < width < 120, width


# --- the landmark network unsure it sees a face -------------------------------------------


class _UnsureDetector:
    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def detect(self, mesh):
        names = list(schema.LANDMARK_NAMES)
        return pd.DataFrame(
            {
                "name": names,
                "x": 0.0,
                "y": 0.0,
                "z": 0.0,
                "confidence": self.confidence,
                "status": "ok",
            }
        )


def test_low_mean_landmark_confidence_fails_the_scan(face) -> None:
    with pytest.raises(NoFaceFoundError, match=r"unsure this is a face: mean confidence 0.31"):
        locate_landmarks(_UnsureDetector(0.31), face, min_mean_confidence=0.5)


def test_the_project_threshold_is_between_faces_and_non_faces() -> None:
    threshold = base_section("landmarks").min_mean_confidence
    assert 0.31 < threshold < 0.85  # an inside-out face's mean; the lowest simulated face's


# --- empty regions ------------------------------------------------------------------


def test_empty_regions_fail_the_scan(face, monkeypatch) -> None:
    from face_health.omics import local_features
    from face_health.omics.regions import RegionMap

    labels = np.full(len(face.faces), -1)
    labels[: len(face.faces) // 2] = 0  # one region has every face, 19 none
    monkeypatch.setattr(local_features, "subject_regions", lambda *a, **k: RegionMap(labels, {}))
    settings = base_section("radiomics")
    with pytest.raises(RegionError, match=r"19 of 20 regions empty.*max_empty_regions 0"):
        local_features.subject_local_features(face, pd.DataFrame(), None, {}, settings)


# --- predictions no person has; a face far from the cohort ------------------------------


class _Models:
    def __init__(self, **values: float) -> None:
        self.values = values

    def predict(self, features, model, bounded):
        assert bounded is False  # the scorer judges the raw answer
        row = {t: 0.5 if t in schema.BINARY_TARGETS else 50.0 for t in schema.TARGET_NAMES}
        row.update(height=170.0, hemoglobin=140.0, hematocrit=42.0, rbc_volume=90.0)
        row.update(weight=70.0, bmi=24.0, uric_acid=300.0)
        return pd.DataFrame([{schema.ID_COLUMN: "s", **row, **self.values}])


class _Monitor:
    refuse_score = 3.0

    def __init__(self, score: float) -> None:
        self.value = score

    def score(self, features):
        return pd.DataFrame(
            [
                {
                    "ood_local": self.value,
                    "ood_score": self.value,
                    "ood_flag": self.value > 1,
                    "ood_reason": f"out of distribution: features {self.value:.1f}x beyond",
                }
            ]
        )


def _scorer(models: _Models, ood: float) -> ScanScorer:
    scorer = ScanScorer(None, None, None, {}, None, models, ood_monitor=_Monitor(ood))
    scorer.ingest = lambda source, sid: (  # type: ignore[method-assign]
        SimpleNamespace(),
        {"status": "ok", "reason": ""},
    )
    scorer.features = lambda mesh, sid: (pd.DataFrame([{}]), {})  # type: ignore[method-assign]
    return scorer


def test_an_impossible_prediction_fails_the_scan_with_no_answers() -> None:
    record = _scorer(_Models(age=-105.6, bmi=0.4), ood=0.8).score("x.ply", "s")
    assert record["qc_status"] == "failed"
    assert "impossible for a person" in record["qc_reason"]
    assert "age -106 years (plausible 16-100)" in record["qc_reason"]
    assert "bmi 0.4 kg/m^2" in record["qc_reason"]
    assert not any(t in record for t in schema.TARGET_NAMES)


def test_a_face_far_from_the_cohort_is_refused() -> None:
    record = _scorer(_Models(), ood=7.2).score("x.ply", "s")
    assert record["qc_status"] == "failed"
    assert "out-of-distribution score 7.2 > 3" in record["qc_reason"]
    assert "age" not in record and record["ood_score"] == 7.2


def test_a_face_a_little_out_is_scored_with_a_warning() -> None:
    record = _scorer(_Models(), ood=1.5).score("x.ply", "s")
    assert record["qc_status"] == "warning" and record["ood_flag"] is True
    assert record["age"] == 50.0 and "out of distribution" in record["qc_reason"]


def test_a_face_inside_the_cohort_is_scored() -> None:
    record = _scorer(_Models(), ood=0.7).score("x.ply", "s")
    assert record["qc_status"] == "ok" and record["qc_reason"] == ""
    assert record["age"] == 50.0
