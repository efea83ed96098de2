"""Fit the ICT-FaceKit morphable model to a scan (dense correspondence).

Starting from the CNN's landmarks, the shipped face model (``face_health.face_model``) is
deformed onto the scan surface by robust non-rigid ICP, as MeshMonk does with its template
but with the model's PCA prior as the regulariser:

    model point  p_i = s R (mean_i + B_i w + E_i e) + t      (scan frame, mm)

with a similarity pose ``s, R, t``, identity weights ``w`` (prior N(0, 1) per mode, all 100)
and a few expression weights ``e`` in [0, 1]. The pose starts from the landmarks (weighted
Umeyama); then each iteration

1. matches a fixed sample of the model's face vertices to their nearest scan vertices and
   keeps a match only when it is close (a threshold that tightens over the iterations),
   its normals agree (``max_normal_angle_deg``) and it does not land on the scan's border
   (holes, crop lines: the nearest point there is not a correspondence), weighting the
   kept ones robustly (Geman-McClure);
2. takes one Gauss-Newton step on pose and coefficients together: point-to-plane distances
   of the matches (optionally some point-to-point, ``point_to_point``), the landmark
   term with its weight decaying over the iterations (the CNN starts the fit, the surface
   finishes it), and the prior, strong at first and relaxed later (coarse to fine).

A refinement then lets the fitted face follow the scan beyond the model's span (ageing,
adiposity, a real face's details) by a few smoothed closest-point displacement fields, as
MeshMonk's visco-elastic steps do. The residual of the model fit before that refinement
(mean scan-to-model distance of the covered face vertices), the identity weights' RMS and
the share of the face the scan covers are QC figures: a scan that is not a face, or a face
the model cannot follow, is refused above ``max_residual_mm`` / ``max_identity_rms`` or below
``min_coverage``. ``fitted.py`` reads landmarks, regions and residuals off a fit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import trimesh
from scipy import sparse
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from threadpoolctl import threadpool_limits

from face_health import schema
from face_health.errors import ModelFitError, TooFewLandmarksError
from face_health.face_model import PARTS, FaceModel, load_face_model


@dataclass(frozen=True)
class FitSettings:
    """How the model is fitted (chosen on validation subjects of the seed-1 cohort)."""

    n_identity: int = 100  # identity modes fitted (all the model has)
    expressions: tuple[str, ...] = (
        "jawOpen", "mouthSmile_L", "mouthSmile_R", "eyeBlink_L", "eyeBlink_R",
        "browInnerUp_L", "browInnerUp_R", "mouthPucker", "eyeSquint_L", "eyeSquint_R",
        "mouthClose",
    )  # fmt: skip
    iterations: int = 16
    n_points: int = 1500  # model face vertices in the data term (a fixed, even sample)
    # Match distance threshold (mm), from the first iteration to the last (geometric decay).
    max_distance_mm: tuple[float, float] = (20.0, 6.0)
    max_normal_angle_deg: float = 60.0
    # Weight of a point-to-point term beside point-to-plane (0.1 was worse on validation:
    # 0.805 vs 0.744 mm; the landmark term already keeps the surface from sliding).
    point_to_point: float = 0.0
    # Landmark term (per landmark, relative to the mean data residual), first to last.
    landmark_weight: tuple[float, float] = (2.0, 0.005)
    min_landmark_confidence: float = 0.3
    # Prior weight (mm^2 of mean squared residual per unit of ||w||^2), first to last.
    prior: tuple[float, float] = (0.5, 0.0005)
    expression_prior: float = 0.5
    # Non-rigid refinement after the PCA fit (MeshMonk-like): the model's face follows the
    # scan beyond the model's span by a smooth displacement field, in this many steps.
    refine_steps: int = 4
    refine_max_mm: float = 4.0  # matches farther than this do not pull
    refine_smoothing: int = 12  # neighbour-averaging rounds of the displacement field
    refine_tangential: float = 1.0  # share of the in-plane part of each pull (1: point-to-point)
    snap_mm: float = 3.0  # project a landmark onto the scan when the surface is this close
    # QC: above this residual (of the model fit, before the refinement, which would follow
    # anything) or below this coverage the model has not followed the scan.
    # Measured (benchmarks/landmark_fit_bench.py --qc, seed-1 validation split): 45 faces
    # residual 0.27-0.71 mm, identity RMS 0.59-0.99, coverage >= 0.82; demoface 0.95 mm, 0.99;
    # the same faces with their landmarks 30 mm low, upside down or 1.6x too large, and
    # landmark-like points on a sphere and a box: residual 1.05-2.2 mm, identity RMS 1.46-5.0,
    # coverage 0.04-0.88, all refused (by one test or another). A face drawn from the model
    # has identity RMS about 1 (100 modes, N(0, 1) each); 1.6 is far outside the faces it knows.
    max_residual_mm: float = 1.5
    max_identity_rms: float = 1.6
    min_coverage: float = 0.5
    coverage_mm: float = 5.0  # a model vertex is covered with a scan point this close


@dataclass
class ModelFit:
    """A fitted model: pose, coefficients, the fitted vertices and the fit's QC figures.

    Attributes
    ----------
    vertices : (n, 3) float, the model's vertices on the scan (scan frame, mm)
    scale, rotation (3, 3), translation (3,) : the similarity pose (model -> scan)
    identity : (n_identity,) float; expression : name -> weight
    residual_mm : mean |scan-to-model distance| of the covered face vertices, for the
        model fit (pose, identity, expression) before the refinement: how well the face
        model explains the scan
    coverage : share of the model's face vertices with a scan point within ``coverage_mm``
    vertex_distance : (n,) float, each vertex's distance to the scan after the model fit
        (nan where uncovered)
    refined_residual_mm : the same mean after the refinement
    history : per iteration, mean residual of the matches and the share of sample kept
    """

    vertices: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    identity: np.ndarray
    expression: dict[str, float]
    residual_mm: float
    coverage: float
    vertex_distance: np.ndarray
    refined_residual_mm: float = float("nan")

    @property
    def identity_rms(self) -> float:
        """Root mean square of the identity weights: about 1 for a face of the model's
        population (each weight N(0, 1)); far above, the fit bent the model into a non-face."""
        return float(np.sqrt(np.mean(self.identity**2)))

    history: list[dict[str, float]] = field(default_factory=list)

    def landmarks(self, model: FaceModel | None = None) -> np.ndarray:
        """``(33, 3)`` landmarks of ``schema.LANDMARK_NAMES`` on the fitted model."""
        return (model or load_face_model()).landmarks(self.vertices)


class _Scan:
    """The scan's vertices, normals and border, with a nearest-vertex tree (built once)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.vertices = np.asarray(mesh.vertices, float)
        self.normals = np.asarray(mesh.vertex_normals, float)
        self.tree = cKDTree(self.vertices)
        # Border vertices: on an edge that only one triangle uses (edges keyed as integers:
        # ten times faster than unique rows).
        n = len(self.vertices)
        edges = np.sort(mesh.edges, axis=1).astype(np.int64)
        keys, counts = np.unique(edges[:, 0] * n + edges[:, 1], return_counts=True)
        single = keys[counts == 1]
        self.border = np.zeros(n, bool)
        self.border[single // n] = True
        self.border[single % n] = True
        # Vertices no triangle uses (loose points) cannot be matched either.
        used = np.zeros(len(self.vertices), bool)
        used[mesh.faces.ravel()] = True
        self.border |= ~used

    def match(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distance, index = self.tree.query(points, workers=1)
        return distance, index


@functools.lru_cache(maxsize=4)
def _basis(n_identity: int, expressions: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The model's modes as one ``(n, 3, k)`` array and its face-vertex sample order."""
    model = load_face_model()
    index = [model.expression_index(n) for n in expressions]
    modes = np.concatenate([model.identity[:n_identity], model.expression[index]], axis=0)
    return np.ascontiguousarray(np.moveaxis(modes, 0, -1), dtype=float), _sample_order()


@functools.lru_cache(maxsize=1)
def _sample_order() -> np.ndarray:
    """The model's face vertices in an even sample order: a fixed permutation, so any prefix
    covers the face uniformly."""
    model = load_face_model()
    face = np.flatnonzero(model.vertex_part == PARTS.index("face"))
    return np.random.default_rng(0).permutation(face)


@functools.lru_cache(maxsize=4)
def _sample_patch(n_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's faces that touch the first ``n_points`` of the even sample (in the model's
    face order, re-indexed), the vertices they use, and where the sample lies among those."""
    model = load_face_model()
    sample = np.sort(_sample_order()[:n_points])
    touches = np.isin(model.faces, sample).any(axis=1)
    vertices, faces = np.unique(model.faces[touches], return_inverse=True)
    return faces.reshape(-1, 3), vertices, np.searchsorted(vertices, sample)


def _weighted_similarity(
    source: np.ndarray, target: np.ndarray, weight: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """``s, R, t`` minimising ``sum w ||s R source + t - target||^2`` (weighted Umeyama)."""
    w = weight / weight.sum()
    mu_s, mu_t = w @ source, w @ target
    xs, xt = source - mu_s, target - mu_t
    cov = (xt * w[:, None]).T @ xs
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    var_s = float(w @ (xs**2).sum(axis=1))
    scale = float(np.trace(np.diag(d) @ sign) / var_s)
    return scale, rotation, mu_t - scale * rotation @ mu_s


def _jacobian(
    offset: np.ndarray, modes: np.ndarray, scale: float, rotation: np.ndarray
) -> np.ndarray:
    """``(M, 3, 7 + k)`` derivative of world points by (rotation vector about the centre,
    relative scale about it, translation, coefficients); ``offset`` = point - centre."""
    m, _, k = modes.shape
    j = np.empty((m, 3, 7 + k))
    # d(theta x a) / d theta = -[a]x
    ax, ay, az = offset[:, 0], offset[:, 1], offset[:, 2]
    zero = np.zeros(m)
    j[:, :, 0:3] = -np.stack(
        [
            np.stack([zero, -az, ay], -1),
            np.stack([az, zero, -ax], -1),
            np.stack([-ay, ax, zero], -1),
        ],
        axis=1,
    )
    j[:, :, 3] = offset
    j[:, :, 4:7] = np.eye(3)
    j[:, :, 7:] = scale * np.einsum("ij,mjk->mik", rotation, modes)
    return j


def _schedule(pair: tuple[float, float], i: int, n: int) -> float:
    """Geometric interpolation from ``pair[0]`` (first iteration) to ``pair[1]`` (last)."""
    start, end = pair
    if n <= 1 or start == end:
        return end
    return float(start * (end / start) ** (i / (n - 1)))


def _cnn_points(
    table: pd.DataFrame, settings: FitSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (into ``schema.LANDMARK_NAMES``), ``(k, 3)`` points and confidences of the
    usable landmarks."""
    index = {n: i for i, n in enumerate(schema.LANDMARK_NAMES)}
    ok = table["status"].eq("ok") if "status" in table else pd.Series(True, index=table.index)
    if "confidence" in table:
        ok &= table["confidence"].fillna(0.0) >= settings.min_landmark_confidence
    rows = table[ok & table["name"].isin(list(index))]
    rows = rows[np.isfinite(rows[["x", "y", "z"]].to_numpy(float)).all(axis=1)]
    confidence = rows["confidence"].to_numpy(float) if "confidence" in rows else np.ones(len(rows))
    return (
        np.array([index[n] for n in rows["name"]], int),
        rows[["x", "y", "z"]].to_numpy(float),
        np.clip(confidence, 0.05, 1.0),
    )


def fit_face_model(
    mesh: trimesh.Trimesh,
    landmarks: pd.DataFrame,
    settings: FitSettings | None = None,
) -> ModelFit:
    """Fit the face model to ``mesh`` (mm) from its CNN ``landmarks`` (``name, x, y, z``,
    optional ``confidence`` and ``status``).

    Raises ``TooFewLandmarksError`` when fewer than 5 usable landmarks start the fit, and
    ``ModelFitError`` when the fit loses the scan's surface (both ``DataError`` and
    ``ValueError``).
    """
    # The normal equations are small (k ~ 110): multi-threaded BLAS only loses on them, and
    # badly (60x) when the other cores are busy with other subjects.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(_Scan(mesh), landmarks, settings or FitSettings())


def _fit(scan: _Scan, landmarks: pd.DataFrame, s_: FitSettings) -> ModelFit:
    model = load_face_model()
    modes, order = _basis(s_.n_identity, tuple(s_.expressions))
    sample = np.sort(order[: s_.n_points])
    n_id, k = s_.n_identity, modes.shape[-1]
    lm_index, lm_target, lm_conf = _cnn_points(landmarks, s_)
    if len(lm_index) < 5:
        raise TooFewLandmarksError(
            f"the model fit needs at least 5 landmarks to start from, got {len(lm_index)}"
        )
    lm_vertices = model.landmark_vertices[lm_index]  # (L, 3)
    lm_weights = model.landmark_weights[lm_index]
    # Landmark rows of the basis: (L, 3, k), and of the mean: (L, 3).
    lm_modes = (modes[lm_vertices] * lm_weights[..., None, None]).sum(axis=1)
    lm_mean = (model.mean[lm_vertices] * lm_weights[..., None]).sum(axis=1)
    sample_modes = modes[sample]  # (N, 3, k)
    # The data term needs the shape and normals at the sampled vertices only: the faces
    # around them and their corners (a quarter of the model) give the same angle-weighted
    # normals there, in the same order, at a quarter of the cost per iteration.
    patch_faces, patch_vertices, sample_at = _sample_patch(s_.n_points)
    patch_modes, patch_mean = modes[patch_vertices], model.mean[patch_vertices]

    coefficients = np.zeros(k)
    lm_model = lm_mean.copy()
    scale, rotation, translation = _weighted_similarity(lm_model, lm_target, lm_conf)
    prior_scale = np.ones(k)
    prior_scale[n_id:] = s_.expression_prior
    history: list[dict[str, float]] = []
    cos_limit = np.cos(np.radians(s_.max_normal_angle_deg))
    for it in range(s_.iterations):
        patch = patch_mean + patch_modes @ coefficients  # the patch's vertices, model frame
        # trimesh's angle-weighted normals (area-weighted ones, as the refinement uses, were
        # 0.004 mm worse on the validation scans)
        normals = trimesh.Trimesh(patch, patch_faces, process=False).vertex_normals[sample_at]
        points = patch[sample_at]
        world = scale * points @ rotation.T + translation
        world_normals = normals @ rotation.T
        distance, nearest = scan.match(world)
        limit = _schedule(s_.max_distance_mm, it, s_.iterations)
        compatible = (world_normals * scan.normals[nearest]).sum(axis=1) > cos_limit
        keep = (distance < limit) & compatible & ~scan.border[nearest]
        if keep.sum() < 50:
            raise ModelFitError(
                f"the model fit lost the surface: {int(keep.sum())} matches at iteration {it}"
            )
        target = scan.vertices[nearest[keep]]
        target_normals = scan.normals[nearest[keep]]
        residual = np.abs(((world[keep] - target) * target_normals).sum(axis=1))
        history.append(
            {"residual_mm": float(residual.mean()), "kept": float(keep.mean()), "limit": limit}
        )
        # Robust weights: Geman-McClure on the point-to-plane distance, scale from the matches.
        sigma = max(1.4826 * float(np.median(residual)), 0.3)
        robust = 1.0 / (1.0 + (residual / (2.0 * sigma)) ** 2) ** 2
        lm_weight = _schedule(s_.landmark_weight, it, s_.iterations)
        lm_point_weight = lm_weight * lm_conf * keep.sum() / len(lm_conf)

        # One Gauss-Newton step on pose and coefficients together, linearised about the
        # current fit (a pose-only step first would let the matches slide: slow to converge).
        lm_world = scale * (lm_mean + lm_modes @ coefficients) @ rotation.T + translation
        centre = world[keep].mean(axis=0)
        rows = [  # (jacobian (M, 3, 7 + k), residual target - point (M, 3), weight (M,))
            (_jacobian(world[keep] - centre, sample_modes[keep], scale, rotation),
             target - world[keep], robust),
            (_jacobian(lm_world - centre, lm_modes, scale, rotation),
             lm_target - lm_world, lm_point_weight),
        ]  # fmt: skip
        n_pose = 7
        ata = np.zeros((n_pose + k, n_pose + k))
        atb = np.zeros(n_pose + k)
        j, r, w = rows[0]
        plane = np.einsum("mj,mjk->mk", target_normals, j)
        plane_rhs = (r * target_normals).sum(axis=1)
        ata += (plane * w[:, None]).T @ plane
        atb += (plane * w[:, None]).T @ plane_rhs
        for (j, r, w), share in ((rows[0], s_.point_to_point), (rows[1], 1.0)):
            if share <= 0:
                continue
            flat = j.reshape(-1, n_pose + k)
            wp = np.repeat(w * share, 3)
            ata += (flat * wp[:, None]).T @ flat
            atb += (flat * wp[:, None]).T @ r.ravel()
        prior = _schedule(s_.prior, it, s_.iterations) * keep.sum() * prior_scale
        ata[n_pose:, n_pose:][np.diag_indices(k)] += prior
        atb[n_pose:] -= prior * coefficients
        ata[np.diag_indices(n_pose)] += 1e-6 * keep.sum()  # damping: a step, not a leap
        step = np.linalg.solve(ata, atb)
        turn = Rotation.from_rotvec(step[:3]).as_matrix()
        grow = 1.0 + step[3]
        rotation = turn @ rotation
        translation = grow * turn @ (translation - centre) + centre + step[4:7]
        scale = scale * grow
        coefficients = coefficients + step[n_pose:]
        coefficients[n_id:] = np.clip(coefficients[n_id:], 0.0, 1.0)

    shape = model.mean + modes @ coefficients
    vertices = scale * shape @ rotation.T + translation
    vertex_distance, coverage, residual_mm = _fit_residual(vertices, model, scan, s_)
    refined_residual = residual_mm
    if s_.refine_steps > 0:
        vertices = _refine(vertices, model, scan, s_)
        refined_residual = _fit_residual(vertices, model, scan, s_)[2]
    return ModelFit(
        vertices=vertices,
        scale=float(scale),
        rotation=rotation,
        translation=translation,
        identity=coefficients[:n_id].copy(),
        expression=dict(zip(s_.expressions, coefficients[n_id:].tolist(), strict=True)),
        residual_mm=residual_mm,
        coverage=coverage,
        vertex_distance=vertex_distance,
        refined_residual_mm=refined_residual,
        history=history,
    )


@functools.lru_cache(maxsize=1)
def _smoothing_operator() -> tuple[sparse.csr_matrix, np.ndarray]:
    """Row-normalised vertex adjacency (self included) of the model, and which vertices the
    refinement moves (face and mouth; the eyes and the head follow only through smoothing)."""
    model = load_face_model()
    n = model.n_vertices
    edges = np.concatenate([model.faces[:, [0, 1]], model.faces[:, [1, 2]], model.faces[:, [2, 0]]])
    a = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    a = ((a + a.T) > 0).astype(float) + sparse.identity(n)
    a = sparse.diags(1.0 / np.asarray(a.sum(axis=1)).ravel()) @ a
    movable = np.isin(model.vertex_part, [PARTS.index("face"), PARTS.index("mouth_cap")])
    return a.tocsr(), movable


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _refine(vertices: np.ndarray, model: FaceModel, scan: _Scan, s_: FitSettings) -> np.ndarray:
    """Move the fitted model onto the scan by smoothed closest-point pulls (a few steps)."""
    smooth, movable = _smoothing_operator()
    cos_limit = np.cos(np.radians(s_.max_normal_angle_deg))
    v = vertices.copy()
    for _ in range(s_.refine_steps):
        normals = _vertex_normals(v, model.faces)
        distance, nearest = scan.match(v)
        q, nq = scan.vertices[nearest], scan.normals[nearest]
        pull = q - v
        along = (pull * nq).sum(axis=1, keepdims=True) * nq
        pull = along + s_.refine_tangential * (pull - along)
        ok = (
            movable
            & (distance < s_.refine_max_mm)
            & ((normals * nq).sum(axis=1) > cos_limit)
            & ~scan.border[nearest]
        )
        weight = ok.astype(float)
        field, total = pull * weight[:, None], weight.copy()
        for _ in range(s_.refine_smoothing):
            field, total = smooth @ field, smooth @ total
        # Where no match is near, the field fades out instead of being extrapolated.
        v = v + np.where(movable[:, None], field / np.maximum(total, 0.3)[:, None], 0.0)
    return v


def _fit_residual(
    vertices: np.ndarray, model: FaceModel, scan: _Scan, settings: FitSettings
) -> tuple[np.ndarray, float, float]:
    """Per-vertex point-to-plane distance to the scan (nan where the scan has no surface
    within ``coverage_mm``), the face's coverage and its mean residual."""
    face = model.vertex_part == PARTS.index("face")
    distance, nearest = scan.match(vertices)
    plane = np.abs(((vertices - scan.vertices[nearest]) * scan.normals[nearest]).sum(axis=1))
    covered = (distance < settings.coverage_mm) & ~scan.border[nearest]
    per_vertex = np.where(covered, plane, np.nan)
    coverage = float(covered[face].mean())
    residual = float(np.nanmean(per_vertex[face])) if covered[face].any() else float("inf")
    return per_vertex, coverage, residual
