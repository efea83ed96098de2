"""An upload from a phone app, turned into one scan file on disk, or refused.

:func:`receive_upload` streams the request body (a multipart form with one file, or the
file itself as the body) into a folder and stops at the size limit while it streams.
:func:`prepare_scan` decides from the content what arrived: one mesh file, or a zip of
OBJ + MTL + texture that :func:`extract_zip` unpacks only after checking every entry's
path, the entry count, the total uncompressed size and each entry's compression ratio.
Every refusal is an :class:`~face_health.serving.errors.ApiError` with its HTTP status.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import stat
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from face_health.serving import formats
from face_health.serving.errors import ApiError

UPLOAD_NAME = "upload.bin"
SCAN_FOLDER = "scan"
MAX_FORM_PARTS = 8
MAX_FIELD_BYTES = 1024
_CHUNK = 1 << 20
_SKIPPED = re.compile(r"(^|/)(__MACOSX/|\.)")  # macOS resource forks, .DS_Store and the like


@dataclass(frozen=True)
class Limits:
    """Size limits of one upload, in bytes, entries, a ratio and pixels."""

    max_upload_bytes: int
    max_uncompressed_bytes: int
    max_zip_entries: int
    max_compression_ratio: float
    max_texture_pixels: int


@dataclass
class Upload:
    """What arrived: the file written to ``path``, the body's size and the form's fields."""

    path: Path
    body_bytes: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class PreparedScan:
    """The scan file to score, the format its content showed, and how much was unpacked."""

    path: Path
    format: str
    container: str  # "file" or "zip"
    n_files: int
    uncompressed_bytes: int


def too_large(what: str, limit_bytes: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"{what} is larger than the limit of {limit_bytes / 2**20:g} MB"
    )


async def paced(
    chunks: AsyncIterator[bytes],
    min_bytes_per_s: float,
    window_s: float,
    clock=time.monotonic,
) -> AsyncIterator[bytes]:
    """``chunks`` as they come, as long as the client keeps up a minimum upload rate.

    The rate is measured over windows of ``window_s`` seconds: from the first read, and
    again from each point where a window's quota (``min_bytes_per_s * window_s`` bytes)
    was met, the next quota must arrive within ``window_s``. A client that sends 1 byte
    every 2 s fails after one window, whatever its total; a fast client never waits on this.

    Raises
    ------
    ApiError
        408 ``upload_too_slow`` when a window ends short of its quota.
    """
    quota = min_bytes_per_s * window_s
    iterator = chunks.__aiter__()
    window_end = clock() + window_s
    got = 0
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), max(0.0, window_end - clock()))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(
                408,
                "upload_too_slow",
                f"the upload was slower than the minimum of {min_bytes_per_s / 1024:g} KB/s "
                f"(measured over {window_s:g} s); send it again on a better connection",
                headers={"Connection": "close"},
            ) from None
        got += len(chunk)
        if got >= quota:
            window_end, got = clock() + window_s, 0
        yield chunk


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    folder: Path,
    max_bytes: int,
) -> Upload:
    """Stream a request body into ``folder / UPLOAD_NAME``.

    A ``multipart/form-data`` body must hold exactly one file part (its field name and file
    name are ignored) and may hold short text fields; any other body is the file itself.

    Raises
    ------
    ApiError
        413 as soon as the body passes ``max_bytes`` (or its ``Content-Length`` says it will);
        400 for a malformed form, several files, or no file.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise too_large("the upload", max_bytes)
    target = folder / UPLOAD_NAME
    ctype, params = parse_options_header(content_type or "")
    received = 0
    with open(target, "xb") as out:
        multipart = ctype == b"multipart/form-data"
        form = _FormWriter(out, params.get(b"boundary")) if multipart else None
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise too_large("the upload", max_bytes)
            if form is None:
                out.write(chunk)
            else:
                form.feed(chunk)
        if form is not None:
            form.finish()
    size = target.stat().st_size
    if size == 0:
        raise ApiError(400, "empty_upload", "the upload holds no file content")
    return Upload(target, received, form.fields if form is not None else {})


class _FormWriter:
    """A streaming multipart parser that writes the one file part to ``out``."""

    def __init__(self, out, boundary: bytes | None) -> None:
        if not boundary:
            raise ApiError(400, "bad_form", "a multipart upload needs a boundary")
        self.out = out
        self.fields: dict[str, str] = {}
        self.n_parts = self.n_files = 0
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._field: bytearray | None = None
        self._field_name = ""
        self._done = False
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - the parser's errors are all "bad form"
            raise ApiError(400, "bad_form", "the multipart form could not be parsed") from exc

    def finish(self) -> None:
        self.feed(b"")
        self.parser.finalize()
        if not self._done or self.n_files == 0:
            raise ApiError(400, "bad_form", "the multipart form holds no complete file part")

    def _part_begin(self) -> None:
        self.n_parts += 1
        if self.n_parts > MAX_FORM_PARTS:
            raise ApiError(400, "bad_form", f"more than {MAX_FORM_PARTS} parts in the form")
        self._disposition = b""
        self._field = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        if b"filename" in params:
            self.n_files += 1
            if self.n_files > 1:
                raise ApiError(
                    400,
                    "several_files",
                    "send one file per request: a mesh, or one zip of OBJ + MTL + texture",
                )
        else:
            self._field = bytearray()
            self._field_name = params.get(b"name", b"").decode("utf-8", "replace")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is None:
            self.out.write(data[start:end])
            return
        self._field += data[start:end]
        if len(self._field) > MAX_FIELD_BYTES:
            raise ApiError(400, "bad_form", f"a form field is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._field is not None:
            self.fields[self._field_name] = self._field.decode("utf-8", "replace")

    def _end(self) -> None:
        self._done = True


def prepare_scan(upload: Path, folder: Path, limits: Limits) -> PreparedScan:
    """Find the scan in an upload: the file itself, or the one mesh of a zip.

    The scan lands in ``folder / SCAN_FOLDER`` named by the format its content showed, so a
    parser never trusts the client's file name.

    Raises
    ------
    ApiError
        415 for content that is no supported mesh or zip; 413 and 400 from
        :func:`extract_zip` and the reference and texture checks.
    """
    fmt = formats.sniff(upload)
    scan_folder = folder / SCAN_FOLDER
    scan_folder.mkdir()
    if fmt in formats.MESH_FORMATS:
        mesh = upload.rename(scan_folder / f"scan.{fmt}")
        container, n_files, total = "file", 1, mesh.stat().st_size
    elif fmt == "zip":
        files, total = extract_zip(upload, scan_folder, limits)
        mesh, fmt = _mesh_of(files, scan_folder)
        container, n_files = "zip", len(files)
    else:
        raise unsupported(fmt)
    formats.check_references(mesh, fmt, scan_folder)
    for path in scan_folder.rglob("*"):
        kind = formats.sniff(path) if path.is_file() and path != mesh else None
        if kind == "mtl":
            formats.check_references(path, "mtl", scan_folder)
        elif kind == "image":
            formats.check_image_pixels(path, limits.max_texture_pixels)
    if fmt in ("glb", "gltf"):
        formats.check_embedded_images(mesh, fmt, limits.max_texture_pixels)
    return PreparedScan(mesh, fmt, container, n_files, total)


def unsupported(fmt: str | None) -> ApiError:
    supported = "OBJ, PLY, STL, OFF, GLB, glTF, or a zip of OBJ + MTL + texture"
    if fmt in ("mtl", "image"):
        what = "a material file" if fmt == "mtl" else "an image"
        message = f"the upload is {what}, not a scan; send {supported}"
    else:
        message = f"the upload's content is not a supported scan format; send {supported}"
    return ApiError(415, "unsupported_media_type", message)


def extract_zip(archive: Path, dest: Path, limits: Limits) -> tuple[list[Path], int]:
    """Unpack a zip into ``dest`` after checking every entry; a bad entry refuses it all.

    Returns
    -------
    files : list of Path
        The extracted files (directories, ``__MACOSX/`` and hidden files are skipped).
    total : int
        Their total size in bytes.

    Raises
    ------
    ApiError
        400 for an unreadable zip, an absolute path or ``..``, a symbolic link, a duplicate
        name; 415 for an encrypted entry; 413 for too many entries, too many bytes once
        unpacked (counted while unpacking too, so a lying header does not help) or an entry
        that compresses more than ``max_compression_ratio`` to 1.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ApiError(400, "bad_zip", "the zip archive cannot be read") from exc
    with zf:
        entries = zf.infolist()
        if len(entries) > limits.max_zip_entries:
            raise ApiError(
                413,
                "too_many_entries",
                f"the zip has {len(entries)} entries, more than the limit of "
                f"{limits.max_zip_entries}",
            )
        wanted = [e for e in entries if _check_entry(e, limits)]
        declared = sum(e.file_size for e in wanted)
        if declared > limits.max_uncompressed_bytes:
            raise too_large("the zip's content once unpacked", limits.max_uncompressed_bytes)
        files, total = [], 0
        for entry in wanted:
            target = dest.joinpath(*entry.filename.replace("\\", "/").split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(entry) as src, open(target, "xb") as out:
                    written = 0
                    while block := src.read(_CHUNK):
                        written += len(block)
                        total += len(block)
                        if written > entry.file_size or total > limits.max_uncompressed_bytes:
                            raise too_large(
                                "the zip's content once unpacked", limits.max_uncompressed_bytes
                            )
                        out.write(block)
            except FileExistsError as exc:
                raise ApiError(400, "bad_zip", "the zip holds the same name twice") from exc
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ApiError(400, "bad_zip", "a zip entry is corrupt") from exc
            files.append(target)
    return files, total


def _check_entry(entry: zipfile.ZipInfo, limits: Limits) -> bool:
    """Refuse an unsafe entry; False for entries to skip quietly (folders, hidden files)."""
    name = entry.filename
    if not formats.is_safe_relative(name):
        raise ApiError(400, "unsafe_zip_path", "a zip entry has an absolute path or '..'; refused")
    if stat.S_ISLNK(entry.external_attr >> 16):
        raise ApiError(400, "unsafe_zip_path", "a zip entry is a symbolic link; refused")
    if entry.is_dir() or _SKIPPED.search(name.replace("\\", "/")):
        return False
    if entry.flag_bits & 0x1:
        raise ApiError(415, "unsupported_media_type", "encrypted zip entries are not supported")
    ratio = entry.file_size / max(entry.compress_size, 1)
    if ratio > limits.max_compression_ratio:
        raise ApiError(
            413,
            "compression_ratio",
            f"a zip entry compresses {ratio:.0f} to 1, more than the limit of "
            f"{limits.max_compression_ratio:g} to 1 (a decompression bomb?)",
        )
    return True


def _mesh_of(files: list[Path], folder: Path) -> tuple[Path, str]:
    """The one mesh among a zip's files, renamed to the suffix its content showed; every
    other file must be a material, an image, or a buffer the glTF names."""
    kinds = {path: formats.sniff(path) for path in files}
    meshes = [p for p, kind in kinds.items() if kind in formats.MESH_FORMATS]
    if not meshes:
        raise ApiError(
            415,
            "unsupported_media_type",
            "the zip holds no mesh (OBJ, PLY, STL, OFF, GLB or glTF) recognised by its content",
        )
    if len(meshes) > 1:
        raise ApiError(
            400, "several_meshes", f"the zip holds {len(meshes)} meshes; send one scan per request"
        )
    mesh = meshes[0]
    fmt = str(kinds[mesh])
    buffers = set()
    if fmt == "gltf":
        buffers = {(mesh.parent / name).resolve() for name in formats.references(mesh, fmt)}
    for path, kind in kinds.items():
        expected = kind in (*formats.MESH_FORMATS, "mtl", "image") or path.resolve() in buffers
        if not expected:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"zip entry '{path.relative_to(folder)}' is not a mesh, material (MTL) or "
                "texture image (PNG, JPEG, BMP)",
            )
    if mesh.suffix.lower() != f".{fmt}":
        renamed = mesh.with_name(f"{mesh.stem}.{fmt}")
        if renamed.exists():
            raise ApiError(400, "bad_zip", "the zip's mesh cannot be given its format's suffix")
        mesh = mesh.rename(renamed)
    return mesh, fmt


def remove_folder(folder: Path) -> None:
    """Delete an upload's folder and everything in it."""
    shutil.rmtree(folder, ignore_errors=True)
