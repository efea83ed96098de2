"""The skin of a simulated face, painted procedurally in the ICT-FaceKit UV layout.

The texture is one image (``Atlas``): the face tile of the ICT layout (its [0, 1] UV square)
as an ``H x H`` square on the left and the head-and-neck tile ([1, 2]) as an ``H/2 x H/2``
square at the top right. Every texel knows the point of the mean face it shows (its
*template position*, from the triangle and barycentric weights that cover it), so features
are painted where the anatomy is (lips between the vermilion borders, brows above the eyes,
hair above the hairline) with the masks of :mod:`face_health.synthetic.anatomy` that also
shape the geometry; and since texels belong to the topology, the paint moves with each
identity's shape. Health shows as ``effects`` documents: wrinkles and spots (age), perioral
lines and a sallow tone (smoking), erythema (alcohol), pallor of lips, lower lids and skin
(low haemoglobin).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from face_health.face_model import FaceModel, load_face_model
from face_health.synthetic.anatomy import (
    Hair,
    gauss,
    one_thread,
    smoothstep,
    template,
)
from face_health.synthetic.effects import Appearance

#: Skin traits of a subject besides shape (standard normal, independent of health).
SKIN_TRAITS = ("skin_tone", "skin_redness", "hair_darkness", "brow_thickness", "freckles")


def atlas_pixels(uv: np.ndarray, height: int) -> np.ndarray:
    """``(t, 2)`` texel coordinates (col, row; continuous) of ICT UV coordinates ``(t, 2)``."""
    uv = np.asarray(uv, float)
    head = uv[:, 0] >= 1.0
    col = np.where(head, height + (uv[:, 0] - 1.0) * height / 2.0, uv[:, 0] * height)
    row = np.where(head, (1.0 - uv[:, 1]) * height / 2.0, (1.0 - uv[:, 1]) * height)
    return np.column_stack([col, row])


def atlas_uv(uv: np.ndarray, height: int) -> np.ndarray:
    """``(t, 2)`` texture coordinates in the atlas image (OBJ convention: v up, in [0, 1])."""
    px = atlas_pixels(uv, height)
    return np.column_stack([px[:, 0] / (1.5 * height), 1.0 - px[:, 1] / height])


@dataclass(frozen=True, eq=False)
class Atlas:
    """Which point of the mean face every texel of the texture shows.

    Attributes
    ----------
    height, width : image size (width = 1.5 height)
    flat : (c,) flat indices of the texels some triangle covers
    triangle : (c,) the model triangle covering each; ``bary`` (c, 3) float32 its weights
    corners : (c, 3) int32, that triangle's vertices
    position : (c, 3) float32, template position (mm, mean face); ``normal`` (c, 3) its normal
    part : (c,) uint8, the model part (``face_model.PARTS``)
    fill : (height * width,) for every texel the flat index of the nearest covered one, so
        seams do not bleed background into the texture when it is sampled
    """

    height: int
    width: int
    flat: np.ndarray
    triangle: np.ndarray
    bary: np.ndarray
    corners: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    part: np.ndarray
    fill: np.ndarray

    def image(self, values: np.ndarray) -> np.ndarray:
        """``(height, width, C)`` image from per-covered-texel ``values (c, C)``, seams filled."""
        canvas = np.zeros((self.height * self.width, values.shape[1]), values.dtype)
        canvas[self.flat] = values
        return canvas[self.fill].reshape(self.height, self.width, values.shape[1])

    def vertex_values(self, per_vertex: np.ndarray) -> np.ndarray:
        """Per-texel ``(c,)`` interpolation of a per-vertex scalar ``(n,)``."""
        values = np.asarray(per_vertex, np.float32)[self.corners]
        return np.einsum("ij,ij->i", values, self.bary)


def _rasterize(corners: np.ndarray, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Texel centres inside triangles ``corners (m, 3, 2)`` (col, row): flat index, triangle,
    barycentric weights. A texel inside two triangles goes to the last."""
    low = np.floor(corners.min(axis=1) - 0.5).astype(int)
    high = np.ceil(corners.max(axis=1) - 0.5).astype(int)
    low = np.clip(low, 0, [width - 1, height - 1])
    high = np.clip(high, 0, [width - 1, height - 1])
    size = high - low + 1
    count = size[:, 0] * size[:, 1]
    tri = np.repeat(np.arange(len(corners)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    col = low[tri, 0] + k % size[tri, 0]
    row = low[tri, 1] + k // size[tri, 0]
    a, b, c = corners[tri, 0], corners[tri, 1], corners[tri, 2]
    point = np.column_stack([col + 0.5, row + 0.5])
    v0, v1, v2 = b - a, c - a, point - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    w0 = 1.0 - w1 - w2
    inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
    flat = row[inside] * width + col[inside]
    bary = np.column_stack([w0, w1, w2])[inside]
    # one triangle per texel: keep the last that covers it
    flat_rev = flat[::-1]
    _, first = np.unique(flat_rev, return_index=True)
    keep = len(flat) - 1 - first
    return flat[keep], tri[inside][keep], np.clip(bary[keep], 0.0, 1.0)


@functools.lru_cache(maxsize=2)
@one_thread
def atlas(height: int = 768) -> Atlas:
    """The atlas of the shipped model at ``height`` texels (once per process, ~0.3 s)."""
    model = load_face_model()
    width = int(round(1.5 * height))
    pixels = atlas_pixels(model.uv, height)
    flat, tri, bary = _rasterize(pixels[model.faces_uv], height, width)
    bary = (bary / bary.sum(axis=1, keepdims=True)).astype(np.float32)
    corners = model.faces[tri]
    position = (model.mean[corners] * bary[..., None]).sum(axis=1)
    normals = model.mesh().vertex_normals
    normal = (normals[corners] * bary[..., None]).sum(axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    covered = np.zeros(height * width, bool)
    covered[flat] = True
    _, nearest = distance_transform_edt(~covered.reshape(height, width), return_indices=True)
    fill = (nearest[0] * width + nearest[1]).ravel()
    return Atlas(
        height=height,
        width=width,
        flat=flat,
        triangle=tri,
        bary=bary,
        corners=corners.astype(np.int32),
        position=position.astype(np.float32),
        normal=normal.astype(np.float32),
        part=model.face_part[tri],
        fill=fill,
    )


class _Noise:
    """Smooth noise at the covered texels: a coarse random grid, bilinearly interpolated.

    The interpolation indices and weights are fixed per atlas; a subject draws the grid.
    """

    def __init__(self, at: Atlas, cells: int) -> None:
        self.shape = (cells + 1, int(cells * 1.5) + 1)
        row, col = np.divmod(at.flat, at.width)
        r = row / at.height * cells
        c = col / at.width * (self.shape[1] - 1)
        r0 = np.minimum(r.astype(int), self.shape[0] - 2)
        c0 = np.minimum(c.astype(int), self.shape[1] - 2)
        fr, fc = (r - r0).astype(np.float32), (c - c0).astype(np.float32)
        self.index = np.stack(
            [
                r0 * self.shape[1] + c0,
                r0 * self.shape[1] + c0 + 1,
                (r0 + 1) * self.shape[1] + c0,
                (r0 + 1) * self.shape[1] + c0 + 1,
            ]
        )
        self.weight = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])

    def draw(
        self, rng: np.random.Generator, subset: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        grid = rng.standard_normal(self.shape[0] * self.shape[1], dtype=np.float32)
        field = (grid[self.index[:, subset]] * self.weight[:, subset]).sum(axis=0)
        return field / np.float32(0.6)  # bilinear interpolation shrinks the sd to about 0.6


@dataclass(frozen=True, eq=False)
class _Static:
    """Everything about the skin that is the same for every subject, per atlas."""

    face: np.ndarray  # texel subsets (indices into the atlas' covered texels)
    front_by_y: np.ndarray  # the face's front, sorted by height
    flush: np.ndarray  # (c,) cheeks and nose, 0..~1
    mouth: np.ndarray
    lips: np.ndarray  # (len(mouth),) vermilion mask
    slit: np.ndarray
    eyes: np.ndarray
    eye_colour: np.ndarray  # (len(eyes), 3) sclera, iris, pupil on the caps
    eye_cap: np.ndarray  # (len(eyes),) bool
    lash: np.ndarray  # (len(eyes),) weight of the upper lash line
    rim: np.ndarray  # (len(eyes),) weight of the lower lid rim
    caruncle: np.ndarray  # (len(eyes),)
    nostrils: np.ndarray
    nostril_dark: np.ndarray
    brows: np.ndarray
    brow_distance: np.ndarray  # (len(brows),) distance from the brow's centre line / taper
    brow_along: np.ndarray
    forehead: np.ndarray
    forehead_band: np.ndarray
    crows: np.ndarray
    crows_lines: np.ndarray
    perioral: np.ndarray
    perioral_lines: np.ndarray
    scalp: np.ndarray  # texels where hair can grow
    scalp_angle: np.ndarray
    scalp_no_ear: np.ndarray
    noise: dict


@functools.lru_cache(maxsize=2)
@one_thread
def _static(height: int) -> _Static:
    at, tp, model = atlas(height), template(), load_face_model()
    p = at.position.astype(float)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    face = np.flatnonzero(at.part == 0)
    front = face[z[face] > 60]
    flush = sum(gauss(p, tp.front(s * 42.0, -28.0), [16.0, 14.0, 14.0]) for s in (-1.0, 1.0))
    flush = flush + 0.8 * gauss(p, tp["prn"], [9.0, 11.0, 12.0])

    mouth = np.flatnonzero(
        (np.abs(x) < abs(tp["ch_r"][0]) + 6) & (np.abs(y - tp["sto"][1]) < 16) & (z > 80)
    )
    upper, lower = tp.lip_masks(p[mouth])
    lips = np.clip(upper + lower, 0.0, 1.0)

    eyes = np.flatnonzero(
        (np.abs(np.abs(x) - 31.5) < 17.0) & (np.abs(y - tp["en_r"][1]) < 14.0) & (z > 70)
    )  # noqa: E501
    pe = p[eyes]
    cap = at.part[eyes] == 2
    iris_x = np.where(pe[:, 0] < 0, -1.0, 1.0) * 31.9
    d = np.hypot(pe[:, 0] - iris_x, pe[:, 1] - 36.1)
    eye_colour = np.tile(np.array([0.86, 0.83, 0.80], np.float32), (len(eyes), 1))
    eye_colour[d < 5.8] = (0.20, 0.13, 0.09)
    eye_colour[d < 2.0] = (0.03, 0.03, 0.03)
    upper_lid, lower_lid = [], []
    for side in ("r", "l"):
        rim_pts = model.mean[_lid_loop(model, side)]
        en, ex = tp[f"en_{side}"], tp[f"ex_{side}"]
        chord = en[1] + (rim_pts[:, 0] - en[0]) / (ex[0] - en[0]) * (ex[1] - en[1])
        upper_lid.append(rim_pts[rim_pts[:, 1] >= chord - 0.3])
        lower_lid.append(rim_pts[rim_pts[:, 1] < chord - 0.3])
    from scipy.spatial import cKDTree

    skin = ~cap
    lash = np.exp(-0.5 * (cKDTree(np.concatenate(upper_lid)).query(pe)[0] / 0.6) ** 2) * skin
    rim = np.exp(-0.5 * (cKDTree(np.concatenate(lower_lid)).query(pe)[0] / 0.7) ** 2) * skin
    en = tp.side("en", pe)
    caruncle = skin * np.exp(-0.5 * (((pe - en) * [1, 1.5, 1]) ** 2).sum(axis=1) / 2.2**2)

    nostrils = face[
        (np.abs(x[face]) < 16) & (y[face] < tp["prn"][1] - 4) & (y[face] > tp["sn"][1] - 3)
        & (at.normal[face, 1] < -0.5) & (z[face] > 100)
    ]  # fmt: skip
    inward = np.abs(x[nostrils]) < np.abs(tp["al_r"][0]) - 5.0
    nostril_dark = smoothstep(-at.normal[nostrils, 1], 0.5, 0.9) * inward

    brows = front[(y[front] > tp["ps_r"][1] + 2.5) & (y[front] < tp["ps_r"][1] + 24.5)]
    brow_distance, brow_along = np.full(len(brows), np.inf), np.zeros(len(brows))
    for side in ("r", "l"):
        ex, ps, en = tp[f"ex_{side}"], tp[f"ps_{side}"], tp[f"en_{side}"]
        sign = np.sign(ex[0])
        start, end = en[0] - sign * 3.0, ex[0] + sign * 8.0
        t = (x[brows] - start) / (end - start)
        centre = ps[1] + 11.5 + 3.0 * np.sin(np.pi * np.clip(t, 0, 1) ** 0.8) - 3.0 * t
        here = np.sign(x[brows]) == sign
        taper = 1.0 - 0.45 * np.clip(t, 0, 1)
        along = smoothstep(t, -0.08, 0.05) * smoothstep(t, 1.08, 0.95)
        brow_distance = np.where(here, np.abs(y[brows] - centre) / taper, brow_distance)
        brow_along = np.where(here, along, brow_along)

    forehead = front[(y[front] > tp["ps_r"][1] + 14.5) & (np.abs(x[front]) < 60)]
    bottom = tp["ps_r"][1] + 18.5
    forehead_band = smoothstep(y[forehead], bottom - 2, bottom + 2) * smoothstep(
        y[forehead], tp["tr"][1] - 6, tp["tr"][1] - 14
    )
    crows = face[
        (np.abs(np.abs(x[face]) - abs(tp["ex_r"][0]) - 8) < 12)
        & (np.abs(y[face] - tp["ex_r"][1]) < 16)
    ]  # noqa: E501
    exc = tp.side("ex", p[crows])
    du, dv = np.abs(x[crows]) - np.abs(exc[:, 0]), y[crows] - exc[:, 1]
    rad, ang = np.hypot(du, dv), np.arctan2(dv, du)
    crows_lines = (du > 2.0) * (rad < 16.0) * (np.abs(ang) < 0.9) * np.cos(ang * 7.0) ** 16
    crows_lines = crows_lines * np.exp(-rad / 10.0)
    lip_top = tp["ls"][1]
    perioral = front[
        (np.abs(x[front]) < abs(tp["ch_r"][0]))
        & (y[front] > lip_top - 2)
        & (y[front] < lip_top + 10)
        & (z[front] > 90)
    ]  # noqa: E501
    dist_x = (x[perioral] / 3.2 - np.round(x[perioral] / 3.2)) * 3.2
    above = y[perioral] - lip_top
    upper_p, _ = tp.lip_masks(p[perioral])
    perioral_lines = (1 - upper_p) * (above > 0.5) * np.exp(-0.5 * (dist_x / 0.35) ** 2)
    perioral_lines = perioral_lines * np.exp(-np.clip(above, 0, None) / 7.0)

    scalp = np.flatnonzero((y > tp["t_r"][1] - 45.0) & (at.part <= 1))
    scalp_no_ear = 1.0 - smoothstep(tp.ear_mask(p[scalp]), 0.35, 0.6)
    noise = {cells: _Noise(at, cells) for cells in (48, 300)}
    f32 = np.float32
    return _Static(
        face=face, front_by_y=front[np.argsort(y[front], kind="stable")],
        flush=flush.astype(f32), mouth=mouth, lips=lips.astype(f32),
        slit=np.flatnonzero(at.part == 3), eyes=eyes, eye_colour=eye_colour, eye_cap=cap,
        lash=lash.astype(f32), rim=rim.astype(f32), caruncle=caruncle.astype(f32),
        nostrils=nostrils, nostril_dark=nostril_dark.astype(f32), brows=brows,
        brow_distance=brow_distance.astype(f32), brow_along=brow_along.astype(f32),
        forehead=forehead, forehead_band=forehead_band.astype(f32), crows=crows,
        crows_lines=crows_lines.astype(f32), perioral=perioral,
        perioral_lines=perioral_lines.astype(f32), scalp=scalp,
        scalp_angle=tp.angle(p[scalp]).astype(f32), scalp_no_ear=scalp_no_ear.astype(f32),
        noise=noise,
    )  # fmt: skip


def _lid_loop(model: FaceModel, side: str) -> np.ndarray:
    """Vertices of the lid margin (the eye cap's rim) on the subject's ``side``."""
    caps = model.faces[model.face_part == 2]
    rim = np.unique(caps)
    rim = rim[model.vertex_part[rim] == 0]
    sign = -1.0 if side == "r" else 1.0
    return rim[np.sign(model.mean[rim, 0]) == sign]


def draw_skin_traits(rng: np.random.Generator) -> dict[str, float]:
    return {t: float(rng.standard_normal()) for t in SKIN_TRAITS}


def paint_albedo(
    look: Appearance,
    traits: dict[str, float],
    hair: Hair,
    rng: np.random.Generator,
    *,
    height: int = 768,
) -> np.ndarray:
    """The skin albedo as per-texel RGB ``(c, 3)`` float32 in [0, 1] (``atlas(height)``)."""
    at, st, tp = atlas(height), _static(height), template()
    n = len(at.flat)
    age = float(np.clip(look.age_factor, 0.0, 1.25))
    noise = st.noise

    # Base skin: East Asian mid-light tones by default; identity sets the melanin level.
    tone = 1.0 - 0.08 * traits["skin_tone"]
    skin = np.array([0.86, 0.68, 0.57]) * np.array([tone, tone**1.25, tone**1.4])
    shade = 1.0 + 0.035 * noise[48].draw(rng)
    shade += rng.standard_normal(n, dtype=np.float32) * np.float32(0.018)  # pores
    # Erythema of cheeks and nose (identity baseline plus drinking), pallor drains the red.
    red = 0.03 * traits["skin_redness"] + 0.07 * look.redness
    channel = np.empty((n, 3), np.float32)
    channel[:, 0] = (1.0 + red * st.flush) * (1.0 - 0.03 * look.pallor)
    channel[:, 1] = 1.0 - 0.7 * red * st.flush
    channel[:, 2] = 1.0
    img = (shade[:, None] * channel) * skin.astype(np.float32)
    # Sallow tone of smokers: less saturation, towards yellow-grey.
    sallow = np.float32(0.06 * max(look.smoking_damage, 0.0))
    if sallow > 0:
        img = img * (1 - sallow) + img.mean(axis=1, keepdims=True) * sallow
        img[:, 2] *= 1.0 - 0.7 * sallow

    _darken_wrinkles(img, at, st, look, rng)
    _add_spots(img, at, st, age, traits, rng)

    # Lips: red that fades towards a pale pink with pallor and a little with age; the mouth
    # slit is dark.
    lip_red = float(
        np.clip(0.75 - 0.12 * look.pallor - 0.08 * age + 0.05 * traits["skin_redness"], 0.0, 1.0)
    )  # noqa: E501
    pale, full = np.array([0.78, 0.60, 0.56]) * tone, np.array([0.72, 0.30, 0.31])
    lip_colour = (pale * (1 - lip_red) + full * lip_red).astype(np.float32)
    lips = st.lips[:, None]
    img[st.mouth] = img[st.mouth] * (1 - lips) + lip_colour * lips
    img[st.slit] = (0.12, 0.05, 0.05)

    # Eyes: sclera, iris, pupil on the caps; lash line, the lower rim's red, caruncles.
    e = st.eyes
    patch = img[e]
    patch[st.eye_cap] = st.eye_colour[st.eye_cap]
    rim_colour = np.array([0.78 * (1.0 - 0.1 * look.pallor), 0.45, 0.45], np.float32)
    patch = patch * (1 - 0.6 * st.rim[:, None]) + rim_colour * 0.6 * st.rim[:, None]
    patch *= (1.0 - 0.75 * st.lash)[:, None]
    caruncle = 0.5 * st.caruncle[:, None]
    img[e] = patch * (1 - caruncle) + np.array([0.8, 0.5, 0.5], np.float32) * caruncle
    img[st.nostrils] *= (1.0 - 0.8 * st.nostril_dark)[:, None]

    # Hair: brows, then scalp hair (grey with age), or scalp skin where it is bald.
    hair_rgb = np.array([0.07, 0.055, 0.05]) * (1.0 - 0.15 * hair.darkness)
    hair_rgb = hair_rgb * (1 - hair.grey) + np.array([0.62, 0.60, 0.58]) * hair.grey
    hair_rgb = hair_rgb.astype(np.float32)
    b = st.brows
    thickness = 2.4 + 0.5 * traits["brow_thickness"]
    brows = st.brow_along * np.exp(-0.5 * (st.brow_distance / thickness) ** 2)
    brows *= np.clip(0.8 + 0.3 * noise[300].draw(rng, b), 0.0, 1.0) * 0.85
    strands = np.clip(1.0 + 0.5 * noise[300].draw(rng, b), 0.2, 1.8)
    img[b] = img[b] * (1 - brows[:, None]) + hair_rgb * (strands * brows)[:, None]
    s = st.scalp
    edge = tp.hairline(st.scalp_angle, hair.recession_mm)
    y = at.position[s, 1]
    scalp = smoothstep(y - edge, -1.0, 1.5) * st.scalp_no_ear
    if hair.bald_crown > 0:
        scalp *= 1.0 - hair.bald_crown * smoothstep(y, tp["t_r"][1] + 55.0, tp["t_r"][1] + 70.0)
    scalp = np.clip(scalp * (1.0 + 0.15 * noise[300].draw(rng, s)), 0.0, 1.0)
    strands = np.clip(1.0 + 0.5 * noise[300].draw(rng, s), 0.2, 1.8)
    img[s] = img[s] * (1 - scalp[:, None]) + hair_rgb * (strands * scalp)[:, None]
    return np.clip(img, 0.0, 1.0)


def _darken_wrinkles(img: np.ndarray, at: Atlas, st: _Static, look: Appearance, rng) -> None:
    """Expression lines: forehead (age), crow's feet (age), perioral (smoking, then age);
    broken up so they look drawn by skin, not by a ruler."""
    age = float(np.clip(look.age_factor, 0.0, 1.25))
    smoke = float(max(look.smoking_damage, 0.0))
    f = st.forehead
    strength = np.clip(1.15 * age - 0.2, 0, 1) * 0.14
    if strength > 0:
        pf = at.position[f]
        wobble = 1.2 * np.sin(pf[:, 0] / 17.0 + rng.uniform(0, 6.3))
        phase = (pf[:, 1] - pf[:, 1].min() + wobble) / 7.5
        dist = (phase - np.round(phase)) * 7.5
        lines = st.forehead_band * np.exp(-0.5 * (dist / 0.45) ** 2) * strength
        img[f] *= (1.0 - lines * _breakup(rng, len(f)))[:, None]
    strength = np.clip(1.3 * age - 0.25, 0, 1) * 0.14
    if strength > 0:
        img[st.crows] *= (1.0 - st.crows_lines * strength * _breakup(rng, len(st.crows)))[:, None]
    strength = np.clip(0.12 * smoke + 0.05 * age, 0.0, 0.22)
    if strength > 0:
        q = st.perioral
        img[q] *= (1.0 - st.perioral_lines * strength * _breakup(rng, len(q)))[:, None]


def _breakup(rng, n: int) -> np.ndarray:
    return np.clip(1.0 + 0.5 * rng.standard_normal(n, dtype=np.float32), 0.0, 2.0)


def _add_spots(img, at: Atlas, st: _Static, age: float, traits, rng) -> None:
    """Brown age spots (lentigines) on the face, 0 -> ~30 with age, and freckles."""
    n = rng.poisson(max(30.0 * age**1.5, 0.0)) + rng.poisson(max(traits["freckles"], 0.0) * 25)
    if n == 0:
        return
    front = st.front_by_y  # front texels in order of height, to find a spot's band fast
    pf = at.position[front]
    centres = pf[rng.integers(len(front), size=n)]
    radius = rng.uniform(0.8, 2.8, n)
    weight = rng.uniform(0.3, 0.8, n)
    spots = np.zeros(len(front), np.float32)
    for c, r, w in zip(centres, radius, weight, strict=True):
        lo, hi = np.searchsorted(pf[:, 1], [c[1] - 3.5 * r, c[1] + 3.5 * r])
        d2 = ((pf[lo:hi] - c) ** 2).sum(axis=1)
        spots[lo:hi] += w * np.exp(-0.5 * d2 / r**2)
    hit = np.flatnonzero(spots > 1e-3)
    spots = np.clip(spots[hit], 0.0, 1.0)[:, None] * 0.35
    texels = front[hit]
    img[texels] = img[texels] * (1 - spots) + np.array([0.45, 0.30, 0.20], np.float32) * spots
