"""Alignment: the similarity fit, Procrustes template, frame and crop on known geometry."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from face_health import schema
from face_health.alignment.similarity import (
    Template,
    align_to_template,
    build_template,
    crop_to_box,
    face_box,
    generalised_procrustes,
    landmark_frame,
    similarity_transform,
)


def test_similarity_fit_recovers_rotation_scale_and_translation() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(0, 40, (12, 3))
    rotation = Rotation.from_euler("xyz", [25, -40, 10], degrees=True).as_matrix()
    target = 1.7 * source @ rotation.T + np.array([10.0, -250.0, 33.0])
    s, r, t = similarity_transform(source, target)
    assert s == pytest.approx(1.7)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, [10.0, -250.0, 33.0], atol=1e-8)


def test_similarity_fit_never_returns_a_reflection() -> None:
    rng = np.random.default_rng(1)
    source = rng.normal(0, 10, (8, 3))
    mirrored = source * np.array([-1.0, 1.0, 1.0])
    _, r, _ = similarity_transform(source, mirrored)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_similarity_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        similarity_transform(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="equal shape"):
        similarity_transform(np.zeros((4, 3)), np.zeros((5, 3)))


def test_rigid_fit_keeps_scale_one() -> None:
    rng = np.random.default_rng(2)
    source = rng.normal(0, 10, (6, 3))
    s, _, _ = similarity_transform(source, 2 * source, allow_scale=False)
    assert s == 1.0


def _face(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A face-like landmark set: eyes above the mouth, nose tip in front."""
    base = {
        "en_r": [-17, 0, -25], "en_l": [17, 0, -25], "prn": [0, -45, 0],
        "ch_r": [-26, -70, -25], "ch_l": [26, -70, -25], "n": [0, 0, -20],
    }  # fmt: skip
    return {k: np.array(v, float) + rng.normal(0, 1.0, 3) for k, v in base.items()}


def test_landmark_frame_makes_the_face_look_along_z() -> None:
    rng = np.random.default_rng(3)
    face = _face(rng)
    pose = Rotation.from_euler("yxz", [30, -20, 15], degrees=True).as_matrix()
    moved = {k: pose @ v + np.array([5.0, 400.0, -30.0]) for k, v in face.items()}
    frame = landmark_frame(moved)
    f = {k: frame[:3, :3] @ v + frame[:3, 3] for k, v in moved.items()}
    np.testing.assert_allclose(f["prn"], 0.0, atol=1e-9)
    assert f["en_l"][0] > f["en_r"][0]  # subject's left at +x
    assert f["en_r"][1] > f["ch_r"][1]  # eyes above the mouth
    assert f["prn"][2] > f["en_r"][2]  # nose in front


def test_procrustes_mean_of_moved_copies_is_the_shape() -> None:
    rng = np.random.default_rng(4)
    shape = rng.normal(0, 30, (10, 3))
    copies = []
    for _ in range(5):
        rot = Rotation.random(random_state=rng).as_matrix()
        copies.append(shape @ rot.T + rng.normal(0, 100, 3))
    mean, aligned = generalised_procrustes(np.stack(copies))
    s, r, t = similarity_transform(mean, shape)
    np.testing.assert_allclose(s * mean @ r.T + t, shape, atol=1e-6)
    assert s == pytest.approx(1.0, rel=1e-6)  # the mean keeps the faces' size in mm
    assert np.abs(aligned - aligned.mean(0)).max() < 1e-6


def test_template_alignment_residual_and_crop() -> None:
    rng = np.random.default_rng(5)
    names = list(schema.LANDMARK_NAMES)
    base = rng.normal(0, 40, (len(names), 3))
    # Give the points that bound the face box their anatomical places.
    for name, point in {
        "tr": (0, 80, -10), "gn": (0, -110, -15), "zy_r": (-70, 0, -60), "zy_l": (70, 0, -60),
        "t_r": (-75, -10, -100), "t_l": (75, -10, -100), "prn": (0, -40, 20),
        "en_r": (-17, 0, -5), "en_l": (17, 0, -5), "ch_r": (-25, -70, -5), "ch_l": (25, -70, -5),
    }.items():  # fmt: skip
        base[names.index(name)] = point
    sets = {f"S{i}": dict(zip(names, base + rng.normal(0, 0.5, base.shape), strict=True))
            for i in range(6)}  # fmt: skip
    template = build_template(sets, names)
    assert isinstance(template, Template)
    np.testing.assert_allclose(template.point("prn"), 0.0, atol=1e-9)
    rot = Rotation.from_euler("y", 25, degrees=True).as_matrix()
    face = {n: 1000.0 * 0.001 * (rot @ p) + 7.0 for n, p in sets["S0"].items()}
    fit = align_to_template(face, template)
    assert fit["residual_mm"] < 1.5
    assert fit["n_landmarks"] == len(names)

    lower, upper = face_box(template, margin_mm=5.0)
    box = trimesh.creation.box(extents=[400, 400, 400])
    box = box.subdivide().subdivide().subdivide()
    cropped = crop_to_box(box, lower, upper)
    centres = cropped.triangles_center
    assert ((centres >= lower) & (centres <= upper)).all()
    assert len(cropped.faces) < len(box.faces)
