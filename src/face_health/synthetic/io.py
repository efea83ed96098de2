"""Deterministic writers for simulated scans: OBJ + MTL + PNG, binary PLY, landmark tables.

Hand-written rather than trimesh's exporters so that the same seed gives byte-identical files
(no timestamps, fixed number formatting) and so that writing 300 scans stays fast: the OBJ
text is built by numpy as fixed-width columns (``v``, ``vt`` and ``f`` lines padded with
spaces, which OBJ readers take as separators), at about a tenth of the cost of Python string
formatting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_SPACE, _DOT, _MINUS, _SLASH, _ZERO = (ord(c) for c in " .-/0")


def _digits_right(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers ``(n,)`` as ``(n, width)`` ASCII, right-aligned, space-padded."""
    out = np.full((len(values), width), _SPACE, np.uint8)
    rest = values.astype(np.int64).copy()
    for j in range(width - 1, -1, -1):
        show = (rest > 0) | (j == width - 1)
        out[show, j] = _ZERO + rest[show] % 10
        rest //= 10
    if (rest > 0).any():
        raise ValueError(f"an index needs more than {width} digits")
    return out


def _digits_left(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as ``(n, width)`` ASCII, left-aligned (trailing spaces)."""
    right = _digits_right(values, width)
    n_digits = (right != _SPACE).sum(axis=1)
    shift = (width - n_digits)[:, None]
    cols = (np.arange(width)[None, :] + shift) % width
    return np.take_along_axis(right, cols, axis=1)


def _fixed(values: np.ndarray, decimals: int, width: int) -> np.ndarray:
    """Floats ``(n,)`` as ``(n, width)`` ASCII fixed-point, right-aligned, space-padded."""
    scaled = np.round(np.asarray(values, float) * 10**decimals).astype(np.int64)
    negative = scaled < 0
    magnitude = np.abs(scaled)
    out = np.full((len(values), width), _SPACE, np.uint8)
    rest = magnitude.copy()
    j = width - 1
    for _ in range(decimals):
        out[:, j] = _ZERO + rest % 10
        rest //= 10
        j -= 1
    out[:, j] = _DOT
    j -= 1
    out[:, j] = _ZERO + rest % 10  # at least one integer digit
    rest //= 10
    j -= 1
    sign_at = np.full(len(values), j)
    while j >= 0 and (rest > 0).any():
        more = rest > 0
        out[more, j] = _ZERO + rest[more] % 10
        rest //= 10
        sign_at[more] = j - 1
        j -= 1
    if (rest > 0).any() or (negative & (sign_at < 0)).any():
        raise ValueError(f"a value does not fit {width} characters")
    rows = np.flatnonzero(negative & (magnitude > 0))
    out[rows, sign_at[rows]] = _MINUS
    return out


def _lines(prefix: str, columns: list[np.ndarray]) -> bytes:
    """Rows of ``prefix`` followed by space-separated fixed-width columns."""
    n = len(columns[0])
    parts = [np.frombuffer(prefix.encode(), np.uint8)[None, :].repeat(n, 0)]
    for col in columns:
        parts += [np.full((n, 1), _SPACE, np.uint8), col]
    parts.append(np.full((n, 1), ord("\n"), np.uint8))
    return np.concatenate(parts, axis=1).tobytes()


def write_obj(
    path: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    faces_uv: np.ndarray,
    texture: np.ndarray,
) -> list[Path]:
    """Write ``<path>.obj`` with its ``.mtl`` and ``.png`` texture; returns the three paths.

    Parameters
    ----------
    vertices : (n, 3) float, mm
    faces : (m, 3) int, 0-based
    uv : (t, 2) float texture coordinates in [0, 1] (v up)
    faces_uv : (m, 3) int, 0-based uv index of each corner (UV seams split the uv only)
    texture : (h, w, 3) uint8, row 0 at the top of the image
    """
    obj, mtl, png = path.with_suffix(".obj"), path.with_suffix(".mtl"), path.with_suffix(".png")
    Image.fromarray(texture).save(png, optimize=False, compress_level=1)
    mtl.write_text(
        f"newmtl skin\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
        f"d 1.0\nillum 1\nmap_Kd {png.name}\n"
    )
    v_width = len(str(len(vertices)))
    t_width = len(str(len(uv)))
    # every index written once as text, then looked up for each corner
    v_text = _digits_right(np.arange(1, len(vertices) + 1), v_width)
    t_text = _digits_left(np.arange(1, len(uv) + 1), t_width)
    slash = np.full((len(faces), 1), _SLASH, np.uint8)
    corners = [
        np.concatenate([v_text[faces[:, k]], slash, t_text[faces_uv[:, k]]], axis=1)
        for k in range(3)
    ]
    header = f"# face_health synthetic scan; units: millimetres\nmtllib {mtl.name}\n"
    body = [
        header.encode(),
        _lines("v", [_fixed(vertices[:, k], 3, 9) for k in range(3)]),
        _lines("vt", [_fixed(uv[:, k], 5, 7) for k in range(2)]),
        b"usemtl skin\n",
        _lines("f", corners),
    ]
    obj.write_bytes(b"".join(body))
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
