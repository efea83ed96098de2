"""Region radiomics on known geometry and colour, and one row per simulated subject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial import Delaunay

from face_health.omics.radiomics import (
    MORPHOLOGY_NAMES,
    REGION_FEATURE_NAMES,
    MeshSurface,
    colour_channels,
    morphology_features,
    region_centroid,
    region_features,
    region_image,
    subject_radiomics,
    vertex_curvature,
)
from face_health.omics.texture import FEATURE_NAMES
from face_health.synthetic import write_cohort


def grid_patch(size: float = 20.0, n: int = 21) -> trimesh.Trimesh:
    """A flat, triangulated square ``size`` mm wide on z = 0, centred on the origin."""
    xs = np.linspace(-size / 2, size / 2, n)
    x, y = np.meshgrid(xs, xs)
    vertices = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1))
    a = (j * n + i).ravel()
    faces = np.concatenate(
        [np.column_stack([a, a + 1, a + n + 1]), np.column_stack([a, a + n + 1, a + n])]
    )
    return trimesh.Trimesh(vertices, faces, process=False)


def polar_disc(rings: int = 30, spacing: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Points on concentric circles (r = k * spacing) and their Delaunay triangles."""
    points = [np.zeros((1, 2))]
    for k in range(1, rings + 1):
        theta = np.linspace(0, 2 * np.pi, 6 * k, endpoint=False) + 0.1 * k
        points.append(k * spacing * np.column_stack([np.cos(theta), np.sin(theta)]))
    points = np.concatenate(points)
    return points, Delaunay(points).simplices


def test_flat_square_area_boundary_and_depth() -> None:
    mesh = grid_patch(20.0, 21)
    features = morphology_features(mesh, np.arange(len(mesh.faces)))
    assert tuple(features) == MORPHOLOGY_NAMES
    assert features["area_mm2"] == pytest.approx(400.0)
    assert features["boundary_mm"] == pytest.approx(80.0)
    assert features["plane_depth_mean"] == pytest.approx(0.0, abs=1e-9)
    assert features["plane_depth_max"] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(features["centroid_offset"])  # no template centroid given


def test_inner_square_of_a_subdivided_patch() -> None:
    mesh = grid_patch(20.0, 21)  # 1 mm cells
    inside = np.flatnonzero(np.all(np.abs(mesh.triangles_center) < 5.0, axis=1))
    features = morphology_features(mesh, inside)
    assert features["area_mm2"] == pytest.approx(100.0)
    assert features["boundary_mm"] == pytest.approx(40.0)
    # Interior of a plane: zero curvature, shape index undefined.
    assert features["mean_curvature_mean"] == pytest.approx(0.0, abs=1e-9)
    assert features["gaussian_curvature_mean"] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(features["shape_index_mean"])


def test_boundary_of_a_disc_region() -> None:
    points, triangles = polar_disc(rings=30)
    mesh = trimesh.Trimesh(
        np.column_stack([points, np.zeros(len(points))]), triangles, process=False
    )
    radius = np.linalg.norm(points, axis=1)
    disc = np.flatnonzero(np.all(radius[triangles] < 20.01, axis=1))
    features = morphology_features(mesh, disc)
    assert features["boundary_mm"] == pytest.approx(2 * np.pi * 20, rel=0.01)
    assert features["area_mm2"] == pytest.approx(np.pi * 20**2, rel=0.01)


def test_icosphere_curvature() -> None:
    radius = 20.0
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    curvature = vertex_curvature(sphere, smoothing_mm=0.0)
    np.testing.assert_allclose(curvature.mean, 1 / radius, rtol=0.1)
    np.testing.assert_allclose(curvature.gaussian, 1 / radius**2, rtol=0.1)
    cap = np.flatnonzero(sphere.triangles_center[:, 2] > 0)
    features = morphology_features(sphere, cap)
    assert features["mean_curvature_mean"] == pytest.approx(1 / radius, rel=0.1)
    assert features["gaussian_curvature_mean"] == pytest.approx(1 / radius**2, rel=0.1)
    assert features["mean_curvature_std"] < 0.01 / radius
    assert features["shape_index_mean"] == pytest.approx(1.0, abs=0.01)  # convex cap


def test_curvature_is_nan_on_the_mesh_boundary() -> None:
    mesh = grid_patch(10.0, 11)
    curvature = vertex_curvature(mesh)
    on_edge = np.any(np.abs(mesh.vertices[:, :2]) > 4.99, axis=1)
    assert np.isnan(curvature.mean[on_edge]).all()
    assert np.isfinite(curvature.mean[~on_edge]).all()


def test_depth_of_a_spherical_cap() -> None:
    # A cap's area is uniform in height (Archimedes), so the area-weighted best-fit plane sits
    # at half its height h: depths spread evenly over [0, h/2], mean h/4, max h/2.
    sphere_radius, polar = 30.0, np.deg2rad(50.0)
    points, triangles = polar_disc(rings=20)
    rho = np.linalg.norm(points, axis=1) / 20 * polar
    theta = np.arctan2(points[:, 1], points[:, 0])
    vertices = sphere_radius * np.column_stack(
        [np.sin(rho) * np.cos(theta), np.sin(rho) * np.sin(theta), np.cos(rho)]
    )
    cap = trimesh.Trimesh(vertices, triangles, process=False)
    height = sphere_radius * (1 - np.cos(polar))
    features = morphology_features(cap, np.arange(len(triangles)))
    assert features["plane_depth_mean"] == pytest.approx(height / 4, rel=0.05)
    assert features["plane_depth_max"] == pytest.approx(height / 2, rel=0.05)
    assert features["boundary_mm"] == pytest.approx(
        2 * np.pi * sphere_radius * np.sin(polar), rel=0.01
    )


def test_centroid_offset_from_the_template() -> None:
    mesh = grid_patch()
    region = np.arange(len(mesh.faces))
    centroid = region_centroid(mesh, region)
    np.testing.assert_allclose(centroid, 0.0, atol=1e-9)
    features = morphology_features(mesh, region, template_centroid=np.array([3.0, -4.0, 0.0]))
    assert (features["centroid_dx"], features["centroid_dy"]) == pytest.approx((-3.0, 4.0))
    assert features["centroid_offset"] == pytest.approx(5.0)


def textured_patch() -> trimesh.Trimesh:
    """A 20 mm patch whose texture is red on the left, blue on the right, and white on top."""
    mesh = grid_patch(20.0, 11)
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)
    image[:, 32:] = (0, 0, 255)
    image[:8] = 255  # the top rows of the image: v near 1, OBJ's v = 0 being the bottom
    uv = (mesh.vertices[:, :2] + 10.0) / 20.0
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
    return mesh


def test_region_image_reproduces_the_texture() -> None:
    mesh = textured_patch()
    rgb, mask = region_image(mesh, np.arange(len(mesh.faces)), mm_per_pixel=0.5)
    assert rgb is not None and rgb.shape == (40, 40, 3) and mask.all()
    body = rgb[10:, :]  # below the white band (top 1/8 = 2.5 mm = 5 pixels)
    np.testing.assert_allclose(
        body[:, :18], np.broadcast_to([1.0, 0.0, 0.0], body[:, :18].shape), atol=1e-6
    )
    np.testing.assert_allclose(
        body[:, 22:], np.broadcast_to([0.0, 0.0, 1.0], body[:, 22:].shape), atol=1e-6
    )
    np.testing.assert_allclose(rgb[:3], 1.0, atol=1e-6)  # image top is up on the face


def test_region_image_keeps_the_mask_and_caps_the_size() -> None:
    mesh = textured_patch()
    left = np.flatnonzero(mesh.triangles_center[:, 0] < 0)
    rgb, mask = region_image(mesh, left, mm_per_pixel=0.5)
    assert mask.shape == (40, 20) and mask.all()
    rgb, mask = region_image(mesh, np.arange(len(mesh.faces)), mm_per_pixel=0.1, max_size=50)
    assert max(mask.shape) == 50


def test_region_image_with_vertex_colours_and_without_colour() -> None:
    mesh = grid_patch(20.0, 11)
    region = np.arange(len(mesh.faces))
    _, plain_mask = region_image(mesh, region)
    assert plain_mask.any()
    assert region_image(mesh, region)[0] is None
    assert all(np.isnan(region_features(mesh, region)[f"a_{name}"]) for name in FEATURE_NAMES)
    colours = np.where(mesh.vertices[:, :1] < 0, [[255, 0, 0, 255]], [[0, 255, 0, 255]])
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colours.astype(np.uint8))
    rgb, mask = region_image(mesh, region)
    assert rgb is not None
    redness = colour_channels(rgb)["a"]
    assert redness[:, :15].mean() > redness[:, 25:].mean() + 0.5  # red left, green right


def test_region_features_names_and_finite_texture() -> None:
    mesh = textured_patch()
    features = region_features(mesh, np.arange(len(mesh.faces)))
    assert tuple(features) == REGION_FEATURE_NAMES
    texture = {k: v for k, v in features.items() if k.startswith(("grey_", "a_", "b_"))}
    assert len(texture) == 3 * len(FEATURE_NAMES)
    assert np.isfinite(list(texture.values())).all()
    # Red and blue share a* ~ 80 (clipped to 1), the white band has a* = 0.
    assert features["a_first_mean"] == pytest.approx(7 / 8, abs=0.05)


@pytest.fixture(scope="module")
def simulated_face(tmp_path_factory: pytest.TempPathFactory) -> trimesh.Trimesh:
    root = tmp_path_factory.mktemp("radiomics") / "cohort"
    write_cohort(root, 1, seed=7, progress=False)
    return trimesh.load(Path(root) / "scans" / "S0001.obj", process=False)


def test_subject_radiomics_on_a_simulated_face(simulated_face: trimesh.Trimesh) -> None:
    mesh = simulated_face
    centres = mesh.triangles_center
    forward = mesh.face_normals.mean(axis=0)  # the scan looks at the face
    tip = centres[np.argmax(centres @ forward)]

    def patch_around(point: np.ndarray) -> np.ndarray:
        on_surface = centres[np.argmin(np.linalg.norm(centres - point, axis=1))]
        return np.flatnonzero(np.linalg.norm(centres - on_surface, axis=1) < 12.0)

    # Three hand-picked patches: the nose tip and two beside it.
    offsets = {"nose": 0.0, "left": [25.0, 10.0, 0.0], "right": [-25.0, 10.0, 0.0]}
    regions = {name: patch_around(tip + np.asarray(offset)) for name, offset in offsets.items()}
    template = {"nose": region_centroid(mesh, regions["nose"])}
    row = subject_radiomics(mesh, regions, template_centroids=template)
    assert list(row) == [f"{r}__{f}" for r in regions for f in REGION_FEATURE_NAMES]
    for region in regions:
        texture = [row[f"{region}__{c}_{f}"] for c in ("grey", "a", "b") for f in FEATURE_NAMES]
        finite = np.isfinite(texture)
        assert finite.all(), region
        assert row[f"{region}__area_mm2"] > 100.0
        assert np.isfinite(row[f"{region}__mean_curvature_mean"])
    assert row["nose__centroid_offset"] == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(row["left__centroid_offset"])
    # The mesh itself gives the numbers of the MeshSurface that subject_radiomics shares.
    direct = region_features(mesh, regions["left"])
    np.testing.assert_allclose(
        [direct[f] for f in REGION_FEATURE_NAMES[:9]],
        [row[f"left__{f}"] for f in REGION_FEATURE_NAMES[:9]],
    )
    assert direct["b_tamura_coarseness"] == row["left__b_tamura_coarseness"]


def test_empty_region_and_face_colours() -> None:
    mesh = grid_patch(20.0, 11)
    empty = region_features(MeshSurface(mesh), np.array([], dtype=int))
    assert tuple(empty) == REGION_FEATURE_NAMES and np.isnan(list(empty.values())).all()
    colours = np.where(mesh.triangles_center[:, :1] < 0, [[200, 40, 40, 255]], [[40, 40, 200, 255]])
    mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=colours.astype(np.uint8))
    rgb, mask = region_image(mesh, np.arange(len(mesh.faces)))
    assert mask.all()
    np.testing.assert_allclose(rgb[:, 0], np.broadcast_to([200 / 255, 40 / 255, 40 / 255], (40, 3)))
