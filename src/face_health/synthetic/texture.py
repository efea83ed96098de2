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

from face_health.synthetic.anatomy import FaceGrid, eye_mask, lip_masks
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


def _smooth_noise(rng, shape, sigma_px, amplitude):
    field = gaussian_filter(rng.standard_normal(shape), sigma_px, mode="wrap")
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
        du, dv = s * (u - eye.ex[0]), v - eye.ex[1]
        rad = np.hypot(du, dv)
        ang = np.arctan2(dv, du)
        ray = np.cos(ang * 7.0) ** 16
        near = (du > 2.0) & (rad < 16.0) & (np.abs(ang) < 0.9)
        out += near * ray * np.exp(-rad / 10.0) * np.clip(1.3 * age - 0.25, 0.0, 1.0) * 0.14
    # Perioral vertical lines above the upper lip: smoking first, age second.
    dist_x = (u / 3.2 - np.round(u / 3.2)) * 3.2
    above = v - (layout.v_sto + layout.upper_vermilion)
    perioral = (above > 0.5) & (above < 10.0) & (np.abs(u) < layout.mouth_half_width - 2.0)
    strength = np.clip(0.18 * smoke + 0.06 * age, 0.0, 0.3)
    out += perioral * _line_field(dist_x, 0.35) * np.exp(-above / 7.0) * strength
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
        out += rng.uniform(0.3, 0.8) * np.exp(-0.5 * ((u - cu) ** 2 + (v - cv) ** 2) / radius**2)
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
    img = np.broadcast_to(skin, shape + (3,)).copy()
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

    # Lips and the lower lid rim: red that fades with pallor.
    upper_lip, lower_lip = lip_masks(u, v, layout)
    lips = np.clip(upper_lip + lower_lip, 0.0, 1.0)[..., None]
    lip_red = np.clip(1.0 - 0.12 * look.pallor - 0.1 * age, 0.55, 1.3)
    lip_colour = np.array([0.74 * lip_red, 0.38 / lip_red**0.5, 0.38 / lip_red**0.3])
    img = img * (1 - lips) + lip_colour * lips
    for eye in (layout.eye_r, layout.eye_l):
        _, lower, t = eye.lids(u)
        rim = ((t > 0.05) & (t < 0.95)) * _line_field(v - (lower - 1.0), 0.7)
        rim_colour = np.array([0.78, 0.45, 0.45]) * np.array([1.0 - 0.1 * look.pallor, 1, 1])
        img = img * (1 - 0.6 * rim[..., None]) + rim_colour * 0.6 * rim[..., None]

    # Eyes: sclera, iris, pupil, lash line.
    eyes = eye_mask(u, v, layout)[..., None]
    eye_img = np.broadcast_to(np.array([0.86, 0.83, 0.80]), shape + (3,)).copy()
    for eye in (layout.eye_r, layout.eye_l):
        cu = (eye.en[0] + eye.ex[0]) / 2.0
        cv = (eye.en[1] + eye.ex[1]) / 2.0 + 0.5
        d = np.hypot(u - cu, v - cv)
        eye_img[d < 5.6] = (0.20, 0.13, 0.09)
        eye_img[d < 2.0] = (0.03, 0.03, 0.03)
        upper, _, t = eye.lids(u)
        lash = ((t > 0) & (t < 1)) * _line_field(v - upper, 0.55)
        img *= 1.0 - 0.75 * lash[..., None]
    img = img * (1 - eyes) + eye_img * eyes

    # Nostrils, seen from below.
    for s in (-1.0, 1.0):
        nostril = np.exp(-0.5 * (((u - s * 5.5) / 2.6) ** 2 + ((v - layout.v_sn - 2.5) / 1.6) ** 2))
        img *= 1.0 - 0.7 * nostril[..., None]

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
