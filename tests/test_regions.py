"""Regions of interest: known answers on a grid and a sphere, and the 20 regions on a face."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trimesh

from face_health import schema
from face_health.alignment.similarity import landmark_frame, landmark_table_to_dict
from face_health.omics.regions import (
    REGION_CYCLES,
    RegionMap,
    region_colours,
    region_map_figure,
    region_qc,
    segment_regions,
)
from face_health.synthetic import write_cohort


def _grid(half: float = 30.0, step: float = 1.0) -> trimesh.Trimesh:
    """A flat square in the plane z = 0, facing +z, of two triangles per ``step`` square."""
    ticks = np.arange(-half, half + step / 2, step)
    n = len(ticks)
    xx, yy = np.meshgrid(ticks, ticks)
    vertices = np.column_stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)])
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1))
    a = (j * n + i).ravel()
    b, c, d = a + 1, a + n + 1, a + n
    faces = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])
    return trimesh.Trimesh(vertices, faces, process=False)


# A 3 x 3 lattice of landmarks on the grid, and four regions, one per quadrant, that share
# the two middle lines: a planar subdivision with a known answer.
_LATTICE = {
    f"p{i}{j}": np.array([x, y, 0.0])
    for i, x in enumerate((-20, 0, 20))
    for j, y in enumerate((-20, 0, 20))
}
_QUADRANTS = {
    "forehead": ("p01", "p11", "p12", "p02"),  # x < 0, y > 0
    "glabella": ("p11", "p21", "p22", "p12"),  # x > 0, y > 0
    "nose": ("p00", "p10", "p11", "p01"),  # x < 0, y < 0
    "mouth": ("p10", "p20", "p21", "p11"),  # x > 0, y < 0
}


def _expected_quadrants(mesh: trimesh.Trimesh) -> np.ndarray:
    x, y = mesh.triangles_center[:, 0], mesh.triangles_center[:, 1]
    expected = np.full(len(mesh.faces), -1)
    inside = (np.abs(x) < 20) & (np.abs(y) < 20)
    quadrants = (("forehead", -1, 1), ("glabella", 1, 1), ("nose", -1, -1), ("mouth", 1, -1))
    for region, sx, sy in quadrants:
        expected[inside & (sx * x > 0) & (sy * y > 0)] = schema.REGIONS.index(region)
    return expected


def _assert_consistent(mesh: trimesh.Trimesh, region_map: RegionMap) -> None:
    """Boundaries run along mesh edges, and faces on either side of an edge carry different
    labels only where that edge lies on a boundary: labels change nowhere else.
    Vertices split along UV seams count as one (welded by position)."""
    weld = trimesh.grouping.unique_rows(mesh.vertices)[1]
    welded = trimesh.Trimesh(mesh.vertices, weld[mesh.faces], process=False)
    edges = {tuple(e) for e in welded.edges_unique}
    on_boundary = set()
    for boundary in region_map.boundaries.values():
        b = weld[boundary]
        steps = {tuple(sorted(e)) for e in zip(b, np.roll(b, -1), strict=True)}
        assert steps <= edges
        on_boundary |= steps
    pairs, shared = welded.face_adjacency, np.sort(welded.face_adjacency_edges, axis=1)
    differ = region_map.labels[pairs[:, 0]] != region_map.labels[pairs[:, 1]]
    assert {tuple(e) for e in shared[differ]} <= on_boundary


def test_region_cycles_are_a_planar_subdivision_of_schema_landmarks() -> None:
    assert tuple(REGION_CYCLES) == schema.REGIONS
    uses: dict[frozenset, int] = {}
    for cycle in REGION_CYCLES.values():
        assert set(cycle) <= set(schema.LANDMARK_NAMES) and len(set(cycle)) == len(cycle)
        for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
            uses[frozenset((a, b))] = uses.get(frozenset((a, b)), 0) + 1
    assert max(uses.values()) == 2  # a segment bounds at most the two regions beside it
    mirror = {"_r": "_l", "_l": "_r"}
    assert REGION_CYCLES["left_cheek"] == tuple(
        n[:-2] + mirror[n[-2:]] for n in REGION_CYCLES["right_cheek"]
    )


def test_quadrants_of_a_flat_grid_get_exactly_their_faces() -> None:
    mesh = _grid()
    region_map = segment_regions(mesh, _LATTICE, cycles=_QUADRANTS)
    np.testing.assert_array_equal(region_map.labels, _expected_quadrants(mesh))
    assert region_map.counts()["forehead"] == 2 * 20 * 20
    assert region_map.counts()["chin"] == 0
    _assert_consistent(mesh, region_map)
    # the two neighbours share the one straight path up the middle, from (0, 0) to (0, 20)
    v = mesh.vertices
    middle = np.flatnonzero((v[:, 0] == 0) & (v[:, 1] >= 0) & (v[:, 1] <= 20))
    middle = middle[np.argsort(v[middle, 1])]
    shared = {tuple(sorted(e)) for e in zip(middle[:-1], middle[1:], strict=True)}
    steps = {}
    for region in ("forehead", "glabella"):
        b = region_map.boundaries[region]
        steps[region] = {tuple(sorted(e)) for e in zip(b, np.roll(b, -1), strict=True)}
    assert steps["forehead"] & steps["glabella"] == shared


def test_vertices_split_along_a_uv_seam_change_nothing() -> None:
    mesh = _grid()
    # give the faces right of x = 5 their own copies of the vertices on that line
    seam = np.flatnonzero(np.isclose(mesh.vertices[:, 0], 5.0))
    copies = {v: len(mesh.vertices) + k for k, v in enumerate(seam)}
    faces = mesh.faces.copy()
    right = mesh.triangles_center[:, 0] > 5.0
    faces[right] = np.vectorize(lambda v: copies.get(v, v))(faces[right])
    split = trimesh.Trimesh(np.vstack([mesh.vertices, mesh.vertices[seam]]), faces, process=False)
    region_map = segment_regions(split, _LATTICE, cycles=_QUADRANTS)
    np.testing.assert_array_equal(region_map.labels, _expected_quadrants(mesh))


def test_quadrants_on_a_sphere_follow_its_meridians_and_parallels() -> None:
    # a sphere around the unwrapping's vertical axis, and four regions on its front between
    # the meridians at -40, 0, 40 degrees and the parallels at -45, 0, 45 degrees
    radius, centre = 60.0, np.array([0.0, 0.0, -80.0])
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    sphere.apply_translation(centre)
    sphere.update_faces(sphere.triangles_center[:, 2] > centre[2])
    sphere.remove_unreferenced_vertices()

    def on_sphere(longitude: float, latitude: float) -> np.ndarray:
        lon, lat = np.radians(longitude), np.radians(latitude)
        return centre + radius * np.array(
            [np.sin(lon) * np.cos(lat), np.sin(lat), np.cos(lon) * np.cos(lat)]
        )

    landmarks = {
        f"{lon}/{lat}": on_sphere(lon, lat) for lon in (-40, 0, 40) for lat in (-45, 0, 45)
    }
    cycles = {}
    for region, lon, lat in (
        ("forehead", -40, 45),
        ("glabella", 40, 45),
        ("nose", -40, -45),
        ("mouth", 40, -45),
    ):
        cycles[region] = ("0/0", f"{lon}/0", f"{lon}/{lat}", f"0/{lat}")
    region_map = segment_regions(sphere, landmarks, cycles=cycles)
    _assert_consistent(sphere, region_map)

    p = sphere.triangles_center - centre
    longitude = np.degrees(np.arctan2(p[:, 0], p[:, 2]))
    latitude = np.degrees(np.arcsin(p[:, 1] / np.linalg.norm(p, axis=1)))
    expected = np.full(len(sphere.faces), -1)
    for region, (lo, hi), (down, up) in (
        ("forehead", (-40, 0), (0, 45)),
        ("glabella", (0, 40), (0, 45)),
        ("nose", (-40, 0), (-45, 0)),
        ("mouth", (0, 40), (-45, 0)),
    ):
        inside = (longitude > lo) & (longitude < hi) & (latitude > down) & (latitude < up)
        expected[inside] = schema.REGIONS.index(region)
    # faces clear of every boundary line (by 3 edge lengths; a path on this mesh wanders about
    # one edge, the great circle between two corners bulges 2 mm from their parallel) are
    # labelled exactly
    clear_mm = 3.0 * np.median(sphere.edges_unique_length)
    to_meridian = np.abs(longitude[:, None] - [-40, 0, 40]).min(axis=1)
    to_parallel = np.abs(latitude[:, None] - [-45, 0, 45]).min(axis=1)
    ring = np.hypot(p[:, 0], p[:, 2])
    far = (np.radians(to_meridian) * ring > clear_mm) & (
        np.radians(to_parallel) * radius > clear_mm
    )
    np.testing.assert_array_equal(region_map.labels[far], expected[far])
    # each region holds the area of the spherical quadrilateral of its corners (van Oosterom
    # and Strackee's formula for the two triangles of a fan)
    a, b, c, d = (on_sphere(*corner) - centre for corner in ((0, 0), (40, 0), (40, 45), (0, 45)))

    def excess(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> float:
        det = abs(u @ np.cross(v, w)) / radius**3
        return 2 * np.arctan2(det, 1 + (u @ v + v @ w + w @ u) / radius**2)

    quadrilateral = radius**2 * (excess(a, b, c) + excess(a, c, d))
    for region in cycles:
        area = sphere.area_faces[region_map.faces_of(region)].sum()
        assert area == pytest.approx(quadrilateral, rel=0.05)


@pytest.fixture(scope="module")
def simulated_face(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One simulated face aligned to the frontal frame and cropped, with its landmarks."""
    root = tmp_path_factory.mktemp("regions") / "cohort"
    write_cohort(root, 1, seed=3, progress=False)
    mesh = trimesh.load(root / "scans" / "S0001.obj", process=False)
    landmarks = landmark_table_to_dict(pd.read_csv(root / "landmarks" / "S0001.csv"))
    frame = landmark_frame(landmarks)
    mesh.apply_transform(frame)
    landmarks = {k: frame[:3, :3] @ v + frame[:3, 3] for k, v in landmarks.items()}
    c = mesh.triangles_center
    keep = (np.abs(c[:, 0]) < 90) & (c[:, 1] > -140) & (c[:, 1] < 100) & (c[:, 2] > -110)
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh, landmarks, segment_regions(mesh, landmarks)


def test_the_twenty_regions_of_a_simulated_face(simulated_face: tuple) -> None:
    mesh, _, region_map = simulated_face
    assert region_map.labels.shape == (len(mesh.faces),)
    qc = region_qc(region_map, mesh)
    assert qc == {"region_status": "ok", "region_reason": "", "n_regions_nonempty": 20}
    _assert_consistent(mesh, region_map)
    area = {r: mesh.area_faces[region_map.faces_of(r)].sum() for r in schema.REGIONS}
    assert area["forehead"] > 4 * area["glabella"]
    for small in ("right_eye", "left_eye", "lower_right_eye", "lower_left_eye"):
        assert area[small] < area["forehead"] / 2 and area[small] < area["right_cheek"] / 2
    # the lips with the mouth's slit: between the eyes' and the cheeks' size
    assert area["right_eye"] < area["mouth"] < area["forehead"]
    assert area["mouth"] < area["right_cheek"] / 2
    x = mesh.triangles_center[:, 0]
    for right in (r for r in schema.REGIONS if "right" in r):
        left = right.replace("right", "left")
        assert 1 / 1.6 < area[right] / area[left] < 1.6, right
        assert x[region_map.faces_of(right)].mean() < 0 < x[region_map.faces_of(left)].mean()
    for midline in ("forehead", "glabella", "nose", "philtrum", "mouth", "chin"):
        assert abs(x[region_map.faces_of(midline)].mean()) < 5.0


def test_qc_names_a_region_that_a_misplaced_landmark_empties(simulated_face: tuple) -> None:
    mesh, landmarks, _ = simulated_face
    # upper and lower lid points on top of each other close the eye: nothing left inside it
    closed = {**landmarks, "ps_r": landmarks["pi_r"]}
    qc = region_qc(segment_regions(mesh, closed), mesh)
    assert qc["region_status"] == "warning"
    assert qc["region_reason"] == "empty: right_eye"
    assert qc["n_regions_nonempty"] == 19
    missing = {k: v for k, v in landmarks.items() if k != "gn"}
    assert region_qc(segment_regions(mesh, missing), mesh)["region_reason"] == "empty: chin"


def test_qc_warns_on_an_empty_or_tiny_region_map() -> None:
    mesh = _grid(half=5.0)
    empty = RegionMap(np.full(len(mesh.faces), -1), {})
    qc = region_qc(empty, mesh)
    assert qc["region_status"] == "warning" and qc["n_regions_nonempty"] == 0
    assert qc["region_reason"] == "empty: " + ", ".join(schema.REGIONS)
    one = RegionMap(np.where(np.arange(len(mesh.faces)) < 8, schema.REGIONS.index("nose"), -1), {})
    assert "tiny: nose" in region_qc(one, mesh, min_area_mm2=20.0)["region_reason"]
    with pytest.raises(ValueError, match="labels"):
        region_qc(RegionMap(np.zeros(3, int), {}), mesh)


def test_colours_are_distinct_and_pair_left_with_right() -> None:
    colours = region_colours()
    assert tuple(colours) == schema.REGIONS
    rgb = np.array(list(colours.values()))
    assert len(np.unique(rgb.round(3), axis=0)) == len(schema.REGIONS)
    assert ((rgb >= 0) & (rgb <= 1)).all()
    for right in (r for r in schema.REGIONS if "right" in r):
        (h_right, _, v_right), (h_left, _, v_left) = (
            colorsys.rgb_to_hsv(*colours[r]) for r in (right, right.replace("right", "left"))
        )
        assert min(abs(h_right - h_left), 1 - abs(h_right - h_left)) < 0.06, right
        assert v_left >= v_right  # the same hue, the left side lighter


def test_region_map_figure_renders(simulated_face: tuple, tmp_path: Path) -> None:
    mesh, _, region_map = simulated_face
    figure = region_map_figure([("S0001", mesh, region_map)])
    assert len(figure.axes) == 1 and figure.legends
    path = tmp_path / "regions.png"
    figure.savefig(path, dpi=40)
    assert path.stat().st_size > 1000
