"""Generators of the reliability corpus (issue 14): nothing is committed as a binary, every
scan is written into ``tmp_path`` by these helpers, small (a 15 x 15 grid face) except where
the limit itself is the point (a solid-colour PNG just over the pixel cap, a few hundred
kilobytes on disk). :func:`digest` fingerprints a folder before and after a command: no input
byte may change. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import trimesh
from click.testing import Result
from PIL import Image

from face_health.ingest.limits import ScanLimits

#: The project's pixel cap (conf/base/parameters_data_engineering.yml, ingest).
PROJECT_PIXEL_CAP = 64_000_000

#: Small limits for library-level cases: cheap to cross with small files.
SMALL_LIMITS = ScanLimits(
    max_file_mb=0.5, max_texture_pixels=200 * 200, texture_working_size=64, max_vertices=150
)


def grid_face(n: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``vertices (n*n, 3)`` mm (150 x 200 mm with a bump), ``uv (n*n, 2)``, ``faces``."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    u, v = i.ravel() / (n - 1), j.ravel() / (n - 1)
    z = 40 * np.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) * 6)
    vertices = np.c_[(u - 0.5) * 150, (v - 0.5) * 200, z]
    idx = (i * n + j)[:-1, :-1].ravel()
    a, b, c, d = idx, idx + n, idx + n + 1, idx + 1
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    return vertices, np.c_[u, v], faces


def obj_text(mtllib: str | None = "face.mtl", header: str = "", n: int = 15) -> str:
    vertices, uv, faces = grid_face(n)
    lines = [header] if header else []
    if mtllib:
        lines.append(f"mtllib {mtllib}")
    lines += [f"v {x:.3f} {y:.3f} {z:.3f}" for x, y, z in vertices]
    lines += [f"vt {a:.4f} {b:.4f}" for a, b in uv]
    if mtllib:
        lines.append("usemtl skin")
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in faces + 1]
    return "\n".join(lines) + "\n"


def texture_png(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(90, 220, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def solid_png(size: tuple[int, int]) -> bytes:
    """A one-colour PNG: any number of pixels in a small file."""
    buffer = io.BytesIO()
    Image.new("L", size, 180).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_textured_obj(
    folder: Path,
    *,
    png: bytes | None = None,
    mtl: bool = True,
    image_name: str = "face.png",
    header: str = "",
    map_kd: str | None = None,
    mtllib: str | None = None,
    write_png: bool = True,
) -> Path:
    """``folder/face.obj`` (+ ``face.mtl`` when ``mtl``) + ``face.png``; the OBJ's path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = mtllib if mtllib is not None else ("face.mtl" if mtl else None)
    (folder / "face.obj").write_text(obj_text(name, header))
    if mtl and mtllib is None:
        (folder / "face.mtl").write_text(
            f"newmtl skin\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {map_kd or image_name}\n"
        )
    if write_png:
        (folder / image_name).write_bytes(png if png is not None else texture_png())
    return folder / "face.obj"


def coloured_mesh() -> trimesh.Trimesh:
    vertices, _, faces = grid_face()
    colours = np.tile([200, 150, 120, 255], (len(vertices), 1)).astype(np.uint8)
    return trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False)


def textured_mesh(image: Image.Image) -> trimesh.Trimesh:
    vertices, uv, faces = grid_face()
    visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    return trimesh.Trimesh(vertices, faces, visual=visual, process=False)


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` (links and FIFOs not followed)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_clean_failure(result: Result, *words: str) -> None:
    """Exit 1, the reason naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = result.output.lower()
    for word in words:
        assert word.lower() in text, result.output
