"""The data errors of the stages: each raise site of bad data raises a ``DataError`` (so a
failed QC row), still a ``ValueError`` for older callers; a bug after reading a scan is not
turned into a QC row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import trimesh

from face_health import errors, schema
from face_health.alignment.similarity import (
    Template,
    align_to_template,
    crop_to_box,
    landmark_frame,
)
from face_health.errors import (
    DataError,
    ModelFitError,
    NoFaceFoundError,
    RegionError,
    TooFewLandmarksError,
    UnreadableScanError,
)
from face_health.face_model import load_face_model
from face_health.ingest import scan as scan_module
from face_health.ingest.checks import ScanError
from face_health.landmarks.detector import _coarse_score, _frame_from
from face_health.landmarks.model_fit import fit_face_model

SUBCLASSES = (UnreadableScanError, NoFaceFoundError, TooFewLandmarksError, ModelFitError)


@pytest.mark.parametrize("cls", [*SUBCLASSES, RegionError])
def test_data_errors_are_value_errors_too(cls: type[Exception]) -> None:
    assert issubclass(cls, DataError) and issubclass(cls, ValueError)
    assert not issubclass(ValueError, DataError)
    assert "QC row" in (errors.__doc__ or "")


def test_scan_error_is_the_unreadable_scan_error() -> None:
    assert ScanError is UnreadableScanError
    assert scan_module.ScanError is UnreadableScanError


def _landmarks(names: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.normal(0, 30, 3) for n in names}


def test_aligning_with_two_landmarks_is_too_few() -> None:
    names = list(schema.LANDMARK_NAMES)
    template = Template(names, np.random.default_rng(1).normal(0, 30, (len(names), 3)))
    with pytest.raises(TooFewLandmarksError, match="at least 3 landmarks, got 2"):
        align_to_template(_landmarks(names[:2]), template)


def test_a_frame_without_the_nose_tip_is_too_few_landmarks() -> None:
    with pytest.raises(TooFewLandmarksError, match="frontal frame"):
        landmark_frame(_landmarks(["en_r", "en_l", "ch_r", "ch_l"]))


def test_a_crop_that_holds_none_of_the_mesh_is_a_region_error() -> None:
    mesh = trimesh.creation.box(extents=(10, 10, 10))
    with pytest.raises(RegionError, match="nothing of the mesh"):
        crop_to_box(mesh, np.full(3, 100.0), np.full(3, 200.0))


def test_no_frame_landmarks_in_the_coarse_pass_is_no_face() -> None:
    table = pd.DataFrame(
        {"name": ["en_r", "en_l"], "x": [0.0, 30.0], "y": 0.0, "z": 0.0, "status": "ok"}
    )
    table.attrs["mean_peak"] = 0.9
    with pytest.raises(NoFaceFoundError, match="face not found"):
        _frame_from(table)
    assert _coarse_score(table) == 0.0


def _cnn(points: np.ndarray, n: int | None = None) -> pd.DataFrame:
    table = pd.DataFrame(points, columns=["x", "y", "z"])
    table.insert(0, "name", schema.LANDMARK_NAMES)
    table["confidence"], table["status"] = 0.9, "ok"
    if n is not None:
        table.loc[n:, "status"] = "not_found"
    return table


def test_the_model_fit_needs_five_landmarks_and_a_surface_near_them() -> None:
    model = load_face_model()
    points = model.landmarks(model.mean)
    far_away = trimesh.creation.icosphere(subdivisions=2, radius=50.0)
    far_away.apply_translation(points.mean(axis=0) + [0.0, 0.0, 5000.0])
    with pytest.raises(TooFewLandmarksError, match="at least 5 landmarks"):
        fit_face_model(far_away, _cnn(points, n=4))
    with pytest.raises(ModelFitError, match="lost the surface"):
        fit_face_model(far_away, _cnn(points))


def test_a_bug_after_reading_a_scan_is_not_a_failed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_cleaning(mesh: trimesh.Trimesh, **_: object) -> None:
        raise KeyError("cleaning")

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=80.0)
    monkeypatch.setattr(scan_module, "clean_mesh", broken_cleaning)
    with pytest.raises(KeyError, match="cleaning"):
        scan_module.ingest_scan(lambda: mesh, "s01")


def test_any_failure_to_read_a_scan_is_a_failed_row() -> None:
    def broken() -> trimesh.Trimesh:
        raise OSError("disk on fire")

    mesh, record = scan_module.ingest_scan(broken, "s01")
    assert mesh is None and record["status"] == "failed"
    assert record["reason"] == "OSError: disk on fire"
