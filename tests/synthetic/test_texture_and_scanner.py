"""The skin atlas, the scanner's resampling, and the fixed-width OBJ writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from face_health import schema
from face_health.face_model import load_face_model
from face_health.synthetic import anatomy, io, scanner, texture
from face_health.synthetic.effects import Appearance

SIZE = 256  # a small atlas keeps these tests quick


def _look(**changes) -> Appearance:
    base = {"sex": "F", "apparent_age": 30.0, "adiposity": 0.0, "stature": 0.0,
            "smoking_damage": 0.0, "redness": 0.0, "pallor": 0.0}  # fmt: skip
    return Appearance(**{**base, **changes})


TRAITS = dict.fromkeys(texture.SKIN_TRAITS, 0.0)
HAIR = anatomy.Hair(recession_mm=0.0, bald_crown=0.0, thickness_mm=5.0, darkness=0.0, grey=0.0)


def test_the_atlas_covers_the_model_and_knows_each_texels_point() -> None:
    at = texture.atlas(SIZE)
    model = load_face_model()
    assert at.width == int(1.5 * SIZE)
    assert 0.3 < len(at.flat) / (at.height * at.width) < 0.9
    # every triangle part is painted somewhere
    assert set(np.unique(at.part)) == {0, 1, 2, 3}
    # a texel's template point is on the mean face, inside its triangle
    corners = model.mean[model.faces[at.triangle]]
    inside = (corners * at.bary[..., None]).sum(axis=1)
    np.testing.assert_allclose(inside, at.position, atol=1e-3)
    img = at.image(np.ones((len(at.flat), 1), np.uint8))
    assert img.min() == 1  # seams and gaps filled from the nearest texel


def _mean_rgb(albedo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return albedo[mask].mean(axis=0)


def test_lips_are_red_and_pallor_drains_them() -> None:
    at = texture.atlas(SIZE)
    tp = anatomy.template()
    upper, lower = tp.lip_masks(at.position.astype(float))
    lips = (upper + lower) > 0.9
    cheeks = np.linalg.norm(at.position - tp.front(-45.0, -20.0), axis=1) < 8
    rng = np.random.default_rng(0)
    normal = texture.paint_albedo(_look(), TRAITS, HAIR, rng, height=SIZE)
    pale = texture.paint_albedo(
        _look(pallor=3.0), TRAITS, HAIR, np.random.default_rng(0), height=SIZE
    )  # noqa: E501

    def redness(albedo, mask):
        rgb = _mean_rgb(albedo, mask)
        return rgb[0] - rgb[1]

    assert redness(normal, lips) > redness(normal, cheeks) + 0.15
    assert redness(pale, lips) < redness(normal, lips) - 0.05


def test_ageing_darkens_the_forehead_with_lines_and_hair_covers_the_scalp() -> None:
    at = texture.atlas(SIZE)
    tp = anatomy.template()
    p = at.position
    forehead = (np.abs(p[:, 0]) < 30) & (p[:, 1] > tp["g"][1] + 12) & (p[:, 1] < tp["tr"][1] - 15)
    young = texture.paint_albedo(
        _look(apparent_age=20.0), TRAITS, HAIR, np.random.default_rng(1), height=SIZE
    )  # noqa: E501
    old = texture.paint_albedo(
        _look(apparent_age=80.0), TRAITS, HAIR, np.random.default_rng(1), height=SIZE
    )  # noqa: E501
    assert old[forehead].std(axis=0).mean() > young[forehead].std(axis=0).mean()
    crown = (p[:, 1] > tp["tr"][1] + 20) & (np.abs(p[:, 0]) < 30)
    assert young[crown].mean() < 0.2  # dark hair
    assert young[forehead].mean() > 0.4  # skin


def test_scans_resample_the_face_into_their_own_triangulation() -> None:
    model = load_face_model()
    settings = scanner.ScannerSettings()
    a = scanner.capture(model.mean, np.zeros(model.n_vertices), settings, np.random.default_rng(0))
    b = scanner.capture(model.mean, np.zeros(model.n_vertices), settings, np.random.default_rng(1))
    for scan in (a, b):
        assert settings.n_vertices[0] * 0.85 < len(scan.vertices) < settings.n_vertices[1] * 1.05
        assert scan.faces.max() < len(scan.vertices) and scan.faces_uv.max() < len(scan.uv)
        assert scan.landmarks.shape == (len(schema.LANDMARK_NAMES), 3)
        # every landmark is on (or between the lips of) the scanned surface
        mesh = trimesh.Trimesh(scan.vertices, scan.faces, process=False)
        _, distance, _ = trimesh.proximity.closest_point(mesh, scan.landmarks)
        assert distance.max() < 1.5
        # triangles do not fold over: nearly all face the same way as their neighbours (the
        # model's own surface has 0.2 % such creases, where the lips and lids meet)
        adjacency = mesh.face_adjacency
        normals = mesh.face_normals
        agree = (normals[adjacency[:, 0]] * normals[adjacency[:, 1]]).sum(axis=1)
        assert (agree < -0.5).mean() < 0.006
    assert len(a.vertices) != len(b.vertices)  # another capture, another mesh


def test_uv_follows_the_surface_across_seams() -> None:
    model = load_face_model()
    rng = np.random.default_rng(2)
    scan = scanner.capture(model.mean, np.zeros(model.n_vertices), scanner.ScannerSettings(), rng)
    # each triangle's corners are in one UV tile (face [0, 1] or head [1, 2]), never both
    tile = scan.uv[scan.faces_uv, 0] >= 1.0
    assert (tile.all(axis=1) | (~tile).all(axis=1)).all()
    # neighbouring corners are close in UV: no triangle spans the atlas
    spread = np.ptp(scan.uv[scan.faces_uv], axis=1).max(axis=1)
    assert np.percentile(spread, 99.9) < 0.05


def test_the_obj_writer_round_trips_through_a_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vertices = rng.normal(0, 200, (50, 3))
    vertices[0] = [-999.9994, 0.0004, -0.5]
    faces = rng.integers(0, 50, (80, 3))
    faces = faces[
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    ]  # noqa: E501
    uv = rng.random((120, 2))
    faces_uv = rng.integers(0, 120, faces.shape)
    texture_img = np.zeros((4, 6, 3), np.uint8)
    paths = io.write_obj(tmp_path / "x", vertices, faces, uv, faces_uv, texture_img)
    text = paths[0].read_text().splitlines()
    v = np.array([line.split()[1:] for line in text if line.startswith("v ")], float)
    np.testing.assert_allclose(v, np.round(vertices, 3), atol=5e-4)
    f = [line.split()[1:] for line in text if line.startswith("f ")]
    parsed = np.array([[c.split("/") for c in row] for row in f], int) - 1
    np.testing.assert_array_equal(parsed[..., 0], faces)
    np.testing.assert_array_equal(parsed[..., 1], faces_uv)
    vt = np.array([line.split()[1:] for line in text if line.startswith("vt ")], float)
    np.testing.assert_allclose(vt, uv, atol=6e-6)
    with pytest.raises(ValueError, match="does not fit"):
        io.write_obj(tmp_path / "y", vertices * 1e4, faces, uv, faces_uv, texture_img)
