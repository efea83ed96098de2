"""``MeshDataset`` loads and saves one textured triangle mesh with trimesh, on any fsspec
filesystem. Loading goes through :func:`face_health.ingest.scan.read_scan`, so every scan format the
project accepts (OBJ + MTL + texture, PLY, STL, OFF, GLB/glTF) reads the same way.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import trimesh
from kedro.io.core import AbstractDataset, DatasetError, get_filepath_str, get_protocol_and_path

from face_health.ingest.scan import COMPANION_SUFFIXES, MESH_SUFFIXES, ScanError, read_scan
from face_health.ingest.storage import EncodedMesh, export_mesh

#: Formats :meth:`MeshDataset.save` writes. GLB is the project's intermediate format: one file
#: holding geometry, UV, the texture image and ``mesh.metadata`` (as glTF ``extras``).
SAVE_SUFFIXES = (".glb", ".ply", ".obj", ".stl", ".off")


class MeshDataset(AbstractDataset[trimesh.Trimesh | EncodedMesh, trimesh.Trimesh]):
    """One mesh file, loaded as a ``trimesh.Trimesh`` and saved in the format of its suffix.

    What each save format keeps:

    - ``.glb``: vertices in order, faces, UV, texture image (PNG inside the file) or vertex
      colours, and ``mesh.metadata`` as the mesh's glTF ``extras`` (so ``units_inferred``,
      ``scale_to_mm``, ``subject_id`` and the QC record survive a save -> load).
    - ``.obj``: writes ``<stem>.obj``, ``<stem>.mtl`` and ``<stem>_material_0.png`` beside it
      (the image name carries the stem so subjects sharing a folder do not overwrite each other).
    - ``.ply``: vertex colours; a texture is baked to vertex colours, as PLY holds no image.
    - ``.stl`` / ``.off``: geometry only. Metadata is kept only by GLB.

    Example catalog entries (``conf/base/catalog.yml``):

    .. code-block:: yaml

        raw_scans:  # one subject per file or per folder; node gets {relative path: loader}
          type: partitions.PartitionedDataset
          path: data/01_raw/scans
          dataset:
            type: face_health.datasets.MeshDataset

        clean_scans:  # one GLB per subject, in millimetres
          type: partitions.PartitionedDataset
          path: data/02_intermediate/scans
          dataset:
            type: face_health.datasets.MeshDataset
          filename_suffix: .glb

        template_head:
          type: face_health.datasets.MeshDataset
          filepath: s3://bucket/templates/head.glb
          load_args:
            companion_texture: false
          credentials: s3_credentials

    Python API:

    >>> import trimesh
    >>> from face_health.datasets import MeshDataset
    >>> dataset = MeshDataset(filepath="/tmp/sphere.glb")  # doctest: +SKIP
    >>> dataset.save(trimesh.creation.icosphere(radius=80.0))  # doctest: +SKIP
    >>> len(dataset.load().vertices)  # doctest: +SKIP
    642
    """

    def __init__(
        self,
        *,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Point the dataset at one mesh file.

        Parameters
        ----------
        filepath : str
            Path to the mesh, optionally with a protocol (``s3://``, ``memory://``); local if
            none. Its suffix picks the save format.
        load_args : dict, optional
            Keyword arguments of :func:`face_health.ingest.scan.read_scan` (e.g.
            ``companion_texture``).
        save_args : dict, optional
            Keyword arguments of trimesh's exporter for the format (e.g. ``include_normals``).
        fs_args : dict, optional
            Arguments of the fsspec filesystem constructor.
        credentials : dict, optional
            Credentials of the filesystem, e.g. ``{"key": ..., "secret": ...}`` for S3.
        metadata : dict, optional
            Free-form metadata, ignored by Kedro.
        """
        protocol, path = get_protocol_and_path(str(filepath))
        _fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            _fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **_fs_args)
        self._filepath = PurePosixPath(path)
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }

    def load(self) -> trimesh.Trimesh:
        path = get_filepath_str(self._filepath, self._protocol)
        if self._protocol == "file":
            return read_scan(path, **self._load_args)
        # trimesh resolves materials and images on a local disk: copy the file and companions
        with tempfile.TemporaryDirectory(prefix="mesh_dataset_") as folder:
            mesh = read_scan(self._fetch(path, Path(folder)), **self._load_args)
        mesh.metadata["source_file"] = f"{self._protocol}://{path}"
        return mesh

    def save(self, data: trimesh.Trimesh | EncodedMesh) -> None:
        """Write ``data`` in the format of the file's suffix; an ``EncodedMesh`` of that
        format (and no ``save_args``) is written as it is, any other is decoded first."""
        suffix = self._filepath.suffix.lower()
        if suffix not in SAVE_SUFFIXES:
            raise DatasetError(f"cannot save a mesh as '{suffix}'; use one of {SAVE_SUFFIXES}")
        path = get_filepath_str(self._filepath, self._protocol)
        folder = posixpath.dirname(path)
        if isinstance(data, EncodedMesh):
            if data.suffix == suffix and not self._save_args:
                with self._fs.open(path, mode="wb") as file:
                    file.write(data.payload)
                self._fs.invalidate_cache(path)
                return
            data = data.decode()
        for name, payload in export_mesh(data, self._filepath.name, **self._save_args).items():
            with self._fs.open(posixpath.join(folder, name), mode="wb") as file:
                file.write(payload)
        self._fs.invalidate_cache(path)

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))

    def _fetch(self, path: str, folder: Path) -> Path:
        """Copy ``path`` and the files it needs into ``folder``; return the local mesh path.

        Taken along: files the mesh names (OBJ material libraries and their images, glTF
        buffers and images), companions sharing its stem, and all companions when the mesh
        is alone in its folder (the ``<subject_id>/`` layout).
        """
        remote_folder, name = posixpath.split(path)
        siblings = {posixpath.basename(p): p for p in self._fs.ls(remote_folder, detail=False)}
        if name not in siblings:
            raise ScanError(f"file not found: {path}")
        alone = sum(s.lower().endswith(MESH_SUFFIXES) for s in siblings) == 1
        stem = posixpath.splitext(name)[0]
        queue = [name] + [
            s
            for s in sorted(siblings)
            if s.lower().endswith(COMPANION_SUFFIXES) and (alone or s.startswith(stem))
        ]
        done: set[str] = set()
        while queue:
            current = queue.pop(0)
            if current in done or current not in siblings:
                continue
            done.add(current)
            self._fs.get(siblings[current], str(folder / current))
            queue += _referenced_files(folder / current)
        return folder / name


def _referenced_files(path: Path) -> list[str]:
    """Names of the files ``path`` points to (materials, images, glTF buffers)."""
    suffix = path.suffix.lower()
    if suffix in (".obj", ".mtl"):
        text = path.read_text(errors="replace")
        pattern = r"^[ \t]*(?:mtllib|map_\w+)[ \t][^\r\n]*?(\S+)[ \t\r]*$"
        return re.findall(pattern, text, re.M | re.I)
    if suffix == ".gltf":
        try:
            tree = json.loads(path.read_text(errors="replace"))
        except ValueError:
            return []
        items = tree.get("buffers", []) + tree.get("images", [])
        return [item["uri"] for item in items if "uri" in item and ":" not in item["uri"]]
    return []
