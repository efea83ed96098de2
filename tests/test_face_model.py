"""The shipped ICT-FaceKit model: provenance, licence, topology, landmark definitions."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest
import trimesh
from scipy.sparse import csgraph

from face_health import schema
from face_health.face_model import PARTS, load_face_model, model_manifest


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def test_the_file_is_the_one_the_build_script_recorded_with_its_licence() -> None:
    folder = resources.files("face_health") / "resources"
    manifest = model_manifest()
    data = (folder / "ict_face_model.npz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert len(data) < 8_000_000  # a few MB
    licence = (folder / "ICT-FaceKit-LICENSE.txt").read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence
    assert "da5f95a" in manifest["source"]
    assert max(manifest["max_quantisation_error_mm"].values()) <= 0.01


def test_shape_is_mean_plus_weighted_modes(model) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(model.n_identity)
    v = model.shape(w, {"jawOpen": 0.5})
    expected = model.mean + np.tensordot(w, model.identity, axes=1)
    expected += 0.5 * model.expression[model.expression_index("jawOpen")]
    np.testing.assert_allclose(v, expected, atol=1e-6)
    with pytest.raises(KeyError, match="no expression"):
        model.shape(expression={"frown": 1.0})


def test_modes_have_the_upstream_magnitudes(model) -> None:
    face = model.vertex_part == 0
    rms = np.sqrt((model.identity[:, face] ** 2).sum(axis=2).mean(axis=1))
    # one standard deviation of mode 0 moves the face by ~3.9 mm RMS, mode 99 by ~0.09 mm
    assert 3.0 < rms[0] < 5.0 and rms[99] < 0.2
    assert np.all(np.diff(rms[:20]) < 0.5)  # roughly decreasing variance


def test_the_surface_is_one_sheet_in_millimetres(model) -> None:
    mesh = model.mesh()
    n_pieces, _ = csgraph.connected_components(mesh.edges_sparse, directed=False)
    assert n_pieces == 1  # eye and mouth caps join the face into one surface, like a scan
    assert 150 < mesh.extents[0] < 300  # a head, in mm
    assert set(np.unique(model.vertex_part)) == set(range(len(PARTS)))
    # the caps face outwards like the skin around them
    caps = model.face_part >= 2
    assert (mesh.face_normals[caps, 2] > 0).mean() > 0.95


def test_landmarks_are_fixed_points_of_the_topology(model) -> None:
    rng = np.random.default_rng(1)
    v = model.shape(rng.standard_normal(model.n_identity))
    points = model.landmarks(v)
    assert points.shape == (len(schema.LANDMARK_NAMES), 3)
    np.testing.assert_allclose(model.landmark_weights.sum(axis=1), 1.0, atol=1e-6)
    # a landmark follows any deformation exactly: moved with the vertices that define it
    shift = rng.normal(0, 5, v.shape)
    moved = model.landmarks(v + shift)
    expected = points + (shift[model.landmark_vertices] * model.landmark_weights[..., None]).sum(1)
    np.testing.assert_allclose(moved, expected, atol=1e-9)
    # on (or, for stomion, between) the lips of the surface
    _, distance, _ = trimesh.proximity.closest_point(model.mesh(v), points)
    assert distance.max() < 1.0


def test_landmark_definitions_agree_with_multipie_where_they_overlap(model) -> None:
    lm = dict(zip(schema.LANDMARK_NAMES, model.landmarks(model.mean), strict=True))
    mp = model.mean[model.multipie68]
    # Multi-PIE 68 (0-based): 36/45 outer and 39/42 inner eye corners, 30 nose tip,
    # 48/54 mouth corners, 33 subnasale, 8 chin
    same = {"ex_r": 36, "en_r": 39, "en_l": 42, "ex_l": 45, "ch_r": 48, "ch_l": 54, "gn": 8}
    for name, k in same.items():
        assert np.linalg.norm(lm[name] - mp[k]) < 0.5, name
    assert np.linalg.norm(lm["prn"] - mp[30]) < 4.0  # the most anterior point vs MP's tip
    assert np.linalg.norm(lm["sn"] - mp[33]) < 2.0


def test_landmarks_are_symmetric_and_anatomically_ordered(model) -> None:
    lm = dict(zip(schema.LANDMARK_NAMES, model.landmarks(model.mean), strict=True))
    for name in schema.LANDMARK_NAMES:
        if name.endswith("_r"):
            right, left = lm[name], lm[name[:-2] + "_l"]
            np.testing.assert_allclose(right * [-1, 1, 1], left, atol=0.2, err_msg=name)
            assert right[0] < 0  # the subject's right is at -x
    y = {k: v[1] for k, v in lm.items()}
    assert y["tr"] > y["g"] > y["n"] > y["prn"] > y["sn"] > y["ls"] > y["sto"] > y["li"]
    assert y["li"] > y["sl"] > y["pg"] > y["gn"]
    assert lm["prn"][2] == max(v[2] for v in lm.values())  # the nose tip is foremost
    assert y["ps_r"] > y["en_r"] > y["pi_r"] > y["or_r"]
