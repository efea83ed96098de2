"""What a 3D scanner does to a face: crop, pose, noise, holes, baked lighting, colour cast.

A structured-light or stereo-photogrammetry capture (3dMD, Artec) returns a mesh in
millimetres in the scanner's own frame, with the head wherever the subject sat, a little
surface noise, holes where the surface was hidden or shiny, a neck stub and a texture whose
shading and white balance depend on the booth. The defaults here are of that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import zoom
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class ScannerSettings:
    """Capture variability of the simulated scanner (mm, degrees)."""

    max_rotation_deg: float = 20.0
    translation_sd_mm: float = 40.0
    noise_sd_mm: tuple[float, float] = (0.1, 0.3)
    n_holes: tuple[int, int] = (2, 6)
    hole_radius_mm: tuple[float, float] = (2.0, 6.0)
    hole_clearance_mm: float = 8.0  # no hole this close to a landmark (truth stays on surface)
    colour_cast_sd: float = 0.04
    light_elevation_deg: tuple[float, float] = (10.0, 45.0)
    light_azimuth_deg: tuple[float, float] = (-35.0, 35.0)
    ambient: tuple[float, float] = (0.45, 0.65)


def random_pose(settings: ScannerSettings, rng: np.random.Generator) -> np.ndarray:
    """A 4x4 rigid transform: yaw, pitch, roll uniform in +-max, then a translation."""
    angles = rng.uniform(-settings.max_rotation_deg, settings.max_rotation_deg, 3)
    pose = np.eye(4)
    # Intrinsic yaw (about y), pitch (about x), roll (about z) of the head.
    pose[:3, :3] = Rotation.from_euler("YXZ", angles, degrees=True).as_matrix()
    pose[:3, 3] = rng.normal(0.0, settings.translation_sd_mm, 3) + np.array([0.0, 0.0, -400.0])
    return pose


def bake_lighting(
    albedo: np.ndarray, normals: np.ndarray, settings: ScannerSettings, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Shade the albedo with a random key light, as texture captured in a booth is shaded.

    Parameters
    ----------
    albedo : (h, w, 3) float in [0, 1], row 0 at the top
    normals : (n_y, n_theta, 3) float, unit normals of the grid, row 0 at the bottom
    """
    h, w, _ = albedo.shape
    n = normals[::-1]  # texture rows run top to bottom
    n = zoom(n, (h / n.shape[0], w / n.shape[1], 1), order=1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-9
    elev = np.radians(rng.uniform(*settings.light_elevation_deg))
    azim = np.radians(rng.uniform(*settings.light_azimuth_deg))
    light = np.array([np.sin(azim) * np.cos(elev), np.sin(elev), np.cos(azim) * np.cos(elev)])
    ambient = rng.uniform(*settings.ambient)
    shade = ambient + (1.0 - ambient) * np.clip(n @ light, 0.0, 1.0) * 1.15
    cast = rng.normal(1.0, settings.colour_cast_sd, 3)
    img = np.clip(albedo * shade[..., None] * cast, 0.0, 1.0)
    meta = {
        "light_elevation_deg": float(np.degrees(elev)),
        "light_azimuth_deg": float(np.degrees(azim)),
        "ambient": float(ambient),
        "cast_r": float(cast[0]),
        "cast_g": float(cast[1]),
        "cast_b": float(cast[2]),
    }
    return img, meta


def grid_normals(vertices: np.ndarray, n_y: int, n_theta: int) -> np.ndarray:
    """Unit outward normals of a grid surface, ``(n_y, n_theta, 3)``."""
    p = vertices.reshape(n_y, n_theta, 3)
    d_theta = np.gradient(p, axis=1)
    d_y = np.gradient(p, axis=0)
    n = np.cross(d_theta, d_y)
    return n / (np.linalg.norm(n, axis=-1, keepdims=True) + 1e-9)


def capture(
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray,
    landmarks: np.ndarray,
    keep_vertex: np.ndarray,
    settings: ScannerSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Capture a face: crop, surface noise, holes, and a random pose.

    Parameters
    ----------
    vertices : (n, 3) float, face frame, mm
    faces : (m, 3) int
    normals : (n, 3) float, unit vertex normals
    landmarks : (k, 3) float, face frame, mm
    keep_vertex : (n,) bool, the scanner's field of view

    Returns
    -------
    vertices : (n', 3) scanner frame; faces : (m', 3); kept : (n',) int, index of each kept
    vertex in the input (to carry UVs); landmarks : (k, 3) scanner frame; meta : dict
    """
    noise_sd = rng.uniform(*settings.noise_sd_mm)
    noisy = vertices + normals * rng.normal(0.0, noise_sd, (len(vertices), 1))

    face_keep = keep_vertex[faces].all(axis=1)
    # Holes: small discs of missing surface away from the landmarks.
    tree = cKDTree(vertices)
    lm_tree = cKDTree(landmarks)
    candidates = np.flatnonzero(keep_vertex)
    holes = []
    for _ in range(rng.integers(settings.n_holes[0], settings.n_holes[1] + 1)):
        for _attempt in range(20):
            centre = vertices[rng.choice(candidates)]
            radius = rng.uniform(*settings.hole_radius_mm)
            if lm_tree.query(centre)[0] > radius + settings.hole_clearance_mm:
                break
        else:
            continue
        gone = np.zeros(len(vertices), bool)
        gone[tree.query_ball_point(centre, radius)] = True
        face_keep &= ~gone[faces].any(axis=1)
        holes.append((float(radius), *map(float, centre)))

    faces = faces[face_keep]
    kept = np.unique(faces)
    remap = np.full(len(vertices), -1)
    remap[kept] = np.arange(len(kept))
    faces = remap[faces]

    pose = random_pose(settings, rng)
    scanned = noisy[kept] @ pose[:3, :3].T + pose[:3, 3]
    lms = landmarks @ pose[:3, :3].T + pose[:3, 3]
    yaw, pitch, roll = Rotation.from_matrix(pose[:3, :3]).as_euler("YXZ", degrees=True)
    meta = {
        "noise_sd_mm": float(noise_sd),
        "n_holes": len(holes),
        "yaw_deg": float(yaw),
        "pitch_deg": float(pitch),
        "roll_deg": float(roll),
        "tx_mm": float(pose[0, 3]),
        "ty_mm": float(pose[1, 3]),
        "tz_mm": float(pose[2, 3]),
    }
    return scanned, faces, kept, lms, meta
