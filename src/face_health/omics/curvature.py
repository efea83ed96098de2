"""Per-vertex curvature of a triangle mesh: discrete mean and Gaussian curvature, shape index.

:func:`vertex_curvature` estimates the mean curvature from the cotangent Laplacian and the
Gaussian curvature from the angle defect over mixed Voronoi areas (Meyer et al. 2003), leaves
the mesh boundary NaN and smooths both fields over the 1-ring to a chosen radius in
millimetres; :class:`VertexCurvature` holds the result and derives the Koenderink shape index.
The region morphology of :mod:`face_health.omics.radiomics` reads them through ``MeshSurface``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class VertexCurvature:
    """Per-vertex curvature of a whole mesh; NaN on the mesh boundary.

    Attributes
    ----------
    mean : (n,) float
        Mean curvature H (1/mm), positive where the surface bulges towards its normals
        (a sphere with outward normals has H = +1/r).
    gaussian : (n,) float
        Gaussian curvature K (1/mm^2).
    """

    mean: np.ndarray
    gaussian: np.ndarray

    @property
    def shape_index(self) -> np.ndarray:
        """(n,) Koenderink shape index ``(2/pi) arctan((k1 + k2) / (k1 - k2))``, k1 >= k2.

        +1 is a cap (convex like the nose tip, with outward normals), 0 a saddle, -1 a cup;
        NaN on flat points, where it is undefined.
        """
        discriminant = np.sqrt(np.clip(self.mean**2 - self.gaussian, 0.0, None))
        # k1 + k2 = 2H and k1 - k2 = 2 sqrt(H^2 - K) >= 0, so arctan2 stays in [-pi/2, pi/2].
        index = (2.0 / np.pi) * np.arctan2(self.mean, discriminant)
        # Below 1e-6 1/mm (a radius of 1 km) a scan is flat and the index is noise.
        flat = (np.abs(self.mean) < 1e-6) & (discriminant < 1e-6)
        return np.where(flat, np.nan, index)


def vertex_curvature(mesh: trimesh.Trimesh, *, smoothing_mm: float = 3.0) -> VertexCurvature:
    """Discrete mean and Gaussian curvature at every vertex (Meyer et al. 2003).

    Mean curvature from the cotangent mean-curvature normal,
    ``H = n . sum_j (cot a_ij + cot b_ij)(x_i - x_j) / (4 A)``; Gaussian curvature from the
    angle defect, ``K = (2 pi - sum of angles at the vertex) / A``; ``A`` is the mixed Voronoi
    area and ``n`` the vertex normal. Vertices on the mesh boundary get NaN (their ring is
    incomplete). Scans are noisy at the scale of one edge (raw H spans about +-0.5 1/mm on a
    simulated scan, ten times the face's own curvature), so both fields are then averaged over
    the 1-ring (area-weighted: curvature measure / area, as over a small ball)
    ``(smoothing_mm / mean edge)^2`` times, a diffusion over about ``smoothing_mm``; a
    constant field is unchanged. ``MeshSurface`` computes it once per subject.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Millimetres; normals of a face scan point out of the face.
    smoothing_mm : float
        Radius of the averaging, mm (0: raw per-vertex estimates).
    """
    vertices = np.asarray(mesh.vertices, dtype=float)
    faces = np.asarray(mesh.faces, dtype=np.intp)
    n = len(vertices)
    corners = vertices[faces]  # (m, 3 corners, 3)
    # Edge opposite corner i runs from corner i+1 to corner i+2.
    e_next = np.roll(corners, -1, axis=1) - corners
    e_prev = np.roll(corners, 1, axis=1) - corners
    cross = np.linalg.norm(np.cross(e_next, e_prev), axis=2)
    dot = np.einsum("ijk,ijk->ij", e_next, e_prev)
    angles = np.arctan2(cross, dot)  # (m, 3) interior angle at each corner
    cot = np.where(cross > 1e-12, dot / np.maximum(cross, 1e-12), 0.0)
    face_area = cross[:, 0] / 2.0
    # Mixed Voronoi area: Voronoi for non-obtuse faces, else half / quarter of the face.
    opposite_sq = np.linalg.norm(np.roll(corners, 1, axis=1) - np.roll(corners, -1, axis=1), axis=2)
    opposite_sq = opposite_sq**2
    voronoi = (
        np.roll(opposite_sq, 1, axis=1) * np.roll(cot, 1, axis=1)
        + np.roll(opposite_sq, -1, axis=1) * np.roll(cot, -1, axis=1)
    ) / 8.0
    obtuse = angles > np.pi / 2
    any_obtuse = obtuse.any(axis=1, keepdims=True)
    area_corner = np.where(
        any_obtuse, np.where(obtuse, face_area[:, None] / 2, face_area[:, None] / 4), voronoi
    )
    area = np.bincount(faces.ravel(), area_corner.ravel(), minlength=n)
    # Cotangent Laplacian: the cot at corner i weighs the edge (i+1, i+2).
    a, b = np.roll(faces, -1, axis=1).ravel(), np.roll(faces, 1, axis=1).ravel()
    weight = cot.ravel()
    delta = vertices[a] - vertices[b]
    laplacian = np.stack(
        [
            np.bincount(a, weight * delta[:, k], minlength=n)
            - np.bincount(b, weight * delta[:, k], minlength=n)
            for k in range(3)
        ],
        axis=1,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = 0.25 * np.einsum("ij,ij->i", laplacian, mesh.vertex_normals) / area
        gaussian = (2 * np.pi - np.bincount(faces.ravel(), angles.ravel(), minlength=n)) / area
    sorted_edges = np.sort(mesh.edges, axis=1)
    boundary = np.zeros(n, dtype=bool)
    boundary[sorted_edges[trimesh.grouping.group_rows(sorted_edges, require_count=1)]] = True
    invalid = boundary | ~(area > 0)
    mean[invalid], gaussian[invalid] = np.nan, np.nan
    ring = np.asarray(mesh.edges_unique, dtype=np.intp)
    edge = float(mesh.edges_unique_length.mean()) if len(ring) else 0.0
    for _ in range(int(round((smoothing_mm / edge) ** 2)) if edge > 0 else 0):
        mean, gaussian = (_ring_average(ring, f, area) for f in (mean, gaussian))
    return VertexCurvature(mean=mean, gaussian=gaussian)


def _ring_average(edges: np.ndarray, values: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Area-weighted mean of ``values`` (n,) over each vertex and its 1-ring (edges (e, 2))."""
    finite = np.isfinite(values)
    weighted = np.where(finite, values * area, 0.0)
    weight = np.where(finite, area, 0.0)
    n = len(values)
    total = weighted + np.bincount(edges[:, 0], weighted[edges[:, 1]], minlength=n)
    total += np.bincount(edges[:, 1], weighted[edges[:, 0]], minlength=n)
    norm = weight + np.bincount(edges[:, 0], weight[edges[:, 1]], minlength=n)
    norm += np.bincount(edges[:, 1], weight[edges[:, 0]], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, total / norm, np.nan)
