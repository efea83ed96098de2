"""Multi-view consensus: each landmark's rays from several rendered views back to one 3D point.

Every view's heatmap peak for a landmark is a ray through the orthographic camera. The rays of
one landmark meet near the landmark, except where a view was wrong (occlusion, the other side's
landmark): those are outliers, so the point is found by RANSAC over pairs of rays, refined by
iteratively reweighted least squares on the agreeing rays, and snapped to the scan's surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
import trimesh
from scipy.spatial import cKDTree
from trimesh.triangles import closest_point

# A normal matrix whose smallest / largest eigenvalue ratio is below this comes from rays within
# about 0.1 degree of parallel: the position along them would be noise, not geometry.
_MIN_EIGEN_RATIO = 1e-6
# Every pair of rays is a RANSAC hypothesis up to this many pairs (about 30 views); beyond, a
# seeded sample keeps the cost bounded and the result reproducible.
_MAX_PAIRS = 500
MIN_INLIERS = 2
COLUMNS = [
    "index", "x", "y", "z", "confidence", "n_rays", "n_inliers", "residual_mm", "snap_mm", "status",
]  # fmt: skip


def _as_rays(
    origins: np.ndarray, directions: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float copies: origins (m, 3), unit directions (m, 3), weights (m,)."""
    origins, directions = np.asarray(origins, float), np.asarray(directions, float)
    weights = np.ones(len(origins)) if weights is None else np.asarray(weights, float)
    shapes = f"{origins.shape}, {directions.shape}, {weights.shape}"
    if origins.shape[1:] != (3,) or directions.shape != origins.shape or weights.ndim != 1:
        raise ValueError(f"need (m, 3) origins and directions and (m,) weights, got {shapes}")
    if len(weights) != len(origins):
        raise ValueError(f"need one weight per ray, got {shapes}")
    norms = np.linalg.norm(directions, axis=1)
    if not np.isfinite(np.concatenate([origins.ravel(), norms, weights])).all():
        raise ValueError("ray origins, directions and weights must be finite")
    if (norms == 0).any() or (weights < 0).any():
        raise ValueError("ray directions must be non-zero and weights non-negative")
    return origins, directions / norms[:, None], weights


def _distances(points: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distances (p, m) from points (p, 3) to the lines (m, 3) + t (m, 3)."""
    offsets = points[:, None, :] - origins[None]
    along = np.einsum("pmj,mj->pm", offsets, directions)
    return np.linalg.norm(offsets - along[..., None] * directions[None], axis=2)


def triangulate(
    origins: np.ndarray, directions: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted least-squares point closest to lines.

    Minimises ``sum_i w_i ||(I - d_i d_i^T)(p - o_i)||^2``.

    Parameters
    ----------
    origins : (m, 3) float
        A point on each line.
    directions : (m, 3) float
        Line directions (normalised here).
    weights : (m,) float, optional
        Non-negative weight of each line; all 1 by default.

    Returns
    -------
    point : (3,) float

    Raises
    ------
    ValueError
        Fewer than 2 lines with positive weight, or (nearly) parallel lines.
    """
    origins, directions, weights = _as_rays(origins, directions, weights)
    if np.count_nonzero(weights) < 2:
        raise ValueError(
            f"need at least 2 rays with positive weight, got {np.count_nonzero(weights)}"
        )
    # Origins sit ~600 mm from the point: solving about their mean keeps the digits.
    shift = weights @ origins / weights.sum()
    projectors = np.eye(3) - directions[:, :, None] * directions[:, None, :]
    normal = np.einsum("i,ijk->jk", weights, projectors)
    rhs = np.einsum("i,ijk,ik->j", weights, projectors, origins - shift)
    eigenvalues, eigenvectors = np.linalg.eigh(normal)
    if eigenvalues[0] <= _MIN_EIGEN_RATIO * eigenvalues[-1]:
        raise ValueError("rays are (nearly) parallel: their intersection is not determined")
    return shift + eigenvectors @ ((eigenvectors.T @ rhs) / eigenvalues)


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields has no single truth value
class RayConsensus:
    """A robust intersection of rays.

    Attributes
    ----------
    point : (3,) float
    inliers : (m,) bool, rays within ``inlier_mm`` of the point (and with positive weight)
    residuals : (m,) float, mm, distance of the point to each ray
    confidence : float in [0, 1], see :func:`robust_triangulate`
    """

    point: np.ndarray
    inliers: np.ndarray
    residuals: np.ndarray
    confidence: float

    @property
    def residual_mm(self) -> float:
        """Root mean square residual of the inliers (nan without inliers)."""
        if not self.inliers.any():
            return float("nan")
        return float(np.sqrt(np.mean(self.residuals[self.inliers] ** 2)))


def robust_triangulate(
    origins: np.ndarray,
    directions: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    inlier_mm: float = 3.0,
    iterations: int = 20,
    min_inliers: int = MIN_INLIERS,
    min_angle_deg: float = 5.0,
    seed: int = 0,
) -> RayConsensus:
    """Intersection of rays that tolerates outliers.

    Every pair of positive-weight rays at least ``min_angle_deg`` apart proposes its closest
    point (a seeded sample of ``_MAX_PAIRS`` when there are more pairs); the proposal with the
    largest weight of rays within ``inlier_mm`` wins, ties going to the smaller weighted squared
    residual. Up to ``iterations`` rounds of least squares on the inliers with Cauchy weights
    ``w_i / (1 + (r_i / (inlier_mm / 2))^2)`` then refine it; final inliers have
    ``r_i <= inlier_mm``.

    ``confidence = (W_in / W * n_in / m * (1 - rms_in / inlier_mm)) ** (1 / 3)``: the geometric
    mean of the inliers' share of the weight, their share of the rays and how tightly they meet
    (rms of their residuals); 0 when fewer than ``min_inliers`` rays agree.

    Parameters
    ----------
    origins, directions : (m, 3) float
        Ray origins and directions.
    weights : (m,) float, optional
        Non-negative ray weights (heatmap peak values); all 1 by default.
    inlier_mm : float
        Largest distance of an agreeing ray from the point.
    iterations : int
        Most reweighted least-squares rounds.
    min_inliers : int
        Fewer agreeing rays give confidence 0.
    min_angle_deg : float
        Smallest angle between the two rays of a RANSAC hypothesis.
    seed : int
        Seeds the sample of pairs when there are more than ``_MAX_PAIRS``.

    Returns
    -------
    RayConsensus

    Raises
    ------
    ValueError
        No two positive-weight rays at least ``min_angle_deg`` apart.
    """
    origins, directions, weights = _as_rays(origins, directions, weights)
    usable = weights > 0
    pairs = np.array(list(combinations(np.flatnonzero(usable), 2)), dtype=int).reshape(-1, 2)
    cosines = np.einsum("ij,ij->i", directions[pairs[:, 0]], directions[pairs[:, 1]])
    # Opposite rays lie on parallel lines as much as equal ones do: compare |cos|.
    pairs = pairs[np.abs(cosines) <= np.cos(np.radians(min_angle_deg))]
    if len(pairs) == 0:
        raise ValueError(f"no two usable rays are at least {min_angle_deg} degrees apart")
    if len(pairs) > _MAX_PAIRS:
        chosen = np.random.default_rng(seed).choice(len(pairs), _MAX_PAIRS, replace=False)
        pairs = pairs[np.sort(chosen)]
    # Closest point of two lines: the midpoint of their common perpendicular.
    o1, o2 = origins[pairs[:, 0]], origins[pairs[:, 1]]
    d1, d2 = directions[pairs[:, 0]], directions[pairs[:, 1]]
    cos, gap = np.einsum("ij,ij->i", d1, d2), o1 - o2
    along1, along2 = np.einsum("ij,ij->i", d1, gap), np.einsum("ij,ij->i", d2, gap)
    denominator = 1.0 - cos**2
    t1 = (cos * along2 - along1) / denominator
    t2 = (along2 - cos * along1) / denominator
    hypotheses = 0.5 * (o1 + t1[:, None] * d1 + o2 + t2[:, None] * d2)

    residuals = _distances(hypotheses, origins, directions)
    within = (residuals <= inlier_mm) & usable
    score = within @ weights
    spread = np.where(within, residuals**2, 0.0) @ weights
    best = np.lexsort((spread, -score))[0]
    point, inliers = hypotheses[best], within[best]

    scale = inlier_mm / 2.0  # Cauchy scale: noise-level residuals keep nearly full weight
    residuals = _distances(point[None], origins, directions)[0]
    for _ in range(iterations):
        robust = weights * inliers / (1.0 + (residuals / scale) ** 2)
        try:
            refined = triangulate(origins, directions, robust)
        except ValueError:  # the agreeing rays alone pin no point: keep the hypothesis
            break
        moved = np.linalg.norm(refined - point)
        point = refined
        residuals = _distances(point[None], origins, directions)[0]
        inliers = (residuals <= inlier_mm) & usable
        if moved < 1e-9:
            break

    n_inliers = int(inliers.sum())
    confidence = 0.0
    if n_inliers >= max(min_inliers, 1):
        rms = np.sqrt(np.mean(residuals[inliers] ** 2))
        shares = weights[inliers].sum() / weights.sum() * n_inliers / len(weights)
        confidence = float(np.clip(np.cbrt(shares * (1.0 - rms / inlier_mm)), 0.0, 1.0))
    return RayConsensus(point, inliers, residuals, confidence)


def snap_to_surface(mesh: trimesh.Trimesh, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on a mesh surface, exact, without trimesh's costly r-tree.

    Every corner of the face holding the closest point lies within ``d + l`` of the point, ``d``
    being any upper bound of the distance to the surface and ``l`` the face's longest edge.
    Faces are grouped by size (longest edge up to 1, 2, 4, ... times the median), each group in
    a KD-tree of the faces' first corners, so that a few long faces (hole fills, borders) do not
    widen the search among the fine ones. About 35 ms for 40 points on a fresh 60k-vertex mesh,
    where ``trimesh.proximity.closest_point`` first spends ~0.35 s building its r-tree.

    Parameters
    ----------
    mesh : trimesh.Trimesh
    points : (n, 3) float

    Returns
    -------
    closest : (n, 3) float
        Closest point on the surface to each point.
    distances : (n,) float
        Distance from each point to its closest point.
    """
    points = np.asarray(points, float).reshape(-1, 3)
    if len(mesh.faces) == 0:
        raise ValueError("snapping to a surface needs a mesh with faces")
    if len(points) == 0:
        return np.empty((0, 3)), np.empty(0)
    triangles = mesh.triangles
    edges = [triangles[:, i] - triangles[:, i - 1] for i in range(3)]
    longest = np.sqrt(np.maximum.reduce([np.einsum("ij,ij->i", e, e) for e in edges]))
    typical = np.median(longest) or 1.0  # 1.0: most faces degenerate, any scale will do
    size_class = np.ceil(np.log2(np.maximum(longest / typical, 1.0)))
    groups = [np.flatnonzero(size_class == c) for c in np.unique(size_class)]
    # Unbalanced, uncompacted trees build twice as fast and answer these few queries as well.
    trees = [
        cKDTree(triangles[g, 0], leafsize=32, balanced_tree=False, compact_nodes=False)
        for g in groups
    ]

    bound = np.full(len(points), np.inf)  # distance to the face with the nearest corner
    for group, tree in zip(groups, trees, strict=True):
        nearest = group[tree.query(points)[1]]
        gap = np.linalg.norm(closest_point(triangles[nearest], points) - points, axis=1)
        bound = np.minimum(bound, gap)
    slack = 1e-9 * (1.0 + longest.max())  # so that rounding never drops the closest face
    pair_points, pair_faces = [], []
    for group, tree in zip(groups, trees, strict=True):
        balls = tree.query_ball_point(points, bound + longest[group].max() + slack)
        pair_points.append(np.repeat(np.arange(len(points)), [len(ball) for ball in balls]))
        pair_faces.append(group[np.concatenate(balls).astype(int)])
    pair_points, pair_faces = np.concatenate(pair_points), np.concatenate(pair_faces)

    candidates = closest_point(triangles[pair_faces], points[pair_points])
    distances = np.linalg.norm(candidates - points[pair_points], axis=1)
    best = np.lexsort((distances, pair_points))
    best = best[np.searchsorted(pair_points[best], np.arange(len(points)))]
    return candidates[best], distances[best]


def snap_along(
    mesh: trimesh.Trimesh, points: np.ndarray, directions: np.ndarray, max_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move each point along its direction (either way) to the nearest surface crossing.

    A triangulated point floats a few millimetres off the surface; in a concave corner (the
    inner eye corner) the closest surface point lies on the nearby wall (the side of the nose)
    and pulls it sideways, while moving along the rays that found it keeps where the views saw
    it. Points with no crossing within ``max_mm`` fall back to the closest surface point.

    Parameters
    ----------
    mesh : trimesh.Trimesh
    points : (n, 3) float
    directions : (n, 3) or (3,) float, e.g. the mean direction of each point's inlier rays
    max_mm : float

    Returns
    -------
    snapped : (n, 3) float
    moved : (n,) float
        Distance each point moved.
    """
    points = np.asarray(points, float).reshape(-1, 3)
    directions = np.broadcast_to(np.asarray(directions, float), points.shape)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    snapped, moved = snap_to_surface(mesh, points)
    if len(points) == 0:
        return snapped, moved
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    hits, ray_index, _ = intersector.intersects_location(
        points - directions * max_mm, directions, multiple_hits=True
    )
    hits = np.asarray(hits, float).reshape(-1, 3)  # no hit at all comes back shaped (0,)
    for i in range(len(points)):
        along = (hits[ray_index == i] - points[i]) @ directions[i]
        along = along[np.abs(along) <= max_mm]
        if len(along):
            step = along[np.argmin(np.abs(along))]
            snapped[i] = points[i] + step * directions[i]
            moved[i] = abs(step)
    return snapped, moved


def consensus_landmarks(
    origins: np.ndarray,
    directions: np.ndarray,
    weights: np.ndarray,
    *,
    mesh: trimesh.Trimesh | None = None,
    snap: str = "nearest",
    max_snap_mm: float = 15.0,
    min_weight: float = 0.05,
    **robust_options: float,
) -> pd.DataFrame:
    """3D landmarks from every view's ray per landmark.

    Parameters
    ----------
    origins, directions : (V, K, 3) float
        Ray of each view and landmark (``OrthoCamera.rays`` of the heatmap peaks).
    weights : (V, K) float
        Heatmap peak values; rays below ``min_weight`` (or not finite) are ignored.
    mesh : trimesh.Trimesh, optional
        Scan to snap the landmarks to.
    snap : ``'nearest'`` (the closest surface point) or ``'rays'`` (along the mean direction
        of the landmark's inlier rays, see :func:`snap_along`)
    max_snap_mm : float
        How far ``'rays'`` looks along the direction.
    min_weight : float
    **robust_options
        Passed to :func:`robust_triangulate`.

    Returns
    -------
    pandas.DataFrame
        One row per landmark, columns ``COLUMNS``. A landmark that cannot be placed has
        nan coordinates, confidence 0 and a plain-word ``status`` saying why; else ``'ok'``.
    """
    origins, directions = np.asarray(origins, float), np.asarray(directions, float)
    weights = np.asarray(weights, float)
    if origins.ndim != 3 or origins.shape[2:] != (3,) or directions.shape != origins.shape:
        raise ValueError(f"need (V, K, 3) origins and directions, got {origins.shape}")
    if weights.shape != origins.shape[:2]:
        raise ValueError(f"need weights of shape {origins.shape[:2]}, got {weights.shape}")
    min_inliers = int(robust_options.get("min_inliers", MIN_INLIERS))
    usable = (
        (np.nan_to_num(weights, nan=-1.0) >= min_weight)
        & np.isfinite(origins).all(axis=2)
        & np.isfinite(directions).all(axis=2)
        & (np.abs(directions).sum(axis=2) > 0)
    )
    if snap not in ("nearest", "rays"):
        raise ValueError(f"snap must be 'nearest' or 'rays', got {snap!r}")
    rows, seen_along = [], {}
    for k in range(weights.shape[1]):
        views = usable[:, k]
        row = dict.fromkeys(COLUMNS, np.nan) | {"index": k, "confidence": 0.0, "n_inliers": 0}
        row |= {"n_rays": int(views.sum()), "status": "ok"}
        rows.append(row)
        if row["n_rays"] < 2:
            row["status"] = "too few usable views"
            continue
        try:
            found = robust_triangulate(
                origins[views, k], directions[views, k], weights[views, k], **robust_options
            )
        except ValueError:
            row["status"] = "usable views too close in direction"
            continue
        row["n_inliers"] = int(found.inliers.sum())
        if row["n_inliers"] < min_inliers:
            row["status"] = "views disagree"
            continue
        row.update(x=found.point[0], y=found.point[1], z=found.point[2])
        if snap == "rays":  # the weighted mean direction the views saw the landmark along
            seen = directions[views, k][found.inliers]
            seen_along[k] = (seen * weights[views, k][found.inliers, None]).sum(axis=0)
        row.update(confidence=found.confidence, residual_mm=found.residual_mm)

    table = pd.DataFrame(rows, columns=COLUMNS)
    placed = table["status"].eq("ok").to_numpy()
    if mesh is not None and placed.any():
        points = table.loc[placed, ["x", "y", "z"]].to_numpy()
        if snap == "nearest":
            snapped, moved = snap_to_surface(mesh, points)
        else:
            along = np.array([seen_along[k] for k in np.flatnonzero(placed)])
            snapped, moved = snap_along(mesh, points, along, max_snap_mm)
        table.loc[placed, ["x", "y", "z"]] = snapped
        table.loc[placed, "snap_mm"] = moved
    return table
