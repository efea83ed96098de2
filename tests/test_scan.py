"""Tests of reading, units, cleaning and QC of one scan (``face_health.ingest.scan``)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from kedro.io.core import DatasetError
from PIL import Image

from face_health.colour import texture_image
from face_health.ingest.decimation import decimate
from face_health.ingest.scan import (
    QC_COLUMNS,
    ScanError,
    clean_mesh,
    group_scan_files,
    infer_units,
    ingest_scan,
    read_scan,
    to_millimetres,
)

RADIUS_MM = 80.0
REAL_SCANS = Path(__file__).resolve().parents[2] / "shared" / "real_scans"


def _spherical_uv(vertices: np.ndarray) -> np.ndarray:
    """(n, 2) UV from longitude / latitude of ``vertices (n, 3)`` around the origin."""
    radius = np.linalg.norm(vertices, axis=1)
    u = 0.5 + np.arctan2(vertices[:, 1], vertices[:, 0]) / (2 * np.pi)
    v = 0.5 + np.arcsin(np.clip(vertices[:, 2] / radius, -1, 1)) / np.pi
    return np.c_[u, v]


def _texture(size: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8))


def textured_sphere(subdivisions: int = 3, radius: float = RADIUS_MM) -> trimesh.Trimesh:
    """An icosphere with spherical UV and a small random texture."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    material = trimesh.visual.material.SimpleMaterial(image=_texture())
    mesh.visual = trimesh.visual.TextureVisuals(uv=_spherical_uv(mesh.vertices), material=material)
    return mesh


def coloured_sphere(subdivisions: int = 3) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=RADIUS_MM)
    rng = np.random.default_rng(1)
    mesh.visual.vertex_colors = rng.integers(0, 255, (len(mesh.vertices), 4), dtype=np.uint8)
    return mesh


def seamed_sphere(subdivisions: int) -> trimesh.Trimesh:
    """A textured icosphere whose UV wraps at u = 0 / 1 through split seam vertices."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=RADIUS_MM)
    vertices, faces = sphere.vertices, sphere.faces.copy()
    uv = _spherical_uv(vertices)
    wrap = np.ptp(uv[faces, 0], axis=1) > 0.5
    low = np.unique(faces[wrap][uv[faces[wrap], 0] < 0.5])
    copy_of = np.full(len(vertices), -1)
    copy_of[low] = len(vertices) + np.arange(len(low))
    straddling = faces[wrap]
    faces[wrap] = np.where(uv[straddling, 0] < 0.5, copy_of[straddling], straddling)
    uv = np.vstack([uv, uv[low] + [1.0, 0.0]])
    material = trimesh.visual.material.SimpleMaterial(image=_texture())
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(
        np.vstack([vertices, vertices[low]]), faces, visual=visual, process=False
    )


def _max_u_span(mesh: trimesh.Trimesh) -> float:
    return float(np.ptp(mesh.visual.uv[mesh.faces, 0], axis=1).max())


@pytest.fixture
def textured_obj(tmp_path: Path) -> Path:
    """``tmp/s01/s01.obj`` with ``material.mtl`` and ``material_0.png``."""
    path = tmp_path / "s01" / "s01.obj"
    path.parent.mkdir()
    textured_sphere().export(path)
    return path


def _write(tmp_path: Path, name: str, payload: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    return path


# ------------------------------------------------------------------------------ reading
def test_obj_reads_with_texture(textured_obj: Path) -> None:
    mesh = read_scan(textured_obj)
    assert mesh.vertices.shape == (642, 3)
    assert len(mesh.faces) == 1280
    image = texture_image(mesh)
    assert image is not None and image.size == (16, 16)
    assert mesh.metadata["source_format"] == "obj" and mesh.metadata["warnings"] == []


@pytest.mark.parametrize("suffix", [".ply", ".glb"])
def test_vertex_colours_survive(tmp_path: Path, suffix: str) -> None:
    original = coloured_sphere()
    path = tmp_path / f"s{suffix}"
    original.export(path)
    mesh = read_scan(path)
    assert mesh.visual.kind == "vertex"
    np.testing.assert_array_equal(mesh.visual.vertex_colors, original.visual.vertex_colors)


@pytest.mark.parametrize("suffix", [".stl", ".off", ".ply"])
def test_geometry_formats_read_in_order(tmp_path: Path, suffix: str) -> None:
    original = trimesh.creation.icosphere(subdivisions=2, radius=RADIUS_MM)
    path = tmp_path / f"s{suffix}"
    original.export(path)
    mesh = read_scan(path)
    assert len(mesh.faces) == len(original.faces)
    # STL stores triangle corners apart; after welding the vertex count matches again
    assert len(mesh.vertices) == len(original.vertices)
    if suffix != ".stl":
        np.testing.assert_allclose(mesh.vertices, original.vertices, atol=1e-4)


def test_glb_reads_with_texture(tmp_path: Path) -> None:
    path = tmp_path / "s.glb"
    textured_sphere().export(path)
    mesh = read_scan(path)
    assert len(mesh.vertices) == 642
    assert texture_image(mesh) is not None


def test_gltf_with_separate_buffers_reads(tmp_path: Path) -> None:
    files = textured_sphere().export(file_type="gltf")
    for name, payload in files.items():
        (tmp_path / name).write_bytes(payload)
    mesh = read_scan(tmp_path / "model.gltf")
    assert len(mesh.vertices) == 642 and texture_image(mesh) is not None


def test_scene_is_flattened_with_node_transforms(tmp_path: Path) -> None:
    scene = trimesh.Scene()
    part = trimesh.creation.icosphere(subdivisions=1, radius=RADIUS_MM)
    for name, shift in (("left", -100.0), ("right", 100.0)):
        move = trimesh.transformations.translation_matrix([shift, 0, 0])
        scene.add_geometry(part, node_name=name, transform=move)
    scene.export(tmp_path / "pair.glb")
    mesh = read_scan(tmp_path / "pair.glb")
    assert len(mesh.vertices) == 2 * len(part.vertices)
    np.testing.assert_allclose(mesh.bounds[:, 0], [-180, 180], atol=1e-3)


# ---------------------------------------------------------------------- malformed input
MALFORMED = {
    "empty.obj": (b"", "empty file"),
    "blank.ply": (b"  \n\n", "empty file"),
    "image.obj": (b"\x89PNG\r\n\x1a\n" + bytes(200), "not a mesh: PNG image data"),
    "noise.ply": (np.random.default_rng(3).bytes(4000), "not a mesh: no PLY header"),
    "noise.stl": (np.random.default_rng(4).bytes(4000), "do not match a binary STL"),
    "noise.glb": (np.random.default_rng(5).bytes(4000), "not a mesh: no GLB header"),
    "points.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "zero faces (3 vertices, no faces)"),
    "cut.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4", "truncated OBJ: line 6"),
    "cut_vertex.obj": ("v 0 0 0\nv 1 0 0\nv 0 1", "truncated OBJ: line 3 is incomplete"),
    "lost.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 9\n", "faces use vertex 9"),
    "scan.fbx": (b"Kaydara FBX Binary  \x00", "unsupported format '.fbx'"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_gives_failed_row(tmp_path: Path, name: str) -> None:
    payload, reason = MALFORMED[name]
    mesh, record = ingest_scan(_write(tmp_path, name, payload), "s01")
    assert mesh is None
    assert record["status"] == "failed"
    assert reason in record["reason"]
    assert set(record) == set(QC_COLUMNS)
    with pytest.raises(ScanError):
        read_scan(tmp_path / name)


def test_missing_file_gives_failed_row(tmp_path: Path) -> None:
    _, record = ingest_scan(tmp_path / "absent.ply", "s01")
    assert record["status"] == "failed" and "file not found" in record["reason"]


def test_truncated_real_obj_fails_with_line_number(textured_obj: Path) -> None:
    text = textured_obj.read_text()
    # a download cut short inside a face line, after that face's first corner
    start = text.index("\nf ", int(len(text) * 0.8)) + 3
    textured_obj.write_text(text[: text.index(" ", start)])
    _, record = ingest_scan(textured_obj, "s01")
    assert record["status"] == "failed"
    assert record["reason"].startswith("truncated OBJ: line ")


def test_nan_vertices_are_cleaned_and_reported(tmp_path: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS_MM)
    vertices = sphere.vertices.copy()
    vertices[[5, 17, 99]] = np.nan
    path = tmp_path / "nan.ply"
    trimesh.Trimesh(vertices, sphere.faces, process=False).export(path)
    mesh, record = ingest_scan(path, "s01")
    assert record["status"] == "warning"
    assert "removed 3 NaN/inf vertices" in record["reason"]
    assert np.isfinite(mesh.vertices).all()
    assert record["n_vertices"] == len(vertices) - 3
    touching = np.isnan(vertices[sphere.faces]).any(axis=(1, 2))
    assert record["n_faces"] == len(sphere.faces) - touching.sum()


def test_missing_texture_image_is_a_warning(textured_obj: Path) -> None:
    (textured_obj.parent / "material_0.png").unlink()
    mesh, record = ingest_scan(textured_obj, "s01")
    assert mesh is not None and len(mesh.vertices) == 642
    assert record["status"] == "warning"
    assert "texture image material_0.png missing (named in material.mtl)" in record["reason"]
    assert record["has_texture"] is False


def test_loader_exceptions_become_failed_rows() -> None:
    def broken() -> trimesh.Trimesh:
        raise RuntimeError("disk on fire")

    def wrapped() -> trimesh.Trimesh:  # what a Kedro dataset's load raises
        try:
            raise ScanError("not a mesh: PNG image data")
        except ScanError as exc:
            raise DatasetError("Failed while loading data from dataset X.\n...") from exc

    assert ingest_scan(broken, "a")[1]["reason"] == "RuntimeError: disk on fire"
    assert ingest_scan(wrapped, "b")[1]["reason"] == "not a mesh: PNG image data"
    mesh, record = ingest_scan(lambda: "not a mesh", "c")
    assert mesh is None and "loader returned str" in record["reason"]
    mesh, record = ingest_scan(textured_sphere, "d")
    assert record["status"] == "ok" and mesh.metadata["subject_id"] == "d"


def test_ingest_never_modifies_source(textured_obj: Path) -> None:
    def digest() -> dict[str, str]:
        files = sorted(textured_obj.parent.iterdir())
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = digest()
    mesh, record = ingest_scan(textured_obj, "s01", units="m", vertex_budget=200)
    assert record["status"] == "warning"  # scaled and decimated: the copy changed, not the file
    assert digest() == before


# ------------------------------------------------------------------------------- units
def test_metres_and_millimetres_give_the_same_mm_box(tmp_path: Path) -> None:
    textured_sphere(radius=RADIUS_MM).export(tmp_path / "mm.glb")
    textured_sphere(radius=RADIUS_MM / 1000).export(tmp_path / "m.glb")
    mesh_mm, record_mm = ingest_scan(tmp_path / "mm.glb", "a")
    mesh_m, record_m = ingest_scan(tmp_path / "m.glb", "b")
    assert (record_mm["units_inferred"], record_mm["scale_to_mm"]) == ("mm", 1.0)
    assert (record_m["units_inferred"], record_m["scale_to_mm"]) == ("m", 1000.0)
    assert record_m["status"] == record_mm["status"] == "ok"
    for axis in "xyz":
        assert record_m[f"bbox_{axis}_mm"] == pytest.approx(record_mm[f"bbox_{axis}_mm"], rel=1e-4)
    assert mesh_m.metadata["units_inferred"] == "m" and mesh_m.metadata["scale_to_mm"] == 1000.0


@pytest.mark.parametrize(
    ("size", "units"), [(0.15, "m"), (0.6, "m"), (15.0, "cm"), (60.0, "cm"), (150.0, "mm"),
                        (600.0, "mm"), (8.0, "cm"), (0.8, "m"), (80.0, "mm"), (5000.0, "mm")],
)  # fmt: skip
def test_infer_units_from_size(size: float, units: str) -> None:
    mesh = trimesh.creation.box(extents=[size, size / 2, size / 3])
    assert infer_units(mesh)[0] == units


def test_ambiguous_size_is_flagged(tmp_path: Path) -> None:
    trimesh.creation.icosphere(radius=4.0).export(tmp_path / "odd.ply")  # 8 units: 80 mm in cm
    _, record = ingest_scan(tmp_path / "odd.ply", "s01")
    assert record["units_inferred"] == "cm" and record["status"] == "warning"
    assert "units uncertain" in record["reason"]


def test_given_units_override_inference() -> None:
    scaled, units, scale = to_millimetres(textured_sphere(), "cm")
    assert (units, scale) == ("cm", 10.0)
    assert np.ptp(scaled.vertices, axis=0).max() == pytest.approx(1600, rel=1e-3)
    with pytest.raises(ValueError, match="'auto', 'mm', 'cm', 'm'"):
        to_millimetres(textured_sphere(), "inch")
    with pytest.raises(ValueError, match="'auto', 'mm', 'cm', 'm'"):
        ingest_scan(textured_sphere, "s01", units="feet")


# ---------------------------------------------------------------------------- cleaning
def test_small_components_and_degenerate_faces_go() -> None:
    face = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS_MM)
    speck = trimesh.creation.icosphere(subdivisions=0, radius=2.0).apply_translation([300, 0, 0])
    mesh = trimesh.util.concatenate([face, speck])
    faces = np.vstack([mesh.faces, [[0, 0, 1], [2, 3, 2]]])  # two faces with a repeated corner
    mesh = trimesh.Trimesh(mesh.vertices, faces, process=False)
    cleaned, notes = clean_mesh(mesh)
    assert "kept 1 of 2 components" in notes and "removed 2 degenerate faces" in notes
    assert len(cleaned.faces) == len(face.faces)
    np.testing.assert_array_equal(cleaned.vertices, face.vertices)  # vertex order kept


def test_huge_scan_is_decimated_under_budget(tmp_path: Path) -> None:
    sphere = trimesh.creation.uv_sphere(radius=RADIUS_MM, count=[354, 354])  # ~250k vertices
    material = trimesh.visual.material.SimpleMaterial(image=_texture())
    uv = _spherical_uv(sphere.vertices)
    sphere.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    assert len(sphere.vertices) > 240_000
    start = time.perf_counter()
    mesh, record = ingest_scan(lambda: sphere, "s01", vertex_budget=20_000)
    assert time.perf_counter() - start < 10
    assert record["status"] == "warning" and "decimated" in record["reason"]
    assert 10_000 < record["n_vertices"] <= 20_000
    assert record["has_texture"] and len(mesh.visual.uv) == len(mesh.vertices)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - RADIUS_MM).max() < 1.0  # still the same sphere


def test_decimation_keeps_uv_seams_and_closes_geometry() -> None:
    mesh = seamed_sphere(subdivisions=5)
    cleaned, notes = clean_mesh(mesh, vertex_budget=3000)
    assert notes[-1].startswith("decimated") and len(cleaned.vertices) <= 3000
    # a face that took UVs from both sides of the seam would span ~1 in u
    assert _max_u_span(cleaned) <= _max_u_span(mesh) + 1e-9
    welded = trimesh.Trimesh(cleaned.vertices, cleaned.faces)  # merges seam copies
    assert welded.is_watertight  # seams did not open into cracks


def test_one_decimation_pass_lands_near_the_budget_and_keeps_the_seams() -> None:
    mesh = seamed_sphere(subdivisions=5)
    full = decimate(mesh, 3000)
    once = decimate(mesh, 3000, passes=1)
    assert len(full.vertices) <= 3000
    assert 0.9 * 3000 < len(once.vertices) < 1.1 * 3000
    assert _max_u_span(once) <= _max_u_span(mesh) + 1e-9
    assert trimesh.Trimesh(once.vertices, once.faces).is_watertight


def test_glb_textures_are_stored_losslessly_and_the_mesh_is_left_as_it_was() -> None:
    from face_health.ingest.storage import as_stored, export_mesh

    mesh = seamed_sphere(subdivisions=3)
    image = mesh.visual.material.image
    stored = as_stored(mesh)
    np.testing.assert_array_equal(np.asarray(texture_image(stored)), np.asarray(image))
    assert "encoderinfo" not in image.__dict__  # the fast PNG level was only for the export
    payload = export_mesh(mesh, "a.glb")["a.glb"]
    assert len(payload) > 0


def test_vertex_colours_carried_through_decimation() -> None:
    mesh = coloured_sphere(subdivisions=5)
    cleaned, _ = clean_mesh(mesh, vertex_budget=2000)
    assert cleaned.visual.kind == "vertex" and len(cleaned.vertices) <= 2000
    nearest = mesh.kdtree.query(cleaned.vertices)[1]
    agree = (cleaned.visual.vertex_colors == mesh.visual.vertex_colors[nearest]).all(axis=1)
    assert agree.mean() > 0.99


def test_no_colour_is_a_warning(tmp_path: Path) -> None:
    trimesh.creation.icosphere(radius=RADIUS_MM).export(tmp_path / "plain.stl")
    _, record = ingest_scan(tmp_path / "plain.stl", "s01")
    assert record["status"] == "warning" and record["reason"].startswith("no colour")


# ------------------------------------------------------------------------------ layout
def test_group_scan_files_layouts_and_rejections() -> None:
    listing = [
        "s001.ply",
        "s002/s002.obj", "s002/material.mtl", "s002/material_0.png",
        "s003/head.glb", "s003/notes.txt",
        "s004.fbx",
        "s005/a.obj", "s005/b.ply",
        "s006.OBJ", "s006.mtl", "s006.jpg",
        "clinical.csv", ".DS_Store", "README.txt", "s007/scan.3ds",
    ]  # fmt: skip
    scans, rejected = group_scan_files(listing)
    assert scans == {
        "s001": "s001.ply", "s002": "s002/s002.obj", "s003": "s003/head.glb", "s006": "s006.OBJ",
    }  # fmt: skip
    assert set(rejected) == {"s004", "s005", "s007"}
    assert rejected["s004"].startswith("unsupported format '.fbx'")
    assert rejected["s005"] == "2 mesh files for one subject: s005/a.obj, s005/b.ply"
    assert "'.3ds'" in rejected["s007"]


# -------------------------------------------------------------------------- real scans
@pytest.mark.skipif(not REAL_SCANS.is_dir(), reason="shared/real_scans not available")
def test_demoface_ingests_in_mm_keeping_the_largest_component() -> None:
    path = REAL_SCANS / "demoface" / "DemoFace_10K.obj"
    mesh, record = ingest_scan(path, "demoface")
    assert record["units_inferred"] == "mm" and record["scale_to_mm"] == 1.0
    assert record["status"] == "warning" and record["reason"].startswith("no colour")
    assert 500 < record["bbox_x_mm"] < 600  # a bust: head and shoulders
    assert "kept 1 of 4 components" in mesh.metadata["cleaning_notes"]
    assert record["n_faces"] < record["n_faces_raw"]
    labels = trimesh.graph.connected_component_labels(
        trimesh.graph.face_adjacency(mesh.faces), node_count=len(mesh.faces)
    )
    assert labels.max() == 0  # one connected piece


@pytest.mark.skipif(not REAL_SCANS.is_dir(), reason="shared/real_scans not available")
def test_lee_perry_smith_glb_ingests_with_texture() -> None:
    path = REAL_SCANS / "lee_perry_smith" / "LeePerrySmith.glb"
    mesh, record = ingest_scan(path, "lps")
    assert record["has_texture"] is True and texture_image(mesh).size == (1024, 1024)
    assert record["n_vertices"] == record["n_vertices_raw"] == 9279
    assert "texture taken from Map-COL.jpg" in record["reason"]
    assert record["status"] == "warning"  # non-metric units: ~8.6 units wide


def test_ingest_settings_refuse_unknown_keys_and_match_the_function() -> None:
    import inspect

    from face_health.config import IngestSettings, SettingsError

    settings = IngestSettings.from_parameters(
        {
            "units": "mm",
            "vertex_budget": 1000,
            "min_component_fraction": 0.2,
            "require_colour": True,
            "n_jobs": 2,
            "max_file_mb": 50,
            "max_texture_pixels": 1_000_000,
            "texture_working_size": 512,
            "max_vertices": 2000,
            "warn_surface_noise_deg": 20,
            "max_surface_noise_deg": 45,
        }
    )
    from face_health.ingest.limits import ScanLimits

    assert settings.as_kwargs() == {
        "units": "mm",
        "vertex_budget": 1000,
        "min_component_fraction": 0.2,
        "require_colour": True,
        "limits": ScanLimits(
            max_file_mb=50.0,
            max_texture_pixels=1_000_000,
            texture_working_size=512,
            max_vertices=2000,
        ),
        "warn_surface_noise_deg": 20.0,
        "max_surface_noise_deg": 45.0,
    }
    with pytest.raises(SettingsError, match="max_surface_noise_deg"):
        IngestSettings.from_parameters(
            {**settings.to_parameters(), "warn_surface_noise_deg": 50, "max_surface_noise_deg": 40}
        )
    with pytest.raises(SettingsError, match="max_vertices.*at least vertex_budget"):
        IngestSettings.from_parameters({**settings.to_parameters(), "max_vertices": 10})
    with pytest.raises(SettingsError, match="max_file_mb must be a positive, finite"):
        IngestSettings.from_parameters({**settings.to_parameters(), "max_file_mb": float("inf")})
    with pytest.raises(SettingsError, match="parameters_data_engineering.*min_component_fractoin"):
        IngestSettings.from_parameters({**settings.to_parameters(), "min_component_fractoin": 1})
    # every keyword the settings pass is one ingest_scan takes
    assert set(settings.as_kwargs()) <= set(inspect.signature(ingest_scan).parameters)
