"""What a 3D scanner does to a face: resampling, crop, holes, noise, pose, baked lighting.

A structured-light or stereo-photogrammetry capture (3dMD, Artec) returns an irregular
triangle mesh of its own (not the face model's topology) in millimetres, in the scanner's
frame, with the head wherever the subject sat: cut off at the neck, above the forehead and
behind the ears, with holes where the surface was hidden or dark (nostrils, under the chin,
in the eyebrows, here and there), a little surface noise (more on hair) and a texture whose
shading and white balance depend on the booth. Here:

- ``Resampler`` subdivides the model surface (4 triangles per triangle, about 1.5 mm
  edges on the face) and ``scan_surface`` crops it once per process to the widest field of
  view: the base, whose vertices keep the UV of the point of the surface they sit on
  (seams split the UV, not the surface); each scan then collapses a random independent
  set of the base's edges to a random vertex count (none that would fold a triangle), so
  every scan has its own irregular triangulation, with no vertex correspondence between
  scans. (Quadric simplification of a denser subdivision was tried first: it leaves
  slivers, 5 % of edges under 0.2 mm, which scanner noise and collapses fold over.)
- ``capture`` crops, cuts holes, adds spatially correlated noise and poses the mesh;
- ``bake_lighting`` shades the texture with a random key light, as a booth does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from face_health.face_model import FaceModel, load_face_model
from face_health.synthetic.anatomy import one_thread, template


@dataclass(frozen=True)
class ScannerSettings:
    """Capture variability of the simulated scanner (mm, degrees, vertex counts)."""

    max_rotation_deg: float = 20.0
    translation_sd_mm: float = 40.0
    n_vertices: tuple[int, int] = (24000, 40000)  # target after thinning (the crop may leave fewer)
    noise_sd_mm: tuple[float, float] = (0.1, 0.3)
    hair_noise_sd_mm: tuple[float, float] = (0.3, 1.0)
    neck_cut_mm: tuple[float, float] = (15.0, 60.0)  # below gnathion
    top_cut_mm: tuple[float, float] = (5.0, 45.0)  # above trichion (keeps it on the scan)
    back_cut_mm: tuple[float, float] = (15.0, 45.0)  # behind the tragion
    n_holes: tuple[int, int] = (1, 5)
    hole_radius_mm: tuple[float, float] = (2.0, 6.0)
    hole_clearance_mm: float = 6.0  # no hole this close to a landmark (truth stays on surface)
    nostril_hole_probability: float = 0.6
    under_chin_hole_probability: float = 0.6
    brow_hole_probability: float = 0.3
    colour_cast_sd: float = 0.04
    light_elevation_deg: tuple[float, float] = (10.0, 45.0)
    light_azimuth_deg: tuple[float, float] = (-35.0, 35.0)
    ambient: tuple[float, float] = (0.45, 0.65)


@dataclass(frozen=True, eq=False)
class Resampler:
    """The model surface subdivided: the surface the scans' base is cut from.

    Attributes
    ----------
    subdivide : (n_sub, n) sparse, positions of the dense vertices from the model's
    faces, faces_uv : dense triangles and their corners' uv indices into ``uv``
    uv : (t, 2) ICT UV coordinates of the dense surface
    template : (n_sub, 3) dense vertices on the mean face (where each one is, anatomically)
    """

    subdivide: sparse.csr_array
    faces: np.ndarray
    faces_uv: np.ndarray
    uv: np.ndarray
    template: np.ndarray


def _midpoints(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge midpoints of triangles: ``(4m, 3)`` subdivided triangles and ``(e, 2)`` the ends
    of each new vertex's edge (new vertex ``n + i`` for edge ``i``)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    keys, inverse = np.unique(edges[:, 0].astype(np.int64) * n + edges[:, 1], return_inverse=True)
    unique = np.column_stack([keys // n, keys % n])
    mid = n + inverse.reshape(3, -1).T  # (m, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.T
    m01, m12, m20 = mid.T
    sub = np.concatenate([
        np.column_stack([a, m01, m20]),
        np.column_stack([m01, b, m12]),
        np.column_stack([m20, m12, c]),
        np.column_stack([m01, m12, m20]),
    ])  # fmt: skip
    return sub, unique


def _subdivided(faces: np.ndarray, n: int) -> tuple[np.ndarray, sparse.csr_array]:
    """Midpoint subdivision: ``(4m, 3)`` triangles and the ``(n + e, n)`` map to new points."""
    sub, ends = _midpoints(faces, n)
    rows = np.concatenate([np.arange(n), n + np.arange(len(ends)), n + np.arange(len(ends))])
    cols = np.concatenate([np.arange(n), ends[:, 0], ends[:, 1]])
    vals = np.concatenate([np.ones(n), np.full(2 * len(ends), 0.5)])
    return sub, sparse.csr_array((vals, (rows, cols)), shape=(n + len(ends), n))


@functools.lru_cache(maxsize=1)
@one_thread
def resampler(levels: int = 1) -> Resampler:
    """The model surface subdivided ``levels`` times (4 triangles per triangle each time)."""
    model = load_face_model()
    faces, faces_uv = model.faces, model.faces_uv
    subdivide = sparse.identity(model.n_vertices, format="csr")
    uv_map = sparse.identity(len(model.uv), format="csr")
    for _ in range(levels):
        faces, step = _subdivided(faces, subdivide.shape[0])
        faces_uv, uv_step = _subdivided(faces_uv, uv_map.shape[0])
        subdivide, uv_map = step @ subdivide, uv_step @ uv_map
    return Resampler(
        sparse.csr_array(subdivide), faces, faces_uv, uv_map @ model.uv, subdivide @ model.mean
    )


@dataclass
class Scan:
    """One capture: an irregular mesh in the scanner frame, its UV and its truth."""

    vertices: np.ndarray  # (n, 3) mm, scanner frame
    faces: np.ndarray  # (m, 3)
    uv: np.ndarray  # (t, 2) ICT UV coordinates
    faces_uv: np.ndarray  # (m, 3) uv index per corner
    landmarks: np.ndarray  # (33, 3) mm, scanner frame
    meta: dict


def random_pose(settings: ScannerSettings, rng: np.random.Generator) -> np.ndarray:
    """A 4x4 rigid transform: yaw, pitch, roll uniform in +-max, then a translation."""
    angles = rng.uniform(-settings.max_rotation_deg, settings.max_rotation_deg, 3)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("YXZ", angles, degrees=True).as_matrix()
    pose[:3, 3] = rng.normal(0.0, settings.translation_sd_mm, 3) + np.array([0.0, 0.0, -400.0])
    return pose


#: Subdivisions of the model surface for the base every scan is cut and thinned from.
BASE_LEVELS = 1


@dataclass(frozen=True, eq=False)
class ScanSurface:
    """The irregular surface every scan starts from, and what is fixed about it.

    The subdivided surface (``Resampler``) within the widest field of view a capture can
    have: its vertices are points of the model's surface (``positions`` maps model
    vertices to them), each with the UV of that point. Per scan, ``capture`` cuts it and
    collapses a random set of its edges, so no two scans share a triangulation.

    Attributes
    ----------
    positions : (nb, n) sparse, base vertices from model vertices
    faces, faces_uv, uv : triangles, their corners' uv indices, the uv table (ICT layout)
    vertex_uv : (nb,) a uv index of each vertex; ``seam`` (nb,) bool, vertices with two
    template : (nb, 3) base vertices on the mean face
    centres, normals : (mb, 3) per triangle on the mean face
    clear, nostril : (mb,) bool; ``brow`` (mb,) 0..1 (hole masks, as ``Resampler``'s)
    edges : (e, 2) vertex pairs; ``edge_faces`` (e, 2) their triangles (-1: none)
    incident, incident_start : CSR of the edges at each vertex (for per-vertex maxima)
    """

    positions: sparse.csr_array
    faces: np.ndarray
    faces_uv: np.ndarray
    uv: np.ndarray
    vertex_uv: np.ndarray
    seam: np.ndarray
    template: np.ndarray
    centres: np.ndarray
    normals: np.ndarray
    clear: np.ndarray
    nostril: np.ndarray
    brow: np.ndarray
    edges: np.ndarray
    edge_faces: np.ndarray
    incident: np.ndarray
    incident_start: np.ndarray


@functools.lru_cache(maxsize=1)
@one_thread
def scan_surface() -> ScanSurface:
    """The base surface (once per process, about a second)."""
    model, rs, tp = load_face_model(), resampler(BASE_LEVELS), template()
    where = rs.template
    # the widest field of view (every ScannerSettings default range fits inside it)
    inside = (
        (where[:, 1] > tp["gn"][1] - 85.0)
        & (where[:, 1] < tp["tr"][1] + 75.0)
        & (where[:, 2] > tp["t_r"][2] - 50.0)
    )
    keep = inside[rs.faces].all(axis=1)
    faces = rs.faces[keep]
    used = np.flatnonzero(np.bincount(faces.ravel(), minlength=len(where)))
    remap = np.full(len(where), -1)
    remap[used] = np.arange(len(used))
    faces, faces_uv = remap[faces], rs.faces_uv[keep]
    used_uv, base_faces_uv = np.unique(faces_uv, return_inverse=True)
    uv, base_faces_uv = rs.uv[used_uv], base_faces_uv.reshape(faces_uv.shape)
    simple_faces = faces
    positions = sparse.csr_array(rs.subdivide[used])
    template_points = positions @ model.mean
    centres = template_points[simple_faces].mean(axis=1)
    normals = _face_normals(template_points, simple_faces)
    clear = cKDTree(model.landmarks(model.mean)).query(centres)[0] > (
        ScannerSettings.hole_clearance_mm
    )
    nostril = (
        (np.abs(centres[:, 0]) < abs(tp["al_r"][0]) - 4.0)
        & (centres[:, 1] < tp["prn"][1] - 4.0) & (centres[:, 1] > tp["sn"][1] - 2.0)
        & (normals[:, 1] < -0.6) & (centres[:, 2] > 100.0)
    )  # fmt: skip
    # uv per vertex, and which vertices sit on a seam (two uv)
    n = len(used)
    corner_v, corner_t = simple_faces.ravel(), base_faces_uv.ravel()
    vertex_uv = np.zeros(n, np.int64)
    vertex_uv[corner_v] = corner_t
    seam = np.zeros(n, bool)
    seam[corner_v[vertex_uv[corner_v] != corner_t]] = True
    # edges and the triangles on either side
    m = len(simple_faces)
    ends = np.concatenate(
        [simple_faces[:, [0, 1]], simple_faces[:, [1, 2]], simple_faces[:, [2, 0]]]
    )
    ends = np.sort(ends, axis=1)
    keys = ends[:, 0] * n + ends[:, 1]
    order = np.argsort(keys, kind="stable")
    keys_sorted = keys[order]
    starts = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    edges = ends[order[starts]]
    face_of = np.tile(np.arange(m), 3)[order]
    edge_faces = np.full((len(edges), 2), -1)
    edge_faces[:, 0] = face_of[starts]
    two = counts >= 2
    edge_faces[two, 1] = face_of[starts[two] + 1]
    edge_faces[counts > 2] = -1  # non-manifold: never collapsed
    at_vertex = np.concatenate([edges[:, 0], edges[:, 1]])
    incident = np.argsort(at_vertex, kind="stable") % len(edges)
    incident_start = np.searchsorted(np.sort(at_vertex), np.arange(n))
    return ScanSurface(
        positions=positions,
        faces=simple_faces,
        faces_uv=base_faces_uv,
        uv=uv,
        vertex_uv=vertex_uv,
        seam=seam,
        template=template_points,
        centres=centres,
        normals=normals,
        clear=clear,
        nostril=nostril,
        brow=tp.brow_mask(centres, 2.5),
        edges=edges,
        edge_faces=edge_faces,
        incident=incident,
        incident_start=incident_start,
    )


def capture(
    vertices: np.ndarray,
    hair: np.ndarray,
    settings: ScannerSettings,
    rng: np.random.Generator,
    model: FaceModel | None = None,
) -> Scan:
    """Scan one face.

    Parameters
    ----------
    vertices : (n, 3) the face on the model topology, mm, model frame
    hair : (n,) 0..1 scalp hair on each vertex (noisier there)
    """
    model = model or load_face_model()
    base, tp = scan_surface(), template()
    landmarks = model.landmarks(vertices)
    points = base.positions @ vertices
    where, centres, normals, clear = base.template, base.centres, base.normals, base.clear

    # Field of view: below a neck line, above a line over the forehead, behind the ears.
    neck_y = tp["gn"][1] - rng.uniform(*settings.neck_cut_mm)
    neck_tilt = rng.uniform(-0.35, 0.1)  # the cut runs lower at the back than under the chin
    top_y = tp["tr"][1] + rng.uniform(*settings.top_cut_mm)
    top_tilt = rng.uniform(-0.5, 0.1)
    back_z = tp["t_r"][2] - rng.uniform(*settings.back_cut_mm)
    z_rel = where[:, 2] - tp["prn"][2]
    seen = (
        (where[:, 1] > neck_y + neck_tilt * z_rel)
        & (where[:, 1] < top_y + top_tilt * z_rel)
        & (where[:, 2] > back_z)
    )
    keep = seen[base.faces].all(axis=1)

    # Holes where a scanner loses the surface; none near a landmark.
    holes = {"nostrils": 0, "under_chin": 0, "brows": 0, "random": 0}
    if rng.random() < settings.nostril_hole_probability:
        cut = base.nostril & clear & keep
        keep &= ~cut
        holes["nostrils"] = int(cut.sum())
    if rng.random() < settings.under_chin_hole_probability:
        threshold = rng.uniform(-0.95, -0.75)
        cut = (normals[:, 1] < threshold) & (centres[:, 1] < tp["gn"][1] + 5.0) & clear & keep
        keep &= ~cut
        holes["under_chin"] = int(cut.sum())
    if rng.random() < settings.brow_hole_probability:
        brows = base.brow * rng.uniform(0.3, 1.0, len(centres))
        cut = (brows > rng.uniform(0.5, 0.8)) & clear & keep
        keep &= ~cut
        holes["brows"] = int(cut.sum())
    visible = np.flatnonzero(keep & clear & (centres[:, 2] > 40.0))
    lm_tree = cKDTree(model.landmarks(model.mean))
    for _ in range(rng.integers(settings.n_holes[0], settings.n_holes[1] + 1)):
        centre = centres[rng.choice(visible)]
        radius = rng.uniform(*settings.hole_radius_mm)
        if lm_tree.query(centre)[0] <= radius + settings.hole_clearance_mm:
            continue
        near = np.flatnonzero(np.abs(centres[:, 1] - centre[1]) < radius)
        keep[near[np.linalg.norm(centres[near] - centre, axis=1) < radius]] = False
        holes["random"] += 1

    hair_base = base.positions @ hair
    points, hair_base, faces, faces_uv, uv = _thin(
        base, points, hair_base, keep, rng, settings.n_vertices
    )
    # Scanner noise along the normals, more on hair, correlated over a few millimetres.
    noise_sd = rng.uniform(*settings.noise_sd_mm)
    hair_sd = rng.uniform(*settings.hair_noise_sd_mm)
    sd = noise_sd + (hair_sd - noise_sd) * np.clip(hair_base, 0.0, 1.0)
    vertex_normals = _vertex_normals(points, faces)
    noise = _smooth_noise(rng, faces, len(points))
    noisy = points + vertex_normals * (noise * sd)[:, None]

    pose = random_pose(settings, rng)
    scanned = noisy @ pose[:3, :3].T + pose[:3, 3]
    lms = landmarks @ pose[:3, :3].T + pose[:3, 3]
    yaw, pitch, roll = Rotation.from_matrix(pose[:3, :3]).as_euler("YXZ", degrees=True)
    meta = {
        "noise_sd_mm": float(noise_sd),
        "hair_noise_sd_mm": float(hair_sd),
        "n_holes": int(sum(1 for v in holes.values() if v)),
        **{f"holes_{k}": int(v) for k, v in holes.items()},
        "neck_cut_y_mm": float(neck_y),
        "top_cut_y_mm": float(top_y),
        "yaw_deg": float(yaw),
        "pitch_deg": float(pitch),
        "roll_deg": float(roll),
        "tx_mm": float(pose[0, 3]),
        "ty_mm": float(pose[1, 3]),
        "tz_mm": float(pose[2, 3]),
        "n_vertices": int(len(scanned)),
    }
    return Scan(scanned, faces, uv, faces_uv, lms, meta)


def _thin(
    base: ScanSurface,
    points: np.ndarray,
    values: np.ndarray,
    keep: np.ndarray,
    rng: np.random.Generator,
    n_vertices: tuple[int, int],
) -> tuple[np.ndarray, ...]:
    """The kept triangles of the base with a random independent set of edges collapsed.

    Each chosen edge (inside the kept surface, off its border and off UV seams) collapses
    to its midpoint, which lies on the surface, with the mean of its ends' UV and values.
    Chosen edges share no vertex (each is the largest of a random draw among the edges at
    both its ends), so the collapses do not interact. Returns points, values, faces,
    faces_uv, uv of the scan, compacted.
    """
    a, b = base.edges[:, 0], base.edges[:, 1]
    side = np.where(base.edge_faces >= 0, keep[np.maximum(base.edge_faces, 0)], False)
    inner = side.all(axis=1)
    border = side.any(axis=1) & ~inner
    on_border = np.zeros(len(points), bool)
    on_border[base.edges[border].ravel()] = True
    candidate = inner & ~base.seam[a] & ~base.seam[b] & ~on_border[a] & ~on_border[b]
    draw = np.where(candidate, rng.random(len(a)), -1.0)
    best = np.maximum.reduceat(draw[base.incident], base.incident_start)
    chosen = candidate & (draw == best[a]) & (draw == best[b])
    n_kept = int(np.count_nonzero(np.bincount(base.faces[keep].ravel(), minlength=len(points))))
    target = rng.integers(*n_vertices)
    # at least MIN_COLLAPSE of the independent set, so that no scan keeps the subdivision's
    # regular pattern even where the crop already left about the target count
    n_collapse = int(np.clip(n_kept - target, MIN_COLLAPSE * chosen.sum(), chosen.sum()))
    chosen = np.flatnonzero(chosen)
    chosen = chosen[rng.permutation(len(chosen))[:n_collapse]]
    chosen, remap, moved = _without_folds(points, base.faces[keep], a, b, chosen)

    ca, cb = a[chosen], b[chosen]
    points = moved
    values = values.copy()
    values[ca] = (values[ca] + values[cb]) / 2.0
    uv = np.concatenate([base.uv, (base.uv[base.vertex_uv[ca]] + base.uv[base.vertex_uv[cb]]) / 2])
    uv_remap = np.arange(len(base.uv))
    new_uv = len(base.uv) + np.arange(len(chosen))
    uv_remap[base.vertex_uv[ca]] = new_uv
    uv_remap[base.vertex_uv[cb]] = new_uv
    uv_remap = np.concatenate([uv_remap, new_uv])

    faces = remap[base.faces[keep]]
    faces_uv = uv_remap[base.faces_uv[keep]]
    whole = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    )
    faces, faces_uv = faces[whole], faces_uv[whole]
    used = np.flatnonzero(np.bincount(faces.ravel(), minlength=len(points)))
    vertex_index = np.full(len(points), -1)
    vertex_index[used] = np.arange(len(used))
    used_uv = np.flatnonzero(np.bincount(faces_uv.ravel(), minlength=len(uv)))
    uv_index = np.full(len(uv), -1)
    uv_index[used_uv] = np.arange(len(used_uv))
    return (
        points[used],
        values[used],
        vertex_index[faces],
        uv_index[faces_uv],
        uv[used_uv],
    )


#: Rounds of neighbour averaging that correlate the scanner noise (about 1.5 mm a ring).
NOISE_ROUNDS = 3
#: Share of the independent edge set that every scan collapses, whatever its target.
MIN_COLLAPSE = 0.6
#: A collapse is refused when a triangle beside it would turn by more than this (cosine).
MIN_NORMAL_AGREEMENT = 0.5


def _without_folds(
    points: np.ndarray, faces: np.ndarray, a: np.ndarray, b: np.ndarray, chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop the collapses of ``chosen`` edges that would fold a triangle beside them.

    A midpoint collapse can turn a thin neighbouring triangle over; a scanner's mesh has no
    such folds. Collapses touching a triangle that would turn more than 60 degrees are
    dropped, a few rounds until none does. Returns the edges kept, the vertex map (``b`` to
    ``a`` of each) and the moved points.
    """
    before = _face_normals(points, faces)
    for _ in range(4):
        ca, cb = a[chosen], b[chosen]
        moved = points.copy()
        moved[ca] = (points[ca] + points[cb]) / 2.0
        remap = np.arange(len(points))
        remap[cb] = ca
        after_faces = remap[faces]
        whole = (
            (after_faces[:, 0] != after_faces[:, 1])
            & (after_faces[:, 1] != after_faces[:, 2])
            & (after_faces[:, 2] != after_faces[:, 0])
        )
        agree = (_face_normals(moved, after_faces) * before).sum(axis=1)
        folded = whole & (agree < MIN_NORMAL_AGREEMENT)
        if not folded.any():
            break
        near = np.zeros(len(points), bool)
        near[faces[folded].ravel()] = True
        chosen = chosen[~(near[ca] | near[cb])]
    else:
        ca, cb = a[chosen], b[chosen]
        moved = points.copy()
        moved[ca] = (points[ca] + points[cb]) / 2.0
        remap = np.arange(len(points))
        remap[cb] = ca
    return chosen, remap, moved


def _smooth_noise(
    rng: np.random.Generator, faces: np.ndarray, n: int, rounds: int = NOISE_ROUNDS
) -> np.ndarray:
    """Unit-variance noise ``(n,)`` on the vertices, correlated over a few rings.

    White noise averaged ``rounds`` times over each vertex and its neighbours: waves a few
    millimetres long, as a scanner's depth error is, not an orange peel at the spacing of
    the vertices (and no sub-millimetre triangle folds over).
    """
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rows = np.concatenate([edges[:, 0], edges[:, 1], np.arange(n)])
    cols = np.concatenate([edges[:, 1], edges[:, 0], np.arange(n)])
    ring = sparse.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    ring.data[:] = 1.0  # an edge shared by two triangles counts once
    ring = sparse.diags_array(1.0 / ring.sum(axis=1)) @ ring
    noise = rng.standard_normal(n)
    for _ in range(rounds):
        noise = ring @ noise
    return noise / noise.std()


def _face_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    n = np.cross(b - a, c - a)
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals."""
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    n = np.cross(b - a, c - a)
    corners = faces.T.ravel()
    out = np.column_stack(
        [np.bincount(corners, np.tile(n[:, c], 3), minlength=len(points)) for c in range(3)]
    )
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)


def bake_lighting(
    normals: np.ndarray, settings: ScannerSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Shading of a random key light from the front, with the booth's colour cast.

    Returns the shading ``(n,)`` of surface points with unit ``normals (n, 3)`` (the face's,
    in the model frame) and the RGB cast ``(3,)``, to multiply into the albedo as a booth
    bakes its light into the texture, and what was drawn.
    """
    elev = np.radians(rng.uniform(*settings.light_elevation_deg))
    azim = np.radians(rng.uniform(*settings.light_azimuth_deg))
    light = np.array([np.sin(azim) * np.cos(elev), np.sin(elev), np.cos(azim) * np.cos(elev)])
    ambient = rng.uniform(*settings.ambient)
    shade = ambient + (1.0 - ambient) * 1.15 * np.clip(normals @ light, 0.0, 1.0)
    cast = rng.normal(1.0, settings.colour_cast_sd, 3)
    meta = {
        "light_elevation_deg": float(np.degrees(elev)),
        "light_azimuth_deg": float(np.degrees(azim)),
        "ambient": float(ambient),
        "cast_r": float(cast[0]),
        "cast_g": float(cast[1]),
        "cast_b": float(cast[2]),
    }
    return shade, cast, meta
