"""Content checks of scan files, run on the raw bytes before a mesh parser sees them.

A parser given a file that is not what its suffix claims (an image renamed ``.obj``, an empty
or truncated download, an OBJ whose faces use vertices it lacks) either guesses or fails with a
message nobody can act on. These checks reject such files up front with a :class:`ScanError`
that says in plain words what is wrong, and list the missing materials and texture images an
OBJ names. :func:`face_health.ingest.scan.read_scan` calls them; ``ScanError`` is importable from
:mod:`face_health.ingest.scan` too.
"""

from __future__ import annotations

import re
from pathlib import Path

from face_health.errors import UnreadableScanError

# Leading bytes of files people mistake for meshes, named as `file(1)` names them.
_MAGIC = (
    (b"\x89PNG", "PNG image data"), (b"\xff\xd8\xff", "JPEG image data"),
    (b"GIF8", "GIF image data"), (b"%PDF", "PDF document"), (b"PK\x03\x04", "Zip archive data"),
    (b"\x1f\x8b", "gzip compressed data"), (b"II*\x00", "TIFF image data"),
    (b"MM\x00*", "TIFF image data"),
)  # fmt: skip


#: A scan file cannot be used; the message says why in plain words. The project's data error
#: for scans (a ``DataError``, so a failed QC row, and a ``ValueError``), by its old name.
ScanError = UnreadableScanError


def _check_content(data: bytes, fmt: str) -> None:
    """Reject files that cannot be the format their suffix claims, before a parser guesses."""
    if not data.strip():
        raise ScanError("empty file")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise ScanError(f"not a mesh: {what}")
    head = data[:4096]
    kind = fmt[1:].upper()
    if fmt in (".obj", ".off", ".gltf") and b"\x00" in head:
        raise ScanError(f"not a mesh: binary data in a text {kind} file")
    header_ok = {
        ".ply": head.startswith(b"ply"),
        ".glb": head.startswith(b"glTF"),
        ".gltf": head.lstrip().startswith(b"{"),
        ".off": _first_token(head).upper().endswith(b"OFF"),
    }
    if not header_ok.get(fmt, True):
        raise ScanError(f"not a mesh: no {kind} header")
    if fmt == ".stl" and not head.lstrip().lower().startswith(b"solid"):
        n_triangles = int.from_bytes(data[80:84], "little") if len(data) >= 84 else -1
        if len(data) != 84 + 50 * n_triangles:
            raise ScanError(f"not a mesh: {len(data)} bytes do not match a binary STL")


def _first_token(head: bytes) -> bytes:
    lines = (line.strip() for line in head.splitlines())
    return next((line.split()[0] for line in lines if line and not line.startswith(b"#")), b"")


_OBJ_MIN_VALUES = {"v": 3, "vt": 1, "vn": 3, "f": 3}


def _check_obj(text: str, folder: Path) -> list[str]:
    """Catch a cut-off OBJ (trimesh silently drops what it cannot read); list missing materials.

    Only the last line is parsed (where a truncated download breaks); a full scan of a
    1e6-line file would cost as much as reading it. :func:`_obj_index_error` covers the rest.
    """
    body = text.rstrip()
    last = body.rsplit("\n", 1)[-1].split()
    if not last:
        raise ScanError("not a mesh: no vertices in OBJ")
    if last[0] in _OBJ_MIN_VALUES:
        try:
            values = [float(v.split("/", 1)[0]) for v in last[1:]]
        except ValueError:
            values = []
        if len(values) < _OBJ_MIN_VALUES[last[0]]:
            line = body.count("\n") + 1
            raise ScanError(f"truncated OBJ: line {line} is incomplete: {' '.join(last)[:40]!r}")
    if not re.search(r"^v[ \t]", text, re.M):
        raise ScanError("not a mesh: no vertices in OBJ")
    problems = []
    for library in re.findall(r"^mtllib[ \t]+([^\r\n]+)", text, re.M):
        library = library.strip()
        if not (folder / library).is_file():
            problems.append(f"material file {library} missing")
            continue
        mtl = (folder / library).read_text(errors="replace")
        for image in re.findall(r"^[ \t]*map_Kd[ \t][^\r\n]*?(\S+)[ \t\r]*$", mtl, re.M | re.I):
            if not (folder / image).is_file():
                problems.append(f"texture image {image} missing (named in {library})")
    return problems


def _obj_index_error(text: str) -> ScanError | None:
    """Explain a parser failure when faces use vertices the file lacks (a truncated file)."""
    n_vertices = len(re.findall(r"^v[ \t]", text, re.M))
    faces = "\n".join(re.findall(r"^f[ \t]([^\n]*)", text, re.M))
    indices = [int(i) for i in re.findall(r"(?:^|\s)-?(\d+)", faces)]
    if indices and max(indices) > n_vertices:
        return ScanError(
            f"truncated OBJ: faces use vertex {max(indices)} but the file holds only {n_vertices}"
        )
    return None
