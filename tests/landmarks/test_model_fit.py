"""The morphable-model fit: it recovers known faces, reads landmarks off them, and refuses
surfaces that are not faces or that cover too little of one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from face_health import schema
from face_health.face_model import load_face_model
from face_health.landmarks.fitted import fitted_landmarks, model_vertex_regions, region_residuals
from face_health.landmarks.locate import fit_settings, locate_landmarks
from face_health.landmarks.model_fit import FitSettings, fit_face_model


def _face(seed: int) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A model face (random identity, a mild smile), posed and scaled, resampled finer so
    that scan vertices are not model vertices; and its exact landmarks."""
    rng = np.random.default_rng(seed)
    model = load_face_model()
    vertices = model.shape(rng.normal(0, 1, 100), {"mouthSmile_L": 0.2, "mouthSmile_R": 0.2})
    pose = Rotation.from_euler("xyz", rng.uniform(-15, 15, 3), degrees=True).as_matrix()
    scale, shift = rng.uniform(0.9, 1.1), rng.uniform(-50, 50, 3)
    posed = scale * vertices @ pose.T + shift
    landmarks = model.landmarks(posed)
    mesh = trimesh.Trimesh(posed, model.faces, process=False).subdivide()
    return mesh, landmarks


def _cnn_table(points: np.ndarray, rng: np.random.Generator, noise_mm: float) -> pd.DataFrame:
    """What a CNN would say: the points with noise, confident, all placed."""
    noisy = points + rng.normal(0, noise_mm, points.shape)
    return pd.DataFrame(
        {
            "name": schema.LANDMARK_NAMES,
            "x": noisy[:, 0],
            "y": noisy[:, 1],
            "z": noisy[:, 2],
            "confidence": 0.9,
            "status": "ok",
        }
    )


class _FixedDetector:
    """Stands in for the CNN: returns a given table, so the fit alone is under test."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table

    def detect(self, mesh: trimesh.Trimesh) -> pd.DataFrame:
        return self.table.copy()


def test_the_fit_recovers_a_model_face_from_noisy_landmarks() -> None:
    mesh, truth = _face(1)
    cnn = _cnn_table(truth, np.random.default_rng(2), noise_mm=2.0)
    table, fit = fitted_landmarks(mesh, cnn)
    error = np.linalg.norm(table[["x", "y", "z"]].to_numpy() - truth, axis=1)
    cnn_error = np.linalg.norm(cnn[["x", "y", "z"]].to_numpy() - truth, axis=1)
    assert error.mean() < 0.6, error.round(2)
    assert error.mean() < 0.4 * cnn_error.mean()
    assert fit.residual_mm < 0.4 and fit.coverage > 0.95
    # the residual of the model fit falls over the iterations
    assert fit.history[-1]["residual_mm"] < fit.history[0]["residual_mm"]
    assert list(table["name"]) == list(schema.LANDMARK_NAMES)
    assert table["fit_residual_mm"].lt(0.6).all()


def test_region_residuals_cover_every_region() -> None:
    labels = model_vertex_regions()
    assert set(np.unique(labels)) - {-1} == set(range(len(schema.REGIONS)))
    mesh, truth = _face(3)
    fit = fit_face_model(mesh, _cnn_table(truth, np.random.default_rng(4), 1.0))
    residuals = region_residuals(fit)
    assert set(residuals) == set(schema.REGIONS)
    assert all(0.0 <= v < 0.6 for v in residuals.values()), residuals


def test_a_sphere_is_not_a_face() -> None:
    """A sphere with landmark-like points on it: the model cannot follow it."""
    model = load_face_model()
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=110.0)
    sphere.apply_translation(model.landmarks(model.mean).mean(axis=0) + [0, 0, -70])
    points = trimesh.proximity.closest_point(sphere, model.landmarks(model.mean))[0]
    detector = _FixedDetector(_cnn_table(points, np.random.default_rng(5), 0.0))
    with pytest.raises(ValueError, match="does not follow"):
        locate_landmarks(detector, sphere)


def test_a_scan_with_too_little_face_is_refused() -> None:
    mesh, truth = _face(6)
    # keep only the part below the nose: the eyes, brows and forehead are missing
    below = mesh.vertices[:, 1] < truth[schema.LANDMARK_NAMES.index("sn"), 1]
    keep = below[mesh.faces].all(axis=1)
    part = mesh.submesh([np.flatnonzero(keep)], append=True)
    detector = _FixedDetector(_cnn_table(truth, np.random.default_rng(7), 1.0))
    with pytest.raises(ValueError, match="covers"):
        locate_landmarks(detector, part)


def test_the_cnn_method_skips_the_fit() -> None:
    mesh, truth = _face(8)
    cnn = _cnn_table(truth, np.random.default_rng(9), 1.0)
    table, qc, vertices = locate_landmarks(_FixedDetector(cnn), mesh, method="cnn")
    assert qc["landmark_method"] == "cnn" and "fit_residual_mm" not in qc and vertices is None
    np.testing.assert_allclose(table[["x", "y", "z"]], cnn[["x", "y", "z"]])
    table, qc, vertices = locate_landmarks(_FixedDetector(cnn), mesh, method="fit")
    assert vertices.shape == (load_face_model().n_vertices, 3)
    assert qc["fit_residual_mm"] < 0.4 and "fit_residual_mm_nose" in qc
    assert 0.5 < qc["fit_identity_rms"] < 1.5
    with pytest.raises(ValueError, match="unknown landmark method"):
        locate_landmarks(_FixedDetector(cnn), mesh, method="magic")


def test_too_few_landmarks_cannot_start_the_fit() -> None:
    mesh, truth = _face(10)
    cnn = _cnn_table(truth, np.random.default_rng(11), 1.0)
    cnn.loc[4:, "status"] = "not_found"
    with pytest.raises(ValueError, match="at least 5 landmarks"):
        fit_face_model(mesh, cnn)


def test_fit_settings_come_from_parameters() -> None:
    s = fit_settings({"max_residual_mm": 3.0, "max_distance_mm": [15, 5]})
    assert s.max_residual_mm == 3.0 and s.max_distance_mm == (15, 5)
    assert fit_settings(None) == FitSettings()
    with pytest.raises(ValueError, match=r"model_fit: unknown key \[.iterationz.\]"):
        fit_settings({"iterationz": 3})


def test_regions_transferred_from_the_fit_match_the_model_topology() -> None:
    from face_health.landmarks.fitted import model_face_regions, transfer_regions
    from face_health.omics.regions import region_qc

    mesh, truth = _face(12)
    fit = fit_face_model(mesh, _cnn_table(truth, np.random.default_rng(13), 1.0))
    regions = transfer_regions(mesh, fit.vertices)
    assert len(regions.labels) == len(mesh.faces)
    assert region_qc(regions, mesh)["region_status"] == "ok"
    fitted = trimesh.Trimesh(fit.vertices, load_face_model().faces, process=False)
    labels = model_face_regions()
    for i, region in enumerate(schema.REGIONS):
        on_model = fitted.area_faces[labels == i].sum()
        on_scan = mesh.area_faces[regions.labels == i].sum()
        assert on_scan == pytest.approx(on_model, rel=0.1), region


def test_the_fit_reads_shape_and_normals_of_the_sample_off_its_patch_exactly() -> None:
    """The fit evaluates the model on the faces around its sampled vertices only: the
    normals there must be the whole surface's, to the bit."""
    from face_health.landmarks import model_fit

    model = load_face_model()
    settings = model_fit.FitSettings()
    modes, order = model_fit._basis(settings.n_identity, tuple(settings.expressions))
    sample = np.sort(order[: settings.n_points])
    faces, vertices, at = model_fit._sample_patch(settings.n_points)
    np.testing.assert_array_equal(vertices[at], sample)
    coefficients = np.random.default_rng(0).normal(0.0, 0.5, modes.shape[-1])
    shape = model.mean + modes @ coefficients
    whole = trimesh.Trimesh(shape, model.faces, process=False).vertex_normals[sample]
    patch = trimesh.Trimesh(shape[vertices], faces, process=False).vertex_normals[at]
    np.testing.assert_array_equal(patch, whole)
    assert len(faces) < 0.5 * len(model.faces)
