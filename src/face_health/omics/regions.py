"""Regions of interest: landmark cycles cut the face mesh into the 20 regions of the model.

Each region is a cycle of landmark names (``REGION_CYCLES``). Its boundary follows shortest
paths on the mesh graph (vertices, edges weighted by length) between consecutive landmarks,
ties broken towards the straight line between them; its faces are those the cycle encloses.
``segment_regions`` cuts the mesh along the union of all boundary paths, takes the connected
pieces of faces that remain, and gives each piece to the region whose boundary encloses it in
a 2D unwrapping of the face. A face therefore gets at most one label: regions never overlap,
by construction.

Faces are expected aligned to the template (``face_health.alignment.similarity``):
millimetres, nose tip
near the origin, looking along +z, +y up, the subject's left at +x.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
import trimesh
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.path import Path as PolygonPath
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from face_health import schema

# The cycles form a planar subdivision of the face: every boundary segment between two
# consecutive landmarks is shared by the two regions on either side of it (or lies on the
# outline of the whole region map), so neighbours share the identical mesh path and leave
# neither gap nor overlap. Midline regions and the subject's right side are written out; the
# left side is their mirror image (``_r`` <-> ``_l``). The lower eye spans the whole lower lid
# (en-pi-ex) down to the orbitale, and the corner of the eye is the triangle ex-zy-or beside it:
# a thin en-pi-or triangle (the first draft) left the skin below the outer half of the lid to
# the corner region and was so narrow that its area swung by half between the two sides.
_MIDLINE_AND_RIGHT: dict[str, tuple[str, ...]] = {
    "forehead": ("ft_r", "tr", "ft_l", "g"),
    "glabella": ("g", "en_l", "n", "en_r"),
    "nose": ("n", "al_r", "sn", "al_l"),
    "philtrum": ("al_r", "sn", "al_l", "ch_l", "ls", "ch_r"),
    "mouth": ("ch_r", "ls", "ch_l", "li"),
    "chin": ("ch_r", "li", "ch_l", "gn"),
    "upper_right_eye": ("g", "ft_r", "ex_r", "ps_r", "en_r"),
    "right_eye": ("en_r", "ps_r", "ex_r", "pi_r"),
    "lower_right_eye": ("en_r", "pi_r", "ex_r", "or_r"),
    "corner_of_right_eye": ("ex_r", "zy_r", "or_r"),
    "right_side_of_nose": ("n", "en_r", "or_r", "al_r"),
    "right_cheek": ("or_r", "zy_r", "go_r", "ch_r", "al_r"),
    "right_temple": ("ft_r", "t_r", "zy_r", "ex_r"),
}


def _mirror_landmark(name: str) -> str:
    return {"_r": name[:-2] + "_l", "_l": name[:-2] + "_r"}.get(name[-2:], name)


def _with_left_side(cycles: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out = dict(cycles)
    for region, cycle in cycles.items():
        if "right" in region:
            out[region.replace("right", "left")] = tuple(_mirror_landmark(n) for n in cycle)
    return {region: out[region] for region in schema.REGIONS}


#: region id -> cycle of landmark names bounding it (keys: exactly ``schema.REGIONS``).
REGION_CYCLES: dict[str, tuple[str, ...]] = _with_left_side(_MIDLINE_AND_RIGHT)

#: colour of faces outside every region in pictures
UNLABELLED_COLOUR = (0.9, 0.9, 0.9)

#: z of the head's vertical axis behind the nose tip (mm), for the cylindrical unwrapping.
AXIS_Z_MM = -80.0


@dataclass
class RegionMap:
    """Region labels of one mesh.

    Attributes
    ----------
    labels : (n_faces,) int
        Index into ``schema.REGIONS`` per face; -1 where the face is in no region.
    boundaries : dict
        region -> (m,) int vertex indices of its closed boundary path: consecutive vertices
        (and the last and the first) are the ends of a mesh edge, up to vertices that a UV
        seam duplicates.
    """

    labels: np.ndarray
    boundaries: dict[str, np.ndarray]

    def faces_of(self, region: str) -> np.ndarray:
        """(k,) int indices of the faces labelled ``region``."""
        return np.flatnonzero(self.labels == schema.REGIONS.index(region))

    def counts(self) -> dict[str, int]:
        """Number of faces per region, every region of ``schema.REGIONS`` listed."""
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(schema.REGIONS))
        return {region: int(c) for region, c in zip(schema.REGIONS, counts, strict=True)}


class _BoundaryPaths:
    """Boundary paths between landmark vertices on one mesh's edge graph.

    The cost of an edge is its length, times ``1 + bend * (d / s)^2``, plus ``penalty`` for
    each end at a landmark; ``d`` is the distance of the edge's midpoint from the straight
    line between the path's ends in the unwrapped face (``_unwrap``, so that the curvature of
    the face does not count) and ``s`` a fifth of that line's length. On the regular grids of
    many scans a great many staircase paths tie for shortest and Dijkstra returns an extreme
    one (an L); the bend term picks the staircase along the straight line, barely changing
    the length. Every path pays the landmark penalty twice (leaving its start, reaching its
    end), one through a third landmark twice more, so it goes around that landmark: a
    boundary never runs through the corner of another cycle.
    """

    def __init__(self, mesh: trimesh.Trimesh, *, bend: float = 0.5) -> None:
        self.vertices, self.bend = np.asarray(mesh.vertices, float), bend
        faces, n = np.asarray(mesh.faces), len(mesh.vertices)
        heads, tails = faces.ravel(), faces[:, [1, 2, 0]].ravel()
        both = (np.concatenate([heads, tails]), np.concatenate([tails, heads]))
        self.adjacency = sparse.csr_array((np.ones(len(both[0])), both), shape=(n, n))
        self.adjacency.sum_duplicates()  # the structure is all that is used
        self.tree = cKDTree(self.vertices)
        self.chart = _unwrap(self.vertices)
        edge_mm = np.median(
            np.linalg.norm(self.vertices[heads[::7]] - self.vertices[tails[::7]], axis=1)
        )
        self.penalty = max(5.0, 4.0 * float(edge_mm))
        self.landmark = np.zeros(n)  # 1.0 at landmark vertices

    def snap(self, points: np.ndarray) -> np.ndarray:
        """(k,) vertices nearest to ``points`` (k, 3) in the mesh's largest connected piece,
        so a landmark never lands on a stray fragment that no path can reach."""
        _, piece = csgraph.connected_components(self.adjacency, directed=False)
        main = np.bincount(piece, weights=np.diff(self.adjacency.indptr)).argmax()
        _, nearest = self.tree.query(points)
        if np.any(piece[nearest] != main):
            keep = np.flatnonzero(piece == main)
            nearest = keep[cKDTree(self.vertices[keep]).query(points)[1]]
        self.landmark[nearest] = 1.0
        return nearest

    def __call__(self, a: int, b: int) -> np.ndarray | None:
        """(m,) vertex path from ``a`` to ``b`` along mesh edges; None if not connected.

        The search runs within an ellipsoid around the chord, widened if that does not connect
        a and b.
        """
        pa, pb = self.vertices[a], self.vertices[b]
        chord = max(float(np.linalg.norm(pb - pa)), 1e-6)
        for reach in (1.3 * chord + 10.0, 3.0 * chord + 30.0, np.inf):
            if np.isinf(reach):
                near = np.arange(len(self.vertices))
            else:  # vertices within an ellipsoid of foci a and b
                near = np.sort(self.tree.query_ball_point((pa + pb) / 2, reach / 2))
                v = self.vertices[near]
                spread = np.linalg.norm(v - pa, axis=1) + np.linalg.norm(v - pb, axis=1)
                near = near[spread <= reach]
            sub = self.adjacency[near][:, near]
            rows = np.repeat(np.arange(len(near)), np.diff(sub.indptr))
            p, q = self.vertices[near[rows]], self.vertices[near[sub.indices]]
            ca, cb = self.chart[a], self.chart[b]
            ab, ap = cb - ca, (self.chart[near[rows]] + self.chart[near[sub.indices]]) / 2 - ca
            span = max(float(ab @ ab), 1e-12)
            t = np.clip(ap @ ab / span, 0.0, 1.0)
            stray = np.linalg.norm(ap - t[:, None] * ab, axis=1) / (0.2 * np.sqrt(span))
            landmark_ends = self.landmark[near[rows]] + self.landmark[near[sub.indices]]
            weight = np.linalg.norm(p - q, axis=1) * (1.0 + self.bend * stray**2)
            weight += self.penalty * landmark_ends + 1e-9  # > 0: an explicit zero is no edge
            graph = sparse.csr_array((weight, sub.indices, sub.indptr), shape=sub.shape)
            start, end = np.searchsorted(near, [a, b])
            _, previous = csgraph.dijkstra(graph, indices=start, return_predecessors=True)
            if previous[end] >= 0:
                path = [end]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return near[np.array(path[::-1])]
        return None


def _unwrap(points: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 2) cylindrical coordinates (arc length in mm at 100 mm radius, y) about
    a vertical axis behind the nose: injective over the front and the sides of a face, where
    a frontal projection would fold the temples onto themselves."""
    angle = np.arctan2(points[:, 0], points[:, 2] - AXIS_Z_MM)
    return np.column_stack([100.0 * angle, points[:, 1]])


def _welded(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray]:
    """The mesh with coincident vertices merged, and (n_welded,) an original index of each.

    Textured scans split vertices along the seams of their UV atlas; left split, the seams
    would cut the edge graph and the face adjacency apart.
    """
    unique, inverse = trimesh.grouping.unique_rows(mesh.vertices, digits=6)
    if len(unique) == len(mesh.vertices):
        return mesh, np.arange(len(mesh.vertices))
    return trimesh.Trimesh(mesh.vertices[unique], inverse[mesh.faces], process=False), unique


def _label_pieces(mesh: trimesh.Trimesh, boundaries: dict[str, np.ndarray]) -> np.ndarray:
    """(n_faces,) region index per face, -1 outside every region, given closed boundaries."""
    # Cut the face adjacency along every boundary edge; what stays connected is a piece that
    # lies wholly inside one region or wholly outside all of them.
    n_vertices, n_faces = len(mesh.vertices), len(mesh.faces)
    cut = [np.sort(np.column_stack([b, np.roll(b, -1)]), axis=1) for b in boundaries.values()]
    cut_keys = np.concatenate([c @ [n_vertices, 1] for c in cut] + [np.empty(0, np.int64)])
    adjacency = mesh.face_adjacency
    keep = ~np.isin(np.sort(mesh.face_adjacency_edges, axis=1) @ [n_vertices, 1], cut_keys)
    links = sparse.coo_array(
        (np.ones(keep.sum()), (adjacency[keep, 0], adjacency[keep, 1])), shape=(n_faces, n_faces)
    )
    n_pieces, piece = csgraph.connected_components(links, directed=False)

    # Each piece goes to the region whose unwrapped boundary polygon holds most of a sample of
    # its faces; a majority vote absorbs the few faces that unwrap onto a fold (under the nose).
    order = np.argsort(piece, kind="stable")
    starts = np.searchsorted(piece[order], np.arange(n_pieces + 1))
    sample = [
        order[starts[i] + np.unique(np.linspace(0, starts[i + 1] - starts[i] - 1, 48).astype(int))]
        for i in range(n_pieces)
    ]
    sample_piece = np.repeat(np.arange(n_pieces), [len(s) for s in sample])
    points = _unwrap(mesh.triangles_center[np.concatenate(sample)])
    votes = np.zeros((len(schema.REGIONS), n_pieces))
    for region, boundary in boundaries.items():
        inside = PolygonPath(_unwrap(mesh.vertices[boundary])).contains_points(points)
        votes[schema.REGIONS.index(region)] = np.bincount(sample_piece[inside], minlength=n_pieces)
    share = votes.max(axis=0) / np.bincount(sample_piece, minlength=n_pieces)
    return np.where(share > 0.5, votes.argmax(axis=0), -1)[piece]


def segment_regions(
    mesh: trimesh.Trimesh,
    landmarks: dict[str, np.ndarray],
    *,
    cycles: dict[str, tuple[str, ...]] | None = None,
) -> RegionMap:
    """Label the faces of an aligned face mesh with the regions of interest.

    Parameters
    ----------
    mesh : trimesh.Trimesh, aligned to the template (mm, face along +z, +y up)
    landmarks : dict, name -> (3,) float point on (or near) the surface, same frame
    cycles : dict, region -> landmark names of its boundary cycle; ``REGION_CYCLES`` by
        default. Region ids must be in ``schema.REGIONS``. A region with a landmark missing
        from ``landmarks`` stays empty (``region_qc`` reports it).

    Returns
    -------
    RegionMap with ``labels`` (n_faces,) and each region's closed boundary path (where the
    mesh splits vertices along UV seams, one of the coincident vertices stands for all).
    """
    cycles = REGION_CYCLES if cycles is None else cycles
    unknown = set(cycles) - set(schema.REGIONS)
    if unknown:
        raise ValueError(f"unknown regions {sorted(unknown)}; ids are schema.REGIONS")
    cycles = {r: c for r, c in cycles.items() if all(n in landmarks for n in c)}
    names = sorted({n for c in cycles.values() for n in c})
    if not names or len(mesh.faces) == 0:
        return RegionMap(np.full(len(mesh.faces), -1, dtype=np.int64), {})

    welded, original_index = _welded(mesh)
    finder = _BoundaryPaths(welded)
    snapped = finder.snap(np.array([landmarks[n] for n in names], float))
    vertex_of = dict(zip(names, snapped.tolist(), strict=True))

    def pair(a: str, b: str) -> tuple[int, int]:
        return min(vertex_of[a], vertex_of[b]), max(vertex_of[a], vertex_of[b])

    # one path per pair of landmarks, shared by the two regions on either side of it
    segments = {pair(c[i], c[(i + 1) % len(c)]) for c in cycles.values() for i in range(len(c))}
    paths = {s: finder(*s) for s in segments if s[0] != s[1]}
    boundaries: dict[str, np.ndarray] = {}
    for region, cycle in cycles.items():
        pieces = []
        for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            if vertex_of[a] == vertex_of[b]:
                continue
            path = paths.get(pair(a, b))
            if path is None:  # a and b are not connected: no boundary, an empty region
                break
            pieces.append((path if path[0] == vertex_of[a] else path[::-1])[:-1])
        else:
            if len(pieces) > 1:
                boundaries[region] = np.concatenate(pieces)

    labels = _label_pieces(welded, boundaries)
    return RegionMap(labels, {r: original_index[b] for r, b in boundaries.items()})


def region_qc(
    region_map: RegionMap, mesh: trimesh.Trimesh, *, min_area_mm2: float = 20.0
) -> dict[str, str | int]:
    """Quality check: every region of ``schema.REGIONS`` should be there on a normal face.

    Returns
    -------
    dict with ``region_status`` ('ok' or 'warning'), ``region_reason`` ('empty: a, b; tiny:
    c' naming the regions with no faces or under ``min_area_mm2``; '' when ok) and
    ``n_regions_nonempty``.
    """
    labels = np.asarray(region_map.labels)
    if len(labels) != len(mesh.faces):
        raise ValueError(f"{len(labels)} labels for a mesh of {len(mesh.faces)} faces")
    labelled = labels >= 0
    area = np.bincount(
        labels[labelled], weights=mesh.area_faces[labelled], minlength=len(schema.REGIONS)
    )
    count = np.bincount(labels[labelled], minlength=len(schema.REGIONS))
    empty = [r for r, c in zip(schema.REGIONS, count, strict=True) if c == 0]
    tiny = [
        r for r, c, a in zip(schema.REGIONS, count, area, strict=True) if c and a < min_area_mm2
    ]
    reasons = [
        f"{kind}: {', '.join(names)}" for kind, names in (("empty", empty), ("tiny", tiny)) if names
    ]
    return {
        "region_status": "warning" if reasons else "ok",
        "region_reason": "; ".join(reasons),
        "n_regions_nonempty": int((count > 0).sum()),
    }


def region_colours() -> dict[str, tuple[float, float, float]]:
    """A distinct RGB colour (0..1) per region: left/right pairs share a hue (right dark,
    left light, as tab20 pairs them), midline regions have hues of their own."""
    pairs = matplotlib.colormaps["tab20"].colors
    colours: dict[str, tuple[float, float, float]] = {}
    sided = [r for r in _MIDLINE_AND_RIGHT if "right" in r]
    for k, region in enumerate(sided):  # 7 of tab20's pairs; its grey (pair 7) is left out
        colours[region] = tuple(pairs[2 * k])
        colours[region.replace("right", "left")] = tuple(pairs[2 * k + 1])
    midline = {
        "forehead": pairs[16],
        "glabella": pairs[18],
        "nose": (0.22, 0.23, 0.47),
        "philtrum": (0.39, 0.47, 0.22),
        "mouth": (0.6, 0.05, 0.35),
        "chin": (0.0, 0.45, 0.42),
    }
    colours.update({r: tuple(c) for r, c in midline.items()})
    return {region: colours[region] for region in schema.REGIONS}


def region_map_figure(
    meshes_and_maps: list[tuple[str, trimesh.Trimesh, RegionMap]],
) -> Figure:
    """Frontal pictures (x, y) of faces coloured by region, one panel per face, one legend.

    Parameters
    ----------
    meshes_and_maps : list of (title, aligned mesh, its RegionMap)
    """
    colours = region_colours()
    palette = np.array([colours[r] for r in schema.REGIONS] + [UNLABELLED_COLOUR])
    n = max(len(meshes_and_maps), 1)
    # a bare Figure on the Agg canvas: no pyplot state, no display, whatever the backend
    fig = Figure(figsize=(4.2 * n + 2.6, 5.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (title, mesh, region_map) in zip(axes[0], meshes_and_maps, strict=False):
        # painter's algorithm (back to front) hides what lies behind, whatever the winding
        order = np.argsort(mesh.triangles_center[:, 2])
        colour = palette[np.asarray(region_map.labels)[order]]  # label -1: the last colour
        shade = 0.55 + 0.45 * np.abs(mesh.face_normals[order, 2:3])  # a little relief
        polygons = mesh.triangles[order][:, :, :2]
        ax.add_collection(PolyCollection(polygons, facecolors=colour * shade, edgecolors="none"))
        ax.set_xlim(mesh.bounds[0, 0], mesh.bounds[1, 0])
        ax.set_ylim(mesh.bounds[0, 1], mesh.bounds[1, 1])
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_axis_off()
    handles = [Patch(color=colours[r], label=r) for r in schema.REGIONS]
    handles.append(Patch(color=palette[-1], label="(none)"))
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.01, right=1.0 - 2.5 / (4.2 * n + 2.6), wspace=0.02)
    return fig
