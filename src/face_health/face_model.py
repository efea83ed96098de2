"""The morphable face model shipped with face_health: ICT-FaceKit's light model, compacted.

``load_face_model()`` reads ``resources/ict_face_model.npz`` (built from ICT-VGL/ICT-FaceKit
at commit da5f95a by ``scripts/build_face_model.py``; MIT licence, Copyright (c) 2020 USC
Institute for Creative Technologies, see ``resources/ICT-FaceKit-LICENSE.txt``). A face is

    vertices = mean + sum_k identity_k * w_k + sum_j expression_j * e_j

in millimetres (the face looks along +z, +y up, the subject's right at -x), with identity
weights ``w ~ N(0, 1)`` (each mode is one standard deviation of the light-stage scans) and
expression weights in [0, 1]. The surface is the face and the head and neck of the upstream
topology (triangulated), the eye openings capped by discs on the eyeballs and the mouth slit
by a strip between the lips, so that it is one sheet like a scan's. Every landmark of
``schema.LANDMARKS`` is a fixed barycentric point of this topology, so it follows any
deformation exactly (``FaceModel.landmarks``).

The simulator draws faces from it (``face_health.synthetic``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
import trimesh

from face_health import schema

RESOURCE = "ict_face_model.npz"
#: Vertex and triangle parts (``vertex_part``, ``face_part``), by their codes.
PARTS = ("face", "head_neck", "eye_cap", "mouth_cap")


@dataclass(frozen=True, eq=False)
class FaceModel:
    """The linear face model: mean, identity and expression modes, topology, landmarks.

    Attributes
    ----------
    mean : (n, 3) float, mm
    identity : (k, n, 3) float32, mm per standard deviation of each identity mode
    expression : (e, n, 3) float32, mm at full strength of each expression
    expression_names : e ARKit names (``eyeBlink_L``, ``jawOpen``, ...)
    faces : (m, 3) int, triangles; ``face_part`` (m,) and ``vertex_part`` (n,) index ``PARTS``
    uv : (t, 2) float, ICT UV layout (face in the [0, 1] tile, head and neck in [1, 2])
    faces_uv : (m, 3) int, uv index of each triangle corner (seams split the uv, not the
        vertices)
    landmark_vertices, landmark_weights : (33, 3), each landmark of
        ``schema.LANDMARK_NAMES`` as a weighted sum of three vertices
    multipie68 : (68,) int, the upstream README's Multi-PIE landmark vertices
    """

    mean: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    expression_names: tuple[str, ...]
    faces: np.ndarray
    face_part: np.ndarray
    vertex_part: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray
    landmark_vertices: np.ndarray
    landmark_weights: np.ndarray
    multipie68: np.ndarray

    @property
    def n_vertices(self) -> int:
        return len(self.mean)

    @property
    def n_identity(self) -> int:
        return len(self.identity)

    def expression_index(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise KeyError(
                f"no expression {name!r}; the model has {self.expression_names}"
            ) from None

    def shape(
        self,
        identity: np.ndarray | None = None,
        expression: dict[str, float] | None = None,
    ) -> np.ndarray:
        """``(n, 3)`` vertices in mm for identity weights ``(<= k,)`` and named expressions."""
        vertices = self.mean.copy()
        if identity is not None:
            w = np.asarray(identity, float)
            vertices += np.tensordot(w, self.identity[: len(w)], axes=1)
        for name, weight in (expression or {}).items():
            if weight:
                vertices += weight * self.expression[self.expression_index(name)]
        return vertices

    def landmarks(self, vertices: np.ndarray) -> np.ndarray:
        """``(33, 3)`` landmark points of ``schema.LANDMARK_NAMES`` on ``vertices (n, 3)``."""
        corners = np.asarray(vertices)[self.landmark_vertices]
        return (corners * self.landmark_weights[..., None]).sum(axis=1)

    def mesh(self, vertices: np.ndarray | None = None) -> trimesh.Trimesh:
        """The surface as a trimesh (no UV), on ``vertices`` or the mean."""
        v = self.mean if vertices is None else vertices
        return trimesh.Trimesh(np.asarray(v, float), self.faces, process=False)

    @functools.cached_property
    def mirror(self) -> np.ndarray:
        """(n,) index of each vertex's mirror image (x -> -x) on the mean face."""
        from scipy.spatial import cKDTree

        return cKDTree(self.mean).query(self.mean * [-1.0, 1.0, 1.0])[1]


@functools.lru_cache(maxsize=1)
def load_face_model() -> FaceModel:
    """The shipped model (read once per process: about 0.2 s, 16 MB as float32)."""
    path = resources.files("face_health") / "resources" / RESOURCE
    with path.open("rb") as fh, np.load(fh) as z:
        step = float(z["step_mm"])
        names = tuple(str(n) for n in z["landmark_names"])
        if names != schema.LANDMARK_NAMES:
            raise ValueError(f"{RESOURCE} defines other landmarks than schema: rebuild it")
        return FaceModel(
            mean=z["mean"].astype(float),
            identity=z["identity"].astype(np.float32) * np.float32(step),
            expression=z["expression"].astype(np.float32) * np.float32(step),
            expression_names=tuple(str(n) for n in z["expression_names"]),
            faces=z["faces"].astype(np.int64),
            face_part=z["face_part"],
            vertex_part=z["vertex_part"],
            uv=z["uv"].astype(float),
            faces_uv=z["faces_uv"].astype(np.int64),
            landmark_vertices=z["landmark_vertices"].astype(np.int64),
            landmark_weights=z["landmark_weights"].astype(float),
            multipie68=z["multipie68"].astype(np.int64),
        )


def model_manifest() -> dict:
    """Provenance of the shipped model: upstream, licence, hashes, landmark rules."""
    path = resources.files("face_health") / "resources" / "ict_face_model.json"
    return json.loads(path.read_text())
