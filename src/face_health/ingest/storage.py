"""How the pipeline stores a mesh between stages, without Kedro: encode it for a format
(:func:`export_mesh`, which ``datasets.MeshDataset`` saves with) and read back what storing it
keeps (:func:`as_stored`, which the scorer of new scans uses where the pipeline stores)."""

from __future__ import annotations

import contextlib
import dataclasses
import posixpath
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trimesh

from face_health.ingest.scan import read_scan


def export_mesh(mesh: trimesh.Trimesh, filename: str, **save_args: Any) -> dict[str, bytes]:
    """Encode ``mesh`` for ``filename``'s format: ``{file name: bytes}``, companions included."""
    stem, suffix = posixpath.splitext(filename)
    suffix = suffix.lower()
    if suffix == ".obj":
        text, extra = trimesh.exchange.obj.export_obj(
            mesh, include_texture=True, return_texture=True, mtl_name=f"{stem}.mtl", **save_args
        )
        images = {name: f"{stem}_{name}" for name in extra if name != f"{stem}.mtl"}
        files = {filename: text.encode()}
        for name, payload in extra.items():
            if name == f"{stem}.mtl":
                mtl = payload.decode()
                for old, new in images.items():
                    mtl = re.sub(rf"(?<=\s){re.escape(old)}\b", new, mtl)
                files[name] = mtl.encode()
            else:
                files[images[name]] = payload
        return files
    if suffix == ".ply" and getattr(mesh.visual, "kind", None) == "texture":
        mesh = trimesh.Trimesh(
            mesh.vertices, mesh.faces, visual=mesh.visual.to_color(), process=False
        )
    with _fast_png(mesh):
        payload = mesh.export(file_type=suffix.lstrip("."), **save_args)
    return {filename: payload.encode() if isinstance(payload, str) else payload}


#: zlib level of the PNG textures inside a GLB. Skin texture barely compresses: level 1 encodes
#: a 768 x 512 texture in 26 ms instead of 107 ms (zlib's default, 6) for a file 6 % larger, and
#: PNG is lossless, so what a stage reads back is the same to the bit. The pipeline's main
#: process saves every clean and aligned mesh one after another: 50 s of a default run.
PNG_COMPRESS_LEVEL = 1


@contextlib.contextmanager
def _fast_png(mesh: trimesh.Trimesh) -> Iterator[None]:
    """While exporting, the mesh's texture images encode at ``PNG_COMPRESS_LEVEL`` (PIL reads
    ``image.encoderinfo`` as default save arguments); restored afterwards."""
    material = getattr(mesh.visual, "material", None)
    images = {
        id(image): image
        for name in ("image", "baseColorTexture")
        if (image := getattr(material, name, None)) is not None and hasattr(image, "save")
    }
    saved = {key: image.__dict__.get("encoderinfo") for key, image in images.items()}
    for image in images.values():
        image.encoderinfo = {"compress_level": PNG_COMPRESS_LEVEL, **(saved[id(image)] or {})}
    try:
        yield
    finally:
        for key, image in images.items():
            if saved[key] is None:
                image.__dict__.pop("encoderinfo", None)
            else:
                image.encoderinfo = saved[key]


#: Formats one file holds (no companions), which a worker can encode ahead of the save.
SINGLE_FILE_SUFFIXES = (".glb", ".ply", ".stl", ".off")


@dataclasses.dataclass(frozen=True, eq=False)
class EncodedMesh:
    """A mesh already encoded (``payload``, a ``suffix`` file) by the worker process that made
    it. A per-subject stage's main process saves its meshes one after another; handing it the
    bytes leaves it only the writes (``datasets.MeshDataset.save`` writes a payload of its own
    format as is): 10 s less per mesh stage of the default run. ``decode`` reads it back."""

    suffix: str
    payload: bytes

    @classmethod
    def of(cls, mesh: trimesh.Trimesh, suffix: str = ".glb") -> EncodedMesh:
        if suffix not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"only one-file formats {SINGLE_FILE_SUFFIXES} encode ahead")
        name = f"mesh{suffix}"
        return cls(suffix, export_mesh(mesh, name)[name])

    def decode(self) -> trimesh.Trimesh:
        """The mesh, as loading the saved file gives it."""
        name = f"mesh{self.suffix}"
        return _read_back({name: self.payload}, name)


def as_stored(mesh: trimesh.Trimesh, suffix: str = ".glb") -> trimesh.Trimesh:
    """``mesh`` as a :class:`MeshDataset` of ``suffix`` saves and loads it back (float32
    vertices and UV, the texture re-encoded): what the pipeline's next stage reads. The scorer
    of new scans passes its meshes through this at the points where the pipeline stores them,
    so a scan scored is the same, bit for bit, as the same scan in a training run."""
    name = f"mesh{suffix}"
    return _read_back(export_mesh(mesh, name), name)


def _read_back(files: dict[str, bytes], name: str) -> trimesh.Trimesh:
    """Write encoded ``files`` into a scratch folder and read ``name`` of them back."""
    with tempfile.TemporaryDirectory(prefix="mesh_stored_") as folder:
        for file_name, payload in files.items():
            (Path(folder) / file_name).write_bytes(payload)
        loaded = read_scan(Path(folder) / name)
    loaded.metadata.pop("source_file", None)
    return loaded
