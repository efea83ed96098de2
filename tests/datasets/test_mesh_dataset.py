"""Tests of the Kedro ``MeshDataset`` (save / load round trips, fsspec, partitions)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import trimesh
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from PIL import Image

from face_health.colour import texture_image
from face_health.datasets import MeshDataset
from face_health.ingest.scan import group_scan_files, ingest_scan

RADIUS_MM = 80.0


def textured_sphere(radius: float = RADIUS_MM) -> trimesh.Trimesh:
    """An icosphere (642 vertices) with spherical UV and a 16 x 16 random texture."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    v = mesh.vertices / radius
    uv = np.c_[0.5 + np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi), 0.5 + np.arcsin(v[:, 2]) / np.pi]
    pixels = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(pixels))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh


@pytest.fixture
def clean_mesh_m() -> trimesh.Trimesh:
    """A textured scan ingested from metres, with units metadata."""
    mesh, record = ingest_scan(lambda: textured_sphere(RADIUS_MM / 1000), "s01")
    assert record["status"] == "ok"
    return mesh


def test_glb_round_trip_keeps_vertices_uv_texture_and_units(
    tmp_path: Path, clean_mesh_m: trimesh.Trimesh
) -> None:
    dataset = MeshDataset(filepath=str(tmp_path / "nested" / "s01.glb"))
    assert not dataset.exists()
    dataset.save(clean_mesh_m)
    assert dataset.exists()
    loaded = dataset.load()
    np.testing.assert_allclose(loaded.vertices, clean_mesh_m.vertices, atol=1e-4)
    np.testing.assert_array_equal(loaded.faces, clean_mesh_m.faces)
    np.testing.assert_allclose(loaded.visual.uv, clean_mesh_m.visual.uv, atol=1e-6)
    image = texture_image(loaded)
    assert image is not None
    np.testing.assert_array_equal(
        np.asarray(image.convert("RGB")), np.asarray(texture_image(clean_mesh_m).convert("RGB"))
    )
    assert loaded.metadata["units_inferred"] == "m"
    assert loaded.metadata["scale_to_mm"] == 1000.0
    assert loaded.metadata["subject_id"] == "s01"
    assert loaded.metadata["qc"]["status"] == "ok"


def test_obj_save_writes_companions_named_after_the_subject(
    tmp_path: Path, clean_mesh_m: trimesh.Trimesh
) -> None:
    MeshDataset(filepath=str(tmp_path / "s01.obj")).save(clean_mesh_m)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s01.mtl", "s01.obj", "s01_material_0.png",
    ]  # fmt: skip
    loaded = MeshDataset(filepath=str(tmp_path / "s01.obj")).load()
    assert len(loaded.vertices) == len(clean_mesh_m.vertices)
    assert texture_image(loaded) is not None


def test_ply_save_bakes_texture_to_vertex_colours(
    tmp_path: Path, clean_mesh_m: trimesh.Trimesh
) -> None:
    dataset = MeshDataset(filepath=str(tmp_path / "s01.ply"))
    dataset.save(clean_mesh_m)
    loaded = dataset.load()
    assert loaded.visual.kind == "vertex" and len(loaded.vertices) == len(clean_mesh_m.vertices)
    assert len(np.unique(loaded.visual.vertex_colors, axis=0)) > 10  # colours, not one grey


@pytest.mark.parametrize("suffix", [".stl", ".off"])
def test_geometry_only_formats_save(tmp_path: Path, suffix: str) -> None:
    dataset = MeshDataset(filepath=str(tmp_path / f"s01{suffix}"))
    dataset.save(textured_sphere())
    assert len(dataset.load().faces) == 1280


def test_unsupported_save_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot save a mesh as '.fbx'"):
        MeshDataset(filepath=str(tmp_path / "s01.fbx")).save(textured_sphere())
    with pytest.raises(DatasetError, match="file not found"):
        MeshDataset(filepath=str(tmp_path / "absent.glb")).load()


def test_describe_names_path_and_arguments(tmp_path: Path) -> None:
    dataset = MeshDataset(filepath=str(tmp_path / "s.glb"), load_args={"companion_texture": False})
    text = str(dataset)
    assert "s.glb" in text and "companion_texture" in text and "protocol='file'" in text


def test_remote_obj_fetches_its_material_and_texture() -> None:
    root = f"/mesh-dataset-{uuid.uuid4().hex}"
    memory = fsspec.filesystem("memory")
    local = trimesh.exchange.obj.export_obj(
        textured_sphere(), include_texture=True, return_texture=True, mtl_name="material.mtl"
    )
    memory.pipe(f"{root}/flat/s01.obj", local[0].encode())
    for name, payload in local[1].items():  # material.mtl, material_0.png: not named after s01
        memory.pipe(f"{root}/flat/{name}", payload)
    memory.pipe(f"{root}/flat/s02.ply", trimesh.creation.box().export(file_type="ply"))
    try:
        mesh = MeshDataset(filepath=f"memory://{root}/flat/s01.obj").load()
        assert len(mesh.vertices) == 642 and texture_image(mesh) is not None
        assert mesh.metadata["source_file"] == f"memory://{root}/flat/s01.obj"
        saved = MeshDataset(filepath=f"memory://{root}/out/s01.glb")
        saved.save(mesh)
        assert saved.exists() and len(saved.load().vertices) == 642
    finally:
        memory.rm(root, recursive=True)


def test_partitioned_cohort_ingests_and_saves(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "s01").mkdir(parents=True)
    textured_sphere().export(raw / "s01" / "s01.obj")  # + material.mtl + material_0.png
    colour = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS_MM)
    colour.visual.vertex_colors = np.tile([200, 150, 120, 255], (len(colour.vertices), 1))
    colour.export(raw / "s02.ply")
    textured_sphere(RADIUS_MM / 1000).export(raw / "s03.glb")
    (raw / "s04.obj").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # an image renamed .obj

    partitions = PartitionedDataset(path=str(raw), dataset=MeshDataset).load()
    assert all(callable(load) for load in partitions.values())
    scans, rejected = group_scan_files(partitions)
    assert scans == {"s01": "s01/s01.obj", "s02": "s02.ply", "s03": "s03.glb", "s04": "s04.obj"}
    assert rejected == {}

    results = {sid: ingest_scan(partitions[key], sid) for sid, key in scans.items()}
    records = {sid: record for sid, (_, record) in results.items()}
    assert [records[s]["status"] for s in ("s01", "s02", "s03")] == ["ok", "ok", "ok"]
    assert records["s01"]["has_texture"] and records["s02"]["has_vertex_colors"]
    assert records["s03"]["units_inferred"] == "m"
    # Kedro wraps the loader's error; the row keeps only the plain reason
    assert records["s04"]["status"] == "failed"
    assert records["s04"]["reason"] == "not a mesh: PNG image data"

    clean = PartitionedDataset(
        path=str(tmp_path / "clean"), dataset=MeshDataset, filename_suffix=".glb"
    )
    clean.save({sid: mesh for sid, (mesh, _) in results.items() if mesh is not None})
    reloaded = clean.load()
    assert sorted(reloaded) == ["s01", "s02", "s03"]
    s03 = reloaded["s03"]()
    assert s03.metadata["units_inferred"] == "m" and texture_image(s03) is not None
    assert np.ptp(s03.vertices, axis=0).max() == pytest.approx(2 * RADIUS_MM, rel=1e-3)


def test_a_mesh_encoded_by_a_worker_is_written_as_saving_the_mesh_would(
    tmp_path: Path, clean_mesh_m: trimesh.Trimesh
) -> None:
    from face_health.ingest.storage import EncodedMesh, as_stored

    encoded = EncodedMesh.of(clean_mesh_m, ".glb")
    direct, ahead = tmp_path / "direct.glb", tmp_path / "ahead.glb"
    MeshDataset(filepath=str(direct)).save(clean_mesh_m)
    MeshDataset(filepath=str(ahead)).save(encoded)
    assert ahead.read_bytes() == direct.read_bytes()
    decoded, stored = encoded.decode(), as_stored(clean_mesh_m)
    np.testing.assert_array_equal(decoded.vertices, stored.vertices)
    assert decoded.metadata == stored.metadata
    # another format: decoded, then saved in it
    MeshDataset(filepath=str(tmp_path / "other.ply")).save(encoded)
    assert len(MeshDataset(filepath=str(tmp_path / "other.ply")).load().vertices) > 0
    with pytest.raises(ValueError, match="one-file formats"):
        EncodedMesh.of(clean_mesh_m, ".obj")
