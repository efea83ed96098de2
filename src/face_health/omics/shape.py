"""Shape features: the dense model fit of each face as a third feature family.

The landmark stage fits the ICT-FaceKit model to every scan and refines it onto the surface
(``landmarks.model_fit``); alignment moves that fitted face into the template frame
(``aligned_fitted_faces``): every face in one topology, vertex by vertex. ``ShapeFeatures``
turns it into numbers a model can learn from:

- **pose-free**: the fitted face's face-part vertices are brought onto the model's mean
  face by a similarity (Procrustes) fit; its log scale is one feature (``shp_log_scale``:
  the alignment has already scaled the face to the template by its landmarks, so this is
  what remains);
- **identity and expression coefficients** (``shp_id_000`` .. ``shp_id_099``,
  ``shp_ex_<name>``): least squares of the pose-free face minus the mean on the model's
  identity modes and the expressions the fit uses (``FitSettings.expressions``);
- **displacement** (``shp_disp_000`` ..): what the model's span cannot explain, the
  per-vertex displacement left after those coefficients (where the refinement followed
  the scan: ageing folds, sagging, adiposity), reduced by a PCA fitted on the training
  subjects.

Every column is then standardised with the training subjects' statistics. A face without a
fitted model (``landmarks.method: cnn``) has no shape features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from face_health.face_model import PARTS, load_face_model
from face_health.schema import ID_COLUMN

PREFIX = "shp_"
ALTERNATIONS = 3


def _face_vertices() -> np.ndarray:
    model = load_face_model()
    return np.flatnonzero(model.vertex_part == PARTS.index("face"))


def procrustes(points: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """``points (n, 3)`` moved onto ``target (n, 3)`` by the least-squares similarity
    (Umeyama, no reflection), and the scale of that similarity."""
    mu_p, mu_t = points.mean(axis=0), target.mean(axis=0)
    p, t = points - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(t.T @ p)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    scale = float((s * [1.0, 1.0, d]).sum() / (p**2).sum())
    return scale * p @ rotation.T + mu_t, scale


class ShapeFeatures(BaseEstimator, TransformerMixin):
    """Fitted faces (the model's topology, any similarity frame) -> standardised features.

    Parameters
    ----------
    n_displacement : components of the displacement PCA (at most the training subjects
        less one)
    expressions : the expression blendshapes to project on; the model fit's by default

    Attributes (after ``fit``)
    ----------
    columns_ : the feature names; ``mean_``, ``scale_`` their training statistics;
    ``explained_variance_ratio_`` of the displacement PCA; ``fitted_on_`` the subjects.
    """

    def __init__(self, n_displacement: int = 20, expressions: tuple[str, ...] | None = None):
        self.n_displacement = n_displacement
        self.expressions = expressions

    def _basis(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        from face_health.landmarks.model_fit import FitSettings

        model = load_face_model()
        face = _face_vertices()
        names = list(self.expressions or FitSettings().expressions)
        modes = [model.identity[:, face]] + [
            model.expression[[model.expression_index(n) for n in names]][:, face]
        ]
        basis = np.concatenate(modes).reshape(-1, 3 * len(face)).astype(np.float64)  # (k, 3m)
        mean = model.mean[face].astype(np.float64)
        centred = mean - mean.mean(axis=0)
        motions = [np.tile(axis, (len(face), 1)) for axis in np.eye(3)]  # translations
        motions += [np.cross(axis, centred) for axis in np.eye(3)] + [centred]  # turns, size
        basis = np.vstack([basis, np.array([m.ravel() for m in motions])])  # (k + 7, 3m)
        columns = [f"{PREFIX}id_{i:03d}" for i in range(model.n_identity)]
        names = [*columns, *(f"{PREFIX}ex_{n}" for n in names)]
        return basis, mean, names

    def _raw(self, faces: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients with the log scale ``(s, k + 1)`` and displacements ``(s, 3m)``."""
        basis, mean, names = self._cache()
        projector, k = self.projector_, len(names)
        face = _face_vertices()
        coefficients, displacements = [], []
        for vertices in faces.values():
            v = np.asarray(vertices, dtype=np.float64)
            if v.ndim != 2 or v.shape[1] != 3 or len(v) <= face.max():
                raise ValueError(
                    f"a fitted face must be the model's (n, 3) vertices, got shape {v.shape}"
                )
            # Pose and coefficients together: the similarity onto the current reconstruction,
            # then least squares on the modes and the similarity's own small motions (without
            # them, size and pose are read as identity: 4 SD off on model faces moved by 3
            # degrees and 2 %; with them 0.004 SD, tests/test_shape_features.py).
            target = mean
            for _ in range(ALTERNATIONS):
                moved, scale = procrustes(v[face], target)
                residual = (moved - mean).ravel()
                full = projector @ residual
                c = full[:k]
                target = mean + (c @ basis[:k]).reshape(-1, 3)
            coefficients.append(np.append(c, np.log(scale)))
            displacements.append(residual - full @ basis)
        return np.asarray(coefficients), np.asarray(displacements)

    def _cache(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if not hasattr(self, "_basis_cache"):
            basis, mean, names = self._basis()
            self._basis_cache = (basis, mean, names)
            # Least squares on the modes: (B B^T)^-1 B, small (k x k) normal equations.
            self.projector_ = np.linalg.solve(basis @ basis.T, basis)
        return self._basis_cache

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_basis_cache", None)  # rebuilt from the shipped model: 40 MB not pickled
        state.pop("projector_", None)
        return state

    def fit(self, faces: Mapping[str, np.ndarray], y=None) -> ShapeFeatures:
        """Fit on the training subjects' fitted faces (``subject_id -> (n, 3)``). No faces at
        all (``landmarks.method: cnn``) gives the empty family: no columns."""
        self.fitted_on_ = [str(s) for s in faces]
        if not faces:
            self.pca_, self.columns_, self.explained_variance_ratio_ = None, [], np.zeros(0)
            return self
        if len(faces) < 3:
            raise ValueError(f"the shape features need at least 3 training faces, got {len(faces)}")
        _, _, names = self._cache()
        coefficients, displacements = self._raw(faces)
        n = int(min(self.n_displacement, len(faces) - 1))
        self.pca_ = PCA(n_components=n, svd_solver="full", random_state=0).fit(displacements)
        self.explained_variance_ratio_ = self.pca_.explained_variance_ratio_
        table = np.hstack([coefficients, self.pca_.transform(displacements)])
        self.columns_ = [
            *names,
            f"{PREFIX}log_scale",
            *(f"{PREFIX}disp_{i:03d}" for i in range(n)),
        ]
        self.mean_ = table.mean(axis=0)
        spread = table.std(axis=0)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        return self

    def transform(self, faces: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """``subject_id`` and the standardised shape columns, one row per face, in order."""
        if not hasattr(self, "columns_"):
            raise RuntimeError("ShapeFeatures is not fitted")
        if not faces or not self.columns_:  # nothing to score, or the empty family
            empty = pd.DataFrame(np.zeros((len(faces), len(self.columns_))), columns=self.columns_)
            return empty.assign(**{ID_COLUMN: [str(s) for s in faces]})[[ID_COLUMN, *self.columns_]]
        self._cache()
        coefficients, displacements = self._raw(faces)
        table = np.hstack([coefficients, self.pca_.transform(displacements)])
        out = pd.DataFrame((table - self.mean_) / self.scale_, columns=self.columns_)
        out.insert(0, ID_COLUMN, [str(s) for s in faces])
        return out


def shape_columns(columns: Iterable[str]) -> list[str]:
    """The shape-feature columns of a table."""
    return [c for c in map(str, columns) if c.startswith(PREFIX)]
