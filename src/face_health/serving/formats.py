"""What an uploaded file is, judged from its content, and whether what it names is safe.

A client's file name says nothing reliable: a PNG renamed ``scan.obj`` or a zip renamed
``scan.ply`` must be refused before a parser guesses. :func:`sniff` reads the leading bytes
(and for glTF the JSON) and answers with a format or ``None``. Mesh and material files can
name other files (an OBJ its ``mtllib``, an MTL its texture, a PLY its ``TextureFile``, a glTF
its buffers and images); :func:`check_references` refuses names that leave the upload's
folder, so a scan cannot make the server read its own files. :func:`check_image_pixels`
bounds texture images, the decompression bombs of the image world.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from face_health.ingest.scan import MESH_SUFFIXES
from face_health.serving.errors import ApiError

#: What the service accepts is what ingest reads.
MESH_FORMATS = tuple(suffix.lstrip(".") for suffix in MESH_SUFFIXES)
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpeg", "BMP": "bmp"}
SNIFF_BYTES = 64 * 1024
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")
_PLY_HEADER = re.compile(rb"ply\r?\nformat (ascii|binary_little_endian|binary_big_endian) 1\.0")
_OBJ_KEYWORDS = frozenset(
    b"v vt vn vp f l p o g s mtllib usemtl cstype deg curv curv2 surf parm trim hole scrv sp "
    b"end con bmat step mg lod maplib usemap bevel c_interp d_interp shadow_obj trace_obj".split()
)
_MTL_MAP = re.compile(rb"^[ \t]*(map_\w+|bump|disp|decal|refl|norm)[ \t]+([^\r\n]*)$", re.M | re.I)


def sniff(path: Path) -> str | None:
    """The format of a file from its content.

    Returns
    -------
    str or None
        ``'zip'``, one of :data:`MESH_FORMATS`, ``'mtl'`` (an OBJ material library),
        ``'image'`` (PNG, JPEG or BMP) or ``None`` for anything else.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"glTF"):
        return "glb" if _glb_header_ok(head, size) else None
    if _PLY_HEADER.match(head):
        return "ply"
    if head.startswith(_IMAGE_MAGIC):
        return "image" if _image_format(path) else None
    if len(head) >= 84 and size == 84 + 50 * struct.unpack_from("<I", head, 80)[0] > 84:
        return "stl"  # binary STL: an 80-byte header, a count, then 50 bytes per triangle
    if not head.strip() or b"\x00" in head:
        return None
    return _sniff_text(path, head)


def _sniff_text(path: Path, head: bytes) -> str | None:
    lines = [line.strip() for line in head.splitlines()]
    if len(head) == SNIFF_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut off by the sniffing window
    content = [line for line in lines if line and not line.startswith(b"#")]
    if not content:
        return None
    first = content[0].split()[0]
    if head.lstrip().startswith(b"{"):
        return "gltf" if _gltf_json_of_text(path) is not None else None
    if re.fullmatch(rb"[A-Z0-9]*OFF", first):
        return "off"
    if first.lower() == b"solid" and re.search(rb"^\s*(facet\s+normal|endsolid)", head, re.M):
        return "stl"
    keywords = [line.split()[0] for line in content]
    if b"newmtl" in keywords:
        return "mtl"
    known = sum(word in _OBJ_KEYWORDS for word in keywords)
    if b"v" in keywords and known >= 0.95 * len(keywords):
        return "obj"
    return None


def _glb_header_ok(head: bytes, size: int) -> bool:
    if len(head) < 20:
        return False
    version, length = struct.unpack_from("<II", head, 4)
    return version == 2 and length == size


def _image_format(path: Path) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return IMAGE_FORMATS.get(image.format or "")
    except Image.DecompressionBombError:
        return "png"  # an image all right, too large: check_image_pixels refuses it with 413
    except Exception:  # noqa: BLE001 - any failure to read a header means "not an image"
        return None


def gltf_json(path: Path, fmt: str) -> dict[str, Any]:
    """The JSON document of a ``.gltf`` file or of a GLB's first chunk."""
    if fmt == "gltf":
        document = _gltf_json_of_text(path)
    else:
        with open(path, "rb") as fh:
            header = fh.read(20)
            length, kind = struct.unpack_from("<I4s", header, 12)
            document = _json_object(fh.read(length)) if kind == b"JSON" else None
    if document is None:
        raise ApiError(415, "unsupported_media_type", f"not a readable {fmt.upper()} file")
    return document


def _gltf_json_of_text(path: Path) -> dict[str, Any] | None:
    document = _json_object(path.read_bytes())
    return document if document is not None and isinstance(document.get("asset"), dict) else None


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def is_safe_relative(name: str) -> bool:
    """True for a plain relative path that stays inside its folder: not empty, not absolute
    (``/x``, ``\\x``, ``C:x``), no ``..``, no URL scheme, no NUL."""
    name = name.strip()
    if not name or "\x00" in name or "://" in name:
        return False
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in PurePosixPath(name.replace("\\", "/")).parts


def references(path: Path, fmt: str) -> list[str]:
    """Names of the other files that a mesh or material file asks a parser to read.

    Data URIs of glTF are not references (their content is inline).
    """
    if fmt == "obj":
        with open(path, "rb") as fh:
            found = re.findall(rb"^[ \t]*mtllib[ \t]+([^\r\n]+)", fh.read(), re.M)
        names = [n.decode("utf-8", "replace").strip() for n in found]
        return names + [part for n in names for part in n.split()]  # one name or several
    if fmt == "mtl":
        found = _MTL_MAP.findall(path.read_bytes())
        return [args.decode("utf-8", "replace").split()[-1] for _, args in found if args.split()]
    if fmt == "ply":
        with open(path, "rb") as fh:
            header = fh.read(SNIFF_BYTES).split(b"end_header", 1)[0]
        found = re.findall(rb"^comment[ \t]+TextureFile[ \t]+([^\r\n]+)", header, re.M)
        return [n.decode("utf-8", "replace").strip() for n in found]
    if fmt in ("gltf", "glb"):
        document = gltf_json(path, fmt)
        uris = [
            item.get("uri")
            for key in ("buffers", "images")
            for item in document.get(key, [])
            if isinstance(item, dict)
        ]
        return [u for u in uris if isinstance(u, str) and not u.startswith("data:")]
    return []


def check_references(path: Path, fmt: str, root: Path) -> list[str]:
    """Refuse a file that names files outside ``root`` (its upload folder).

    Returns
    -------
    list of str
        The names it references, all safe.

    Raises
    ------
    ApiError
        400 for an absolute path, ``..``, a URL, or a name that resolves outside ``root``.
    """
    names = references(path, fmt)
    root = root.resolve()
    for name in names:
        target = (path.parent / name.strip()).resolve()
        if not is_safe_relative(name) or not target.is_relative_to(root):
            raise ApiError(
                400,
                "unsafe_reference",
                f"the {fmt.upper()} file names another file by an absolute path, '..' or a "
                "URL; only names of files sent with it are allowed",
            )
    return names


def check_image_pixels(image: bytes | Path, max_pixels: int) -> tuple[int, int]:
    """Width and height of an image, read from its header only.

    Raises
    ------
    ApiError
        415 when it is not a PNG, JPEG or BMP image; 413 above ``max_pixels``.
    """
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged below
            with Image.open(source) as opened:
                size, fmt = opened.size, opened.format
    except Image.DecompressionBombError as exc:  # beyond Pillow's own, larger, limit
        raise ApiError(413, "texture_too_large", "a texture image is far too large") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a bad header
        raise ApiError(
            415, "unsupported_media_type", "a texture is not a readable PNG, JPEG or BMP image"
        ) from exc
    if fmt not in IMAGE_FORMATS:
        raise ApiError(415, "unsupported_media_type", f"texture format {fmt} is not supported")
    if size[0] * size[1] > max_pixels:
        raise ApiError(
            413,
            "texture_too_large",
            f"a texture has {size[0] * size[1] / 1e6:.0f} megapixels, more than the limit of "
            f"{max_pixels / 1e6:.0f}",
        )
    return size


def check_embedded_images(path: Path, fmt: str, max_pixels: int) -> int:
    """Bound the images a GLB or glTF carries inline (buffer views and data URIs).

    Returns the number of inline images checked.
    """
    document = gltf_json(path, fmt)
    blob = _glb_binary_chunk(path) if fmt == "glb" else b""
    views = document.get("bufferViews", [])
    checked = 0
    for image in document.get("images", []):
        if not isinstance(image, dict):
            continue
        data: bytes | None = None
        uri = image.get("uri")
        if isinstance(uri, str) and uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[-1], validate=False)
            except (binascii.Error, ValueError):
                data = b""
        elif isinstance(image.get("bufferView"), int) and image["bufferView"] < len(views):
            view = views[image["bufferView"]]
            start = int(view.get("byteOffset", 0))
            data = blob[start : start + int(view.get("byteLength", 0))]
        if data is not None:
            check_image_pixels(data, max_pixels)
            checked += 1
    return checked


def _glb_binary_chunk(path: Path) -> bytes:
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    start = 20 + json_length
    if len(data) < start + 8:
        return b""
    length, kind = struct.unpack_from("<I4s", data, start)
    return data[start + 8 : start + 8 + length] if kind == b"BIN\x00" else b""
