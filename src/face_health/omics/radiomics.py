"""Facial radiomics: morphology and colour texture of each region of interest of a face mesh.

For a region (the indices of its mesh faces) ``region_features`` gives

- **morphology** (``MORPHOLOGY_NAMES``): area, outer boundary length, mean and spread of the
  mean and Gaussian curvature, mean shape index, depth against the region's best-fit plane
  and the offset of its centroid from the template's centroid of the same region;
- **texture** of three colour channels (``grey_``, ``a_``, ``b_`` + the names of
  ``face_health.omics.texture.FEATURE_NAMES``): luma for wrinkles and spots, CIELAB a*
  for redness (alcohol) and pallor (anaemia), CIELAB b* for a sallow, yellow tone (smoking).

The region's colour is sampled into a 2D image (``region_image``) by orthographic projection
onto its best-fit plane, so texture is measured in millimetres on the skin, not in the
texture atlas, whose scale varies across the face and across scanners.
``subject_radiomics`` makes one flat row ``<region>__<feature>`` per subject; whole-mesh
work (curvature, decoding the texture image) is done once per subject, not once per region.

Units: millimetres, curvature in 1/mm (mean) and 1/mm^2 (Gaussian); the per-vertex curvature
itself is computed in :mod:`face_health.omics.curvature`.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import trimesh

from face_health.colour import colour_source, texture_array
from face_health.omics.curvature import VertexCurvature, vertex_curvature
from face_health.omics.texture import FEATURE_NAMES, colour_channels, texture_features

MORPHOLOGY_NAMES: tuple[str, ...] = (
    "area_mm2",
    "boundary_mm",
    "mean_curvature_mean",
    "mean_curvature_std",
    "gaussian_curvature_mean",
    "gaussian_curvature_std",
    "shape_index_mean",
    "plane_depth_mean",
    "plane_depth_max",
    "centroid_dx",
    "centroid_dy",
    "centroid_dz",
    "centroid_offset",
)
CHANNELS: tuple[str, ...] = ("grey", "a", "b")
REGION_FEATURE_NAMES: tuple[str, ...] = MORPHOLOGY_NAMES + tuple(
    f"{channel}_{name}" for channel in CHANNELS for name in FEATURE_NAMES
)
MIN_TEXTURE_PIXELS = 30


class MeshSurface:
    """The whole-mesh arrays every region of one subject reuses, read from the mesh once.

    trimesh re-hashes its arrays on every cached-property access (about 1 ms each on a 33k
    vertex scan), and curvature and the decoded texture cost 0.1 s per mesh; a subject's
    20 regions share one ``MeshSurface`` instead. Every function below that takes a mesh
    also takes a ``MeshSurface``.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Millimetres.
    smoothing_mm : float
        Passed to ``vertex_curvature``.
    """

    def __init__(self, mesh: trimesh.Trimesh, *, smoothing_mm: float = 3.0) -> None:
        self.mesh = mesh
        self.smoothing_mm = smoothing_mm
        self.vertices = np.asarray(mesh.vertices, dtype=float)  # (n, 3)
        self.faces = np.asarray(mesh.faces, dtype=np.intp)  # (m, 3)
        self.face_areas = np.asarray(mesh.area_faces, dtype=float)  # (m,)
        self.face_normals = np.asarray(mesh.face_normals, dtype=float)  # (m, 3)

    @cached_property
    def curvature(self) -> VertexCurvature:
        """``vertex_curvature`` of the mesh, computed on first use."""
        return vertex_curvature(self.mesh, smoothing_mm=self.smoothing_mm)

    @cached_property
    def colour(self) -> tuple[str | None, np.ndarray | None]:
        """``("texture", (H, W, 3))``, ``("vertex", (n, 3))``, ``("face", (m, 3))`` or None.

        Colours are sRGB in [0, 1]; UV of a textured mesh are in ``uv``.
        """
        visual = self.mesh.visual
        kind = colour_source(self.mesh)
        if kind == "texture":
            return kind, texture_array(self.mesh)
        if kind == "vertex":
            return kind, np.asarray(visual.vertex_colors[:, :3], dtype=float) / 255.0
        if kind == "face":
            return kind, np.asarray(visual.face_colors[:, :3], dtype=float) / 255.0
        return None, None

    @cached_property
    def uv(self) -> np.ndarray | None:
        """(n, 2) texture coordinates, or None."""
        uv = getattr(self.mesh.visual, "uv", None)
        return None if uv is None else np.asarray(uv, dtype=float)[:, :2]


def region_centroid(mesh: trimesh.Trimesh | MeshSurface, face_indices: np.ndarray) -> np.ndarray:
    """(3,) area-weighted centroid of a region's surface, mm (also for template centroids)."""
    surface = _surface(mesh)
    face_indices = np.asarray(face_indices, dtype=np.intp)
    centres = surface.vertices[surface.faces[face_indices]].mean(axis=1)
    return np.average(centres, axis=0, weights=surface.face_areas[face_indices])


def morphology_features(
    mesh: trimesh.Trimesh | MeshSurface,
    face_indices: np.ndarray,
    *,
    template_centroid: np.ndarray | None = None,
) -> dict[str, float]:
    """Shape of one region: size, outline, curvature, depth and position.

    Curvature statistics are area-weighted over the region's vertices (weights: a third of the
    area of each region face at the vertex), from ``vertex_curvature`` (cotangent mean
    curvature in 1/mm, angle-defect Gaussian curvature in 1/mm^2, smoothed over about 3 mm;
    shape index as in ``VertexCurvature.shape_index``; vertices on the mesh boundary are
    left out). Depth is the distance of the vertices from the region's area-weighted best-fit
    plane (a spherical cap of height h gives mean h/4, max h/2: its area is uniform in
    height). The boundary is the length of the edges used by exactly one region face.
    Centroid offsets are ``region_centroid - template_centroid`` in mm.

    Parameters
    ----------
    mesh : trimesh.Trimesh or MeshSurface
        Pass a ``MeshSurface`` when measuring many regions of one mesh.
    face_indices : (k,) int
        The region's faces.
    template_centroid : (3,) float, optional
        The template's ``region_centroid`` of the same region; offsets are NaN without it.

    Returns
    -------
    dict[str, float]
        ``MORPHOLOGY_NAMES``; all NaN for an empty region.
    """
    surface = _surface(mesh)
    face_indices = np.unique(np.asarray(face_indices, dtype=np.intp))
    if face_indices.size == 0:
        return dict.fromkeys(MORPHOLOGY_NAMES, float("nan"))
    faces = surface.faces[face_indices]
    vertex_ids, weights = _region_vertex_weights(surface, face_indices)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    outer = edges[trimesh.grouping.group_rows(edges, require_count=1)]
    boundary = np.linalg.norm(surface.vertices[outer[:, 0]] - surface.vertices[outer[:, 1]], axis=1)
    origin, axes = _region_frame(surface, face_indices, vertex_ids, weights)
    depth = np.abs((surface.vertices[vertex_ids] - origin) @ axes[2])
    curvature = surface.curvature
    features = {
        "area_mm2": float(surface.face_areas[face_indices].sum()),
        "boundary_mm": float(boundary.sum()),
    }
    for name, values in (
        ("mean_curvature", curvature.mean[vertex_ids]),
        ("gaussian_curvature", curvature.gaussian[vertex_ids]),
    ):
        features[f"{name}_mean"], features[f"{name}_std"] = _weighted_mean_std(values, weights)
    shape_index = curvature.shape_index[vertex_ids]
    features["shape_index_mean"] = _weighted_mean_std(shape_index, weights)[0]
    features["plane_depth_mean"] = float(np.average(depth, weights=weights))
    features["plane_depth_max"] = float(depth.max())
    offset = np.full(3, np.nan)
    if template_centroid is not None:
        offset = region_centroid(surface, face_indices) - np.asarray(template_centroid, float)
    for axis, value in zip("xyz", offset, strict=True):
        features[f"centroid_d{axis}"] = float(value)
    features["centroid_offset"] = float(np.linalg.norm(offset))
    return features


def region_image(
    mesh: trimesh.Trimesh | MeshSurface,
    face_indices: np.ndarray,
    *,
    mm_per_pixel: float = 0.5,
    max_size: int = 256,
) -> tuple[np.ndarray | None, np.ndarray]:
    """The region's colour, seen orthographically along the normal of its best-fit plane.

    The plane comes from an area-weighted PCA of the region's vertices; its normal points the
    way the region's faces do (out of the face). Image rows run down the plane's projection of
    +y and columns along ``up x normal`` (+x for a frontal region), so regions look as on a
    frontal photograph (a region facing up or down anchors on +x instead). Where the projected
    surface folds, the part nearest the viewer wins (a z-buffer). Colour comes from the
    texture image (UV interpolated, bilinear sampling; OBJ convention: v = 0 at the image
    bottom; UV clamped to [0, 1]), from vertex colours (interpolated) or from face colours.

    Parameters
    ----------
    mesh : trimesh.Trimesh or MeshSurface
    face_indices : (k,) int
    mm_per_pixel : float
        Pixel size; raised when the region would exceed ``max_size`` pixels on a side.
    max_size : int
        Largest image side in pixels.

    Returns
    -------
    rgb : (h, w, 3) float or None
        sRGB in [0, 1], zero outside the mask; None when the mesh has no colour.
    mask : (h, w) bool
        Pixels covered by the region.
    """
    surface = _surface(mesh)
    face_indices = np.unique(np.asarray(face_indices, dtype=np.intp))
    if face_indices.size == 0:
        return None, np.zeros((0, 0), dtype=bool)
    vertex_ids, weights = _region_vertex_weights(surface, face_indices)
    origin, axes = _region_frame(surface, face_indices, vertex_ids, weights)
    local = (surface.vertices[vertex_ids] - origin) @ axes.T  # (p, 3): across, up, height
    lookup = np.zeros(len(surface.vertices), dtype=np.intp)
    lookup[vertex_ids] = np.arange(len(vertex_ids))
    triangles = lookup[surface.faces[face_indices]]
    low, high = local[:, :2].min(axis=0), local[:, :2].max(axis=0)
    pixel = max(mm_per_pixel, float((high - low).max()) / max_size)
    width, height = (int(n) for n in np.maximum(np.ceil((high - low) / pixel), 1))
    # Pixel (row, col) has its centre at across = low_x + (col + .5) p, up = high_y - (row + .5) p.
    xy = np.column_stack([(local[:, 0] - low[0]) / pixel, (high[1] - local[:, 1]) / pixel])
    triangle_of, bary = _rasterise(xy, local[:, 2], triangles, (height, width))
    mask = triangle_of >= 0
    kind, colour = surface.colour
    if colour is None or (kind == "texture" and surface.uv is None):
        return None, mask
    rgb = np.zeros((height, width, 3))
    covered = triangle_of[mask]
    if kind == "face":
        rgb[mask] = colour[face_indices[covered]]
    else:
        per_vertex = colour[vertex_ids] if kind == "vertex" else surface.uv[vertex_ids]
        sampled = np.einsum("qc,qck->qk", bary[mask], per_vertex[triangles[covered]])
        rgb[mask] = sampled if kind == "vertex" else _bilinear(colour, sampled)
    return np.clip(rgb, 0.0, 1.0), mask


def region_features(
    mesh: trimesh.Trimesh | MeshSurface,
    face_indices: np.ndarray,
    *,
    template_centroid: np.ndarray | None = None,
    mm_per_pixel: float = 0.5,
    levels: int = 32,
    max_size: int = 256,
) -> dict[str, float]:
    """Morphology and grey / a* / b* texture features of one region (``REGION_FEATURE_NAMES``).

    Texture features (``morphology_features`` + ``<channel>_<texture feature>``, see
    ``face_health.omics.texture``) are NaN when the mesh has no colour or the region
    covers fewer than ``MIN_TEXTURE_PIXELS`` pixels. Pass a ``MeshSurface`` as ``mesh`` when
    measuring many regions: curvature and the texture image are then computed once.

    Parameters
    ----------
    mesh : trimesh.Trimesh or MeshSurface
    face_indices : (k,) int
    template_centroid : (3,) float, optional
        The template's ``region_centroid`` of this region.
    mm_per_pixel, max_size
        Sampling of ``region_image``.
    levels : int
        Grey levels of ``texture_features``.
    """
    surface = _surface(mesh)
    features = morphology_features(surface, face_indices, template_centroid=template_centroid)
    rgb, mask = region_image(surface, face_indices, mm_per_pixel=mm_per_pixel, max_size=max_size)
    if rgb is None or mask.sum() < MIN_TEXTURE_PIXELS:
        return features | dict.fromkeys(REGION_FEATURE_NAMES[len(MORPHOLOGY_NAMES) :], np.nan)
    channels = colour_channels(rgb)
    for channel in CHANNELS:
        values = texture_features(channels[channel], mask, levels=levels)
        features |= {f"{channel}_{name}": value for name, value in values.items()}
    return features


def subject_radiomics(
    mesh: trimesh.Trimesh,
    regions: dict[str, np.ndarray],
    *,
    template_centroids: dict[str, np.ndarray] | None = None,
    smoothing_mm: float = 3.0,
    **options: float,
) -> dict[str, float]:
    """One subject's row of the ``region_radiomics`` table: ``<region>__<feature>`` -> value.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        The aligned face (mm, template frame).
    regions : dict[str, (k,) int]
        Face indices per region; the row keeps this order and ``REGION_FEATURE_NAMES``.
    template_centroids : dict[str, (3,) float], optional
        ``region_centroid`` of each region on the template; offsets are NaN where missing.
    smoothing_mm : float
        Curvature smoothing (``vertex_curvature``).
    **options
        ``mm_per_pixel``, ``levels``, ``max_size`` for ``region_features``.
    """
    surface = MeshSurface(mesh, smoothing_mm=smoothing_mm)
    centroids = template_centroids or {}
    row: dict[str, float] = {}
    for name, face_indices in regions.items():
        features = region_features(
            surface, face_indices, template_centroid=centroids.get(name), **options
        )
        row |= {f"{name}__{feature}": value for feature, value in features.items()}
    return row


def _surface(mesh: trimesh.Trimesh | MeshSurface) -> MeshSurface:
    return mesh if isinstance(mesh, MeshSurface) else MeshSurface(mesh)


def _region_vertex_weights(
    surface: MeshSurface, face_indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids (p,) of a region and their areas (p,): a third of each region face's area."""
    vertex_ids, inverse = np.unique(surface.faces[face_indices].ravel(), return_inverse=True)
    weights = np.bincount(inverse, np.repeat(surface.face_areas[face_indices] / 3.0, 3))
    return vertex_ids, weights


def _region_frame(
    surface: MeshSurface, face_indices: np.ndarray, vertex_ids: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and rows (3, 3) across, up, normal of the region's best-fit plane."""
    points = surface.vertices[vertex_ids]
    weights = weights if weights.sum() > 0 else np.ones_like(weights)
    origin = np.average(points, axis=0, weights=weights)
    centred = points - origin
    _, eigenvectors = np.linalg.eigh((centred * weights[:, None]).T @ centred)
    normal = eigenvectors[:, 0]  # least variance
    areas = surface.face_areas[face_indices, None]
    if normal @ (surface.face_normals[face_indices] * areas).sum(axis=0) < 0:
        normal = -normal
    up = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
    if np.linalg.norm(up) > 0.3:
        up /= np.linalg.norm(up)
        across = np.cross(up, normal)
    else:  # a region facing up or down (under the chin): anchor on +x instead
        across = np.array([1.0, 0.0, 0.0]) - normal[0] * normal
        across /= np.linalg.norm(across)
        up = np.cross(normal, across)
    return origin, np.stack([across, up, normal])


def _rasterise(
    xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered rasterisation of 2D triangles at pixel centres.

    ``xy`` (p, 2) are (column, row) coordinates in pixels, ``depth`` (p,) larger = nearer,
    ``triangles`` (t, 3). Returns the triangle per pixel (h, w) int (-1 where none) and the
    barycentric weights (h, w, 3).
    """
    height, width = shape
    a, b, c = xy[triangles[:, 0]], xy[triangles[:, 1]], xy[triangles[:, 2]]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    keep = np.abs(det) > 1e-12  # triangles seen edge-on cover no pixel centre
    corners = xy[triangles]
    col0 = np.clip(np.ceil(corners[:, :, 0].min(axis=1) - 0.5), 0, width).astype(np.intp)
    col1 = np.clip(np.floor(corners[:, :, 0].max(axis=1) - 0.5), -1, width - 1).astype(np.intp)
    row0 = np.clip(np.ceil(corners[:, :, 1].min(axis=1) - 0.5), 0, height).astype(np.intp)
    row1 = np.clip(np.floor(corners[:, :, 1].max(axis=1) - 0.5), -1, height - 1).astype(np.intp)
    box_w, box_h = np.maximum(col1 - col0 + 1, 0), np.maximum(row1 - row0 + 1, 0)
    counts = np.where(keep, box_w * box_h, 0)
    # One candidate per pixel of each triangle's bounding box, enumerated without a loop.
    tri = np.repeat(np.arange(len(triangles)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    col = col0[tri] + offset % np.maximum(box_w[tri], 1)
    row = row0[tri] + offset // np.maximum(box_w[tri], 1)
    px, py = col + 0.5 - a[tri, 0], row + 0.5 - a[tri, 1]
    d = det[tri]
    l1 = (px * (c[tri, 1] - a[tri, 1]) - py * (c[tri, 0] - a[tri, 0])) / d
    l2 = (py * (b[tri, 0] - a[tri, 0]) - px * (b[tri, 1] - a[tri, 1])) / d
    inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (l1 + l2 <= 1 + 1e-9)
    tri, col, row, l1, l2 = tri[inside], col[inside], row[inside], l1[inside], l2[inside]
    bary = np.column_stack([1.0 - l1 - l2, l1, l2])
    z = np.einsum("qc,qc->q", bary, depth[triangles[tri]])
    flat = row * width + col
    order = np.lexsort((z, flat))  # per pixel, the nearest candidate comes last
    last = np.ones(order.size, dtype=bool)
    last[:-1] = flat[order][1:] != flat[order][:-1]
    chosen = order[last]
    triangle_of = np.full(height * width, -1, dtype=np.intp)
    weights = np.zeros((height * width, 3))
    triangle_of[flat[chosen]] = tri[chosen]
    weights[flat[chosen]] = bary[chosen]
    return triangle_of.reshape(shape), weights.reshape(height, width, 3)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of (H, W, 3) ``image`` at (q, 2) UV, v = 0 at the image bottom."""
    height, width = image.shape[:2]
    x = np.clip(uv[:, 0], 0.0, 1.0) * width - 0.5
    y = (1.0 - np.clip(uv[:, 1], 0.0, 1.0)) * height - 0.5
    x0 = np.clip(np.floor(x), 0, width - 1).astype(np.intp)
    y0 = np.clip(np.floor(y), 0, height - 1).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx = np.clip(x - x0, 0.0, 1.0)[:, None]
    fy = np.clip(y - y0, 0.0, 1.0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _weighted_mean_std(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    finite = np.isfinite(values) & (weights > 0)
    if not finite.any():
        return float("nan"), float("nan")
    mean = np.average(values[finite], weights=weights[finite])
    std = np.sqrt(np.average((values[finite] - mean) ** 2, weights=weights[finite]))
    return float(mean), float(std)
