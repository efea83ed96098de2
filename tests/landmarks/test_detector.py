"""The shipped landmark detector on whole scans: accuracy, pose and unit invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from face_health import schema
from face_health.landmarks.detector import LandmarkDetector, shipped_checkpoint
from face_health.scan import ingest_scan
from face_health.synthetic import write_cohort


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector.from_checkpoint()


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    # A seed no cohort of the project uses for training.
    out = tmp_path_factory.mktemp("det") / "cohort"
    write_cohort(out, 1, 987654, progress=False)
    truth = pd.read_csv(out / "landmarks" / "S0001.csv").set_index("name")
    return out / "scans" / "S0001.obj", truth


def test_shipped_checkpoint_is_small_and_names_the_scheme() -> None:
    path = shipped_checkpoint()
    assert path.stat().st_size < 8 * 1024 * 1024
    detector = LandmarkDetector.from_checkpoint(path)
    assert detector.landmark_names == list(schema.LANDMARK_NAMES)


def test_landmarks_on_a_new_synthetic_scan(detector, scan) -> None:
    path, truth = scan
    mesh, _ = ingest_scan(path, "S0001")
    table = detector.detect(mesh).set_index("name")
    assert (table["status"] == "ok").all()
    error = np.linalg.norm(
        table.loc[truth.index, ["x", "y", "z"]].to_numpy() - truth[["x", "y", "z"]].to_numpy(),
        axis=1,
    )
    assert np.median(error) < 3.0, dict(zip(truth.index, error.round(1), strict=True))
    assert table["confidence"].between(0, 1).all()


def test_metres_and_rotation_give_the_same_landmarks(detector, scan, tmp_path) -> None:
    """A scan in metres, rotated 25 degrees, gives the same landmarks (in its frame) as the
    same scan in millimetres, unrotated."""
    path, _ = scan
    mesh, _ = ingest_scan(path, "S0001")
    reference = detector.detect(mesh).set_index("name")[["x", "y", "z"]].to_numpy()

    rotation = Rotation.from_euler("y", 25, degrees=True).as_matrix()
    moved = mesh.copy()
    transform = np.eye(4)
    transform[:3, :3] = rotation / 1000.0  # rotate, then millimetres -> metres
    moved.apply_transform(transform)
    metres = tmp_path / "metres.ply"
    moved.export(metres)
    scan_m, qc = ingest_scan(metres, "metres")
    assert qc["units_inferred"] == "m"
    found = detector.detect(scan_m).set_index("name")[["x", "y", "z"]].to_numpy()
    back = found @ rotation  # undo the rotation (rows: R^T applied to each point)
    difference = np.linalg.norm(back - reference, axis=1)
    assert np.median(difference) < 2.0 and np.percentile(difference, 90) < 4.0


def test_a_scan_without_a_face_is_a_clear_error(detector) -> None:
    blob = trimesh.creation.icosphere(subdivisions=4, radius=90.0)
    with pytest.raises(ValueError, match="face not found"):
        detector.detect(blob)
