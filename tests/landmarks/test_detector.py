"""The shipped landmark detector on whole scans: accuracy, pose and unit invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from face_health import schema
from face_health.ingest.scan import ingest_scan
from face_health.landmarks.detector import LandmarkDetector, network_device, shipped_checkpoint
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


def test_shipped_checkpoint_carries_its_provenance() -> None:
    """Where the shipped weights came from, inside the file (written after the fact by
    scripts/record_checkpoint_provenance.py, which says so): the cohort's generator, version
    and seed (one no pipeline cohort uses), the commit, validation metrics and the choice."""
    import torch

    from face_health.synthetic.cohort import GENERATOR_VERSION

    provenance = torch.load(shipped_checkpoint(), map_location="cpu", weights_only=True)[
        "provenance"
    ]
    assert provenance["recorded_after_training"] is True
    assert len(provenance["git_commit"]) == 40
    cohort = provenance["cohort"]
    assert cohort["generator"] == "face_health.synthetic" and cohort["seed"] == 1
    assert cohort["generator_version"] <= GENERATOR_VERSION
    assert provenance["validation_metrics"]["cnn_plus_fit_mm_20_validation_scans"] > 0
    assert "validation" in provenance["selection"]


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


def test_a_face_turned_away_on_its_side_and_in_other_units_is_found(detector, scan) -> None:
    """Facing -z, lying on its side, at a fifth of its size (a z-up export in arbitrary
    units): the coarse pass searches the axis orientations and the scan's own size."""
    path, _ = scan
    mesh, _ = ingest_scan(path, "S0001")
    reference = detector.detect(mesh).set_index("name")[["x", "y", "z"]].to_numpy()

    rotation = Rotation.from_euler("yz", [180, 90], degrees=True).as_matrix()
    moved = mesh.copy()
    transform = np.eye(4)
    transform[:3, :3] = rotation * 0.2
    moved.apply_transform(transform)
    found = detector.detect(moved).set_index("name")[["x", "y", "z"]].to_numpy()
    back = (found / 0.2) @ rotation
    difference = np.linalg.norm(back - reference, axis=1)
    # two detections, each about 1.6 mm from the truth (a face not found, or found upside
    # down, would be tens of millimetres off)
    assert np.median(difference) < 3.0 and np.percentile(difference, 90) < 6.0


def test_reshaped_training_faces_keep_landmarks_on_the_surface(scan) -> None:
    """The shape-variety augmentation moves mesh and landmarks by one map: the landmarks stay
    where the surface took them, while the proportions change."""
    from face_health.alignment.similarity import landmark_frame
    from face_health.landmarks.consensus import snap_to_surface
    from face_health.landmarks.views import TrainingViewSettings, _reshaped

    path, truth = scan
    mesh, _ = ingest_scan(path, "S0001")
    names = list(truth.index)
    points = truth[["x", "y", "z"]].to_numpy(float)
    frame = landmark_frame(dict(zip(names, points, strict=True)))
    same, same_points = _reshaped(
        mesh, points, frame, np.random.default_rng(0), TrainingViewSettings()
    )
    assert same is mesh and same_points is points  # nothing asked, nothing changed

    settings = TrainingViewSettings(axis_scale=(0.15, 0.15, 0.15), warp_mm=4.0)
    before = snap_to_surface(mesh, points)[1]
    widths = []
    for seed in range(3):
        moved, moved_points = _reshaped(mesh, points, frame, np.random.default_rng(seed), settings)
        after = snap_to_surface(moved, moved_points)[1]
        assert np.all(after < before + 0.5)  # still on the (moved) surface
        index = {n: i for i, n in enumerate(names)}
        widths.append(np.linalg.norm(moved_points[index["ex_l"]] - moved_points[index["ex_r"]]))
    assert np.ptp(widths) > 1.0  # each draw is another face


def test_the_landmarks_command_fits_the_model_by_default(scan, tmp_path) -> None:
    from click.testing import CliRunner

    from face_health.command_line import main

    path, truth = scan
    out = tmp_path / "fit.csv"
    result = CliRunner().invoke(main, ["landmarks", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "model fit: residual" in result.output
    fitted = pd.read_csv(out).set_index("name")
    assert {"confidence", "fit_residual_mm", "cnn_distance_mm"} <= set(fitted.columns)
    assert fitted["fit_residual_mm"].between(0, 1.5).all()
    error = np.linalg.norm(
        fitted.loc[truth.index, ["x", "y", "z"]].to_numpy() - truth[["x", "y", "z"]].to_numpy(),
        axis=1,
    )
    assert error.mean() < 1.5, dict(zip(truth.index, error.round(1), strict=True))
    result = CliRunner().invoke(
        main, ["landmarks", str(path), "--out", str(tmp_path / "cnn.csv"), "--method", "cnn"]
    )
    assert result.exit_code == 0, result.output
    assert "fit_residual_mm" not in pd.read_csv(tmp_path / "cnn.csv").columns


def test_the_fit_keeps_demoface_within_reach(detector, real_scans) -> None:
    """The real scan with reference points: CNN + model fit within 3.5 mm on average, no
    point over 6 mm (reported: 2.6 mm, worst 4.5; never tuned on)."""
    from face_health.landmarks.locate import locate_landmarks

    folder = real_scans / "demoface"
    mesh, qc = ingest_scan(folder / "DemoFace_10K.obj", "demoface")
    table, stage_qc, _ = locate_landmarks(detector, mesh)
    reference = np.loadtxt(folder / "DemoFaceLandmarks.csv", delimiter=",") * qc["scale_to_mm"]
    found = table.set_index("name").loc[["en_r", "en_l", "prn", "ch_r", "ch_l"], ["x", "y", "z"]]
    error = np.linalg.norm(found.to_numpy(float) - reference, axis=1)
    assert error.mean() < 3.5 and error.max() < 6.0, error.round(2)
    assert stage_qc["fit_residual_mm"] < 1.5


def test_the_network_runs_where_its_settings_say() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert network_device("auto").type == expected
    assert network_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            network_device("cuda")
