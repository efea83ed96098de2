"""Cameras shared by rendering, landmark detection and consensus.

Conventions (millimetres, right-handed): a camera's rotation ``R`` has as rows the camera axes
in world coordinates: x to the image right, y to the image top, z towards the viewer (the
camera looks along -z). Pixel coordinates are ``(col, row)`` with pixel centres at integers,
row 0 at the top of the image.

A face frame puts the face looking along +z with +y up and the subject's left at +x. An
*orbit* view ``(yaw, pitch)`` moves the camera around the face: yaw > 0 towards the subject's
left (+x), pitch > 0 upwards (+y), so yaw 30 shows the left cheek and pitch 20 looks down on
the face from above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def orbit_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Camera axes (rows) in the face frame for an orbit view; roll turns the image."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    # Camera z (towards the viewer) points from the face towards the camera.
    z = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    x, y = c * x + s * y, -s * x + c * y
    return np.stack([x, y, z])


@dataclass(frozen=True)
class OrthoCamera:
    """An orthographic camera: the image spans ``2 * half_extent`` mm across ``size`` pixels.

    Parameters
    ----------
    rotation : (3, 3) rows are the camera axes in world coordinates
    centre : (3,) world point at the image centre
    half_extent : mm from the image centre to its edge
    size : image width and height in pixels
    distance : how far in front of ``centre`` (along camera z) the camera sits
    """

    rotation: np.ndarray
    centre: np.ndarray
    half_extent: float
    size: int
    distance: float = 600.0

    @property
    def mm_per_pixel(self) -> float:
        return 2.0 * self.half_extent / self.size

    @property
    def view_direction(self) -> np.ndarray:
        """Unit vector along which the camera looks (world)."""
        return -self.rotation[2]

    def pose(self) -> np.ndarray:
        """4x4 camera-to-world pose (pyrender's convention: the camera looks along its -z)."""
        pose = np.eye(4)
        pose[:3, :3] = self.rotation.T
        pose[:3, 3] = self.centre + self.rotation[2] * self.distance
        return pose

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``(n, 3)`` -> pixels ``(n, 2)`` (col, row) and depth ``(n,)`` in mm
        from the camera along its viewing direction."""
        local = (np.asarray(points, float) - self.centre) @ self.rotation.T
        scale = self.size / (2.0 * self.half_extent)
        col = (local[:, 0] + self.half_extent) * scale - 0.5
        row = (self.half_extent - local[:, 1]) * scale - 0.5
        return np.stack([col, row], axis=1), self.distance - local[:, 2]

    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``(n, 2)`` (col, row) -> ray origins on the camera plane ``(n, 3)`` and unit
        directions ``(n, 3)`` (all equal: the viewing direction)."""
        pixels = np.asarray(pixels, float).reshape(-1, 2)
        scale = 2.0 * self.half_extent / self.size
        x = (pixels[:, 0] + 0.5) * scale - self.half_extent
        y = self.half_extent - (pixels[:, 1] + 0.5) * scale
        origins = (
            self.centre
            + x[:, None] * self.rotation[0]
            + y[:, None] * self.rotation[1]
            + self.distance * self.rotation[2]
        )
        directions = np.broadcast_to(self.view_direction, origins.shape).copy()
        return origins, directions

    def unproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels ``(n, 2)`` with depth ``(n,)`` (mm from the camera) -> world points."""
        origins, directions = self.rays(pixels)
        return origins + directions * np.asarray(depth, float)[:, None]


def orbit_camera(
    frame_rotation: np.ndarray,
    centre: np.ndarray,
    yaw_deg: float,
    pitch_deg: float,
    *,
    roll_deg: float = 0.0,
    half_extent: float = 120.0,
    size: int = 128,
    distance: float = 600.0,
) -> OrthoCamera:
    """An orbit view around a face whose frame has axes ``frame_rotation`` (rows, in world
    coordinates) and whose view centre is ``centre`` (world)."""
    rotation = orbit_rotation(yaw_deg, pitch_deg, roll_deg) @ np.asarray(frame_rotation, float)
    return OrthoCamera(rotation, np.asarray(centre, float), half_extent, size, distance)
