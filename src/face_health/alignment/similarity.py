"""Putting faces into one frame: the template and the similarity that moves a face onto it.

``landmark_frame`` gives the rigid transform that makes a face look along +z with +y up from
five landmarks (eye corners, nose tip, mouth corners). ``similarity_transform`` is the
least-squares similarity (Umeyama 1991, IEEE TPAMI 13:376) that moves one landmark set onto
another; ``build_template`` makes the template from the training faces (generalised
Procrustes mean), ``align_to_template`` fits a face to it and ``face_box`` / ``crop_to_box``
cut away neck, shoulders and hair behind the ears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import trimesh

from face_health.errors import RegionError, TooFewLandmarksError

if TYPE_CHECKING:
    from face_health.config import AlignmentSettings

FRAME_LANDMARKS = ("en_r", "en_l", "prn", "ch_r", "ch_l")


def landmark_table_to_dict(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``name,x,y,z`` table -> ``{name: (3,) float}``."""
    missing = {"name", "x", "y", "z"} - set(table.columns)
    if missing:
        raise ValueError(f"landmark table lacks columns {sorted(missing)}")
    return {str(r.name): np.array([r.x, r.y, r.z], float) for r in table.itertuples(index=False)}


#: Left/right pairs whose differences give the face's x axis, in order of preference.
_BILATERAL = (("en_r", "en_l"), ("ch_r", "ch_l"), ("ex_r", "ex_l"), ("al_r", "al_l"))
#: Points below the eyes whose mean, with the eyes', gives the face's up direction.
_LOWER = (("ch_r", "ch_l"), ("sto",), ("ls",), ("sn",))


def landmark_frame(landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """4x4 rigid transform from the scan frame to a frontal frame centred on the nose tip.

    x runs from the subject's right to left (eye and mouth corners), y from the mouth up to
    the eyes, z = x cross y points out of the face. Uses ``FRAME_LANDMARKS`` and falls back
    on other pairs (outer eye corners, alae) and midline points (stomion, subnasale) when
    some are missing.
    """
    p = {n: np.asarray(v, float) for n, v in landmarks.items() if np.isfinite(v).all()}
    pairs = [(a, b) for a, b in _BILATERAL if a in p and b in p]
    eyes = [(a, b) for a, b in pairs if a[:2] in ("en", "ex")]
    lower = next((g for g in _LOWER if all(n in p for n in g)), None)
    if "prn" not in p or not pairs or not eyes or lower is None:
        raise TooFewLandmarksError(
            f"need landmarks {FRAME_LANDMARKS} for a frontal frame (or eye corners, nose tip "
            f"and a mouth or subnasal point); have {sorted(p)}"
        )
    x = sum(p[b] - p[a] for a, b in pairs[:2])
    x /= np.linalg.norm(x)
    eye_mid = np.mean([(p[a] + p[b]) / 2.0 for a, b in eyes], axis=0)
    up = eye_mid - np.mean([p[n] for n in lower], axis=0)
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rotation = np.stack([x, y, z])  # rows: new axes in scan coordinates
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = -rotation @ p["prn"]
    return transform


def similarity_transform(
    source: np.ndarray, target: np.ndarray, *, allow_scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``s, R, t`` with ``target ~ s * R @ source + t`` (Umeyama 1991).

    Parameters
    ----------
    source, target : (n, 3) float, corresponding points, n >= 3 not collinear

    Returns
    -------
    scale : float; rotation : (3, 3) proper rotation; translation : (3,)
    """
    source, target = np.asarray(source, float), np.asarray(target, float)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 3:
        raise ValueError(
            f"need two (n, 3) arrays of equal shape, got {source.shape}, {target.shape}"
        )
    if len(source) < 3:
        raise ValueError("need at least 3 corresponding points")
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.T @ xs / len(source)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0  # a reflection would fit better; force a proper rotation
    rotation = u @ sign @ vt
    var_s = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if allow_scale else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation


def _as_array(landmarks: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.array([landmarks[n] for n in names], float)


def generalised_procrustes(
    shapes: np.ndarray, *, iterations: int = 10, tolerance: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Mean shape of landmark sets by generalised Procrustes analysis (Gower 1975).

    Parameters
    ----------
    shapes : (n, K, 3) landmark sets, mm, any pose

    Returns
    -------
    mean : (K, 3) in mm at the average size (root-mean-square distance to the centroid)
    aligned : (n, K, 3) every shape moved onto the mean by its similarity transform
    """
    shapes = np.asarray(shapes, float)
    sizes = np.sqrt(((shapes - shapes.mean(axis=1, keepdims=True)) ** 2).sum(-1).mean(-1))
    mean = shapes[0] - shapes[0].mean(0)
    aligned = shapes.copy()
    for _ in range(iterations):
        for i, shape in enumerate(shapes):
            s, r, t = similarity_transform(shape, mean)
            aligned[i] = s * shape @ r.T + t
        new_mean = aligned.mean(axis=0)
        new_mean -= new_mean.mean(0)
        new_mean *= sizes.mean() / np.sqrt((new_mean**2).sum(-1).mean())
        if np.abs(new_mean - mean).max() < tolerance:
            mean = new_mean
            break
        mean = new_mean
    return mean, aligned


@dataclass
class Template:
    """The template face: mean landmarks in a frontal frame (nose tip at the origin, face
    along +z, +y up) and a representative mesh in that frame."""

    landmark_names: list[str]
    landmarks: np.ndarray  # (K, 3) mm
    mesh: trimesh.Trimesh | None = None
    source_subject: str = ""

    def point(self, name: str) -> np.ndarray:
        return self.landmarks[self.landmark_names.index(name)]

    def table(self) -> pd.DataFrame:
        table = pd.DataFrame(self.landmarks, columns=["x", "y", "z"])
        table.insert(0, "name", self.landmark_names)
        return table

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> Template:
        """The template of a ``name, x, y, z`` table (what ``table`` writes)."""
        return cls(list(table["name"]), table[["x", "y", "z"]].to_numpy(float))


def build_template(
    landmark_sets: dict[str, dict[str, np.ndarray]],
    landmark_names: list[str],
    meshes: dict[str, trimesh.Trimesh] | None = None,
) -> Template:
    """Template from the training faces: the Procrustes mean of their landmarks in a frontal
    frame, and the mesh of the face closest to that mean (the medoid), moved onto it."""
    ids = sorted(landmark_sets)
    if len(ids) < 2:
        raise ValueError(f"a template needs at least 2 faces, got {len(ids)}")
    shapes = np.stack([_as_array(landmark_sets[s], landmark_names) for s in ids])
    mean, aligned = generalised_procrustes(shapes)
    frame = landmark_frame(dict(zip(landmark_names, mean, strict=True)))
    mean = mean @ frame[:3, :3].T + frame[:3, 3]
    template = Template(list(landmark_names), mean)
    if meshes:
        candidates = [i for i, s in enumerate(ids) if s in meshes]
        if candidates:
            distances = [np.linalg.norm(aligned[i] - aligned.mean(0)) for i in candidates]
            best = candidates[int(np.argmin(distances))]
            template.source_subject = ids[best]
            s, r, t = similarity_transform(shapes[best], mean)
            mesh = meshes[ids[best]].copy()
            mesh.apply_transform(_matrix(s, r, t))
            template.mesh = mesh
    return template


def _matrix(scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = scale * rotation
    m[:3, 3] = translation
    return m


def align_to_template(
    landmarks: dict[str, np.ndarray],
    template: Template,
    *,
    allow_scale: bool = True,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """The similarity transform that moves a face's landmarks onto the template's.

    Returns ``matrix`` (4x4), ``scale``, ``residual_mm`` (rms landmark distance after the
    fit, in template millimetres), ``max_residual_mm`` and ``n_landmarks`` used.
    """
    use = [n for n in (names or template.landmark_names) if n in landmarks]
    if len(use) < 3:
        raise TooFewLandmarksError(f"alignment needs at least 3 landmarks, got {len(use)}")
    source = _as_array(landmarks, use)
    target = np.array([template.point(n) for n in use])
    s, r, t = similarity_transform(source, target, allow_scale=allow_scale)
    residual = np.linalg.norm(s * source @ r.T + t - target, axis=1)
    return {
        "matrix": _matrix(s, r, t),
        "scale": s,
        "residual_mm": float(np.sqrt((residual**2).mean())),
        "max_residual_mm": float(residual.max()),
        "n_landmarks": len(use),
    }


def face_box(template: Template, margin_mm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the face region in the template frame: ear to ear at the
    cheekbones and jaw, chin to hairline, and nothing behind the ears."""
    p = template.point
    xs = [p(n)[0] for n in ("zy_r", "zy_l", "go_r", "go_l", "t_r", "t_l")]
    lower = np.array([min(xs) - margin_mm, p("gn")[1] - margin_mm, min(p("t_r")[2], p("t_l")[2])])
    upper = np.array([max(xs) + margin_mm, p("tr")[1] + margin_mm, np.inf])
    return lower, upper


def crop_to_box(mesh: trimesh.Trimesh, lower: np.ndarray, upper: np.ndarray) -> trimesh.Trimesh:
    """Keep the faces whose centroids lie inside the box (a copy; texture kept)."""
    c = mesh.triangles_center
    keep = np.flatnonzero(((c >= lower) & (c <= upper)).all(axis=1))
    if len(keep) == 0:
        raise RegionError("nothing of the mesh lies inside the face region")
    return mesh.submesh([keep], append=True)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(n, 3)`` points moved by a 4x4 (similarity) transform, as a mesh would be."""
    return np.asarray(points, float) @ matrix[:3, :3].T + matrix[:3, 3]


def align_face(
    mesh: trimesh.Trimesh,
    landmarks: dict[str, np.ndarray],
    template: Template,
    *,
    allow_scale: bool = True,
    crop_margin_mm: float = 10.0,
) -> tuple[trimesh.Trimesh, dict[str, np.ndarray], dict[str, Any]]:
    """Move a face onto the template and crop it to the face region.

    Returns the aligned, cropped mesh (a copy), its landmarks in the template frame, and the
    fit (``matrix``, ``scale``, ``residual_mm``, ``max_residual_mm``, ``n_landmarks``).
    """
    fit = align_to_template(landmarks, template, allow_scale=allow_scale)
    moved = mesh.copy()
    moved.apply_transform(fit["matrix"])
    cropped = crop_to_box(moved, *face_box(template, crop_margin_mm))
    m = fit["matrix"]
    moved_landmarks = {n: m[:3, :3] @ np.asarray(p, float) + m[:3, 3] for n, p in landmarks.items()}
    return cropped, moved_landmarks, fit


@dataclass
class AlignedSubject:
    """One face after the alignment stage: the aligned, cropped mesh (template frame, mm), its
    landmarks there (``name, x, y, z``), the fitted face model moved the same way (float32
    ``x, y, z``; None without a fit) and the stage's QC row (``alignment_status``, ...)."""

    mesh: trimesh.Trimesh
    landmarks: pd.DataFrame
    fitted: pd.DataFrame | None
    qc: dict[str, Any]


def align_subject(
    mesh: trimesh.Trimesh,
    landmark_table: pd.DataFrame,
    fitted_vertices: np.ndarray | None,
    template_table: pd.DataFrame,
    settings: AlignmentSettings,
) -> AlignedSubject:
    """The alignment stage for one subject, as the pipeline's node and the scorer run it:
    the landmarks placed (``status == 'ok'``) fit the similarity to the template, the mesh and
    the fitted model move with it, the face is cropped; a residual above
    ``settings.max_residual_mm`` is a QC warning."""
    found = (
        landmark_table[landmark_table["status"] == "ok"]
        if "status" in landmark_table
        else (landmark_table)
    )
    aligned, moved, fit = align_face(
        mesh,
        landmark_table_to_dict(found),
        Template.from_table(template_table),
        allow_scale=settings.scale,
        crop_margin_mm=settings.crop_margin_mm,
    )
    moved_table = pd.DataFrame([(n, *p) for n, p in moved.items()], columns=["name", "x", "y", "z"])
    fitted = None
    if fitted_vertices is not None:
        xyz = transform_points(fit["matrix"], fitted_vertices).astype(np.float32)
        fitted = pd.DataFrame(xyz, columns=["x", "y", "z"])
    high = fit["residual_mm"] > settings.max_residual_mm
    qc: dict[str, Any] = {
        "alignment_status": "warning" if high else "ok",
        "alignment_reason": (
            f"landmark residual {fit['residual_mm']:.1f} mm > {settings.max_residual_mm:g} mm"
            if high
            else ""
        ),
        **{k: v for k, v in fit.items() if k != "matrix"},
        "transform": " ".join(f"{v:.6g}" for v in fit["matrix"][:3].ravel()),
        "n_faces_cropped": len(aligned.faces),
    }
    return AlignedSubject(aligned, moved_table, fitted, qc)
