"""Content checks of scan files, run on the raw bytes before a mesh parser sees them.

A parser given a file that is not what its suffix claims (an image renamed ``.obj``, an empty
or truncated download, an OBJ whose faces use vertices it lacks) either guesses or fails with a
message nobody can act on. These checks reject such files up front with a :class:`ScanError`
that says in plain words what is wrong, and list the missing materials and texture images an
OBJ names. :func:`face_health.ingest.scan.read_scan` calls them; ``ScanError`` is importable from
:mod:`face_health.ingest.scan` too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import trimesh

from face_health.errors import UnreadableScanError
from face_health.ingest.limits import ScanLimits, check_file_size, check_image_file

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
        expected = 84 + 50 * n_triangles
        if n_triangles > 0 and len(data) < expected and len(data) > 84 + 50 * n_triangles // 100:
            raise ScanError(
                f"truncated STL: its header promises {n_triangles} triangles ({expected} bytes) "
                f"but the file holds {len(data)} bytes"
            )
        if len(data) != expected:
            raise ScanError(f"not a mesh: {len(data)} bytes do not match a binary STL")
    if fmt == ".glb" and len(data) >= 12:
        declared = int.from_bytes(data[8:12], "little")
        if len(data) < declared:
            raise ScanError(
                f"truncated GLB: its header says {declared} bytes but the file holds {len(data)}"
            )
    if fmt == ".off":
        _check_off(data)


def _first_token(head: bytes) -> bytes:
    lines = (line.strip() for line in head.splitlines())
    return next((line.split()[0] for line in lines if line and not line.startswith(b"#")), b"")


_OBJ_MIN_VALUES = {"v": 3, "vt": 1, "vn": 3, "f": 3}


def _check_obj(text: str, folder: Path, limits: ScanLimits | None = None) -> list[str]:
    """Catch a cut-off OBJ (trimesh silently drops what it cannot read); refuse material and
    texture paths that leave the scan's folder, and textures over the cost limits; list
    missing materials and images.

    Only the last lines are parsed (where a truncated download breaks); a full scan of a
    1e6-line file would cost as much as reading it. :func:`_obj_index_error` covers the rest.
    ``mtllib`` counts only as a statement, never inside a ``#`` comment.
    """
    body = text.rstrip()
    lines = body.rsplit("\n", 2)
    last = lines[-1].split()
    if not last:
        raise ScanError("not a mesh: no vertices in OBJ")
    line_number = body.count("\n") + 1
    if last[0] in _OBJ_MIN_VALUES:
        try:
            values = [float(v.split("/", 1)[0]) for v in last[1:]]
        except ValueError:
            values = []
        incomplete = len(values) < _OBJ_MIN_VALUES[last[0]]
        # cut inside a line: it lacks what the line before of its kind has (e.g. 'f 1/1 2/')
        previous = lines[-2].split() if len(lines) > 1 else []
        if not text.endswith(("\n", "\r")) and previous[:1] == last[:1]:
            incomplete |= len(last) < len(previous) or any(t.endswith("/") for t in last)
            incomplete |= [t.count("/") for t in last[1:]] != [t.count("/") for t in previous[1:]]
        if incomplete:
            raise ScanError(
                f"truncated OBJ: line {line_number} is incomplete: {' '.join(last)[:40]!r}"
            )
    if not re.search(r"^v[ \t]", text, re.M):
        raise ScanError("not a mesh: no vertices in OBJ")
    ends_in_vertex_data = last[0] in ("v", "vt", "vn") and not re.search(r"^f[ \t]", text, re.M)
    # texture coordinates or normals, then the file stops: a mesh cut before its faces
    if ends_in_vertex_data and re.search(r"^v[tn][ \t]", text, re.M):
        n_v = len(re.findall(r"^v[ \t]", text, re.M))
        raise ScanError(
            f"truncated OBJ: it ends in its vertex data at line {line_number} "
            f"({n_v} vertices, no faces)"
        )
    problems = []
    for library in _statements(text, "mtllib"):
        path = _inside(folder, library, "material file (mtllib)")
        if not path.is_file():
            problems.append(f"material file {library} missing")
            continue
        check_file_size(path, limits, "material file")
        mtl = path.read_text(errors="replace")
        for key, image in re.findall(
            r"^[ \t]*(map_\w+|bump|disp|decal|refl)[ \t][^\r\n]*?(\S+)[ \t\r]*$",
            mtl,
            re.M | re.I,
        ):
            image_path = _inside(folder, image, f"texture image ({key} in {library})")
            if key.lower() != "map_kd":
                continue
            if not image_path.is_file():
                problems.append(f"texture image {image} missing (named in {library})")
            else:
                check_image_file(image_path, limits)
    return problems


def _statements(text: str, keyword: str) -> list[str]:
    """The arguments of every ``keyword`` statement (comments ignored)."""
    pattern = rf"^[ \t]*{keyword}[ \t]+([^\r\n#]+)"
    return [m.strip() for m in re.findall(pattern, text, re.M) if m.strip()]


def _inside(folder: Path, name: str, what: str) -> Path:
    """``folder / name``, refused when the name leaves the scan's folder (an absolute path,
    ``..``, a drive letter): a scan may only use its own companion files."""
    posix, windows = PurePosixPath(name.replace("\\", "/")), PureWindowsPath(name)
    escapes = posix.is_absolute() or windows.is_absolute() or bool(windows.drive)
    escapes |= ".." in posix.parts or name.startswith("~")
    path = folder / name
    if not escapes:
        root = os.path.realpath(folder)
        escapes = os.path.commonpath([root, os.path.realpath(path)]) != root
    if escapes:
        raise ScanError(f"{what} {name!r} is outside the scan's folder: refused")
    return path


def obj_for_parser(text: str) -> str | None:
    """The OBJ text without ``#`` comment lines when a comment holds ``mtllib`` (trimesh
    takes the first ``mtllib`` anywhere, a comment's too); None when nothing needs removing."""
    if not re.search(r"^[ \t]*#[^\n]*mtllib", text, re.M):
        return None
    return re.sub(r"^[ \t]*#[^\n]*$", "", text, flags=re.M)


class FolderResolver(trimesh.resolvers.FilePathResolver):
    """trimesh's file resolver that serves only files inside the scan's folder."""

    def get(self, name: str) -> bytes:
        path = _inside(Path(self.parent), str(name).strip(), "file")
        if not path.is_file():
            raise OSError(f"{name} not found")
        return path.read_bytes()


def _obj_texture_material(image) -> trimesh.visual.material.SimpleMaterial:
    """The material of a textured OBJ, whether an MTL named the image or it lay beside the
    mesh: the image, white ambient and diffuse (renderers multiply the image by 1; trimesh's
    default grey is 40 %), no specular highlight."""
    white, black = (255, 255, 255, 255), (0, 0, 0, 255)
    return trimesh.visual.material.SimpleMaterial(
        image=image, diffuse=white, ambient=white, specular=black, glossiness=1.0
    )


def _check_ply(data: bytes, folder: Path, limits: ScanLimits | None = None) -> list[str]:
    """A PLY cut short of what its header promises; its ``TextureFile`` inside the folder."""
    end = data.find(b"end_header")
    if end < 0:
        raise ScanError("truncated PLY: no end_header")
    header = data[:end].decode("ascii", "replace")
    body_start = data.find(b"\n", end) + 1 or len(data)
    problems: list[str] = []
    for name in re.findall(r"^comment[ \t]+TextureFile[ \t]+(\S+)", header, re.M | re.I):
        path = _inside(folder, name, "texture image (TextureFile)")
        if path.is_file():
            check_image_file(path, limits)
    fmt = re.search(r"^format[ \t]+(\w+)", header, re.M)
    elements: list[tuple[str, int, list[list[str]]]] = []
    for line in header.splitlines():
        words = line.split()
        if words[:1] == ["element"] and len(words) >= 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[:1] == ["property"] and elements:
            elements[-1][2].append(words[1:])
    if fmt is None or not elements:
        return problems
    body = len(data) - body_start
    promised = ", ".join(f"{n} {name}s" for name, n, _ in elements if n)
    if fmt.group(1) == "ascii":
        n_lines = data.count(b"\n", body_start) + (not data.endswith(b"\n"))
        needed = sum(n for _, n, _ in elements)
        if n_lines < needed:
            raise ScanError(
                f"truncated PLY: its header promises {promised} ({needed} lines) but the file "
                f"holds {n_lines} lines after its header"
            )
        return problems
    sizes = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2,
             "int16": 2, "uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4,
             "float": 4, "float32": 4, "double": 8, "float64": 8}  # fmt: skip
    minimum = 0
    for _, count, properties in elements:
        row = 0
        for words in properties:
            if words[:1] == ["list"] and len(words) >= 3:  # count, then at least 3 indices
                row += sizes.get(words[1], 1) + 3 * sizes.get(words[2], 4)
            else:
                row += sizes.get(words[0], 4) if words else 0
        minimum += count * row
    if body < minimum:
        raise ScanError(
            f"truncated PLY: its header promises {promised} (at least {minimum} bytes) but "
            f"the file holds {body} bytes after its header"
        )
    return problems


def _check_gltf_uris(data: bytes, folder: Path) -> None:
    """A glTF's buffer and image files must lie inside the scan's folder."""
    import json

    try:
        tree = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return
    if not isinstance(tree, dict):
        return
    for kind in ("buffers", "images"):
        for item in tree.get(kind, []) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if isinstance(uri, str) and uri and not uri.startswith("data:"):
                _inside(folder, uri, f"glTF {kind[:-1]} file")


def _check_off(data: bytes) -> None:
    """An OFF cut short of the vertex and face counts on its first lines."""
    lines = [
        line for line in data.splitlines() if line.strip() and not line.lstrip().startswith(b"#")
    ]
    if not lines:
        return
    first = lines[0].split()
    counts = first[1:] if len(first) > 1 else (lines[1].split() if len(lines) > 1 else [])
    body = lines[1:] if len(first) > 1 else lines[2:]
    try:
        n_vertices, n_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        return
    if len(body) < n_vertices + n_faces:
        raise ScanError(
            f"truncated OFF: its header promises {n_vertices} vertices and {n_faces} faces "
            f"({n_vertices + n_faces} lines) but the file holds {len(body)}"
        )


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
