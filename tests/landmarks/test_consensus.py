"""Tests of multi-view ray consensus (``face_health.landmarks.consensus``)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from face_health.landmarks.consensus import (
    COLUMNS,
    consensus_landmarks,
    robust_triangulate,
    snap_to_surface,
    triangulate,
)
from face_health.views.cameras import orbit_camera

# Yaw / pitch of 10 orbit views, up to 50 degrees apart, as the renderer places them.
VIEWS = [(0, 0), (-45, 0), (-25, 0), (25, 0), (45, 0), (0, -30), (0, 30), (-30, 20), (30, -20),
         (15, 25)]  # fmt: skip


def view_rays(point: np.ndarray, lateral_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays (origins, directions), each (V, 3), of orthographic orbit views whose peak is off
    ``point`` by ``lateral_mm`` (V, 2) in the image plane (x right, y up)."""
    origins, directions = [], []
    for (yaw, pitch), offset in zip(VIEWS, lateral_mm, strict=True):
        camera = orbit_camera(np.eye(3), np.zeros(3), yaw, pitch)
        pixel = camera.project(point[None])[0][0] + np.array([1, -1]) * offset / camera.mm_per_pixel
        origin, direction = camera.rays(pixel[None])
        origins.append(origin[0])
        directions.append(direction[0])
    return np.array(origins), np.array(directions)


def test_triangulate_recovers_point_exactly_without_noise() -> None:
    rng = np.random.default_rng(1)
    point = np.array([12.0, -30.0, 95.0])
    directions = rng.normal(size=(6, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    origins = point - rng.uniform(-700, 700, size=(6, 1)) * directions
    np.testing.assert_allclose(triangulate(origins, directions), point, atol=1e-9)
    weights = rng.uniform(0.1, 1.0, size=6)
    np.testing.assert_allclose(triangulate(origins, directions, weights), point, atol=1e-9)


def test_triangulate_rejects_single_and_parallel_rays() -> None:
    origins, directions = np.array([[0.0, 0, 600], [5, 0, 600]]), np.array([[0.0, 0, -1]] * 2)
    with pytest.raises(ValueError, match="parallel"):
        triangulate(origins, directions)
    with pytest.raises(ValueError, match="at least 2 rays"):
        triangulate(origins[:1], directions[:1])
    with pytest.raises(ValueError, match="at least 2 rays"):
        triangulate(origins, np.array([[0.0, 0, -1], [1, 0, 0]]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="degrees apart"):
        robust_triangulate(origins, directions)


def test_robust_triangulate_is_exact_without_noise() -> None:
    point = np.array([3.0, 20.0, 80.0])
    origins, directions = view_rays(point, np.zeros((len(VIEWS), 2)))
    result = robust_triangulate(origins, directions)
    np.testing.assert_allclose(result.point, point, atol=1e-9)
    assert result.inliers.all()
    assert result.residuals.max() < 1e-9
    assert result.confidence == pytest.approx(1.0)


def noisy_case(outliers: list[int], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Rays to a known point: 0.3 mm noise, gross errors on ``outliers``, low weight on 8, 9."""
    rng = np.random.default_rng(seed)
    point = np.array([-31.0, 12.0, 70.0])
    lateral = rng.normal(0.0, 0.3, size=(len(VIEWS), 2))
    angles = rng.uniform(0, 2 * np.pi, size=len(outliers))
    lateral[outliers] = (
        rng.uniform(15, 40, size=(len(outliers), 1)) * np.c_[np.cos(angles), np.sin(angles)]
    )
    weights = rng.uniform(0.6, 1.0, size=len(VIEWS))
    lateral[[8, 9]] += [[2.5, 0.0], [0.0, -2.5]]  # inside the inlier band, but hardly trusted
    weights[[8, 9]] = 0.1
    origins, directions = view_rays(point, lateral)
    return point, origins, directions, weights


def test_robust_triangulate_rejects_outliers() -> None:
    point, origins, directions, weights = noisy_case(outliers=[1, 4, 6])
    result = robust_triangulate(origins, directions, weights)
    assert np.linalg.norm(result.point - point) < 0.5
    assert not result.inliers[[1, 4, 6]].any()
    assert result.inliers[[0, 2, 3, 5, 7]].all()
    assert result.residuals[[1, 4, 6]].min() > 10.0
    assert 0.5 < result.confidence < 1.0

    # Half the rays wrong: still found from the three good ones left, but trusted less.
    point, origins, directions, weights = noisy_case(outliers=[1, 2, 4, 5, 6])
    worse = robust_triangulate(origins, directions, weights)
    assert np.linalg.norm(worse.point - point) < 1.0
    assert not worse.inliers[[1, 2, 4, 5, 6]].any()
    assert worse.confidence < result.confidence


def test_robust_triangulate_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(40, 3))  # 780 pairs: RANSAC samples them
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    origins = rng.normal(scale=2.0, size=(40, 3)) - 600 * directions
    weights = rng.uniform(0.2, 1.0, size=40)
    first = robust_triangulate(origins, directions, weights, seed=7)
    again = robust_triangulate(origins, directions, weights, seed=7)
    np.testing.assert_array_equal(first.point, again.point)
    np.testing.assert_array_equal(first.inliers, again.inliers)
    assert first.confidence == again.confidence


def test_snap_to_surface_on_icosphere() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=50.0)
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(40, 3))
    unit /= np.linalg.norm(unit, axis=1)[:, None]
    closest, distances = snap_to_surface(sphere, 60.0 * unit)
    np.testing.assert_allclose(distances, 10.0, atol=0.05)
    radii = np.linalg.norm(closest, axis=1)
    assert (radii <= 50.0 + 1e-9).all() and (radii > 49.95).all()  # on the facets


def test_snap_to_surface_matches_trimesh_with_long_faces() -> None:
    # A fine sphere plus a few long triangles (like hole fills) must not hide any face.
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    fill = trimesh.Trimesh([[-80, -80, 60], [80, -80, 60], [0, 90, 60], [0, 0, 140]],
                           [[0, 1, 2], [0, 1, 3]])  # fmt: skip
    mesh = trimesh.util.concatenate([sphere, fill])
    points = np.random.default_rng(2).uniform(-90, 120, size=(60, 3))
    closest, distances = snap_to_surface(mesh, points)
    expected, expected_distances, _ = trimesh.proximity.closest_point(mesh, points)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-9)
    np.testing.assert_allclose(closest, expected, atol=1e-6)


def test_consensus_landmarks_reports_each_landmark() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=50.0)
    rng = np.random.default_rng(4)
    truth = np.array([[0.0, 0, 50], [20, 10, 44.7214], [-20, 15, 43.3013], [0, -25, 43.3013],
                      [10, -10, 48]])  # fmt: skip
    truth *= 50.0 / np.linalg.norm(truth, axis=1)[:, None]
    lateral = rng.normal(0.0, 0.3, size=(len(truth), len(VIEWS), 2))
    lateral[4, [0, 1, 3]] = [[20.0, 0.0], [-5.0, 25.0], [0.0, -30.0]]  # three views, all wrong
    rays = [view_rays(p, offsets) for p, offsets in zip(truth, lateral, strict=True)]
    origins = np.stack([r[0] for r in rays], axis=1)
    directions = np.stack([r[1] for r in rays], axis=1)
    weights = rng.uniform(0.5, 1.0, size=(len(VIEWS), len(truth)))
    weights[1:, 2] = 0.01  # landmark 2: one usable view
    weights[:, 3] = 0.0  # landmark 3: two views 20 degrees apart, stricter angle asked below
    weights[[0, 3], 3] = 0.9
    weights[[2, 4, 5, 6, 7, 8, 9], 4] = 0.0

    table = consensus_landmarks(
        origins, directions, weights, mesh=sphere, min_angle_deg=30.0, min_inliers=3
    )
    assert list(table.columns) == COLUMNS
    assert table["index"].tolist() == [0, 1, 2, 3, 4]
    assert table["status"].tolist()[:2] == ["ok", "ok"]
    assert table.loc[2, "status"] == "too few usable views"
    assert "too close" in table.loc[3, "status"]
    assert table.loc[4, "status"] == "views disagree"
    assert table.loc[2:, ["x", "y", "z"]].isna().all().all()
    assert (table.loc[2:, "confidence"] == 0).all()
    assert table["n_rays"].tolist() == [10, 10, 1, 2, 3]
    placed = table.loc[:1, ["x", "y", "z"]].to_numpy()
    assert np.linalg.norm(placed - truth[:2], axis=1).max() < 0.5
    np.testing.assert_allclose(np.linalg.norm(placed, axis=1), 50.0, atol=0.02)
    assert (table.loc[:1, "snap_mm"] < 0.5).all() and (table.loc[:1, "confidence"] > 0.8).all()

    unsnapped = consensus_landmarks(origins, directions, weights)
    assert unsnapped["snap_mm"].isna().all()
    assert unsnapped["residual_mm"].iloc[:2].between(0.0, 1.0).all()


def test_snap_along_moves_points_along_their_direction_to_the_surface() -> None:
    """Along the view, not to the closest point: a point above a slope lands straight below
    (where the views saw it); with no crossing within reach, the closest point is used."""
    from face_health.landmarks.consensus import snap_along, snap_to_surface

    slope = trimesh.Trimesh(  # the plane z = x over [-50, 50]^2
        vertices=[[-50, -50, -50], [50, -50, 50], [50, 50, 50], [-50, 50, -50]],
        faces=[[0, 1, 2], [0, 2, 3]],
    )
    point = np.array([[0.0, 0.0, 4.0]])
    snapped, moved = snap_along(slope, point, np.array([0.0, 0.0, -1.0]), max_mm=10.0)
    np.testing.assert_allclose(snapped, [[0.0, 0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(moved, [4.0])
    closest, _ = snap_to_surface(slope, point)
    np.testing.assert_allclose(closest, [[2.0, 0.0, 2.0]], atol=1e-9)  # sideways
    # parallel to the slope: no crossing, so the closest point
    parallel, _ = snap_along(slope, point, np.array([1.0, 0.0, 1.0]), max_mm=10.0)
    np.testing.assert_allclose(parallel, closest, atol=1e-9)
