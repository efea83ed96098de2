"""Where the parts of a simulated face are: identity, feature layout and landmark positions.

A simulated face is a height field over a vertical cylinder: a surface point is
``(r sin(theta), y, r cos(theta))`` in millimetres, the face looking along +z, +y up, the
subject's right at -x. Features are placed in *surface coordinates* ``(u, v)``: ``u`` is arc
length at the reference radius ``R_ARC`` (``u = theta * R_ARC``, negative on the subject's
right) and ``v = y``, with the nasion at ``v = 0``.

Mean positions follow adult anthropometric norms (Farkas 1994, *Anthropometry of the Head and
Face*; Chinese norms from Farkas et al. 2005, J Craniofac Surg 16:615): face height n-gn
~121 mm (M) / 112 (F), biocular width ex-ex ~91 / 87, intercanthal en-en ~33 / 32, nose
width al-al ~39 / 36, mouth width ch-ch ~52 / 48, nasal height n-sn ~54 / 50, forehead
height tr-n ~62 / 58, bizygomatic width ~140 / 132 (the cylinder's half widths below).
Identity coefficients are standard normal and independent of health.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from face_health.synthetic.effects import Appearance

R_ARC = 100.0  # mm; u = theta * R_ARC (about x at the front of the face)

IDENTITY_TRAITS = (
    "face_width",
    "face_height",
    "forehead_height",
    "nose_length",
    "nose_width",
    "nose_projection",
    "eye_spacing",
    "eye_size",
    "mouth_width",
    "lip_fullness",
    "chin_projection",
    "brow_projection",
    "cheekbone",
    "jaw_width",
    "ear_size",
    "skin_tone",
    "skin_redness",
    "hair_darkness",
    "brow_thickness",
    "asymmetry",
)


@dataclass(frozen=True)
class Identity:
    """Who the subject is, apart from health: standard-normal trait coefficients."""

    sex: str
    traits: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> float:
        return self.traits[name]


def draw_identity(sex: str, rng: np.random.Generator) -> Identity:
    """Draw identity traits, independent of the health state."""
    return Identity(sex=sex, traits={t: float(rng.standard_normal()) for t in IDENTITY_TRAITS})


@dataclass(frozen=True)
class EyeShape:
    """One palpebral fissure: an almond between the inner (en) and outer (ex) corner."""

    en: tuple[float, float]
    ex: tuple[float, float]
    upper_height: float  # mm above the en-ex chord at the middle
    lower_height: float  # mm below the chord

    def lids(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Upper and lower lid margins ``v`` at ``u`` and the chord parameter ``t`` in [0, 1]."""
        t = (u - self.en[0]) / (self.ex[0] - self.en[0])
        tc = np.clip(t, 0.0, 1.0)
        chord = self.en[1] + (self.ex[1] - self.en[1]) * tc
        # The upper lid peaks a little medial of the middle, as in real eyes.
        upper = chord + self.upper_height * np.sin(np.pi * tc**0.85) ** 0.8
        lower = chord - self.lower_height * np.sin(np.pi * tc**1.1)
        return upper, lower, t

    def top(self) -> tuple[float, float]:
        u = self._extremum(upper=True)
        return u, float(self.lids(np.array([u]))[0][0])

    def bottom(self) -> tuple[float, float]:
        u = self._extremum(upper=False)
        return u, float(self.lids(np.array([u]))[1][0])

    def _extremum(self, *, upper: bool) -> float:
        us = np.linspace(self.en[0], self.ex[0], 201)
        up, lo, _ = self.lids(us)
        return float(us[np.argmax(up)] if upper else us[np.argmin(lo)])


@dataclass(frozen=True)
class FaceLayout:
    """Feature positions in surface coordinates ``(u, v)`` (mm) and shape magnitudes (mm)."""

    eye_r: EyeShape
    eye_l: EyeShape
    v_sto: float
    mouth_half_width: float
    upper_vermilion: float
    lower_vermilion: float
    lip_projection: float
    v_prn: float
    v_sn: float
    alar_half_width: float
    nose_projection: float
    v_brow: float
    v_hairline: float
    v_sl: float
    v_pg: float
    jaw_drop: float  # how far below the neutral jawline the soft tissue hangs (age, fat)
    jaw_blur: float  # width of the jaw-to-neck transition
    scale: float  # overall size factor applied to the finished face
    half_width_gain: float  # mm added to the lower face half width
    lower_face_scale: float
    upper_face_scale: float


def face_layout(identity: Identity, look: Appearance) -> FaceLayout:
    """Place the features of one face from its identity and its face-visible health state."""
    male = identity.sex == "M"
    i = identity
    age = float(np.clip(look.age_factor, -0.1, 1.25))
    fat = float(np.clip(look.adiposity, -2.5, 3.5))

    lower = 1.0 + 0.035 * i["face_height"]  # sex differences are in the distances below
    upper = (1.0 if male else 0.95) * (1.0 + 0.05 * i["forehead_height"])

    en_u = (19.5 if male else 19.0) + 1.5 * i["eye_spacing"]
    fissure = (36.0 if male else 35.0) + 1.8 * i["eye_size"]
    ex_u = en_u + fissure
    ex_v = 1.0 + 0.8 * i["asymmetry"]
    # Fat narrows the opening a little; lids hood with age (the upper margin drops).
    upper_h = 4.6 + 0.6 * i["eye_size"] - 0.4 * fat - 0.9 * age
    lower_h = 4.4 + 0.5 * i["eye_size"] - 0.2 * fat
    eye_r = EyeShape(en=(-en_u, -2.0), ex=(-ex_u, ex_v), upper_height=upper_h, lower_height=lower_h)
    eye_l = EyeShape(
        en=(en_u, -2.0 + 0.3 * i["asymmetry"]),
        ex=(ex_u, ex_v - 0.6 * i["asymmetry"]),
        upper_height=upper_h,
        lower_height=lower_h,
    )

    v_sn = -(54.0 if male else 50.0) * lower * (1.0 + 0.03 * i["nose_length"])
    v_prn = v_sn + 9.0 + 1.5 * age  # the tip droops towards the lip with age
    v_sto = v_sn - (22.0 if male else 20.0) * lower
    lip_thin = 1.0 - 0.35 * max(age, 0.0)
    return FaceLayout(
        eye_r=eye_r,
        eye_l=eye_l,
        v_sto=v_sto,
        mouth_half_width=(29.5 if male else 27.5) + 2.0 * i["mouth_width"] + 0.5 * fat,
        upper_vermilion=((7.5 if male else 8.5) + 1.2 * i["lip_fullness"]) * lip_thin,
        lower_vermilion=((9.0 if male else 10.0) + 1.3 * i["lip_fullness"]) * lip_thin,
        lip_projection=(3.6 + 0.8 * i["lip_fullness"]) * (1.0 - 0.4 * max(age, 0.0)),
        v_prn=v_prn,
        v_sn=v_sn,
        alar_half_width=(19.5 if male else 18.0) + 1.5 * i["nose_width"] + 0.4 * fat,
        nose_projection=(19.0 if male else 17.0) + 2.0 * i["nose_projection"],
        v_brow=(10.0 - 2.0 * age) * upper,
        v_hairline=(62.0 if male else 58.0) * upper + 4.0 * age * male,
        v_sl=v_sto - (17.0 if male else 15.0) * lower,
        v_pg=v_sto - (31.0 if male else 28.0) * lower,
        jaw_drop=3.0 * max(age, 0.0) + 1.5 * max(fat, 0.0),
        jaw_blur=3.0 + 2.0 * max(age, 0.0) + 1.5 * max(fat, 0.0),
        scale=(1.0 if male else 0.975) * (1.0 + 0.025 * look.stature),
        half_width_gain=2.6 * fat + 2.5 * i["face_width"],
        lower_face_scale=lower,
        upper_face_scale=upper,
    )


def jawline(theta: np.ndarray, layout: FaceLayout) -> np.ndarray:
    """Height ``y`` (mm) of the jaw-to-neck transition at angle ``theta`` (radians)."""
    deg = np.degrees(np.abs(theta))
    knots_deg = np.array([0.0, 30.0, 55.0, 65.0, 80.0, 95.0, 130.0])
    gn = layout.v_pg - 12.0 * layout.lower_face_scale
    go = gn + 30.0 * layout.lower_face_scale
    knots_y = np.array([gn, gn + 7.0, go - 5.0, go, go + 22.0, go + 45.0, go + 45.0])
    # Sagging tissue hangs lowest at the jowls, less at the chin and behind the jaw.
    sag = layout.jaw_drop * np.exp(-(((deg - 40.0) / 25.0) ** 2))
    return np.interp(deg, knots_deg, knots_y) - sag


def landmark_uv(layout: FaceLayout) -> dict[str, tuple[float, float]]:
    """Surface coordinates ``(u, v)`` (mm) of every landmark of ``schema.LANDMARKS``."""
    deg = np.pi / 180.0 * R_ARC
    gn_v = float(jawline(np.array([0.0]), layout)[0]) + 1.0
    go_theta = np.radians(63.0)
    go_v = float(jawline(np.array([go_theta]), layout)[0]) + 3.0
    mw = layout.mouth_half_width
    uv: dict[str, tuple[float, float]] = {
        "tr": (0.0, layout.v_hairline),
        "g": (0.0, layout.v_brow + 2.0),
        "n": (0.0, 0.0),
        "prn": (0.0, layout.v_prn),
        "sn": (0.0, layout.v_sn),
        "ls": (0.0, layout.v_sto + layout.upper_vermilion),
        "sto": (0.0, layout.v_sto),
        "li": (0.0, layout.v_sto - layout.lower_vermilion),
        "sl": (0.0, layout.v_sl),
        "pg": (0.0, layout.v_pg),
        "gn": (0.0, gn_v),
    }
    for side, sign, eye in (("r", -1.0, layout.eye_r), ("l", 1.0, layout.eye_l)):
        uv[f"en_{side}"] = eye.en
        uv[f"ex_{side}"] = eye.ex
        uv[f"ps_{side}"] = eye.top()
        uv[f"pi_{side}"] = eye.bottom()
        uv[f"or_{side}"] = ((eye.en[0] + eye.ex[0]) / 2.0, eye.bottom()[1] - 8.0)
        uv[f"ft_{side}"] = (sign * 58.0, layout.v_brow + 22.0 * layout.upper_face_scale)
        uv[f"al_{side}"] = (sign * layout.alar_half_width, layout.v_sn + 4.0)
        uv[f"ch_{side}"] = (sign * mw, layout.v_sto - 0.8)
        uv[f"zy_{side}"] = (sign * 72.0 * deg, -12.0)
        uv[f"go_{side}"] = (sign * go_theta * R_ARC, go_v)
        uv[f"t_{side}"] = (sign * 88.0 * deg, -14.0)
    return uv
