"""The shape of a simulated face: a radius field over a cylinder, built from anatomical parts.

``radius_field`` evaluates ``r(theta, y)`` on a grid; ``grid_mesh`` triangulates it with UVs,
and ``point_on_grid`` returns the exact surface point (on the triangulated mesh) at a surface
coordinate, which is how landmarks land on the surface. See ``layout`` for the coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face_health.synthetic.effects import Appearance
from face_health.synthetic.layout import R_ARC, FaceLayout, Identity, jawline


@dataclass(frozen=True)
class FaceGrid:
    """The sampling grid of the height field: ``theta`` (radians) by ``y`` (mm)."""

    theta_max_deg: float = 110.0
    y_min: float = -175.0
    y_max: float = 100.0
    n_theta: int = 191
    n_y: int = 211

    @property
    def theta(self) -> np.ndarray:
        return np.radians(np.linspace(-self.theta_max_deg, self.theta_max_deg, self.n_theta))

    @property
    def y(self) -> np.ndarray:
        return np.linspace(self.y_min, self.y_max, self.n_y)


def _bump(u, v, u0, v0, su, sv, amplitude):
    return amplitude * np.exp(-0.5 * (((u - u0) / su) ** 2 + ((v - v0) / sv) ** 2))


def _segment_groove(u, v, start, end, sigma, depth_start, depth_end):
    """A groove along a segment (e.g. a nasolabial fold) tapering from start to end."""
    p0, p1 = np.asarray(start, float), np.asarray(end, float)
    d = p1 - p0
    t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / (d @ d), 0.0, 1.0)
    dist2 = (u - p0[0] - t * d[0]) ** 2 + (v - p0[1] - t * d[1]) ** 2
    depth = depth_start + (depth_end - depth_start) * t
    # Fade out past the ends so the groove does not stop abruptly.
    ends = np.exp(-0.5 * (np.minimum(t * 6.0, (1.0 - t) * 6.0).clip(0, 1) - 1.0) ** 2 / 0.25)
    return -depth * ends * np.exp(-0.5 * dist2 / sigma**2)


def _superellipse_radius(theta, a, b, p):
    """Radius of ``|x/a|^p + |z/b|^p = 1`` at angle ``theta`` (x = r sin, z = r cos)."""
    s, c = np.abs(np.sin(theta)), np.abs(np.cos(theta))
    return 1.0 / ((s / a) ** p + (c / b) ** p) ** (1.0 / p)


def smooth_mask(signed_distance, width):
    """A logistic step: 1 where ``signed_distance`` >> ``width``, 0 where << -width."""
    return 1.0 / (1.0 + np.exp(-signed_distance / width))


def lip_masks(u, v, layout: FaceLayout) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks of the upper and lower vermilion (1 inside, 0 outside)."""
    w = layout.mouth_half_width
    x = np.clip(np.abs(u) / w, 0.0, 1.0)
    inside = smooth_mask(w - np.abs(u), 1.2)
    # Cupid's bow: the upper border dips a little at the midline and peaks at the philtral columns.
    bow = 1.0 - 0.18 * np.exp(-((u / 3.5) ** 2))
    upper_border = layout.v_sto + layout.upper_vermilion * (1.0 - x**2) ** 0.6 * bow
    lower_border = layout.v_sto - layout.lower_vermilion * (1.0 - x**2) ** 0.7
    upper = inside * smooth_mask(upper_border - v, 0.5) * smooth_mask(v - layout.v_sto, 0.4)
    lower = inside * smooth_mask(v - lower_border, 0.5) * smooth_mask(layout.v_sto - v, 0.4)
    return upper, lower


def eye_mask(u, v, layout: FaceLayout) -> np.ndarray:
    """Soft mask of the two palpebral fissures (the visible eyeball)."""
    out = np.zeros_like(u)
    for eye in (layout.eye_r, layout.eye_l):
        upper, lower, t = eye.lids(u)
        inside = (t > 0) & (t < 1)
        m = smooth_mask(upper - v, 0.35) * smooth_mask(v - lower, 0.35) * inside
        out = np.maximum(out, m)
    return out


def radius_field(
    theta: np.ndarray, y: np.ndarray, layout: FaceLayout, identity: Identity, look: Appearance
) -> np.ndarray:
    """Radius ``r`` (mm) of the face surface at ``theta`` (radians) and ``y`` (mm).

    ``theta`` and ``y`` broadcast together (e.g. a meshgrid). The face is the sum of a head
    cross-section (a superellipse whose half width and depth vary with height), anatomical
    parts as smooth bumps and grooves, and a blend into the neck below the jawline.
    """
    i = identity
    male = identity.sex == "M"
    age = float(np.clip(look.age_factor, -0.1, 1.25))
    fat = float(np.clip(look.adiposity, -2.5, 3.5))
    u, v = theta * R_ARC, y
    lf, uf = layout.lower_face_scale, layout.upper_face_scale

    # Head cross-section: half width a(y), half depth b(y), front flatness p(y).
    ky = np.array([-140.0, -110.0, -80.0, -50.0, -20.0, 0.0, 30.0, 70.0, 110.0])
    ky = np.where(ky < 0, ky * lf, ky * uf)
    lower_gain = np.array([0.3, 0.6, 1.0, 1.0, 0.8, 0.4, 0.3, 0.2, 0.2])
    jaw = 3.5 * i["jaw_width"] + (4.0 if male else 0.0)
    ka = np.array([52.0, 50.0 + 0.5 * jaw, 60.0 + jaw, 69.0, 74.0, 75.0, 74.0, 70.0, 62.0])
    ka = ka + layout.half_width_gain * lower_gain
    kb = np.array([88.0, 91.0, 95.0, 94.0, 93.0, 95.0, 96.0, 90.0, 76.0])
    kb = kb + np.array([0, 1, 1.5, 1.2, 0.6, 0, 0, 0, 0]) * max(fat, 0.0)
    kp = np.array([2.1, 2.0, 1.85, 1.85, 1.9, 1.95, 2.0, 2.1, 2.1])
    a, b, p = (np.interp(y, ky, k) for k in (ka, kb, kp))
    r = _superellipse_radius(theta, a, b, p)

    # Forehead and brow.
    brow_a = (3.5 if male else 1.8) + 1.0 * i["brow_projection"]
    r = r + _bump(u, v, 0.0, layout.v_brow + 2.0, 13.0, 6.0, brow_a)
    for s in (-1.0, 1.0):
        r = r + _bump(u, v, s * 27.0, layout.v_brow, 16.0, 5.0, 0.8 * brow_a)
        # Temporal hollow: deeper with age, filled by fat.
        r = r + _bump(u, v, s * 105.0, 25.0, 14.0, 18.0, -(1.5 + 2.0 * age - 1.0 * fat))
    r = r + _bump(u, v, 0.0, 0.0, 9.0, 5.0, -3.5)  # nasion

    # Orbits, eyeballs, lids.
    for eye in (layout.eye_r, layout.eye_l):
        cu = (eye.en[0] + eye.ex[0]) / 2.0
        cv = (eye.en[1] + eye.ex[1]) / 2.0
        r = r + _bump(u, v, cu, cv + 1.0, 14.0, 10.0, -9.0)
        r = r + _bump(u, v, cu, cv - 0.5, 10.0, 6.5, 5.5)
        # The inner corner sits deep beside the nasal bridge.
        r = r + _bump(u, v, eye.en[0], eye.en[1], 5.0, 6.0, -3.5)
        # Upper-lid hooding and under-eye bags grow with age.
        r = r + _bump(
            u, v, cu + 0.15 * (eye.ex[0] - eye.en[0]), cv + 7.0, 9.0, 2.5, 0.4 + 1.6 * age
        )
        r = r + _bump(u, v, cu, cv - 9.5, 9.0, 3.0, 0.2 + 1.5 * age + 0.3 * fat)
    r = r - 1.2 * eye_mask(u, v, layout)

    # Cheekbones, cheeks, jowls.
    for s in (-1.0, 1.0):
        r = r + _bump(u, v, s * 52.0, -20.0, 18.0, 11.0, 4.5 + 1.2 * i["cheekbone"])
        r = r + _bump(u, v, s * 46.0, -58.0 - 4.0 * age, 16.0, 14.0, 1.0 + 1.8 * fat)
        r = r + _bump(u, v, s * 44.0, layout.v_pg - 2.0, 12.0, 9.0, 2.0 * age + 0.8 * fat)
        # Nasolabial fold from the ala to beside the mouth corner.
        r = r + _segment_groove(
            u,
            v,
            (s * (layout.alar_half_width + 3.0), layout.v_sn + 3.0),
            (s * (layout.mouth_half_width + 7.0), layout.v_sto - 12.0),
            2.2,
            max(0.6 + 2.4 * age - 0.3 * fat, 0.2),
            max(0.3 + 1.2 * age, 0.1),
        )

    # Nose: a ridge from the nasion to the tip, tip bump, alae.
    t = np.clip((0.0 - v) / (0.0 - layout.v_prn), 0.0, 1.0)
    below = v < layout.v_prn
    fall = np.clip((layout.v_prn - v) / (layout.v_prn - layout.v_sn), 0.0, 1.5)
    ridge_h = np.where(below, np.clip(1.0 - fall**2, 0.0, 1.0), 0.35 + 0.65 * t**1.3)
    ridge_h = np.where(v > 2.0, 0.35 * np.exp(-0.5 * ((v - 2.0) / 3.0) ** 2), ridge_h)
    # A super-Gaussian cross-section: a narrow dorsum with steep side walls.
    width = 5.0 + 3.0 * t + 0.08 * layout.alar_half_width * t
    r = r + layout.nose_projection * 0.9 * ridge_h * np.exp(-((np.abs(u) / width) ** 2.4))
    r = r + _bump(u, v, 0.0, layout.v_prn, 6.5, 5.5, 0.25 * layout.nose_projection)
    for s in (-1.0, 1.0):
        r = r + _bump(u, v, s * (layout.alar_half_width - 4.0), layout.v_sn + 4.5, 5.0, 4.5, 5.5)

    # Lips, philtrum, mouth slit, labiomental fold, chin.
    upper_lip, lower_lip = lip_masks(u, v, layout)
    r = r + layout.lip_projection * (upper_lip + 1.1 * lower_lip)
    r = r + _bump(u, v, 0.0, (layout.v_sn + layout.v_sto) / 2.0, 9.0, 7.0, 1.5)
    r = r + _bump(u, v, 0.0, (layout.v_sn + layout.v_sto) / 2.0 + 2.0, 2.2, 6.0, -0.6)
    mouth = np.exp(-0.5 * ((v - layout.v_sto) / 0.7) ** 2) * smooth_mask(
        layout.mouth_half_width - np.abs(u), 1.0
    )
    r = r - 1.8 * mouth
    r = r + _bump(u, v, 0.0, layout.v_sl, 14.0, 4.0, -2.5)
    chin_a = (5.0 if male else 4.0) + 1.8 * i["chin_projection"]
    r = r + _bump(u, v, 0.0, layout.v_pg, 14.0 + (3.0 if male else 0.0), 8.0, chin_a)

    # Ears (a simple ridge; enough for the outline and the tragion) and the neck.
    ear = 13.0 * (1.0 + 0.08 * i["ear_size"])
    for s in (-1.0, 1.0):
        r = r + _bump(u, v, s * np.radians(94.0) * R_ARC, -12.0, 5.0, 0.45 * ear * 2.2, ear)
    neck = _superellipse_radius(theta, 47.0 + 4.0 * fat + (4.0 if male else 0.0), 52.0, 2.2)
    blend = smooth_mask(jawline(theta, layout) - y, layout.jaw_blur)
    return (1.0 - blend) * r + blend * neck


def grid_mesh(radius: np.ndarray, grid: FaceGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate a radius field sampled on ``grid``.

    Returns
    -------
    vertices : (n_y * n_theta, 3) float, mm
    faces : (2 * (n_y - 1) * (n_theta - 1), 3) int, counter-clockwise seen from outside
    uv : (n_y * n_theta, 2) float in [0, 1], u along theta, v along y
    """
    th, yy = np.meshgrid(grid.theta, grid.y)
    vertices = np.stack([radius * np.sin(th), yy, radius * np.cos(th)], axis=-1).reshape(-1, 3)
    idx = np.arange(grid.n_y * grid.n_theta).reshape(grid.n_y, grid.n_theta)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    uu, vv = np.meshgrid(np.linspace(0, 1, grid.n_theta), np.linspace(0, 1, grid.n_y))
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    return vertices, faces, uv


def point_on_grid(vertices: np.ndarray, grid: FaceGrid, theta: float, y: float) -> np.ndarray:
    """The point of the triangulated grid surface at ``(theta, y)``: exactly on the mesh."""
    fj = (np.degrees(theta) + grid.theta_max_deg) / (2 * grid.theta_max_deg) * (grid.n_theta - 1)
    fi = (y - grid.y_min) / (grid.y_max - grid.y_min) * (grid.n_y - 1)
    j = int(np.clip(np.floor(fj), 0, grid.n_theta - 2))
    i = int(np.clip(np.floor(fi), 0, grid.n_y - 2))
    s, t = fj - j, fi - i
    grid_v = vertices.reshape(grid.n_y, grid.n_theta, 3)
    p00, p01, p10, p11 = grid_v[i, j], grid_v[i, j + 1], grid_v[i + 1, j], grid_v[i + 1, j + 1]
    # Same split as grid_mesh: triangles (00, 01, 11) and (00, 11, 10).
    if s >= t:
        return p00 + s * (p01 - p00) + t * (p11 - p01)
    return p00 + t * (p10 - p00) + s * (p11 - p10)
