"""Deterministic writers for simulated scans: OBJ + MTL + PNG, binary PLY, landmark tables.

Hand-written rather than trimesh's exporters so that the same seed gives byte-identical files
(no timestamps, fixed number formatting) and so that writing 300 scans stays fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _rows(fmt: str, array: np.ndarray) -> str:
    return (fmt * len(array)) % tuple(array.ravel().tolist())


def write_obj(
    path: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
) -> list[Path]:
    """Write ``<path>.obj`` with its ``.mtl`` and ``.png`` texture; returns the three paths.

    Parameters
    ----------
    vertices : (n, 3) float, mm
    faces : (m, 3) int, 0-based
    uv : (n, 2) float, one texture coordinate per vertex
    texture : (h, w, 3) uint8, row 0 at the top of the image
    """
    obj, mtl, png = path.with_suffix(".obj"), path.with_suffix(".mtl"), path.with_suffix(".png")
    Image.fromarray(texture).save(png, optimize=False, compress_level=3)
    mtl.write_text(
        f"newmtl skin\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
        f"d 1.0\nillum 1\nmap_Kd {png.name}\n"
    )
    f1 = faces + 1
    body = [
        f"# face_health synthetic scan; units: millimetres\nmtllib {mtl.name}\n",
        _rows("v %.3f %.3f %.3f\n", vertices),
        _rows("vt %.5f %.5f\n", uv),
        "usemtl skin\n",
        _rows("f %d/%d %d/%d %d/%d\n", np.repeat(f1, 2, axis=1)),
    ]
    obj.write_text("".join(body))
    return [obj, mtl, png]


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> Path:
    """Write a binary little-endian PLY with per-vertex colours ``(n, 3) uint8``."""
    ply = path.with_suffix(".ply")
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment face_health synthetic scan; units: mm\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vdt = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vrec = np.empty(len(vertices), vdt)
    vrec["xyz"], vrec["rgb"] = vertices, colours
    fdt = np.dtype([("n", "u1"), ("idx", "<i4", 3)])
    frec = np.empty(len(faces), fdt)
    frec["n"], frec["idx"] = 3, faces
    with open(ply, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(vrec.tobytes())
        fh.write(frec.tobytes())
    return ply


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-texel colour ``(n, 3) uint8`` at ``uv`` (OBJ convention: v = 0 at the bottom)."""
    h, w, _ = texture.shape
    col = np.clip(np.round(uv[:, 0] * (w - 1)).astype(int), 0, w - 1)
    row = np.clip(np.round((1.0 - uv[:, 1]) * (h - 1)).astype(int), 0, h - 1)
    return texture[row, col]


def write_landmarks(path: Path, names: list[str], points: np.ndarray) -> Path:
    """Write ``name,x,y,z`` (mm, 3 decimals)."""
    lines = ["name,x,y,z"] + [
        f"{n},{p[0]:.3f},{p[1]:.3f},{p[2]:.3f}" for n, p in zip(names, points, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
