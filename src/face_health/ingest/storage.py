"""How the pipeline stores a mesh between stages, without Kedro: encode it for a format
(:func:`export_mesh`, which ``datasets.MeshDataset`` saves with) and read back what storing it
keeps (:func:`as_stored`, which the scorer of new scans uses where the pipeline stores)."""

from __future__ import annotations

import posixpath
import re
import tempfile
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
    payload = mesh.export(file_type=suffix.lstrip("."), **save_args)
    return {filename: payload.encode() if isinstance(payload, str) else payload}


def as_stored(mesh: trimesh.Trimesh, suffix: str = ".glb") -> trimesh.Trimesh:
    """``mesh`` as a :class:`MeshDataset` of ``suffix`` saves and loads it back (float32
    vertices and UV, the texture re-encoded): what the pipeline's next stage reads. The scorer
    of new scans passes its meshes through this at the points where the pipeline stores them,
    so a scan scored is the same, bit for bit, as the same scan in a training run."""
    with tempfile.TemporaryDirectory(prefix="mesh_stored_") as folder:
        name = f"mesh{suffix}"
        for file_name, payload in export_mesh(mesh, name).items():
            (Path(folder) / file_name).write_bytes(payload)
        loaded = read_scan(Path(folder) / name)
    loaded.metadata.pop("source_file", None)
    return loaded
