"""Simulated face shapes: identity prior, sex, and the health effects where effects.py says."""

from __future__ import annotations

import numpy as np
import pytest

from face_health import schema
from face_health.face_model import load_face_model
from face_health.synthetic import anatomy, effects
from face_health.synthetic.effects import Appearance

NO_HAIR = anatomy.Hair(recession_mm=0.0, bald_crown=0.0, thickness_mm=0.0, darkness=0.0, grey=0.0)


def _look(**changes) -> Appearance:
    base = {"sex": "M", "apparent_age": 20.0, "adiposity": 0.0, "stature": 0.0,
            "smoking_damage": 0.0, "redness": 0.0, "pallor": 0.0}  # fmt: skip
    return Appearance(**{**base, **changes})


@pytest.fixture(scope="module")
def model_and_fields():
    return load_face_model(), anatomy.shape_fields()


def _face(model_and_fields, look, identity=None, expression=None):
    model, fields = model_and_fields
    w = np.zeros(model.n_identity) if identity is None else identity
    return anatomy.face_vertices(model, fields, w, expression or {}, look, NO_HAIR)


def _landmarks(model_and_fields, vertices) -> dict[str, np.ndarray]:
    model, _ = model_and_fields
    return dict(zip(schema.LANDMARK_NAMES, model.landmarks(vertices), strict=True))


def test_identity_prior_keeps_n01_with_the_sexes_apart(model_and_fields) -> None:
    _, fields = model_and_fields
    rng = np.random.default_rng(0)
    men = np.array([anatomy.draw_identity("M", rng, fields) for _ in range(2000)])
    women = np.array([anatomy.draw_identity("F", rng, fields) for _ in range(2000)])
    u = fields.sex_direction
    half = effects.SEX_SEPARATION / 2
    assert abs((men @ u).mean() - half) < 0.05 and abs((women @ u).mean() + half) < 0.05
    population = np.concatenate([men, women])
    assert abs((population @ u).std() - 1.0) < 0.05  # the model's prior holds for everyone
    other = np.linalg.qr(np.column_stack([u, rng.standard_normal((len(u), 3))]))[0][:, 1:]
    np.testing.assert_allclose((population @ other).std(axis=0), 1.0, atol=0.05)


def test_men_have_the_larger_brow_ridge_jaw_and_face(model_and_fields) -> None:
    model, fields = model_and_fields
    half = effects.SEX_SEPARATION / 2
    man = _landmarks(
        model_and_fields, _face(model_and_fields, _look(sex="M"), half * fields.sex_direction)
    )  # noqa: E501
    woman = _landmarks(
        model_and_fields, _face(model_and_fields, _look(sex="F"), -half * fields.sex_direction)
    )  # noqa: E501

    def dist(lm, a, b):
        return np.linalg.norm(lm[a] - lm[b])

    assert dist(man, "n", "gn") > dist(woman, "n", "gn") * 1.04  # longer face
    assert dist(man, "go_r", "go_l") > dist(woman, "go_r", "go_l") * 1.04  # wider jaw
    # the glabella stands further in front of the eyes
    assert man["g"][2] - man["en_r"][2] > woman["g"][2] - woman["en_r"][2]


def test_ageing_lowers_the_jowls_and_thins_the_lips(model_and_fields) -> None:
    young = _face(model_and_fields, _look(apparent_age=20.0))
    old = _face(model_and_fields, _look(apparent_age=80.0))
    lm_y, lm_o = _landmarks(model_and_fields, young), _landmarks(model_and_fields, old)
    model, _ = model_and_fields
    # soft tissue of the lower face (beside the mouth) descends AGE_SAG_MM per 60 years
    cheeks = (
        (np.abs(model.mean[:, 0]) > 35)
        & (model.mean[:, 1] < lm_y["sn"][1])
        & (model.mean[:, 2] > 50)
    )  # noqa: E501
    drop = (young - old)[cheeks, 1]
    assert drop.max() == pytest.approx(effects.AGE_SAG_MM, abs=0.5)
    # vermilion height -35 %
    height_y = lm_y["ls"][1] - lm_y["li"][1]
    height_o = lm_o["ls"][1] - lm_o["li"][1]
    assert height_o / height_y == pytest.approx(1 - effects.AGE_VERMILION_LOSS, abs=0.08)
    # the nose tip droops
    assert lm_y["prn"][1] - lm_o["prn"][1] == pytest.approx(effects.AGE_NOSE_TIP_MM, abs=0.3)


def test_adiposity_widens_the_lower_face(model_and_fields) -> None:
    lean = _face(model_and_fields, _look(adiposity=0.0))
    heavy = _face(model_and_fields, _look(adiposity=1.0))
    lm_l, lm_h = _landmarks(model_and_fields, lean), _landmarks(model_and_fields, heavy)
    model, _ = model_and_fields
    # the face's half width at the mouth grows by FAT_CHEEK_WIDTH_MM per unit (the widening,
    # plus a little of the cheeks' fullness)
    level = (np.abs(model.mean[:, 1] - lm_l["ch_r"][1]) < 3) & (model.mean[:, 2] > 20)
    widen = np.abs(heavy[level, 0]).max() - np.abs(lean[level, 0]).max()
    assert widen == pytest.approx(effects.FAT_CHEEK_WIDTH_MM, abs=0.8)
    # the eye fissures stay (the effect is on the lower face), the jaw widens
    assert (
        abs(
            np.linalg.norm(lm_h["ex_r"] - lm_h["ex_l"])
            - np.linalg.norm(lm_l["ex_r"] - lm_l["ex_l"])
        )
        < 0.5
    )  # noqa: E501
    assert (
        np.linalg.norm(lm_h["go_r"] - lm_h["go_l"])
        > np.linalg.norm(lm_l["go_r"] - lm_l["go_l"]) + 1.5
    )  # noqa: E501


def test_stature_and_sex_scale_the_whole_face(model_and_fields) -> None:
    base = _landmarks(model_and_fields, _face(model_and_fields, _look()))
    tall = _landmarks(model_and_fields, _face(model_and_fields, _look(stature=2.0)))
    ratio = np.linalg.norm(tall["n"] - tall["gn"]) / np.linalg.norm(base["n"] - base["gn"])
    assert ratio == pytest.approx(1 + 2 * effects.STATURE_SCALE, abs=1e-6)


def test_expressions_stay_mild(model_and_fields) -> None:
    rng = np.random.default_rng(3)
    draws = [anatomy.draw_expression(rng) for _ in range(500)]
    blink = np.array([d["eyeBlink_L"] for d in draws])
    jaw = np.array([d["jawOpen"] for d in draws])
    assert blink.max() < 0.55 and np.median(blink) < 0.12
    assert jaw.max() <= 0.12
    # a mild expression keeps the landmarks close to the neutral face's
    neutral = _landmarks(model_and_fields, _face(model_and_fields, _look()))
    strongest = max(draws, key=lambda d: d["jawOpen"] + d["mouthSmile_L"])
    expr = _landmarks(model_and_fields, _face(model_and_fields, _look(), expression=strongest))
    moved = max(np.linalg.norm(expr[k] - neutral[k]) for k in neutral)
    assert moved < 5.0


def test_hair_grows_above_the_hairline_not_on_the_face_or_ears() -> None:
    tp = anatomy.template()
    model = load_face_model()
    full = tp.hair_mask(model.mean, recession_mm=0.0, bald_crown=0.0)
    lm = tp.landmarks
    near = np.linalg.norm(model.mean - lm["tr"], axis=1)
    above = (model.mean[:, 1] > lm["tr"][1] + 10) & (np.abs(model.mean[:, 0]) < 30)
    assert full[above].mean() > 0.95
    face = (model.mean[:, 1] < lm["g"][1]) & (model.mean[:, 2] > 60)
    assert full[face].max() < 0.05
    ears = np.linalg.norm(model.mean - lm["t_r"] - [-3, 5, -12], axis=1) < 8
    assert full[ears].mean() < 0.2
    receded = tp.hair_mask(model.mean, recession_mm=20.0, bald_crown=0.0)
    assert receded[near < 8].mean() < full[near < 8].mean()
    bald = tp.hair_mask(model.mean, recession_mm=0.0, bald_crown=1.0)
    crown = model.mean[:, 1] > lm["t_r"][1] + 80
    assert bald[crown].max() < 0.05
