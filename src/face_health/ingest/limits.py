"""Cost limits of one scan: what a legal but huge input may cost, bounded before it costs it.

A 258 kB PNG can decode to 9000 x 9000 pixels and a 2.6 M-vertex OBJ parses into gigabytes;
the limits here keep one scan's peak memory near 1.5 GB whatever arrives (measured by
``benchmarks/ingest_cost_bench.py``). They are the ``ingest`` settings ``max_file_mb``,
``max_texture_pixels``, ``texture_working_size`` and ``max_vertices``
(``conf/base/parameters_data_engineering.yml``), applied by
:func:`face_health.ingest.scan.ingest_scan` for every entry point: the command line, the
pipeline's node and the prediction service (whose upload check reads the same pixel limit).

* every file of a scan (mesh, MTL, texture) above ``max_file_mb`` is refused unread;
* a texture above ``max_texture_pixels`` is refused from its header, before its pixels are
  decoded (PIL reads the size lazily);
* a texture is downsampled to ``texture_working_size`` pixels on its longest side as it is
  loaded (JPEG decodes at a reduced scale with ``draft``), UV unchanged;
* a mesh above ``max_vertices`` is decimated to it before cleaning (``decimation.decimate``).

:func:`face_health.ingest.scan.read_scan` takes the limits as an argument, or the ones that
``ingest_scan`` makes active around a loader (:func:`using_limits`: what a Kedro
``PartitionedDataset`` hands the ingest node calls ``read_scan`` without them).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from face_health.errors import UnreadableScanError

_ACTIVE: contextvars.ContextVar[ScanLimits | None] = contextvars.ContextVar(
    "face_health_scan_limits", default=None
)


class ScanTooLargeError(UnreadableScanError):
    """A scan (or one of its files) is over a cost limit; the message names the size and the
    limit (a ``DataError``: a failed QC row, HTTP 422/413, CLI exit 1)."""


@dataclass(frozen=True)
class ScanLimits:
    """The ``ingest`` cost limits (see the module docstring); built by
    ``IngestSettings.limits()``, never with defaults of its own."""

    max_file_mb: float
    max_texture_pixels: int
    texture_working_size: int
    max_vertices: int

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


def active_limits() -> ScanLimits | None:
    """The limits ``ingest_scan`` made active around the current read (None outside one)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def using_limits(limits: ScanLimits | None) -> Iterator[None]:
    """Make ``limits`` the ones :func:`face_health.ingest.scan.read_scan` applies inside."""
    token = _ACTIVE.set(limits)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def check_file_size(path: Path, limits: ScanLimits | None, what: str = "file") -> None:
    """Refuse ``path`` when it is larger than ``limits.max_file_mb``, without reading it."""
    if limits is None:
        return
    size = os.stat(path).st_size
    if size > limits.max_file_bytes:
        raise ScanTooLargeError(
            f"{what} {path.name} is {size / 2**20:.0f} MB, more than the limit of "
            f"{limits.max_file_mb:g} MB (ingest.max_file_mb)"
        )


def image_size(source: Path | bytes) -> tuple[int, int]:
    """``(width, height)`` from an image's header, its pixels not decoded."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS, previous = None, Image.MAX_IMAGE_PIXELS
        try:
            with Image.open(stream) as image:
                return image.size
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def check_texture_pixels(size: tuple[int, int], limits: ScanLimits | None, name: str) -> None:
    """Refuse a texture of ``size`` (width, height) above ``limits.max_texture_pixels``."""
    if limits is None:
        return
    width, height = size
    if width * height > limits.max_texture_pixels:
        raise ScanTooLargeError(
            f"texture image {name} is {width} x {height} = {width * height:,} pixels, more "
            f"than the limit of {limits.max_texture_pixels:,} (ingest.max_texture_pixels)"
        )


def check_image_file(path: Path, limits: ScanLimits | None) -> None:
    """A texture file beside a scan: size in bytes, then pixels from its header."""
    if limits is None:
        return
    check_file_size(path, limits, "texture image")
    try:
        size = image_size(path)
    except (OSError, ValueError, SyntaxError):
        return  # not an image PIL reads: trimesh reports it as a missing texture
    check_texture_pixels(size, limits, path.name)


def working_image(image: Image.Image, limits: ScanLimits | None, name: str) -> Image.Image:
    """``image`` checked against the pixel cap (header only), then at most
    ``texture_working_size`` pixels on its longest side, decoded at a reduced scale where the
    format allows (JPEG ``draft``); an image already small enough is returned as is."""
    if limits is None:
        return image
    check_texture_pixels(image.size, limits, name)
    side = limits.texture_working_size
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if image.format == "JPEG" and getattr(image, "im", None) is None:
        with contextlib.suppress(Exception):
            image.draft("RGB", target)  # decode at 1/2, 1/4 or 1/8 scale: fewer pixels decoded
    # one decoded copy of the full image at most (no .copy()), then the resized one
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def check_embedded_images(path: Path, data: bytes, limits: ScanLimits | None) -> None:
    """The texture images inside a GLB (or data URIs / files of a glTF), from their headers."""
    if limits is None:
        return
    suffix = path.suffix.lower()
    try:
        if suffix == ".glb":
            tree, binary = _glb_chunks(data)
        else:
            tree, binary = json.loads(data.decode("utf-8", "replace")), b""
    except (ValueError, struct.error):
        return  # the parser says what is wrong with the file
    views = tree.get("bufferViews", []) if isinstance(tree, dict) else []
    for number, item in enumerate(tree.get("images", []) if isinstance(tree, dict) else []):
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or item.get("uri") or f"image {number}")[:60]
        payload: Path | bytes | None = None
        try:
            if "bufferView" in item and binary:
                view = views[int(item["bufferView"])]
                start = int(view.get("byteOffset", 0))
                payload = binary[start : start + int(view["byteLength"])]
            elif str(item.get("uri", "")).startswith("data:"):
                import base64

                payload = base64.b64decode(str(item["uri"]).split(",", 1)[1])
            elif item.get("uri"):
                payload = path.parent / str(item["uri"])
                if not payload.is_file():
                    continue
                check_file_size(payload, limits, "texture image")
            if payload is not None:
                size = image_size(payload)
        except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError):
            continue  # not an image PIL reads: left to the parser
        if payload is not None:
            check_texture_pixels(size, limits, name)


def _glb_chunks(data: bytes) -> tuple[dict, bytes]:
    magic, _version, _length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise ValueError("not a GLB")
    offset, tree, binary = 12, {}, b""
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from("<I4s", data, offset)
        chunk = data[offset + 8 : offset + 8 + length]
        if kind == b"JSON":
            tree = json.loads(chunk.decode("utf-8", "replace"))
        elif kind == b"BIN\x00":
            binary = chunk
        offset += 8 + length
    return tree, binary


def project_texture_pixel_limit(project: Path | None = None) -> int:
    """``ingest.max_texture_pixels`` of the project (``conf/*/parameters_data_engineering.yml``,
    the ``local`` environment): the one texture limit, which the prediction service also
    checks at upload (413) before ingest applies it."""
    from face_health.config import section

    return section("ingest", project=project).max_texture_pixels
