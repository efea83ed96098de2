"""Seam-preserving decimation of a scan mesh, and the face subsets that cleaning keeps.

:func:`_subset` keeps a mask of faces with their vertices in original order and their UV or
colours; :func:`decimate` simplifies a mesh to a vertex budget with fast-simplification, first
with the UV seams of a textured mesh held as fixed borders so texture charts stay closed, and
:func:`_carry_visuals` gives the decimated vertices the UV or colour of the nearest original
vertex, splitting them where seam copies disagree. :func:`face_health.ingest.scan.clean_mesh` uses
them.
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh
from scipy.spatial import cKDTree

from face_health.colour import visual_kind


def _subset(mesh: trimesh.Trimesh, face_mask: np.ndarray) -> trimesh.Trimesh:
    """Faces where ``face_mask`` (m,) bool holds, their vertices in original order, visuals."""
    faces = mesh.faces[face_mask]
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[faces] = True
    remap = np.cumsum(used) - 1
    out = trimesh.Trimesh(mesh.vertices[used], remap[faces], process=False)
    out.metadata = dict(mesh.metadata)
    visual, kind = mesh.visual, visual_kind(mesh)
    if kind == "texture":
        out.visual = trimesh.visual.TextureVisuals(uv=visual.uv[used], material=visual.material)
    elif kind == "vertex":
        out.visual = trimesh.visual.ColorVisuals(out, vertex_colors=visual.vertex_colors[used])
    elif kind == "face":
        out.visual = trimesh.visual.ColorVisuals(out, face_colors=visual.face_colors[face_mask])
    return out


def decimate(mesh: trimesh.Trimesh, budget: int, *, passes: int = 4) -> trimesh.Trimesh:
    """Simplify to at most ``budget`` vertices, keeping UV (split at seams) or vertex colours.

    A textured mesh is first simplified with its UV seams as fixed borders, so charts stay
    closed (no cracks) and no new face straddles a seam; if the borders alone exceed the budget,
    the welded geometry is simplified instead (faces across a seam may then smear texture).
    Seam copies make the first pass land a few per cent above the budget; up to ``passes``
    passes bring it under. ``passes=1`` is "about ``budget``" (within ~5 % for a scan's seams)
    at half the time: for copies whose size only sets a speed (the landmark views).
    """
    first, weld = trimesh.grouping.unique_rows(mesh.vertices)
    trees = _Trees(mesh)
    if visual_kind(mesh) == "texture":
        out = _simplify(
            mesh, mesh.vertices, mesh.faces, weld, budget, trees, passes, preserve_border=True
        )
        if len(out.vertices) <= budget or passes == 1:
            return out
    return _simplify(mesh, mesh.vertices[first], weld[mesh.faces], weld, budget, trees, passes)


class _Trees:
    """k-d trees of a mesh's vertices and face centres, built on first use, for every pass."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.mesh = mesh
        self._vertices: cKDTree | None = None
        self._centres: cKDTree | None = None

    @property
    def vertices(self) -> cKDTree:
        if self._vertices is None:
            self._vertices = cKDTree(self.mesh.vertices)
        return self._vertices

    @property
    def centres(self) -> cKDTree:
        if self._centres is None:
            self._centres = cKDTree(self.mesh.triangles_center)
        return self._centres


def _simplify(
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    faces: np.ndarray,
    weld: np.ndarray,
    budget: int,
    trees: _Trees,
    passes: int,
    preserve_border: bool = False,
) -> trimesh.Trimesh:
    """Quadric decimation of ``points (n, 3)``, ``faces (m, 3)`` to ``budget`` output vertices."""
    target = budget * len(points) / len(mesh.vertices)  # leave room for seam copies
    previous = len(mesh.vertices)
    for _ in range(max(1, passes)):
        n_faces = max(int(len(faces) * 0.98 * target / len(points)), 4)
        new_points, new_faces = fast_simplification.simplify(
            points, faces, target_count=n_faces, preserve_border=preserve_border
        )
        out = _carry_visuals(mesh, weld, new_points, new_faces, trees)
        # stop when under budget, or when fixed borders stop the count from falling
        if len(out.vertices) <= budget or len(out.vertices) > 0.99 * previous:
            break
        previous = len(out.vertices)
        target *= 0.97 * budget / len(out.vertices)
    out.metadata = dict(mesh.metadata)
    return out


def _carry_visuals(
    mesh: trimesh.Trimesh,
    weld: np.ndarray,
    points: np.ndarray,
    faces: np.ndarray,
    trees: _Trees | None = None,
) -> trimesh.Trimesh:
    """Give decimated ``points (k, 3)`` the colour or UV of the nearest original vertex.

    Seam copies share a position but not a UV: a corner takes the copy whose UV is closest to
    the UV of the original face nearest its new face, and new vertices split where faces
    disagree, so seams stay seams.
    """
    kind = visual_kind(mesh)
    trees = trees or _Trees(mesh)
    tree = trees.vertices
    if kind != "texture":
        out = trimesh.Trimesh(points, faces, process=False)
        if kind == "vertex":
            out.visual.vertex_colors = mesh.visual.vertex_colors[tree.query(points)[1]]
        return out
    uv = mesh.visual.uv
    nearest_face = trees.centres.query(points[faces].mean(axis=1))[1]
    reference = np.repeat(uv[mesh.faces[nearest_face]].mean(axis=1), 3, axis=0)
    corners = points[faces].reshape(-1, 3)
    candidates = tree.query(corners, k=min(8, len(mesh.vertices)))[1].reshape(len(corners), -1)
    copies = weld[candidates] == weld[candidates[:, :1]]
    uv_gap = np.linalg.norm(uv[candidates] - reference[:, None], axis=2)
    column = np.where(copies, uv_gap, np.inf).argmin(axis=1)
    source = candidates[np.arange(len(corners)), column]
    # unique (new vertex, source vertex) pairs, as one int64 key each (np.unique on rows
    # sorts a structured view, 10x slower); same pairs, same order
    n = np.int64(len(mesh.vertices))
    keys, inverse = np.unique(faces.reshape(-1).astype(np.int64) * n + source, return_inverse=True)
    pairs = np.c_[keys // n, keys % n]
    out = trimesh.Trimesh(points[pairs[:, 0]], inverse.reshape(-1, 3), process=False)
    out.visual = trimesh.visual.TextureVisuals(uv=uv[pairs[:, 1]], material=mesh.visual.material)
    return out
