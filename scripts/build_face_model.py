"""Build the compact ICT-FaceKit model that face_health ships, from the upstream files.

The ICT Face Model Light (USC Institute for Creative Technologies, MIT licence) is a head
topology of 26,719 vertices with 100 PCA identity modes built from light-stage scans of real
people and 53 ARKit-named expression blendshapes. face_health uses the part of it a surface
scanner sees, and ships that part as one compressed array file:

- the face and the head-and-neck polygons (11,248 vertices), triangulated; the eye openings
  capped by discs that lie on the eyeballs and the mouth slit by a strip between the lips,
  so that the surface is one sheet like a scan's (the caps are linear in the model's
  vertices, so every mode carries them);
- the neutral mesh in millimetres, the 100 identity modes (one standard deviation each) and
  the expressions the simulator and the model fit use, as int16 steps of 0.002 mm (error at
  most 0.001 mm);
- the UV layout of those polygons (face in the [0, 1] tile, head and neck in [1, 2]);
- the 33 landmarks of ``face_health.schema`` defined once on this topology (a vertex, or a
  barycentric point of a triangle), with the rule behind each, and the Multi-PIE 68 indices
  of the upstream README to check them against.

Nothing is downloaded: the upstream files are read from a local clone (``--upstream``, a
checkout or a bare git directory, at commit da5f95a), every file is checked against its
SHA-256 in ``scripts/ict_facekit_da5f95a.sha256``, and the output is byte-identical on
every run (its hash is printed and recorded in ``ict_face_model.json``)::

    python scripts/build_face_model.py --upstream /path/to/ICT-FaceKit
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESOURCES = ROOT / "src" / "face_health" / "resources"
COMMIT = "da5f95a"
REPOSITORY = "https://github.com/ICT-VGL/ICT-FaceKit"
HASHES = HERE / "ict_facekit_da5f95a.sha256"

N_IDENTITY = 100
#: Expressions shipped: mild nuisance for the simulator and expression terms for the fit.
EXPRESSIONS = (
    "eyeBlink_L", "eyeBlink_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R",
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "mouthSmile_L", "mouthSmile_R", "mouthFrown_L", "mouthFrown_R",
    "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthFunnel", "jawOpen", "mouthClose",
)  # fmt: skip

# Upstream topology (README of ICT-FaceKit): polygon and vertex ranges of the parts used.
FACE_POLYGONS = range(0, 9230)  # vertices 0..9408
HEAD_NECK_POLYGONS = range(9230, 11144)  # vertices 9409..11247 (its polygons also use face ones)
N_SCAN_VERTICES = 11248
#: Sclera vertex and polygon ranges per eye (the subject's left and right).
SCLERA = {
    "l": (range(21451, 22221), range(21496, 22296)),
    "r": (range(23021, 23791), range(23094, 23894)),
}
#: Multi-PIE 68-point landmarks, 0-based vertex indices, from the upstream README.
MULTIPIE_68 = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272,
    4088, 3443, 268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942,
    4857, 1140, 2075, 1147, 4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756,
    3721, 3725, 3732, 5708, 5695, 2081, 0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841,
    5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
)  # fmt: skip
#: The right jawline of the upstream README (extended), from the ear to the chin.
RIGHT_JAWLINE = (1280, 1278, 1275, 1272, 1248, 12, 820, 1834, 1902, 243, 844, 781, 1673, 2199,
                 801, 1447, 800)  # fmt: skip
#: Tragion (the notch above the tragus) has no rule that the smooth ear of the neutral mesh
#: supports; it is this vertex of the right ear, picked on the topology (docs picture).
RIGHT_TRAGION = 7820

EYE_RINGS = (0.3, 0.6, 0.85)  # cap rings, as a share of the way from the lid margin inwards
MOUTH_RECESS_MM = 1.5  # the strip between the lips lies this far behind them
PART_NAMES = ("face", "head_neck", "eye_cap", "mouth_cap")


# --------------------------------------------------------------------------- upstream files
class Upstream:
    """The upstream files at ``COMMIT``: from a bare git directory or a checkout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.expected = dict(
            line.split()[::-1] for line in HASHES.read_text().splitlines() if line.strip()
        )
        git_dir = path if (path / "HEAD").is_file() and (path / "objects").is_dir() else None
        self.git_dir = git_dir or (path / ".git" if (path / ".git").exists() else None)

    def read(self, name: str) -> bytes:
        if self.git_dir is not None:
            data = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), "show", f"{COMMIT}:{name}"],
                check=True,
                capture_output=True,
            ).stdout
        else:
            data = (self.path / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if self.expected.get(name) != digest:
            raise SystemExit(f"{name}: SHA-256 {digest} is not that of ICT-FaceKit @ {COMMIT}")
        return data


def obj_positions(data: bytes) -> np.ndarray:
    """(n, 3) float64 positions of the ``v`` lines of an OBJ."""
    lines = [line for line in data.split(b"\n") if line.startswith(b"v ")]
    return np.array(b" ".join(line[2:] for line in lines).split(), dtype=float).reshape(-1, 3)


def obj_topology(data: bytes) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """UV coordinates ``(k, 2)`` and the polygons as lists of (vertex, uv) 0-based pairs."""
    uv, polygons = [], []
    for line in data.decode().splitlines():
        if line.startswith("vt "):
            uv.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("f "):
            corners = [c.split("/") for c in line.split()[1:]]
            polygons.append([(int(c[0]) - 1, int(c[1]) - 1) for c in corners])
    return np.array(uv), polygons


# --------------------------------------------------------------------------- topology
@dataclass
class Topology:
    """Triangles of the scanned surface with UV, and the linear map that makes cap vertices.

    ``extension`` (n_caps, n_upstream) gives each cap vertex as a combination of upstream
    vertices (plus ``offset`` (n_caps, 3) mm in the neutral); the model's vertex set is the
    first ``N_SCAN_VERTICES`` upstream vertices followed by the caps.
    """

    faces: np.ndarray
    faces_uv: np.ndarray
    uv: np.ndarray
    face_part: np.ndarray
    vertex_part: np.ndarray
    extension_index: np.ndarray  # (n_caps, k) upstream vertex indices
    extension_weight: np.ndarray  # (n_caps, k)
    extension_offset: np.ndarray  # (n_caps, 3) mm, constant part

    def vertices(self, upstream_mm: np.ndarray, *, with_offset: bool = True) -> np.ndarray:
        caps = (upstream_mm[self.extension_index] * self.extension_weight[..., None]).sum(1)
        if with_offset:
            caps = caps + self.extension_offset
        return np.concatenate([upstream_mm[:N_SCAN_VERTICES], caps])


def triangulate(polygons) -> tuple[np.ndarray, np.ndarray]:
    """Fan-split polygons into (m, 3) vertex and (m, 3) uv index triangles."""
    tv, tuv = [], []
    for poly in polygons:
        for k in range(1, len(poly) - 1):
            corners = (poly[0], poly[k], poly[k + 1])
            tv.append([c[0] for c in corners])
            tuv.append([c[1] for c in corners])
    return np.array(tv), np.array(tuv)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops of a triangle mesh, each an ordered vertex array."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    border = unique[counts == 1]
    neighbours: dict[int, list[int]] = {}
    for a, b in border:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        while True:
            seen.add(current)
            step = [n for n in neighbours[current] if n != previous]
            nxt = step[0]
            if nxt == start:
                break
            loop.append(nxt)
            previous, current = current, nxt
        loops.append(np.array(loop))
    return loops


def _arc_share(points: np.ndarray) -> np.ndarray:
    """Share of a polyline's length at each of its vertices, from 0 to 1."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum()


def _stitch(row_a: list, s_a: np.ndarray, row_b: list, s_b: np.ndarray) -> list[list]:
    """Triangles joining two polylines that run the same way, walking both by length share."""
    tris, i, j = [], 0, 0
    while i < len(row_a) - 1 or j < len(row_b) - 1:
        advance_a = j == len(row_b) - 1 or (i < len(row_a) - 1 and s_a[i + 1] <= s_b[j + 1])
        if advance_a:
            tris.append([row_a[i], row_a[i + 1], row_b[j]])
            i += 1
        else:
            tris.append([row_a[i], row_b[j + 1], row_b[j]])
            j += 1
    return tris


def _uv_of(faces: np.ndarray, faces_uv: np.ndarray) -> dict[int, int]:
    """The uv index each vertex has in ``faces`` (the first one met)."""
    out: dict[int, int] = {}
    for v, t in zip(faces.ravel().tolist(), faces_uv.ravel().tolist(), strict=True):
        out.setdefault(v, t)
    return out


def build_topology(neutral_mm: np.ndarray, uv: np.ndarray, polygons) -> Topology:
    scan_polys = [polygons[i] for i in [*FACE_POLYGONS, *HEAD_NECK_POLYGONS]]
    faces, faces_uv = triangulate(scan_polys)
    n_face_tris = len(triangulate([polygons[i] for i in FACE_POLYGONS])[0])
    face_part = np.where(np.arange(len(faces)) < n_face_tris, 0, 1)
    uv_of = _uv_of(faces, faces_uv)
    loops = boundary_loops(faces)
    centres = np.array([neutral_mm[lp].mean(0) for lp in loops])
    eyes = {
        side: loops[int(np.argmin(np.linalg.norm(centres - [sign * 32.0, 35.0, 90.0], axis=1)))]
        for side, sign in (("r", -1.0), ("l", 1.0))
    }
    mouth = loops[int(np.argmin(np.linalg.norm(centres - [0.0, -33.0, 105.0], axis=1)))]

    index, weight, offset, new_uv, cap_faces, cap_faces_uv, cap_part = [], [], [], [], [], [], []
    next_vertex, next_uv = N_SCAN_VERTICES, len(uv)

    def add(idx, w, off, uv_point) -> tuple[int, int]:
        nonlocal next_vertex, next_uv
        idx, w = list(idx), list(w)
        idx += [idx[0]] * (4 - len(idx))
        w += [0.0] * (4 - len(w))
        index.append(idx)
        weight.append(w)
        offset.append(off)
        new_uv.append(uv_point)
        next_vertex += 1
        next_uv += 1
        return next_vertex - 1, next_uv - 1

    # Eye caps: rings between the lid margin and the middle of the opening, each vertex the
    # point of the eyeball (sclera) straight in front of it, as barycentric weights.
    for side, loop in eyes.items():
        verts, polys = SCLERA[side]
        sclera_faces, _ = triangulate([polygons[i] for i in polys])
        sclera = trimesh.Trimesh(neutral_mm, sclera_faces, process=False)
        loop_xy = neutral_mm[loop, :2]
        loop_uv = uv[[uv_of[v] for v in loop]]
        rings = [[(int(v), uv_of[int(v)]) for v in loop]]
        for t in (*EYE_RINGS, 1.0):
            xy = loop_xy + t * (loop_xy.mean(0) - loop_xy)
            puv = loop_uv + t * (loop_uv.mean(0) - loop_uv)
            if t == 1.0:
                xy, puv = xy[:1], puv[:1]
            origins = np.column_stack([xy, np.full(len(xy), 300.0)])
            hits, ray, tri = sclera.ray.intersects_location(
                origins, np.tile([0.0, 0.0, -1.0], (len(xy), 1)), multiple_hits=False
            )
            if len(np.unique(ray)) != len(xy):
                raise SystemExit(f"eye cap {side}: a ray missed the eyeball")
            hits, tri = hits[np.argsort(ray)], tri[np.argsort(ray)]
            bary = trimesh.triangles.points_to_barycentric(sclera.triangles[tri], hits)
            rings.append(
                [
                    add(sclera_faces[f], b, [0.0, 0.0, 0.0], p)
                    for f, b, p in zip(tri, bary, puv, strict=True)
                ]
            )
        for outer, inner in zip(rings[:-1], rings[1:], strict=True):
            k = len(outer)
            for i in range(k):
                a, b = outer[i], outer[(i + 1) % k]
                if len(inner) == 1:
                    cap_faces.append([a[0], b[0], inner[0][0]])
                    cap_faces_uv.append([a[1], b[1], inner[0][1]])
                    continue
                c, d = inner[i], inner[(i + 1) % k]
                cap_faces += [[a[0], b[0], d[0]], [a[0], d[0], c[0]]]
                cap_faces_uv += [[a[1], b[1], d[1]], [a[1], d[1], c[1]]]
        cap_part += [2] * (len(cap_faces) - len(cap_part))

    # Mouth: a strip between the upper and lower inner lip lines, its middle row recessed.
    corner_r = mouth[np.argmin(neutral_mm[mouth, 0])]
    corner_l = mouth[np.argmax(neutral_mm[mouth, 0])]
    start = int(np.flatnonzero(mouth == corner_r)[0])
    ring = np.roll(mouth, -start)
    stop = int(np.flatnonzero(ring == corner_l)[0])
    chain_a, chain_b = ring[: stop + 1], np.concatenate([ring[stop:], ring[:1]])[::-1]
    upper, lower = (
        (chain_a, chain_b)
        if neutral_mm[chain_a, 1].mean() > neutral_mm[chain_b, 1].mean()
        else (chain_b, chain_a)
    )
    # The two lines have different vertex counts: pair each upper vertex with the point of
    # the lower line at the same share of its length, and stitch the rows by that share.
    s_up, s_low = _arc_share(neutral_mm[upper]), _arc_share(neutral_mm[lower])
    middle = [(int(upper[0]), uv_of[int(upper[0])])]
    for u, s_u in zip(upper[1:-1], s_up[1:-1], strict=True):
        j = int(np.clip(np.searchsorted(s_low, s_u) - 1, 0, len(lower) - 2))
        t = (s_u - s_low[j]) / (s_low[j + 1] - s_low[j])
        a, b = int(lower[j]), int(lower[j + 1])
        low_uv = (1 - t) * uv[uv_of[a]] + t * uv[uv_of[b]]
        middle.append(
            add(
                [int(u), a, b],
                [0.5, 0.5 * (1 - t), 0.5 * t],
                [0.0, 0.0, -MOUTH_RECESS_MM],
                (uv[uv_of[int(u)]] + low_uv) / 2.0,
            )
        )
    middle.append((int(upper[-1]), uv_of[int(upper[-1])]))
    first_mouth = len(cap_faces)
    upper_row = [(int(v), uv_of[int(v)]) for v in upper]
    lower_row = [(int(v), uv_of[int(v)]) for v in lower]
    for row, s_row in ((upper_row, s_up), (lower_row, s_low)):
        for tri in _stitch(row, s_row, middle, s_up):
            if len({p[0] for p in tri}) == 3:
                cap_faces.append([p[0] for p in tri])
                cap_faces_uv.append([p[1] for p in tri])
    cap_part += [3] * (len(cap_faces) - first_mouth)

    topo = Topology(
        faces=np.concatenate([faces, np.array(cap_faces)]),
        faces_uv=np.concatenate([faces_uv, np.array(cap_faces_uv)]),
        uv=np.concatenate([uv, np.array(new_uv)]),
        face_part=np.concatenate([face_part, np.array(cap_part)]).astype(np.uint8),
        vertex_part=np.zeros(0, np.uint8),
        extension_index=np.array(index),
        extension_weight=np.array(weight),
        extension_offset=np.array(offset),
    )
    # Caps wound like the surface around them (normals out of the face).
    vertices = topo.vertices(neutral_mm)
    normals = trimesh.Trimesh(vertices, topo.faces, process=False).face_normals
    caps = topo.face_part >= 2
    inward = caps & (normals[:, 2] < 0)
    topo.faces[inward] = topo.faces[inward][:, ::-1]
    topo.faces_uv[inward] = topo.faces_uv[inward][:, ::-1]
    part = np.zeros(len(vertices), np.uint8)
    part[N_SCAN_VERTICES:] = 2
    part[np.unique(topo.faces[topo.face_part == 1])] = 1
    part[np.unique(topo.faces[topo.face_part == 0])] = 0
    mouth_vertices = np.unique(topo.faces[topo.face_part == 3])
    part[mouth_vertices[mouth_vertices >= N_SCAN_VERTICES]] = 3
    topo.vertex_part = part
    # Compact the uv table to the entries the triangles use.
    used = np.unique(topo.faces_uv)
    remap = np.full(len(topo.uv), -1)
    remap[used] = np.arange(len(used))
    topo.uv, topo.faces_uv = topo.uv[used], remap[topo.faces_uv]
    return topo


# --------------------------------------------------------------------------- landmarks
@dataclass
class LandmarkDefinition:
    vertices: tuple[int, int, int]
    weights: tuple[float, float, float]
    rule: str


def _vertex(v: int, rule: str) -> LandmarkDefinition:
    return LandmarkDefinition((int(v),) * 3, (1.0, 0.0, 0.0), rule)


class _Neutral:
    """Geometry helpers on the neutral mesh (mm) for the landmark rules."""

    def __init__(self, vertices: np.ndarray, topo: Topology) -> None:
        self.v, self.topo = vertices, topo
        self.mesh = trimesh.Trimesh(vertices, topo.faces, process=False)
        self.normals = self.mesh.vertex_normals
        self.mirror = cKDTree(vertices).query(vertices * [-1.0, 1.0, 1.0])[1]
        skin = np.flatnonzero(topo.vertex_part == 0)
        mid = skin[(np.abs(vertices[skin, 0]) < 0.05) & (vertices[skin, 2] > 50.0)]
        # The outer profile: drop midline vertices inside the mouth (behind a nearby one).
        outer = [
            i
            for i in mid
            if vertices[mid[np.abs(vertices[mid, 1] - vertices[i, 1]) < 2.5], 2].max()
            - vertices[i, 2]
            < 1.5
        ]
        self.profile = np.array(sorted(outer, key=lambda i: vertices[i, 1]))

    def on_profile(self, low: float, high: float) -> np.ndarray:
        y = self.v[self.profile, 1]
        return self.profile[(y > low) & (y < high)]

    def front_point(self, x: float, y: float) -> LandmarkDefinition:
        hits, _, tri = self.mesh.ray.intersects_location(
            [[x, y, 400.0]], [[0.0, 0.0, -1.0]], multiple_hits=False
        )
        face = self.topo.faces[tri[0]]
        bary = trimesh.triangles.points_to_barycentric(self.mesh.triangles[tri[:1]], hits[:1])[0]
        return LandmarkDefinition(tuple(int(f) for f in face), tuple(float(b) for b in bary), "")


def define_landmarks(vertices: np.ndarray, topo: Topology) -> dict[str, LandmarkDefinition]:
    """Every landmark of ``face_health.schema`` on the topology, by the rule stated with it.

    Rules run on the neutral mesh (mm; face along +z, +y up, the subject's right at -x).
    The right side is found; the left is its mirror image (the neutral is symmetric to
    0.05 mm).
    """
    g_ = _Neutral(vertices, topo)
    v, nrm, mp = vertices, g_.normals, MULTIPIE_68
    out: dict[str, LandmarkDefinition] = {}
    prn = g_.profile[np.argmax(v[g_.profile, 2])]
    out["prn"] = _vertex(prn, "pronasale: most anterior midline point")
    ls = mp[51]
    out["ls"] = _vertex(ls, "labiale superius: Multi-PIE 51, the upper vermilion border")
    seg = g_.on_profile(v[ls, 1], v[prn, 1])
    chord = v[ls] - v[prn]
    depth = np.cross(v[seg] - v[prn], chord)[:, 0] / np.linalg.norm(chord)
    out["sn"] = _vertex(
        seg[np.argmax(np.abs(depth))],
        "subnasale: deepest midline point behind the chord from pronasale to labiale superius",
    )
    out["sto"] = LandmarkDefinition(
        (mp[62], mp[66], mp[66]),
        (0.5, 0.5, 0.0),
        "stomion: midpoint of the lips' midline contact (Multi-PIE 62 and 66)",
    )
    li = mp[57]
    out["li"] = _vertex(li, "labiale inferius: Multi-PIE 57, the lower vermilion border")
    sl = g_.on_profile(v[li, 1] - 20.0, v[li, 1] - 3.0)
    sl = sl[np.argmin(v[sl, 2])]
    out["sl"] = _vertex(sl, "sublabiale: most posterior midline point below the lower lip")
    pg = g_.on_profile(v[sl, 1] - 20.0, v[sl, 1])
    pg = pg[np.argmax(v[pg, 2])]
    out["pg"] = _vertex(pg, "pogonion: most anterior midline point of the chin")
    below = g_.on_profile(v[pg, 1] - 30.0, v[pg, 1])
    slope = np.degrees(np.arctan2(-nrm[below, 1], nrm[below, 2]))
    out["gn"] = _vertex(
        below[np.argmin(np.abs(slope - 45.0))],
        "gnathion: midline chin point whose normal points 45 degrees down, "
        "half way from pogonion to menton",
    )
    n = g_.on_profile(v[prn, 1] + 25.0, v[prn, 1] + 55.0)
    n = n[np.argmin(v[n, 2])]
    out["n"] = _vertex(n, "nasion: most posterior midline point of the nasal root")
    g = g_.on_profile(v[n, 1] + 5.0, v[n, 1] + 30.0)
    g = g[np.argmax(v[g, 2])]
    out["g"] = _vertex(g, "glabella: most anterior midline point above the nasion")
    up = g_.profile[v[g_.profile, 1] > v[n, 1]]
    tr = up[np.argmin(np.abs(np.linalg.norm(v[up] - v[n], axis=1) - 60.0))]
    out["tr"] = _vertex(
        tr,
        "trichion: midline point 60 mm from the nasion (the hairline "
        "of the simulated skin is drawn through it)",
    )

    right: dict[str, LandmarkDefinition] = {}
    right["en"] = _vertex(mp[39], "endocanthion: Multi-PIE 39 / 42, the inner commissure")
    right["ex"] = _vertex(mp[36], "exocanthion: Multi-PIE 36 / 45, the outer commissure")
    right["ch"] = _vertex(mp[48], "cheilion: Multi-PIE 48 / 54, the mouth corner")
    right["ps"] = _vertex(
        _lid_apex(g_, mp[37], mp[38], 1),
        "palpebrale superius: highest point of the visible upper lid margin (the mesh path "
        "between Multi-PIE 37 and 38)",
    )
    right["pi"] = _vertex(
        _lid_apex(g_, mp[41], mp[40], -1),
        "palpebrale inferius: lowest point of the visible lower lid margin (the mesh path "
        "between Multi-PIE 41 and 40)",
    )
    pi = v[right["pi"].vertices[0]]
    x_pupil = (v[mp[39], 0] + v[mp[36], 0]) / 2.0
    orbitale = g_.front_point(x_pupil, pi[1] - 9.0)
    right["or"] = LandmarkDefinition(
        orbitale.vertices,
        orbitale.weights,
        "orbitale: skin point in front, below the middle of the "
        "eye fissure, 9 mm below palpebrale inferius",
    )
    right["al"] = _vertex(
        _alare(g_, v[out["sn"].vertices[0]], v[prn]),
        "alare: most lateral nose point standing 2 mm proud of the skin "
        "3 mm further out (the alar crease)",
    )
    t = RIGHT_TRAGION
    right["t"] = _vertex(t, "tragion: the notch above the tragus (a vertex picked on the ear)")
    skin = np.flatnonzero(topo.vertex_part == 0)
    band = skin[
        (v[skin, 1] > v[t, 1])
        & (v[skin, 1] < v[t, 1] + 15.0)
        & (v[skin, 2] > v[t, 2] + 12.0)
        & (v[skin, 0] < 0)
    ]  # noqa: E501
    right["zy"] = _vertex(
        band[np.argmin(v[band, 0])],
        "zygion: most lateral face point in "
        "front of the ear, from the tragion's height to 15 mm above it",
    )
    a, b = v[RIGHT_JAWLINE[0], 1:], v[out["gn"].vertices[0], 1:]
    jaw = v[list(RIGHT_JAWLINE), 1:]
    off = np.abs((jaw[:, 0] - a[0]) * (b[1] - a[1]) - (jaw[:, 1] - a[1]) * (b[0] - a[0]))
    right["go"] = _vertex(
        RIGHT_JAWLINE[int(np.argmax(off))],
        "gonion: point of the upstream jawline farthest (in profile) from "
        "the line between its top and gnathion: the jaw angle",
    )
    ft_band = skin[
        (np.abs(v[skin, 1] - (v[g, 1] + 20.0)) < 1.5) & (v[skin, 0] < 0) & (v[skin, 2] > 40.0)
    ]  # noqa: E501
    right["ft"] = _vertex(
        ft_band[np.argmin(np.abs(nrm[ft_band, 2] - np.cos(np.radians(55.0))))],
        "frontotemporale: forehead point 20 mm above glabella where the "
        "surface turns 55 degrees to the side (the temporal crest)",
    )
    for name, d in right.items():
        out[f"{name}_r"] = d
        if d.weights[1] == 0.0 and d.weights[2] == 0.0:
            out[f"{name}_l"] = _vertex(g_.mirror[d.vertices[0]], d.rule)
        else:
            p = (v[list(d.vertices)] * np.array(d.weights)[:, None]).sum(0)
            m = g_.front_point(-p[0], p[1])
            out[f"{name}_l"] = LandmarkDefinition(m.vertices, m.weights, d.rule)
    return out


def _lid_apex(g_: _Neutral, a: int, b: int, sign: int) -> int:
    """The highest (``sign`` 1) or lowest (-1) vertex of the shortest skin path from ``a`` to
    ``b``: the visible lid margin between two Multi-PIE lid points, not the loop where the
    upstream lid tucks in against the eyeball (3 to 4 mm behind it and higher)."""
    skin = g_.topo.face_part == 0
    edges = g_.mesh.edges_unique[np.isin(g_.mesh.edges_unique, g_.topo.faces[skin]).all(axis=1)]
    lengths = np.linalg.norm(g_.v[edges[:, 0]] - g_.v[edges[:, 1]], axis=1)
    n = len(g_.v)
    graph = sparse.coo_array((lengths, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    _, previous = csgraph.dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    path = [b]
    while path[-1] != a:
        path.append(int(previous[path[-1]]))
        if path[-1] < 0:
            raise SystemExit(f"lid margin: no skin path from vertex {a} to {b}")
    path = np.array(path)
    return int(path[np.argmax(sign * g_.v[path, 1])])


def _alare(g_: _Neutral, sn: np.ndarray, prn: np.ndarray) -> int:
    v, nrm = g_.v, g_.normals
    skin = g_.topo.vertex_part == 0
    cand = np.flatnonzero(
        skin & (v[:, 1] > sn[1] - 3.0) & (v[:, 1] < prn[1] - 2.0) & (v[:, 0] < -5.0)
        & (v[:, 0] > -28.0) & (v[:, 2] > 100.0) & (nrm[:, 2] > 0.2)
    )  # fmt: skip
    for i in cand[np.argsort(v[cand, 0])]:
        here = g_.front_point(v[i, 0], v[i, 1])
        out = g_.front_point(v[i, 0] - 3.0, v[i, 1])
        z_here = (v[list(here.vertices), 2] * here.weights).sum()
        z_out = (v[list(out.vertices), 2] * out.weights).sum()
        if abs(z_here - v[i, 2]) < 0.5 and v[i, 2] - z_out > 2.0:
            return int(i)
    raise SystemExit("alare: no nose point stands out of the cheek")


# --------------------------------------------------------------------------- output
#: Quantisation step of the shipped modes (mm): errors of at most half of it, 0.001 mm.
STEP_MM = 0.002


def quantise(deltas: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 modes ``(k, n, 3)`` in steps of ``STEP_MM``, and the largest error (mm).

    A fixed step (not one per mode) leaves the small high-order modes as small integers,
    which compress to a third of their size.
    """
    q = np.round(deltas / STEP_MM)
    if np.abs(q).max() > 32767:
        raise SystemExit(f"a mode moves a vertex more than {32767 * STEP_MM:.0f} mm")
    q = q.astype(np.int16)
    return q, float(np.abs(q * STEP_MM - deltas).max())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed member dates, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def build(upstream: Upstream, out_dir: Path) -> dict:
    read = upstream.read
    neutral_obj = read("FaceXModel/generic_neutral_mesh.obj")
    neutral_up = obj_positions(neutral_obj) * 10.0  # centimetres -> millimetres
    uv, polygons = obj_topology(neutral_obj)
    topo = build_topology(neutral_up, uv, polygons)
    mean = topo.vertices(neutral_up)

    def deltas(names: list[str]) -> np.ndarray:
        out = np.empty((len(names), len(mean), 3))
        for k, name in enumerate(names):
            shape = obj_positions(read(f"FaceXModel/{name}.obj")) * 10.0
            out[k] = topo.vertices(shape - neutral_up, with_offset=False)
        return out

    identity = deltas([f"identity{k:03d}" for k in range(N_IDENTITY)])
    expression = deltas(list(EXPRESSIONS))
    identity_q, identity_error = quantise(identity)
    expression_q, expression_error = quantise(expression)
    landmarks = define_landmarks(mean, topo)
    from face_health import schema  # the names the project uses, in its order

    names = list(schema.LANDMARK_NAMES)
    if set(names) != set(landmarks):
        raise SystemExit(f"landmark rules and schema differ: {set(names) ^ set(landmarks)}")
    arrays = {
        "mean": mean.astype(np.float32),
        "faces": topo.faces.astype(np.int32),
        "face_part": topo.face_part,
        "vertex_part": topo.vertex_part,
        "uv": topo.uv.astype(np.float32),
        "faces_uv": topo.faces_uv.astype(np.int32),
        "identity": identity_q,
        "expression": expression_q,
        "step_mm": np.float64(STEP_MM),
        "expression_names": np.array(EXPRESSIONS),
        "landmark_names": np.array(names),
        "landmark_vertices": np.array([landmarks[n].vertices for n in names], np.int32),
        "landmark_weights": np.array([landmarks[n].weights for n in names], np.float32),
        "multipie68": np.array(MULTIPIE_68, np.int32),
        "part_names": np.array(PART_NAMES),
    }
    data = write_npz(out_dir / "ict_face_model.npz", arrays)
    (out_dir / "ICT-FaceKit-LICENSE.txt").write_bytes(read("LICENSE"))
    position = {n: (mean[list(d.vertices)] * np.array(d.weights)[:, None]).sum(0)
                for n, d in landmarks.items()}  # fmt: skip
    mp = {"prn": 30, "sn": 33, "n": 27, "sto": 62, "gn": 8, "ls": 51, "li": 57, "en_r": 39,
          "en_l": 42, "ex_r": 36, "ex_l": 45, "ch_r": 48, "ch_l": 54}  # fmt: skip
    manifest = {
        "source": f"{REPOSITORY} @ {COMMIT} (ICT Face Model Light, MIT licence)",
        "copyright": "Copyright (c) 2020 USC Institute for Creative Technologies",
        "built_by": "scripts/build_face_model.py",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "n_vertices": int(len(mean)),
        "n_triangles": int(len(topo.faces)),
        "n_identity_modes": N_IDENTITY,
        "expressions": list(EXPRESSIONS),
        "max_quantisation_error_mm": {
            "identity": round(identity_error, 6),
            "expression": round(expression_error, 6),
        },
        "landmarks": {
            n: {
                "vertices": list(landmarks[n].vertices),
                "weights": [round(w, 6) for w in landmarks[n].weights],
                "rule": landmarks[n].rule,
            }
            for n in names
        },  # fmt: skip
        "distance_to_multipie_mm": {
            n: round(float(np.linalg.norm(position[n] - mean[MULTIPIE_68[k]])), 3)
            for n, k in mp.items()
        },
    }
    (out_dir / "ict_face_model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upstream",
        type=Path,
        required=True,
        help="ICT-FaceKit clone: a checkout or a bare git directory",
    )
    parser.add_argument("--out", type=Path, default=RESOURCES)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "ict_face_model.json"
    before = json.loads(previous.read_text())["sha256"] if previous.exists() else None
    manifest = build(Upstream(args.upstream), args.out)
    print(
        json.dumps(
            {
                k: manifest[k]
                for k in (
                    "sha256",
                    "bytes",
                    "n_vertices",
                    "n_triangles",
                    "max_quantisation_error_mm",
                    "distance_to_multipie_mm",
                )
            },
            indent=2,
        )
    )
    if before is not None and before != manifest["sha256"]:
        print(f"note: the output differs from the previous build ({before})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
