"""The images the landmark network sees: orthographic views of a scan, as network input.

Channels (``CHANNELS``): 0 shaded grey geometry lit from the camera, 1 depth relative to the
view centre in units of the half extent (nearer is negative; background +1), 2 grey texture
(0 when the scan has no colour). The first two need no texture, so untextured scans work.
Also here: the random views, clutter, holes and noise used to train the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from face_health.alignment.similarity import landmark_frame
from face_health.ingest.decimation import decimate
from face_health.views.cameras import OrthoCamera, orbit_camera
from face_health.views.rendering import OrthoRenderer

CHANNELS = ("shaded", "depth", "texture")
#: Network input values where nothing was rendered (shaded, depth, texture).
BACKGROUND = (0.0, 1.0, 0.0)
#: Where the view centre sits in a face frame (origin at the nose tip): behind and above it.
FACE_CENTRE = np.array([0.0, 12.0, -40.0])


def network_input(rendered: dict[str, np.ndarray], cameras: list[OrthoCamera]) -> np.ndarray:
    """Stack rendered channels into ``(V, 3, S, S)`` float32 network input."""
    shaded = rendered["shaded"]
    depth = np.empty_like(shaded)
    for i, cam in enumerate(cameras):
        d = (rendered["depth"][i] - cam.distance) / cam.half_extent
        depth[i] = np.where(np.isnan(d), BACKGROUND[1], np.clip(d, -1.0, 1.0))
    if "colour" in rendered:
        texture = rendered["colour"].astype(np.float32).mean(axis=-1) / 255.0
    else:
        texture = np.zeros_like(shaded)
    return np.stack([shaded, depth, texture], axis=1).astype(np.float32)


def visible_keypoints(
    camera: OrthoCamera, depth: np.ndarray, points: np.ndarray, *, tolerance_mm: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(K, 2)`` of ``points`` and whether each is in the image and not occluded."""
    pixels, point_depth = camera.project(points)
    s = camera.size
    inside = (pixels >= 0).all(axis=1) & (pixels <= s - 1).all(axis=1)
    cols = np.clip(np.round(pixels[:, 0]).astype(int), 0, s - 1)
    rows = np.clip(np.round(pixels[:, 1]).astype(int), 0, s - 1)
    # Nearest surface depth in a 3x3 neighbourhood: on steep slopes (under the nose) one
    # pixel spans several millimetres of depth.
    padded = np.pad(np.nan_to_num(depth, nan=np.inf), 1, constant_values=np.inf)
    gap = np.full(len(points), np.inf)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            gap = np.minimum(gap, np.abs(padded[rows + dr, cols + dc] - point_depth))
    visible = inside & (gap < tolerance_mm)
    return pixels.astype(np.float32), visible


@dataclass(frozen=True)
class TrainingViewSettings:
    """Random views and scan damage for training the landmark network."""

    size: int = 128
    views_per_scan: int = 24
    max_yaw: float = 60.0
    max_pitch: float = 40.0
    max_roll: float = 35.0
    fine_half_extent: tuple[float, float] = (100.0, 140.0)
    coarse_half_extent: tuple[float, float] = (150.0, 320.0)
    coarse_share: float = 0.3
    centre_jitter_mm: float = 12.0
    clutter_probability: float = 0.5
    hole_probability: float = 0.5
    # Shape variety beyond the simulator's faces (real faces are wider, longer, flatter...):
    # per-axis scale in the face frame, then a smooth random warp; landmarks move with it.
    axis_scale: tuple[float, float, float] = (0.0, 0.0, 0.0)  # e.g. 0.12: scale in 1 +- 0.12
    warp_mm: float = 0.0  # std of each warp bump's displacement
    warp_bumps: int = 4
    warp_width_mm: tuple[float, float] = (15.0, 35.0)
    # Scanner noise: jitter along the normals, and spikes (a few vertices shot outwards).
    surface_noise_mm: float = 0.0
    spike_probability: float = 0.0
    # Resolution: scans arrive from 5k to 100k vertices (demoface 10k); with this probability
    # the scan is decimated to a vertex count log-uniform in ``decimate_vertices``.
    decimate_probability: float = 0.0
    decimate_vertices: tuple[int, int] = (3000, 20000)


#: The shape variety and scanner noise the shipped checkpoint was fine-tuned with
#: (``face-health train-landmarks`` uses them unless told ``--no-reshape``,
#: ``--no-scanner-noise``; see benchmarks/README.md).
REAL_SCAN_VARIETY = {
    "axis_scale": (0.12, 0.12, 0.15),
    "warp_mm": 3.0,
    "surface_noise_mm": 0.4,
    "spike_probability": 0.3,
    "decimate_probability": 0.5,
}


def _reshaped(
    mesh: trimesh.Trimesh, landmarks: np.ndarray, frame: np.ndarray, rng, settings
) -> tuple[trimesh.Trimesh, np.ndarray]:
    """The scan and its landmarks under one random smooth deformation (and scanner noise).

    A per-axis scale in the face frame (about the nose tip) then a sum of Gaussian bumps,
    each displacing the surface near a random landmark: the same map moves the mesh and the
    landmarks, so each landmark stays on the surface at its anatomical place while the
    proportions (eye spacing, mouth height, face width, nose depth) change.
    """
    axis_scale = np.asarray(settings.axis_scale, float)
    if not axis_scale.any() and settings.warp_mm <= 0 and settings.surface_noise_mm <= 0:
        return mesh, landmarks  # before any draw: the random stream stays as without it
    scale = 1.0 + rng.uniform(-1.0, 1.0, 3) * axis_scale
    to_world = np.linalg.inv(frame)

    def deform(points: np.ndarray) -> np.ndarray:
        local = (frame[:3, :3] @ points.T).T + frame[:3, 3]
        return local * scale

    centres = deform(landmarks[rng.integers(len(landmarks), size=settings.warp_bumps)])
    shifts = rng.normal(0.0, settings.warp_mm, (settings.warp_bumps, 3)) * [1.0, 1.0, 0.6]
    widths = rng.uniform(*settings.warp_width_mm, settings.warp_bumps)

    def warp(local: np.ndarray) -> np.ndarray:
        if settings.warp_mm <= 0:
            return local
        d2 = ((local[:, None, :] - centres[None]) ** 2).sum(axis=2)
        return local + np.exp(-d2 / (2.0 * widths**2)) @ shifts

    def back(local: np.ndarray) -> np.ndarray:
        return (to_world[:3, :3] @ local.T).T + to_world[:3, 3]

    out = mesh.copy()
    out.vertices = back(warp(deform(mesh.vertices)))
    moved = back(warp(deform(landmarks)))
    if settings.surface_noise_mm > 0:
        normals = out.vertex_normals
        jitter = rng.normal(0.0, rng.uniform(0.0, settings.surface_noise_mm), len(normals))
        vertices = out.vertices + normals * jitter[:, None]
        if rng.random() < settings.spike_probability:
            spikes = rng.choice(len(vertices), size=rng.integers(3, 30), replace=False)
            vertices[spikes] += normals[spikes] * rng.uniform(3.0, 25.0, (len(spikes), 1))
        out.vertices = vertices
    return out, moved


def _damaged(mesh: trimesh.Trimesh, frame: np.ndarray, rng, settings) -> trimesh.Trimesh:
    """Holes and clutter (shoulders, a chest, a stray object) as real scans have them."""
    parts = [mesh]
    to_world = np.linalg.inv(frame)
    if rng.random() < settings.hole_probability:
        keep = np.ones(len(mesh.faces), bool)
        centres = mesh.triangles_center
        for _ in range(rng.integers(1, 6)):
            c = centres[rng.integers(len(centres))]
            keep &= np.linalg.norm(centres - c, axis=1) > rng.uniform(3.0, 12.0)
        parts[0] = mesh.submesh([np.flatnonzero(keep)], append=True)
    if rng.random() < settings.clutter_probability:
        # Shoulders / chest: a wide box below the chin, in the face frame.
        box = trimesh.creation.box(extents=[rng.uniform(300, 480), 120.0, rng.uniform(150, 250)])
        box.apply_translation([0.0, rng.uniform(-260, -200), rng.uniform(-140, -60)])
        box.apply_transform(to_world)
        parts.append(box)
        if rng.random() < 0.3:  # a stray object near the head (a hand, a head rest)
            blob = trimesh.creation.icosphere(subdivisions=2, radius=rng.uniform(20, 45))
            blob.apply_translation(rng.uniform([-160, -80, -120], [160, 120, 20]))
            blob.apply_transform(to_world)
            parts.append(blob)
    if len(parts) == 1:
        return parts[0]
    grey = [p.copy() for p in parts]
    for p in grey[1:]:
        p.visual = trimesh.visual.ColorVisuals(p, vertex_colors=[170, 150, 140, 255])
    if isinstance(grey[0].visual, trimesh.visual.TextureVisuals):
        grey[0].visual = grey[0].visual.to_color()
    return trimesh.util.concatenate(grey)


def training_views(
    mesh: trimesh.Trimesh,
    landmarks: np.ndarray,
    landmark_names: list[str],
    settings: TrainingViewSettings,
    rng: np.random.Generator,
    renderer: OrthoRenderer,
) -> dict[str, np.ndarray]:
    """Random training views of one annotated scan.

    Parameters
    ----------
    mesh : scan in mm (any pose); landmarks : (K, 3) in the scan's frame, mm

    Returns
    -------
    ``images`` (V, 3, S, S) float32, ``keypoints`` (V, K, 2) float32, ``visible`` (V, K) bool
    """
    frame = landmark_frame(dict(zip(landmark_names, landmarks, strict=True)))
    mesh, landmarks = _reshaped(mesh, landmarks, frame, rng, settings)
    frame = landmark_frame(dict(zip(landmark_names, landmarks, strict=True)))
    if rng.random() < settings.decimate_probability:
        low, high = np.log(settings.decimate_vertices)
        budget = int(np.exp(rng.uniform(low, high)))
        if budget < len(mesh.vertices):
            mesh = decimate(mesh, budget)  # landmarks stay within ~0.5 mm of the surface
    to_world = np.linalg.inv(frame)
    rotation_frame = frame[:3, :3]
    centre = to_world[:3, :3] @ FACE_CENTRE + to_world[:3, 3]
    damaged = _damaged(mesh, frame, rng, settings)
    cameras = []
    for _ in range(settings.views_per_scan):
        coarse = rng.random() < settings.coarse_share
        half = rng.uniform(*(settings.coarse_half_extent if coarse else settings.fine_half_extent))
        jitter = settings.centre_jitter_mm * (4.0 if coarse else 1.0)
        cameras.append(
            orbit_camera(
                rotation_frame,
                centre + rng.normal(0.0, jitter, 3),
                rng.uniform(-settings.max_yaw, settings.max_yaw),
                rng.uniform(-settings.max_pitch, settings.max_pitch),
                roll_deg=rng.uniform(-settings.max_roll, settings.max_roll),
                half_extent=half,
                size=settings.size,
            )
        )
    rendered = renderer.render(damaged, cameras)
    images = network_input(rendered, cameras)
    keypoints, visible = zip(
        *(visible_keypoints(c, rendered["depth"][i], landmarks) for i, c in enumerate(cameras)),
        strict=True,
    )
    return {"images": images, "keypoints": np.stack(keypoints), "visible": np.stack(visible)}
