"""Content sniffing, reference checks and safe zip extraction of the prediction service."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from face_health.serving import formats
from face_health.serving.errors import ApiError
from face_health.serving.uploads import Limits, extract_zip, paced, prepare_scan, receive_upload

LIMITS = Limits(
    max_upload_bytes=2**20,
    max_uncompressed_bytes=4 * 2**20,
    max_zip_entries=8,
    max_compression_ratio=50,
    max_texture_pixels=1_000_000,
)
OBJ = "mtllib face.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n"
MTL = "newmtl skin\nKd 1 1 1\nmap_Kd face.png\n"


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def mesh_bytes(file_type: str) -> bytes:
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=80.0)
    data = sphere.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make_zip(path: Path, entries: dict[str, bytes | str], method: int = zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (OBJ, "obj"),
        (MTL, "mtl"),
        ("# scanner header\n\nv 1 2 3\nv 4 5 6\nf 1 2 1\n", "obj"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "off"),
        ("hello world\nthis is not a mesh\n", None),
        ("", None),
        ("subject_id,age\nS1,40\n", None),
        (b"\x00\x01\x02garbage", None),
        ('{"not": "gltf"}', None),
    ],
)
def test_sniff_text_and_junk(tmp_path: Path, content: str | bytes, expected: str | None) -> None:
    assert formats.sniff(write(tmp_path / "upload.bin", content)) == expected


@pytest.mark.parametrize("file_type", ["ply", "stl", "stl_ascii", "off", "glb", "obj"])
def test_sniff_meshes_by_content_not_name(tmp_path: Path, file_type: str) -> None:
    path = write(tmp_path / "named_wrongly.png", mesh_bytes(file_type))
    assert formats.sniff(path) == file_type.removesuffix("_ascii")


def test_sniff_images_zip_and_gltf(tmp_path: Path) -> None:
    assert formats.sniff(write(tmp_path / "a.obj", png_bytes())) == "image"
    assert formats.sniff(make_zip(tmp_path / "b.ply", {"x.obj": OBJ})) == "zip"
    gltf = {"asset": {"version": "2.0"}, "buffers": [{"uri": "data:,", "byteLength": 0}]}
    assert formats.sniff(write(tmp_path / "c.bin", json.dumps(gltf))) == "gltf"
    glb = bytearray(mesh_bytes("glb"))
    glb[8:12] = struct.pack("<I", len(glb) + 1)  # a header that lies about the length
    assert formats.sniff(write(tmp_path / "d.glb", bytes(glb))) is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("face.mtl", True),
        ("textures/face.png", True),
        ("../face.png", False),
        ("a/../../b", False),
        ("/etc/passwd", False),
        ("\\\\server\\share", False),
        ("C:\\Windows\\x.png", False),
        ("..\\x.png", False),
        ("http://example.org/x.png", False),
        ("", False),
    ],
)
def test_is_safe_relative(name: str, safe: bool) -> None:
    assert formats.is_safe_relative(name) is safe


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("obj", "mtllib ../../etc/passwd\nv 0 0 0\n"),
        ("obj", "mtllib /dev/zero\nv 0 0 0\n"),
        ("mtl", "newmtl a\nmap_Kd -s 1 1 1 /etc/shadow\n"),
        ("ply", "ply\nformat ascii 1.0\ncomment TextureFile ../secret.png\nend_header\n"),
    ],
)
def test_references_outside_the_upload_are_refused(tmp_path: Path, fmt: str, content: str):
    path = write(tmp_path / f"scan.{fmt}", content)
    with pytest.raises(ApiError) as error:
        formats.check_references(path, fmt, tmp_path)
    assert error.value.status == 400


def test_gltf_external_uri_is_refused(tmp_path: Path) -> None:
    gltf = {"asset": {"version": "2.0"}, "images": [{"uri": "../../etc/hosts"}]}
    path = write(tmp_path / "scan.gltf", json.dumps(gltf))
    with pytest.raises(ApiError, match="absolute path"):
        formats.check_references(path, "gltf", tmp_path)


def test_safe_references_are_listed(tmp_path: Path) -> None:
    assert formats.check_references(write(tmp_path / "s.obj", OBJ), "obj", tmp_path) == [
        "face.mtl",
        "face.mtl",
    ]
    assert formats.check_references(write(tmp_path / "s.mtl", MTL), "mtl", tmp_path) == ["face.png"]


def test_image_beyond_pillows_own_limit_is_413(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("1", (20000, 10000)).save(buffer, format="PNG")  # 200 MP: Pillow refuses to open
    path = write(tmp_path / "face.png", buffer.getvalue())
    assert formats.sniff(path) == "image"
    with pytest.raises(ApiError) as error:
        formats.check_image_pixels(path, 10**9)
    assert error.value.status == 413


def test_texture_pixel_cap(tmp_path: Path) -> None:
    assert formats.check_image_pixels(png_bytes(100, 50), 10_000) == (100, 50)
    with pytest.raises(ApiError) as error:
        formats.check_image_pixels(png_bytes(200, 100), 10_000)
    assert error.value.status == 413
    with pytest.raises(ApiError) as error:
        formats.check_image_pixels(b"GIF89a not a texture", 10_000)
    assert error.value.status == 415


def test_glb_embedded_texture_is_bounded(tmp_path: Path) -> None:
    mesh = trimesh.creation.box(extents=(100, 100, 100))
    uv = np.random.default_rng(0).random((len(mesh.vertices), 2))
    image = Image.new("RGB", (400, 300), (200, 150, 120))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    path = write(tmp_path / "scan.glb", mesh.export(file_type="glb"))
    assert formats.check_embedded_images(path, "glb", 200_000) == 1
    with pytest.raises(ApiError) as error:
        formats.check_embedded_images(path, "glb", 100_000)
    assert error.value.status == 413


def test_zip_of_obj_mtl_texture_is_unpacked(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "u.bin",
        {"scan/face.data": OBJ, "scan/face.mtl": MTL, "scan/face.png": png_bytes(),
         "__MACOSX/scan/._face.data": b"junk", "scan/.DS_Store": b"junk"},
    )  # fmt: skip
    scan = prepare_scan(archive, tmp_path, LIMITS)
    assert scan.format == "obj" and scan.container == "zip" and scan.n_files == 3
    assert scan.path == tmp_path / "scan" / "scan" / "face.obj"  # suffix from the content
    assert not (tmp_path / "scan" / "__MACOSX").exists()


def test_single_file_is_named_by_its_content(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload.bin", mesh_bytes("ply"))
    scan = prepare_scan(upload, tmp_path, LIMITS)
    assert (scan.format, scan.container, scan.path.name) == ("ply", "file", "scan.ply")


@pytest.mark.parametrize(
    ("entries", "status", "code"),
    [
        ({"../evil.obj": OBJ}, 400, "unsafe_zip_path"),
        ({"scan/../../evil.obj": OBJ}, 400, "unsafe_zip_path"),
        ({"/tmp/evil.obj": OBJ}, 400, "unsafe_zip_path"),
        ({"C:/evil.obj": OBJ}, 400, "unsafe_zip_path"),
        ({f"f{i}.obj": OBJ for i in range(9)}, 413, "too_many_entries"),
        ({"face.obj": "v 0 0 0\n" * 200_000}, 413, "compression_ratio"),
        ({"face.obj": OBJ, "notes.pdf": b"%PDF-1.4 ..."}, 415, "unsupported_media_type"),
        ({"face.obj": OBJ, "inner.zip": b"PK\x05\x06" + bytes(18)}, 415, "unsupported_media_type"),
        ({"face.mtl": MTL, "face.png": png_bytes()}, 415, "unsupported_media_type"),
        ({"a.obj": OBJ, "b.ply": mesh_bytes("ply")}, 400, "several_meshes"),
        ({"face.obj": OBJ, "face.png": png_bytes(2000, 1000)}, 413, "texture_too_large"),
    ],
)
def test_bad_zips_are_refused(tmp_path: Path, entries: dict, status: int, code: str) -> None:
    archive = make_zip(tmp_path / "upload.bin", entries)
    with pytest.raises(ApiError) as error:
        prepare_scan(archive, tmp_path, LIMITS)
    assert (error.value.status, error.value.code) == (status, code)
    assert not (tmp_path / "evil.obj").exists() and not Path("/tmp/evil.obj").exists()


def test_total_uncompressed_size_is_capped(tmp_path: Path) -> None:
    entries = {f"part{i}.png": np.random.default_rng(i).bytes(2**20) for i in range(5)}
    archive = make_zip(tmp_path / "upload.bin", entries, method=zipfile.ZIP_STORED)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ApiError) as error:
        extract_zip(archive, dest, LIMITS)
    assert error.value.status == 413
    assert not any(dest.iterdir())  # refused before anything was written


def test_lying_zip_header_is_caught_while_unpacking(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "upload.bin", {"face.obj": OBJ * 40})
    data = bytearray(archive.read_bytes())
    # shrink the declared size in the central directory; the real data is larger
    offset = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, offset + 24, 10)
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ApiError) as error:
        extract_zip(archive, dest, LIMITS)
    assert error.value.status in (400, 413)


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "upload.bin"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("face.obj")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ApiError) as error:
        extract_zip(archive, tmp_path, LIMITS)
    assert error.value.code == "unsafe_zip_path"


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "----face-health-test"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for name, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="scan"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_receive_multipart_streams_the_file(tmp_path: Path) -> None:
    data = mesh_bytes("ply")
    body, ctype = _multipart([("face.ply", data)], {"subject_id": "S1"})
    upload = asyncio.run(receive_upload(_chunks(body), ctype, None, tmp_path, 2**20))
    assert upload.path.read_bytes() == data
    assert upload.fields == {"subject_id": "S1"} and upload.body_bytes == len(body)


def test_receive_raw_body(tmp_path: Path) -> None:
    upload = asyncio.run(receive_upload(_chunks(b"OFF\n"), "model/off", "4", tmp_path, 100))
    assert upload.path.read_bytes() == b"OFF\n"


@pytest.mark.parametrize("declared", [None, "5000"])
def test_receive_stops_at_the_limit(tmp_path: Path, declared: str | None) -> None:
    with pytest.raises(ApiError) as error:
        asyncio.run(receive_upload(_chunks(bytes(5000)), None, declared, tmp_path, 4096))
    assert error.value.status == 413


@pytest.mark.parametrize(
    ("files", "code"),
    [([("a.obj", b"v 0 0 0\n"), ("b.obj", b"v 0 0 0\n")], "several_files"), ([], "bad_form")],
)
def test_receive_refuses_bad_forms(tmp_path: Path, files: list, code: str) -> None:
    body, ctype = _multipart(files, {"note": "x"})
    with pytest.raises(ApiError) as error:
        asyncio.run(receive_upload(_chunks(body), ctype, None, tmp_path, 2**20))
    assert (error.value.status, error.value.code) == (400, code)


async def _trickle(parts: list[bytes], every_s: float) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(every_s)
        yield part


async def _drain(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_paced_passes_a_fast_upload_through() -> None:
    parts = [bytes(4096)] * 10
    data = asyncio.run(_drain(paced(_trickle(parts, 0.01), 1024, 0.5)))
    assert data == b"".join(parts)


def test_paced_refuses_a_trickle_after_one_window() -> None:
    """1 byte every 0.1 s is 10 B/s, under 1 KB/s: refused with 408 once the first 0.5 s
    window ends short of its 512 bytes, long before the 100 bytes are in."""
    with pytest.raises(ApiError) as caught:
        asyncio.run(_drain(paced(_trickle([b"x"] * 100, 0.1), 1024, 0.5)))
    assert caught.value.status == 408 and caught.value.code == "upload_too_slow"
    assert "1 KB/s" in caught.value.message and "0.5 s" in caught.value.message
    assert caught.value.headers == {"Connection": "close"}


def test_paced_refuses_a_stalled_upload() -> None:
    async def stall() -> AsyncIterator[bytes]:
        yield bytes(2048)
        await asyncio.sleep(10)
        yield b"never"

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ApiError, match="slower than"):
            await _drain(paced(stall(), 1024, 0.3))
        return loop.time() - started

    assert asyncio.run(run()) < 2.0
