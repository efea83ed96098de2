"""The skin of a simulated face: an albedo image in the cylinder's UV space.

The texture is painted analytically at ``px_per_mm`` texels per millimetre of surface
coordinate, with the same feature layout as the geometry, so lips, eyes, brows and hairline
sit exactly where the shape has them. Health shows here as described in ``effects``: wrinkles
and spots (age), perioral lines and a sallow tone (smoking), erythema (alcohol), pallor of the
lips, lower lids and skin (low haemoglobin).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from face_health.synthetic.anatomy import FaceGrid, lip_masks, smooth_mask
from face_health.synthetic.effects import Appearance
from face_health.synthetic.layout import R_ARC, FaceLayout, Identity


def texture_shape(grid: FaceGrid, px_per_mm: float) -> tuple[int, int]:
    """(height, width) in texels of the texture for ``grid``."""
    width_mm = np.radians(2 * grid.theta_max_deg) * R_ARC
    return int(round((grid.y_max - grid.y_min) * px_per_mm)), int(round(width_mm * px_per_mm))


def texel_coordinates(grid: FaceGrid, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Surface coordinates ``(u, v)`` in mm of every texel; row 0 is the top (``y_max``)."""
    h, w = shape
    theta = np.radians(np.linspace(-grid.theta_max_deg, grid.theta_max_deg, w))
    y = np.linspace(grid.y_max, grid.y_min, h)
    th, yy = np.meshgrid(theta, y)
    return th * R_ARC, yy


def _window(u, v, u_range, v_range) -> tuple[slice, slice]:
    """Rows and columns of the texels whose ``(u, v)`` lie in a box (u: columns, v: rows)."""
    cols = np.flatnonzero((u[0] >= u_range[0]) & (u[0] <= u_range[1]))
    rows = np.flatnonzero((v[:, 0] >= v_range[0]) & (v[:, 0] <= v_range[1]))
    if len(cols) == 0 or len(rows) == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _smooth_noise(rng, shape, sigma_px, amplitude):
    field = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma_px, mode="wrap")
    return amplitude * field / (field.std() + 1e-9)


def _line_field(distance, width):
    return np.exp(-0.5 * (distance / width) ** 2)


def _wrinkles(u, v, layout: FaceLayout, look: Appearance, rng, px_per_mm) -> np.ndarray:
    """Darkening (0..1) from expression lines: forehead, crow's feet, perioral."""
    age = float(np.clip(look.age_factor, 0.0, 1.25))
    smoke = float(max(look.smoking_damage, 0.0))
    out = np.zeros_like(u)
    # Forehead lines: wavy horizontals between the brows and the hairline.
    top, bottom = layout.v_hairline - 8.0, layout.v_brow + 9.0
    wobble = 1.2 * np.sin(u / 17.0 + rng.uniform(0, 6.3))
    spacing = 7.5
    phase = (v - bottom + wobble) / spacing
    dist = (phase - np.round(phase)) * spacing
    band = (v > bottom) & (v < top) & (np.abs(u) < 55.0)
    out += band * _line_field(dist, 0.45) * np.clip(1.15 * age - 0.2, 0.0, 1.0) * 0.14
    # Crow's feet: rays from the outer eye corners.
    for eye, s in ((layout.eye_r, -1.0), (layout.eye_l, 1.0)):
        win = _window(u, v, (eye.ex[0] - 17, eye.ex[0] + 17), (eye.ex[1] - 17, eye.ex[1] + 17))
        du, dv = s * (u[win] - eye.ex[0]), v[win] - eye.ex[1]
        rad = np.hypot(du, dv)
        ang = np.arctan2(dv, du)
        ray = np.cos(ang * 7.0) ** 16
        near = (du > 2.0) & (rad < 16.0) & (np.abs(ang) < 0.9)
        out[win] += near * ray * np.exp(-rad / 10.0) * np.clip(1.3 * age - 0.25, 0.0, 1.0) * 0.14
    # Perioral vertical lines above the upper lip: smoking first, age second.
    lip_top = layout.v_sto + layout.upper_vermilion
    win = _window(
        u, v, (-layout.mouth_half_width, layout.mouth_half_width), (lip_top, lip_top + 10)
    )
    uw, above = u[win], v[win] - lip_top
    dist_x = (uw / 3.2 - np.round(uw / 3.2)) * 3.2
    perioral = (above > 0.5) & (np.abs(uw) < layout.mouth_half_width - 2.0)
    strength = np.clip(0.18 * smoke + 0.06 * age, 0.0, 0.3)
    out[win] += perioral * _line_field(dist_x, 0.35) * np.exp(-above / 7.0) * strength
    # Break the lines up so they look drawn by skin, not by a ruler.
    return out * np.clip(1.0 + _smooth_noise(rng, u.shape, 1.5 * px_per_mm, 0.5), 0.0, 2.0)


def _spots(u, v, look: Appearance, rng, layout: FaceLayout) -> np.ndarray:
    """Brown age spots (lentigines) on cheeks, forehead and temples: 0 -> ~30 with age."""
    age = float(np.clip(look.age_factor, 0.0, 1.25))
    n = rng.poisson(max(30.0 * age**1.5, 0.0))
    out = np.zeros_like(u)
    for _ in range(n):
        cu, cv = rng.uniform(-85, 85), rng.uniform(layout.v_sto - 10, layout.v_hairline - 5)
        radius = rng.uniform(1.0, 3.0)
        weight = rng.uniform(0.3, 0.8)
        reach = 3.5 * radius
        win = _window(u, v, (cu - reach, cu + reach), (cv - reach, cv + reach))
        du, dv = u[win] - cu, v[win] - cv
        out[win] += weight * np.exp(-0.5 * (du**2 + dv**2) / radius**2)
    return np.clip(out, 0.0, 1.0)


def paint_albedo(
    layout: FaceLayout,
    identity: Identity,
    look: Appearance,
    grid: FaceGrid,
    rng: np.random.Generator,
    *,
    px_per_mm: float = 2.0,
) -> np.ndarray:
    """Paint the skin albedo, ``(h, w, 3)`` float in [0, 1], row 0 at the top of the head."""
    shape = texture_shape(grid, px_per_mm)
    u, v = texel_coordinates(grid, shape)
    i = identity
    age = float(np.clip(look.age_factor, 0.0, 1.25))

    # Base skin: an East Asian mid-light tone, identity sets the melanin level.
    tone = 1.0 - 0.07 * i["skin_tone"]
    skin = np.array([0.87, 0.69, 0.58]) * np.array([tone, tone**1.2, tone**1.35])
    img = np.broadcast_to(skin.astype(np.float32), shape + (3,)).copy()
    img *= 1.0 + _smooth_noise(rng, shape, 6.0 * px_per_mm, 0.025)[..., None]
    img *= 1.0 + _smooth_noise(rng, shape, 0.6 * px_per_mm, 0.02)[..., None]

    # Erythema of cheeks and nose: identity baseline + drinking.
    flush = 0.0
    for s in (-1.0, 1.0):
        flush = flush + np.exp(-0.5 * (((u - s * 42.0) / 16.0) ** 2 + ((v + 30.0) / 14.0) ** 2))
    flush = flush + 0.8 * np.exp(-0.5 * ((u / 9.0) ** 2 + ((v - layout.v_prn) / 12.0) ** 2))
    red = 0.03 * i["skin_redness"] + 0.07 * look.redness
    img[..., 0] *= 1.0 + red * flush
    img[..., 1] *= 1.0 - 0.7 * red * flush
    # Pallor lowers the skin's redness everywhere a little.
    img[..., 0] *= 1.0 - 0.03 * look.pallor

    # Sallow tone of smokers: less saturation, shifted towards yellow-grey.
    sallow = 0.06 * max(look.smoking_damage, 0.0)
    grey = img.mean(axis=-1, keepdims=True)
    img = img * (1 - sallow) + grey * sallow
    img[..., 2] *= 1.0 - 0.7 * sallow

    img *= 1.0 - _wrinkles(u, v, layout, look, rng, px_per_mm)[..., None]
    spots = _spots(u, v, look, rng, layout)[..., None]
    img = img * (1 - 0.35 * spots) + np.array([0.45, 0.30, 0.20]) * 0.35 * spots

    # Lips: red that fades with pallor (and a little with age).
    win = _window(
        u,
        v,
        (-layout.mouth_half_width - 3, layout.mouth_half_width + 3),
        (layout.v_sto - layout.lower_vermilion - 3, layout.v_sto + layout.upper_vermilion + 3),
    )
    upper_lip, lower_lip = lip_masks(u[win], v[win], layout)
    lips = np.clip(upper_lip + lower_lip, 0.0, 1.0)[..., None]
    lip_red = np.clip(1.0 - 0.12 * look.pallor - 0.1 * age, 0.55, 1.3)
    lip_colour = np.array([0.74 * lip_red, 0.38 / lip_red**0.5, 0.38 / lip_red**0.3])
    img[win] = img[win] * (1 - lips) + lip_colour * lips

    for eye in (layout.eye_r, layout.eye_l):
        lo_u, hi_u = sorted((eye.en[0], eye.ex[0]))
        win = _window(u, v, (lo_u - 3, hi_u + 3), (eye.en[1] - 12, eye.en[1] + 12))
        ue, ve = u[win], v[win]
        upper, lower, t = eye.lids(ue)
        # The lower lid rim shows the conjunctiva's red, which pallor drains.
        rim = ((t > 0.05) & (t < 0.95)) * _line_field(ve - (lower - 1.0), 0.7)
        rim_colour = np.array([0.78 * (1.0 - 0.1 * look.pallor), 0.45, 0.45])
        patch = img[win] * (1 - 0.6 * rim[..., None]) + rim_colour * 0.6 * rim[..., None]
        # Eyeball: sclera, iris, pupil; the upper lash line darkens the lid margin.
        eye_img = np.broadcast_to(np.array([0.86, 0.83, 0.80]), ue.shape + (3,)).copy()
        cu, cv = (eye.en[0] + eye.ex[0]) / 2.0, (eye.en[1] + eye.ex[1]) / 2.0 + 0.5
        d = np.hypot(ue - cu, ve - cv)
        eye_img[d < 5.6] = (0.20, 0.13, 0.09)
        eye_img[d < 2.0] = (0.03, 0.03, 0.03)
        lash = ((t > 0) & (t < 1)) * _line_field(ve - upper, 0.55)
        patch *= 1.0 - 0.75 * lash[..., None]
        inside = ((t > 0) & (t < 1)) * smooth_mask(upper - ve, 0.35) * smooth_mask(ve - lower, 0.35)
        img[win] = patch * (1 - inside[..., None]) + eye_img * inside[..., None]

    # Nostrils, seen from below.
    win = _window(u, v, (-14, 14), (layout.v_sn - 6, layout.v_sn + 10))
    for s in (-1.0, 1.0):
        du, dv = (u[win] - s * 5.5) / 2.6, (v[win] - layout.v_sn - 2.5) / 1.6
        img[win] *= 1.0 - 0.7 * np.exp(-0.5 * (du**2 + dv**2))[..., None]

    # Hair: brows, then scalp hair above a hairline that recedes at the temples.
    grey_hair = np.clip(1.1 * age - 0.35, 0.0, 0.8)
    hair = np.array([0.07, 0.055, 0.05]) * (1.0 - 0.15 * i["hair_darkness"])
    hair = hair * (1 - grey_hair) + np.array([0.62, 0.60, 0.58]) * grey_hair
    brows = np.zeros_like(u)
    thick = 2.3 + 0.5 * i["brow_thickness"]
    for eye, s in ((layout.eye_r, -1.0), (layout.eye_l, 1.0)):
        start, end = s * (abs(eye.en[0]) - 3.0), s * (abs(eye.ex[0]) + 7.0)
        tt = np.clip((u - start) / (end - start), -0.2, 1.2)
        centre = layout.v_brow + 1.0 + 3.0 * np.sin(np.pi * np.clip(tt, 0, 1)) - 2.0 * tt
        inside = (tt > 0) & (tt < 1)
        brows = np.maximum(brows, inside * _line_field(v - centre, thick * (1.0 - 0.4 * tt)))
    brows *= np.clip(0.8 + _smooth_noise(rng, shape, 0.5 * px_per_mm, 0.3), 0.0, 1.0)
    img = img * (1 - 0.85 * brows[..., None]) + hair * 0.85 * brows[..., None]
    temple_dip = 8.0 * np.exp(-0.5 * ((np.abs(u) - 55.0) / 14.0) ** 2)
    hairline = np.where(
        np.abs(u) < 110.0,
        layout.v_hairline - temple_dip - 2.0 * (np.abs(u) / 60.0) ** 2,
        -10.0,
    )
    scalp = 1.0 / (1.0 + np.exp(-(v - hairline) / 1.2))
    scalp = np.maximum(scalp, 1.0 / (1.0 + np.exp(-(np.abs(u) - 150.0) / 3.0)) * (v > -20))
    scalp *= np.clip(1.0 + _smooth_noise(rng, shape, 0.5 * px_per_mm, 0.15), 0.7, 1.2)
    scalp = np.clip(scalp, 0.0, 1.0)[..., None]
    img = img * (1 - scalp) + hair * scalp
    return np.clip(img, 0.0, 1.0)
