"""Headless rendering of face meshes with pyrender (EGL).

The camera looks at the face along -z (the face looks along +z, +y up, millimetres); a view is
named by the head's yaw and pitch relative to that camera. One ``FaceRenderer`` keeps one
OpenGL context and is reused for many meshes and views (context creation costs ~40 ms,
a 224 px view ~8 ms on 2 CPU cores with Mesa llvmpipe).
"""

from __future__ import annotations

import os

# Headless: EGL with Mesa needs no display. Must be set before PyOpenGL is first imported.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import trimesh  # noqa: E402

# pyrender 0.1.45 still uses ``np.infty``, which numpy 2 removed (scene bounds code path).
if not hasattr(np, "infty"):
    np.inf = np.inf

import pyrender  # noqa: E402


def head_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """4x4 rotation turning the head by ``yaw`` (about +y, positive turns the face to its
    left, i.e. towards +x) then ``pitch`` (about +x, positive tilts the face up)."""
    yaw = trimesh.transformations.rotation_matrix(np.radians(yaw_deg), [0, 1, 0])
    pitch = trimesh.transformations.rotation_matrix(-np.radians(pitch_deg), [1, 0, 0])
    return pitch @ yaw


class FaceRenderer:
    """Render colour (and depth) images of a mesh from directional viewpoints.

    Parameters
    ----------
    image_size : width and height in pixels
    fov_deg : vertical field of view of the perspective camera
    distance_mm : camera distance from the look-at point
    background : RGB in [0, 1]
    """

    def __init__(
        self,
        image_size: int = 224,
        *,
        fov_deg: float = 30.0,
        distance_mm: float = 500.0,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
        ambient: float = 0.35,
        light_intensity: float = 2.5,
    ) -> None:
        self.image_size = int(image_size)
        self.fov_deg = fov_deg
        self.distance_mm = distance_mm
        self.background = background
        self.ambient = ambient
        self.light_intensity = light_intensity
        self._renderer: pyrender.OffscreenRenderer | None = None

    def _gl(self) -> pyrender.OffscreenRenderer:
        if self._renderer is None:
            self._renderer = pyrender.OffscreenRenderer(self.image_size, self.image_size)
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def __enter__(self) -> FaceRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def render(
        self,
        mesh: trimesh.Trimesh,
        views: list[tuple[float, float]],
        *,
        centre: np.ndarray | None = None,
        textured: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Render ``mesh`` once per ``(yaw_deg, pitch_deg)`` view.

        Parameters
        ----------
        mesh : face in its frontal frame (mm)
        views : list of (yaw, pitch) in degrees
        centre : (3,) look-at point on the face; defaults to the bounding-box centre
        textured : use the mesh's texture / vertex colours; otherwise grey shaded geometry

        Returns
        -------
        colour : (n_views, size, size, 3) uint8
        depth : (n_views, size, size) float32, mm from the camera, 0 where empty
        """
        centre = mesh.bounds.mean(axis=0) if centre is None else np.asarray(centre, float)
        shown = mesh.copy()
        shown.apply_translation(-centre)
        if not textured:
            shown.visual = trimesh.visual.ColorVisuals(shown, vertex_colors=[180, 180, 180, 255])
        node_mesh = pyrender.Mesh.from_trimesh(shown, smooth=True)
        scene = pyrender.Scene(
            ambient_light=np.full(3, self.ambient), bg_color=[*self.background, 1.0]
        )
        head = scene.add(node_mesh)
        camera_pose = np.eye(4)
        camera_pose[2, 3] = self.distance_mm
        scene.add(
            pyrender.PerspectiveCamera(
                yfov=np.radians(self.fov_deg), znear=10.0, zfar=self.distance_mm * 4
            ),
            pose=camera_pose,
        )
        # A key light from the camera, a little above: a neutral, repeatable studio light.
        light_pose = trimesh.transformations.rotation_matrix(np.radians(-15), [1, 0, 0])
        scene.add(pyrender.DirectionalLight(intensity=self.light_intensity), pose=light_pose)
        colours, depths = [], []
        gl = self._gl()
        for yaw, pitch in views:
            scene.set_pose(head, head_rotation(yaw, pitch))
            colour, depth = gl.render(scene)
            colours.append(colour[..., :3].copy())
            depths.append(depth.astype(np.float32))
        return np.stack(colours), np.stack(depths)
