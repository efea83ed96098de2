"""What a fitted face model gives: landmarks, regions and residuals on the fixed topology.

``fitted_landmarks`` runs the fit (``model_fit.fit_face_model``) from the CNN's landmarks and
reads the landmarks off the fitted model at their barycentric definitions, projected onto the
scan's tangent plane. Because every fit has the model's topology, the 20 landmark-cycle
regions are cut once on the mean face (``model_face_regions``) and every fit carries them:
``region_residuals`` gives the scan-to-model distance per region, a QC figure, and
``transfer_regions`` labels the scan's own triangles with them.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import trimesh
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from face_health import schema
from face_health.face_model import load_face_model
from face_health.landmarks.model_fit import FitSettings, ModelFit, _fit, _Scan
from face_health.omics.regions import RegionMap


def _project(points: np.ndarray, scan: _Scan, max_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Points moved onto the scan's tangent plane at their nearest vertex when that vertex
    is within ``max_mm`` (and not on a border); returns the points and how far each moved."""
    distance, nearest = scan.match(points)
    normal = scan.normals[nearest]
    offset = ((points - scan.vertices[nearest]) * normal).sum(axis=1)
    moved = points - offset[:, None] * normal
    ok = (distance < max_mm) & ~scan.border[nearest]
    out = np.where(ok[:, None], moved, points)
    return out, np.where(ok, np.abs(offset), 0.0)


@functools.lru_cache(maxsize=1)
def model_face_regions() -> np.ndarray:
    """``(m,)`` region index (``schema.REGIONS``) of each model triangle, -1 outside every
    region: the 20 landmark-cycle regions cut once on the mean face's graph, so that every
    fit carries them on the same triangles."""
    from face_health.omics.regions import segment_regions

    model = load_face_model()
    points = dict(zip(schema.LANDMARK_NAMES, model.landmarks(model.mean), strict=True))
    return segment_regions(model.mesh(), points).labels


@functools.lru_cache(maxsize=1)
def model_vertex_regions() -> np.ndarray:
    """``(n,)`` region index of each model vertex (that of a labelled triangle it belongs
    to), -1 outside every region."""
    model = load_face_model()
    labels = model_face_regions()
    vertex_label = np.full(model.n_vertices, -1, int)
    faces = np.flatnonzero(labels >= 0)
    for corner in range(3):
        vertex_label[model.faces[faces, corner]] = labels[faces]
    return vertex_label


def region_residuals(fit: ModelFit) -> dict[str, float]:
    """Mean scan-to-model distance (mm) of the covered vertices of each region."""
    labels = model_vertex_regions()
    out = {}
    for i, region in enumerate(schema.REGIONS):
        d = fit.vertex_distance[labels == i]
        d = d[np.isfinite(d)]
        out[region] = round(float(d.mean()), 3) if len(d) else float("nan")
    return out


@functools.lru_cache(maxsize=1)
def _landmark_neighbourhoods(radius_mm: float = 10.0) -> list[np.ndarray]:
    """Model vertices within ``radius_mm`` of each landmark on the mean face."""
    model = load_face_model()
    tree = cKDTree(model.mean)
    around = tree.query_ball_point(model.landmarks(model.mean), radius_mm)
    return [np.asarray(i, int) for i in around]


def fitted_landmarks(
    mesh: trimesh.Trimesh,
    cnn: pd.DataFrame,
    settings: FitSettings | None = None,
) -> tuple[pd.DataFrame, ModelFit]:
    """The whole second stage: fit the model from the CNN ``cnn`` table, read the landmarks
    off the fitted model and project them onto the scan.

    Returns the fit and a table ``name, x, y, z, confidence, fit_residual_mm, cnn_distance_mm,
    snap_mm, status``: the CNN's confidence carried over, the model fit's mean residual within
    10 mm of the landmark (nan where the scan has no surface there), how far the fitted point
    is from the CNN's, and how far the projection onto the scan moved it.
    """
    s_ = settings or FitSettings()
    scan = _Scan(mesh)
    with threadpool_limits(limits=1, user_api="blas"):
        fit = _fit(scan, cnn, s_)
    points, snap = _project(fit.landmarks(), scan, s_.snap_mm)
    by_name = cnn.set_index("name").reindex(schema.LANDMARK_NAMES)
    cnn_xyz = by_name[["x", "y", "z"]].to_numpy(float)
    confidence = by_name["confidence"].to_numpy(float) if "confidence" in by_name else np.nan
    local = []
    for around in _landmark_neighbourhoods():
        d = fit.vertex_distance[around]
        d = d[np.isfinite(d)]
        local.append(float(d.mean()) if len(d) else np.nan)
    table = pd.DataFrame(
        {
            "name": schema.LANDMARK_NAMES,
            "x": points[:, 0],
            "y": points[:, 1],
            "z": points[:, 2],
            "confidence": np.round(confidence, 3),
            "fit_residual_mm": np.round(local, 3),
            "cnn_distance_mm": np.round(np.linalg.norm(points - cnn_xyz, axis=1), 3),
            "snap_mm": np.round(snap, 3),
            "status": "ok",
        }
    )
    return table, fit


def transfer_regions(
    mesh: trimesh.Trimesh, fitted_vertices: np.ndarray, *, max_mm: float = 3.0
) -> RegionMap:
    """The 20 regions of ``mesh`` from the fitted model on it (both in the same frame, mm):
    each triangle takes the region of the fitted model's nearest triangle (by centres) when
    that one is within ``max_mm``, else none. The scan keeps its own resolution for texture
    and curvature while the boundaries come from the model's fixed topology; between two
    samplings of the same face, region areas change by about 1.6 % this way against about
    10 % for cycles cut on the scan's own graph (``benchmarks/region_topology_bench.py``).
    """
    model = load_face_model()
    fitted = trimesh.Trimesh(np.asarray(fitted_vertices, float), model.faces, process=False)
    labels = model_face_regions()
    distance, nearest = cKDTree(fitted.triangles_center).query(mesh.triangles_center, workers=1)
    face_labels = np.where(distance < max_mm, labels[nearest], -1).astype(np.int64)
    return RegionMap(face_labels, {})


def face_regions(
    mesh: trimesh.Trimesh,
    landmarks: dict[str, np.ndarray],
    fitted_vertices: np.ndarray | None,
    topology: str = "fitted",
) -> RegionMap:
    """The 20 regions of an aligned face: from its fitted face model (``topology="fitted"``,
    when there is one) or cut by the landmark cycles on the mesh's own graph (``"scan"``).
    The pipeline's node and the scorer of new scans both call this."""
    from face_health.omics.regions import segment_regions

    if topology not in ("fitted", "scan"):
        raise ValueError(f"unknown region topology {topology!r}; use 'fitted' or 'scan'")
    if fitted_vertices is not None and topology == "fitted":
        return transfer_regions(mesh, fitted_vertices)
    return segment_regions(mesh, landmarks)
