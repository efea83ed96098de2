"""The shape of a simulated face: an ICT-FaceKit identity, sex, health and a mild expression.

A subject's vertices (on the model topology of :mod:`face_health.face_model`, millimetres)::

    mean + identity (PCA prior, with a sex offset) + ageing + adiposity + hair + expression,
    then scaled by sex and stature about the nose tip

Ageing, adiposity and the scalp hair are smooth displacement fields on the topology, built
once per process from the mean face and its landmarks (``ShapeFields``) and scaled per
subject by the face-visible latents of :mod:`face_health.synthetic.effects`, where every
strength is documented. Because they live on the topology, they follow each identity: the
nasolabial fold deepens where this subject's fold is, whatever the shape of the face.

Template coordinates are positions on the mean face (mm): the masks here (lips, brows, hair)
take them, so the same functions place a feature on the vertices (geometry) and on the
texels of the UV atlas (skin colour, :mod:`face_health.synthetic.texture`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from face_health import schema
from face_health.face_model import FaceModel, load_face_model
from face_health.synthetic import effects
from face_health.synthetic.effects import Appearance

#: Decorator: run on one BLAS thread. Sums then round the same way whatever the thread
#: count (worker processes get fewer threads than the main one), so a cached field built
#: in a test session or a worker gives the same bytes, and the same seed the same files.
one_thread = threadpool_limits.wrap(limits=1)

#: Height (mm, the mean face's frame) of the head's vertical axis behind the face: ``z``.
HEAD_AXIS_Z = 10.0


def smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 below ``low``, 1 above ``high``, a smooth cubic between (``low > high`` flips it)."""
    t = np.clip((np.asarray(x, float) - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(p: np.ndarray, centre, sigma) -> np.ndarray:
    """Anisotropic Gaussian weight of points ``p (n, 3)`` about ``centre`` (sigma per axis)."""
    d = (np.asarray(p, float) - np.asarray(centre, float)) / np.asarray(sigma, float)
    return np.exp(-0.5 * (d**2).sum(axis=-1))


@dataclass(frozen=True)
class Template:
    """The mean face's landmarks, and the anatomical masks built on template coordinates."""

    landmarks: dict[str, np.ndarray]
    surface: np.ndarray  # (n, 3) the mean face's vertices

    @classmethod
    def of(cls, model: FaceModel) -> Template:
        points = model.landmarks(model.mean)
        return cls(dict(zip(schema.LANDMARK_NAMES, points, strict=True)), model.mean)

    def front(self, x: float, y: float) -> np.ndarray:
        """The foremost point of the mean face near ``(x, y)`` seen from the front."""
        near = np.linalg.norm(self.surface[:, :2] - [x, y], axis=1) < 3.0
        return self.surface[near][np.argmax(self.surface[near, 2])]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.landmarks[name]

    def side(self, name: str, p: np.ndarray) -> np.ndarray:
        """``(n, 3)`` the landmark ``name_r`` or ``name_l`` on each point's own side."""
        return np.where(p[:, :1] < 0, self.landmarks[f"{name}_r"], self.landmarks[f"{name}_l"])

    def angle(self, p: np.ndarray) -> np.ndarray:
        """Degrees about the head's vertical axis: 0 in front, +-90 at the ears, 180 behind."""
        return np.degrees(np.arctan2(p[:, 0], p[:, 2] - HEAD_AXIS_Z))

    def lip_masks(self, p: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Soft masks (0..1) of the upper and lower vermilion, seen from the front.

        ``margin`` (mm) widens them past the vermilion border, so that a displacement
        weighted by them moves the border itself in full.
        """
        x, y = p[:, 0], p[:, 1]
        sto, ls, li = self["sto"][1], self["ls"][1], self["li"][1]
        w = abs(self["ch_r"][0]) + 0.5
        s = np.clip(np.abs(x) / w, 0.0, 1.0)
        # Cupid's bow: the border dips at the midline (through ls), peaks at the philtral ridges.
        bow = (1.0 - 0.18 * np.exp(-((x / 3.5) ** 2))) / 0.82
        upper_border = sto + (ls - sto) * (1.0 - s**2) ** 0.6 * bow
        lower_border = sto - (sto - li) * (1.0 - s**2) ** 0.7
        front = smoothstep(p[:, 2], self["ch_r"][2] - 12.0, self["ch_r"][2] - 8.0)
        inside = smoothstep(w - np.abs(x), -0.6, 0.6) * front
        soft = 0.5 + margin / 2.0
        upper = inside * smoothstep(upper_border + margin - y, -soft, soft)
        upper *= smoothstep(y - sto, -1.5, -0.5)
        lower = inside * smoothstep(y - lower_border + margin, -soft, soft)
        lower *= smoothstep(sto - y, -1.5, -0.5)
        return upper, lower

    def brow_mask(self, p: np.ndarray, thickness_mm: float) -> np.ndarray:
        """Soft mask of the two eyebrows: an arch from above the inner corner past the outer."""
        out = np.zeros(len(p))
        for side in ("r", "l"):
            en, ex, ps = self[f"en_{side}"], self[f"ex_{side}"], self[f"ps_{side}"]
            sign = np.sign(ex[0])
            start, end = en[0] - sign * 3.0, ex[0] + sign * 8.0
            t = (p[:, 0] - start) / (end - start)
            base = ps[1] + 11.5
            centre = base + 3.0 * np.sin(np.pi * np.clip(t, 0, 1) ** 0.8) - 3.0 * t
            half = thickness_mm * (1.0 - 0.45 * np.clip(t, 0, 1))
            along = smoothstep(t, -0.08, 0.05) * smoothstep(t, 1.08, 0.95)
            front = smoothstep(p[:, 2], ex[2] - 25.0, ex[2] - 15.0)
            out = np.maximum(out, along * front * np.exp(-0.5 * ((p[:, 1] - centre) / half) ** 2))
        return out

    def hairline(self, angle_deg: np.ndarray, recession_mm: float) -> np.ndarray:
        """Height ``y`` (mm) of the scalp hair's edge at each angle about the head's axis.

        Through trichion in front (raised by ``recession_mm``, more at the temples), down to
        the sideburns in front of the ears, over the ears and down to the nape behind.
        """
        tr, t = self["tr"][1], self["t_r"][1]
        a = np.abs(angle_deg)
        knots = np.array([0.0, 25.0, 45.0, 62.0, 70.0, 78.0, 88.0, 110.0, 140.0, 180.0])
        ys = np.array([
            tr + recession_mm,
            tr - 3.0 + 1.3 * recession_mm,
            tr - 14.0 + 1.6 * recession_mm,
            t + 45.0 + 0.8 * recession_mm,
            t + 18.0,
            t + 4.0,
            t + 26.0,
            t + 22.0,
            t - 25.0,
            t - 40.0,
        ])  # fmt: skip
        return np.interp(a, knots, ys)

    def ear_mask(self, p: np.ndarray) -> np.ndarray:
        """Soft mask of the outer ears (no hair grows there)."""
        t = self["t_r"]
        around = gauss(p[:, 1:], [t[1] + 2.0, t[2] - 14.0], [20.0, 14.0])
        return around * smoothstep(np.abs(p[:, 0]), 62.0, 68.0)

    def hair_mask(self, p: np.ndarray, recession_mm: float, bald_crown: float) -> np.ndarray:
        """Soft mask (0..1) of scalp hair: above the hairline, not on the ears or the face.

        ``bald_crown`` in [0, 1] clears the top of the head (male-pattern baldness).
        """
        angle = self.angle(p)
        edge = self.hairline(angle, recession_mm)
        hair = smoothstep(p[:, 1] - edge, -1.0, 1.5)
        hair *= 1.0 - smoothstep(self.ear_mask(p), 0.35, 0.6)
        if bald_crown > 0:
            crown = smoothstep(p[:, 1], self["t_r"][1] + 55.0, self["t_r"][1] + 70.0)
            hair *= 1.0 - bald_crown * crown
        return hair


@functools.lru_cache(maxsize=1)
@one_thread
def template() -> Template:
    return Template.of(load_face_model())


@dataclass(frozen=True)
class ShapeFields:
    """Per-vertex displacement fields (n, 3) in mm per unit, built once from the mean face.

    Each is named for what it does; ``effects`` says how many units a subject gets.
    """

    age_sag: np.ndarray  # lower-face soft tissue and jowls, down
    age_fold: np.ndarray  # nasolabial fold deepening (and the cheek beside it)
    age_lids: np.ndarray  # upper-lid hooding
    age_bags: np.ndarray  # under-eye bags
    age_lips: np.ndarray  # vermilion thinner and flatter
    age_nose: np.ndarray  # nose tip down
    age_temples: np.ndarray  # temporal hollowing
    age_brows: np.ndarray  # lateral brows down
    fat_width: np.ndarray  # cheeks and jaw wider
    fat_cheeks: np.ndarray  # cheek fullness
    fat_neck: np.ndarray  # neck thicker, submental fullness
    fat_eyes: np.ndarray  # eye fissures a little narrower
    fold_base: np.ndarray  # the nasolabial fold every adult has
    hair_volume: np.ndarray  # outward along the normal (per mm of hair; flat at the sides)
    sex_direction: np.ndarray  # (k,) unit vector in identity space: male minus female


def _normals(model: FaceModel) -> np.ndarray:
    return model.mesh().vertex_normals


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distance of points to a segment (in x, y) and the position ``t`` along it."""
    ab = (b - a)[:2]
    t = np.clip(((p[:, :2] - a[:2]) @ ab) / (ab @ ab), 0.0, 1.0)
    closest = a[:2] + t[:, None] * ab
    return np.linalg.norm(p[:, :2] - closest, axis=1), t


def build_fields(model: FaceModel) -> ShapeFields:
    """The displacement fields of the simulator on ``model``'s topology."""
    p, nrm, tp = model.mean, _normals(model), Template.of(model)
    front = smoothstep(nrm[:, 2], -0.1, 0.3) * smoothstep(p[:, 2], 30.0, 60.0)
    side_sign = np.sign(p[:, 0])
    down = np.array([0.0, -1.0, 0.0])
    z = np.zeros_like(p)

    # Lower face sags: from the alae down to below the jaw, more laterally than at the chin.
    # (wide transitions: a shear of a few mm over less than ~30 mm shows as a crease)
    go_y, gn, or_y = tp["go_r"][1], tp["gn"], tp["or_r"][1]
    vertical = smoothstep(p[:, 1], tp["al_r"][1], tp["sn"][1] - 15.0)
    vertical *= smoothstep(p[:, 1], gn[1] - 40.0, gn[1] - 10.0)
    lateral = 0.45 + 0.55 * smoothstep(np.abs(p[:, 0]), 5.0, 40.0)
    toward_ear = smoothstep(p[:, 2], tp["t_r"][2], tp["t_r"][2] + 40.0)
    jowls = gauss(np.abs(p), tp.front(42.0, go_y - 8.0), [14.0, 10.0, 12.0])
    sag = np.clip(vertical * lateral * toward_ear + 0.3 * jowls, 0.0, 1.0)
    age_sag = down * sag[:, None] + np.column_stack([side_sign * 0.3 * jowls, z[:, 1], z[:, 2]])

    # Nasolabial fold: a groove from beside the ala to beside the mouth corner.
    fold, bulge = np.zeros(len(p)), np.zeros(len(p))
    for side in ("r", "l"):
        al, ch = tp[f"al_{side}"], tp[f"ch_{side}"]
        s = np.sign(al[0])
        a = al + [s * 3.0, 2.0, 0.0]
        b = ch + [s * 7.0, -12.0, 0.0]
        dist, t = _segment_distance(p, a, b)
        on_side = (np.sign(p[:, 0]) == s) * front
        taper = 1.0 - 0.5 * t
        fold += on_side * taper * np.exp(-0.5 * (dist / 2.2) ** 2)
        # The cheek beside it sits a little proud (tissue descending onto the fold).
        lateral_offset = (p[:, 0] - (a[0] + t * (b[0] - a[0]))) * s
        bulge += on_side * taper * np.exp(-0.5 * ((dist - 5.0) / 3.0) ** 2) * (lateral_offset > 0)
    age_fold = -nrm * fold[:, None] + 0.35 * nrm * bulge[:, None]
    fold_base = -nrm * fold[:, None]

    # Lids and bags.
    hood, bags, fat_eyes = np.zeros(len(p)), np.zeros(len(p)), np.zeros_like(p)
    for side in ("r", "l"):
        en, ex, ps, pi = (tp[f"{n}_{side}"] for n in ("en", "ex", "ps", "pi"))
        cx = (en[0] + ex[0]) / 2.0
        hood += gauss(p, [cx + 0.15 * (ex[0] - en[0]), ps[1] + 8.0, ps[2] - 3.0], [9.0, 2.5, 6.0])
        bags += gauss(p, [cx, pi[1] - 6.0, pi[2]], [9.0, 3.0, 6.0])
        closing = gauss(p, pi, [6.0, 2.0, 4.0]) - gauss(p, ps, [6.0, 2.0, 4.0])
        fat_eyes[:, 1] += closing
    age_lids = (nrm * 1.0 + down * 0.6) * hood[:, None]
    age_bags = nrm * bags[:, None]

    # Lips: the vermilion loses height (towards the stomion line) and projection.
    upper, lower = tp.lip_masks(p, margin=2.5)
    lips = np.clip(upper + lower, 0.0, 1.0)
    age_lips = np.column_stack(
        [z[:, 0], -(p[:, 1] - tp["sto"][1]) * lips, -effects.LIP_PROJECTION_MM * lips * front]
    )
    age_nose = down * gauss(p, tp["prn"], [9.0, 8.0, 8.0])[:, None]
    temple = tp.front(62.0, tp["ex_r"][1] + 18.0)
    temples = gauss(np.abs(p), temple, [10.0, 14.0, 18.0])
    age_temples = -nrm * temples[:, None]
    brows = np.zeros(len(p))
    for side in ("r", "l"):
        ex, ps = tp[f"ex_{side}"], tp[f"ps_{side}"]
        brows += gauss(p, [ex[0], ps[1] + 12.5, ex[2] + 4.0], [12.0, 8.0, 12.0])
    age_brows = down * brows[:, None]

    # Adiposity: a wider lower face, fuller cheeks, a thicker neck, narrower fissures.
    cheek_band = smoothstep(p[:, 1], or_y + 10.0, or_y - 25.0)
    cheek_band *= smoothstep(p[:, 1], gn[1] - 25.0, go_y + 5.0)
    lateral = smoothstep(np.abs(p[:, 0]), 10.0, 55.0) * toward_ear
    jaw = gauss(np.abs(p), tp.front(50.0, go_y - 5.0), [16.0, 9.0, 12.0])
    jaw_share = effects.FAT_JAW_WIDTH_MM / effects.FAT_CHEEK_WIDTH_MM
    fat_width = np.zeros_like(p)
    fat_width[:, 0] = side_sign * (cheek_band * lateral * (1.0 - jaw) + jaw_share * jaw)
    cheek = tp.front(42.0, tp["ch_r"][1] + 12.0)
    cheeks = gauss(np.abs(p), cheek, [16.0, 14.0, 12.0]) * front
    fat_cheeks = nrm * cheeks[:, None]
    neck_axis_z = np.median(p[p[:, 1] < gn[1] - 40.0, 2])
    radial = p[:, [0, 2]] - [0.0, neck_axis_z]
    radial /= np.linalg.norm(radial, axis=1, keepdims=True) + 1e-9
    neck = smoothstep(p[:, 1], gn[1] - 5.0, gn[1] - 25.0)
    submental = gauss(p, [0.0, gn[1] - 8.0, gn[2] - 20.0], [28.0, 10.0, 15.0])
    fat_neck = np.column_stack([radial[:, 0], z[:, 1], radial[:, 1]]) * neck[:, None] + (
        nrm * 0.75 * submental[:, None]
    )

    # Hair stands off the scalp on top and at the back, but lies flat at the sideburns and
    # the temples in front of the ears (else it would widen the face at zygion).
    t_y = tp["t_r"][1]
    lies_flat = 1.0 - smoothstep(p[:, 1], t_y + 10.0, t_y + 45.0)
    in_front = smoothstep(np.abs(tp.angle(p)), 110.0, 90.0)
    hair_volume = nrm * (1.0 - lies_flat * in_front)[:, None]
    return ShapeFields(
        age_sag=age_sag,
        age_fold=age_fold,
        age_lids=age_lids,
        age_bags=age_bags,
        age_lips=age_lips,
        age_nose=age_nose,
        age_temples=age_temples,
        age_brows=age_brows,
        fat_width=fat_width,
        fat_cheeks=fat_cheeks,
        fat_neck=fat_neck,
        fat_eyes=fat_eyes,
        fold_base=fold_base,
        hair_volume=hair_volume,
        sex_direction=sex_direction(model, tp, nrm),
    )


def sex_direction(model: FaceModel, tp: Template, nrm: np.ndarray) -> np.ndarray:
    """Unit vector in identity space along which men and women differ (male minus female).

    Built from an anatomical difference field (men: a more prominent brow ridge and glabella,
    a larger and more projecting nose, a wider jaw and a taller, squarer chin, a more sloping
    forehead, flatter cheeks and thinner lips; Farkas 1994; Bruce et al. 1993 Perception
    22:131) matched against the identity modes, so the difference is a face the model can
    make and lies mostly in its large modes. Size is handled apart (``effects.SEX_SCALE``).
    """
    p = model.mean
    brow = gauss(p, tp["g"] + [0, 3, -2], [12, 7, 8])
    for side in ("r", "l"):
        brow += gauss(p, tp[f"ps_{side}"] + [0, 14.5, 1], [13, 6, 8])
    nose = gauss(p, (tp["n"] + tp["prn"]) / 2, [7, 16, 12]) + gauss(p, tp["prn"], [8, 7, 8])
    alae = sum(gauss(p, tp[f"al_{s}"], [5, 6, 6]) for s in "rl")
    jaw = sum(gauss(p, tp[f"go_{s}"] + [0, -4, 10], [12, 14, 18]) for s in "rl")
    chin = gauss(p, (tp["pg"] + tp["gn"]) / 2, [16, 9, 10])
    forehead = smoothstep(p[:, 1], tp["g"][1] + 20, tp["g"][1] + 45) * gauss(
        p * [1, 0, 0], [0, 0, 0], [45, 1, 1]
    )
    cheeks = sum(gauss(p, tp[f"zy_{s}"] * [0.6, 1, 1] + [0, -22, 60], [18, 14, 20]) for s in "rl")
    upper, lower = tp.lip_masks(p)
    field = (
        nrm * (2.5 * brow + 1.5 * nose - 1.2 * cheeks)[:, None]
        + np.column_stack([np.sign(p[:, 0]) * (alae + 3.0 * jaw), -2.5 * chin, 0.0 * chin])
        + np.array([0, 0, 1.5]) * chin[:, None]
        + np.array([0, 0, -2.5]) * forehead[:, None]
        + np.array([0, 0, -1.0]) * (upper + lower)[:, None]
    )
    # The direction of the (whitened) identity space whose unit step moves the face most
    # like the field: a least-squares fit would lean on the many small modes instead.
    face = model.vertex_part == 0
    coefficients = np.tensordot(model.identity[:, face], field[face], axes=([1, 2], [0, 1]))
    return coefficients / np.linalg.norm(coefficients)


@functools.lru_cache(maxsize=1)
@one_thread
def shape_fields() -> ShapeFields:
    return build_fields(load_face_model())


def draw_identity(sex: str, rng: np.random.Generator, fields: ShapeFields) -> np.ndarray:
    """Identity weights ``(k,)``: the PCA prior with men and women apart along the sex axis.

    Along ``sex_direction`` the two sexes are centred at +-``effects.SEX_SEPARATION / 2``
    with a within-sex spread that keeps the population's marginal N(0, 1) on that axis (so
    the model's prior stays true of the population); every other direction is N(0, 1).
    """
    w = rng.standard_normal(len(fields.sex_direction))
    u = fields.sex_direction
    along = w @ u
    half = effects.SEX_SEPARATION / 2.0
    spread = np.sqrt(1.0 - half**2)
    target = spread * along + (half if sex == "M" else -half)
    return w + (target - along) * u


def draw_expression(rng: np.random.Generator) -> dict[str, float]:
    """A mild random expression, within what a subject asked to look neutral shows."""
    blink = float(np.clip(rng.gamma(1.2, 0.06), 0.0, 0.45))
    smile = float(np.clip(rng.gamma(1.0, 0.06), 0.0, 0.3))
    jaw = float(np.clip(rng.gamma(1.0, 0.025), 0.0, 0.12))
    return {
        "eyeBlink_L": blink + float(rng.normal(0, 0.02)),
        "eyeBlink_R": blink + float(rng.normal(0, 0.02)),
        "eyeSquint_L": float(np.clip(rng.normal(0.0, 0.08), 0, None)),
        "eyeSquint_R": float(np.clip(rng.normal(0.0, 0.08), 0, None)),
        "mouthSmile_L": smile + float(rng.normal(0, 0.02)),
        "mouthSmile_R": smile + float(rng.normal(0, 0.02)),
        "jawOpen": jaw,
        "mouthClose": jaw * float(rng.uniform(0.7, 1.0)),
        "browInnerUp_L": float(np.clip(rng.normal(0.0, 0.1), 0, None)),
        "browInnerUp_R": float(np.clip(rng.normal(0.0, 0.1), 0, None)),
    }


@dataclass(frozen=True)
class Hair:
    """Scalp hair of one subject (identity, age and sex)."""

    recession_mm: float
    bald_crown: float
    thickness_mm: float
    darkness: float
    grey: float


def draw_hair(look: Appearance, traits: dict[str, float], rng: np.random.Generator) -> Hair:
    """Hairline recession and crown baldness grow with age in men (Hamilton-Norwood)."""
    age = float(np.clip(look.age_factor, 0.0, 1.25))
    male = look.sex == "M"
    recession = max(0.0, rng.normal(2.0 + (14.0 * age if male else 2.0 * age), 4.0))
    bald = float(np.clip(rng.normal(age - 0.35, 0.35), 0.0, 1.0)) if male else 0.0
    return Hair(
        recession_mm=recession,
        bald_crown=bald,
        thickness_mm=float(rng.uniform(2.0, 9.0) if male else rng.uniform(4.0, 14.0)),
        darkness=traits["hair_darkness"],
        grey=float(np.clip(1.1 * age - 0.35 + rng.normal(0, 0.12), 0.0, 0.85)),
    )


def scalp_hair(model: FaceModel, hair: Hair) -> np.ndarray:
    """(n,) 0..1 scalp hair on each vertex of the model (the texture's mask, on vertices)."""
    mask = template().hair_mask(model.mean, hair.recession_mm, hair.bald_crown)
    return mask * (model.vertex_part <= 1)


def face_vertices(
    model: FaceModel,
    fields: ShapeFields,
    identity: np.ndarray,
    expression: dict[str, float],
    look: Appearance,
    hair: Hair,
) -> np.ndarray:
    """``(n, 3)`` vertices of one subject's face, mm, in the model frame (nose tip forward)."""
    age = float(np.clip(look.age_factor, -0.1, 1.25))
    fat = float(np.clip(look.adiposity, -2.5, 3.5))
    e = effects
    v = model.shape(identity, expression)
    v += fields.fold_base * e.FOLD_BASE_MM
    v += fields.age_sag * (e.AGE_SAG_MM * max(age, 0.0))
    v += fields.age_fold * (e.AGE_FOLD_MM * max(age, 0.0) - 0.3 * max(fat, 0.0))
    v += fields.age_lids * (e.AGE_HOODING_MM * max(age, 0.0))
    v += fields.age_bags * (e.AGE_BAGS_MM * max(age, 0.0) + e.FAT_BAGS_MM * max(fat, 0.0))
    v += fields.age_lips * (e.AGE_VERMILION_LOSS * max(age, 0.0))
    v += fields.age_nose * (e.AGE_NOSE_TIP_MM * max(age, 0.0))
    v += fields.age_temples * (e.AGE_TEMPLE_MM * max(age, 0.0) - e.FAT_TEMPLE_MM * fat)
    v += fields.age_brows * (e.AGE_BROW_MM * max(age, 0.0))
    v += fields.fat_width * (e.FAT_CHEEK_WIDTH_MM * fat)
    v += fields.fat_cheeks * (e.FAT_CHEEK_FULLNESS_MM * fat)
    v += fields.fat_neck * (e.FAT_NECK_MM * max(fat, -1.0))
    v += fields.fat_eyes * (e.FAT_EYE_OPENING_MM / 2.0 * max(fat, 0.0))
    v += fields.hair_volume * (hair.thickness_mm * scalp_hair(model, hair))[:, None]
    scale = e.SEX_SCALE[look.sex] * (1.0 + e.STATURE_SCALE * look.stature)
    centre = model.mean[model.landmark_vertices[schema.LANDMARK_NAMES.index("prn"), 0]]
    return centre + (v - centre) * scale
