"""The shape family (omics/shape.py): coefficients recovered from posed model faces."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from face_health.face_model import load_face_model
from face_health.omics.shape import ShapeFeatures, procrustes


def _faces(n: int, seed: int = 0, displace: float = 0.0):
    model, rng = load_face_model(), np.random.default_rng(seed)
    faces, weights = {}, {}
    for i in range(n):
        w = rng.normal(size=model.n_identity)
        v = model.shape(w, {"jawOpen": 0.3 * rng.random()})
        if displace:  # a local bump beyond the model's span (the chin), as ageing adds
            chin = model.landmarks(v)[-1]
            v = v + displace * rng.random() * np.exp(-((v - chin) ** 2).sum(1) / 200)[:, None]
        rotation = Rotation.from_rotvec(rng.normal(size=3) * 0.05).as_matrix()
        faces[f"s{i}"] = rng.uniform(0.95, 1.05) * v @ rotation.T + rng.normal(size=3) * 5
        weights[f"s{i}"] = w
    return faces, weights


def test_procrustes_undoes_a_similarity():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(50, 3))
    rotation = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    moved, scale = procrustes(1.3 * target @ rotation.T + [4.0, 0.0, -2.0], target)
    assert np.allclose(moved, target, atol=1e-9)
    assert scale == pytest.approx(1 / 1.3)


def test_identity_coefficients_are_recovered_whatever_the_pose():
    faces, weights = _faces(12)
    model = ShapeFeatures(n_displacement=3).fit(faces)
    raw, displacement = model._raw(faces)
    truth = np.array([weights[s] for s in faces])
    assert np.abs(raw[:, :100] - truth).max() < 0.05  # in SD of each mode
    assert np.abs(displacement).max() < 0.05  # mm: the model explains model faces
    jaw = model.columns_.index("shp_ex_jawOpen")
    assert raw[:, jaw].min() >= -0.01


def test_displacement_beyond_the_model_is_a_feature():
    faces, _ = _faces(15, seed=2, displace=3.0)
    model = ShapeFeatures(n_displacement=4).fit(faces)
    table = model.transform(faces)
    assert list(table.columns[:2]) == ["subject_id", "shp_id_000"]
    assert table.shape == (15, 1 + 100 + 11 + 1 + 4)
    assert model.explained_variance_ratio_[0] > 0.5  # one bump: one dominant component
    features = table.drop(columns="subject_id").to_numpy()
    assert np.allclose(features.mean(0), 0, atol=1e-9)  # standardised on the fitted faces


def test_standardised_on_training_faces_only_and_pickles_small():
    faces, _ = _faces(10, seed=3)
    train = {k: v for k, v in list(faces.items())[:7]}
    model = ShapeFeatures(n_displacement=2).fit(train)
    assert model.fitted_on_ == list(train)
    restored = pickle.loads(pickle.dumps(model))
    assert len(pickle.dumps(model)) < 3e6
    assert restored.transform(faces).equals(model.transform(faces))


def test_empty_family_and_bad_input():
    empty = ShapeFeatures().fit({})
    assert empty.columns_ == []
    assert list(empty.transform({"a": np.zeros((5, 3))}).columns) == ["subject_id"]
    with pytest.raises(ValueError, match="at least 3"):
        ShapeFeatures().fit(dict(list(_faces(2)[0].items())))
    model = ShapeFeatures(n_displacement=2).fit(_faces(4)[0])
    with pytest.raises(ValueError, match=r"\(n, 3\) vertices"):
        model.transform({"a": np.zeros((10, 3))})
    with pytest.raises(RuntimeError, match="not fitted"):
        ShapeFeatures().transform({"a": np.zeros((10, 3))})
