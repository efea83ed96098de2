"""Hostile but legal scans through ingest and ``face-health check-scan`` (issue 14, parts 2
and 6): cost limits, paths that leave the scan's folder, comments, truncated files, FIFOs and
devices, one material resolution. Each case: the exit code or error class, a message that
names the problem, no traceback, no input byte changed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from face_health.colour import texture_array
from face_health.errors import DataError
from face_health.ingest.limits import ScanLimits, ScanTooLargeError
from face_health.ingest.scan import ScanError, ingest_scan, read_scan
from reliability.corpus import (
    SMALL_LIMITS,
    assert_clean_failure,
    coloured_mesh,
    obj_text,
    solid_png,
    texture_png,
    textured_mesh,
    write_textured_obj,
)


def _failed(record: dict, *words: str) -> None:
    assert record["status"] == "failed", record
    for word in words:
        assert word.lower() in record["reason"].lower(), record["reason"]


# --- part 2: bounded cost ---------------------------------------------------------------


def test_texture_over_the_pixel_cap_is_refused_from_its_header(
    tmp_path, over_cap_png, check_scan, unchanged
) -> None:
    scan = write_textured_obj(tmp_path / "s", png=over_cap_png)
    check = unchanged(tmp_path / "s")
    result = check_scan(scan)
    assert_clean_failure(
        result,
        "8000 x 8001 = 64,008,000 pixels",
        "limit of 64,000,000",
        "ingest.max_texture_pixels",
    )
    check()


def test_companion_texture_over_the_pixel_cap_is_refused(
    tmp_path, over_cap_png, check_scan, unchanged
) -> None:
    scan = write_textured_obj(tmp_path / "s", png=over_cap_png, mtl=False)
    check = unchanged(tmp_path / "s")
    assert_clean_failure(check_scan(scan), "face.png", "8000 x 8001", "ingest.max_texture_pixels")
    check()


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch) -> None:
    write_textured_obj(tmp_path, png=solid_png((300, 300)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels decoded before the cap was checked")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(
        ScanTooLargeError, match=r"300 x 300 = 90,000 pixels, more than the limit of 40,000"
    ):
        read_scan(tmp_path / "face.obj", limits=SMALL_LIMITS)


def test_texture_is_downsampled_to_the_working_size(tmp_path, unchanged) -> None:
    write_textured_obj(tmp_path, png=texture_png((160, 120)))
    check = unchanged(tmp_path)
    mesh, record = ingest_scan(tmp_path / "face.obj", "s", limits=SMALL_LIMITS)
    assert record["status"] == "warning"
    assert "texture downsampled from 160 x 120 to 64 x 48 pixels" in record["reason"]
    assert texture_array(mesh).shape == (48, 64, 3)
    check()


def test_embedded_glb_texture_over_the_cap_is_refused(tmp_path, unchanged) -> None:
    path = tmp_path / "face.glb"
    path.write_bytes(
        textured_mesh(Image.new("RGB", (300, 300), (200, 150, 120))).export(file_type="glb")
    )
    check = unchanged(tmp_path)
    _, record = ingest_scan(path, "s", limits=SMALL_LIMITS)
    _failed(record, "300 x 300 = 90,000 pixels", "ingest.max_texture_pixels")
    check()


def test_file_over_the_size_limit_is_refused_unread(tmp_path, unchanged) -> None:
    (tmp_path / "face.obj").write_text(obj_text(None, n=15) + "# " + "x" * 600_000 + "\n")
    check = unchanged(tmp_path)
    _, record = ingest_scan(tmp_path / "face.obj", "s", limits=SMALL_LIMITS)
    _failed(record, "scan file face.obj is 1 MB", "limit of 0.5 MB", "ingest.max_file_mb")
    check()


def test_mesh_over_the_vertex_budget_is_decimated_before_cleaning(tmp_path, unchanged) -> None:
    (tmp_path / "face.ply").write_bytes(coloured_mesh().export(file_type="ply"))
    check = unchanged(tmp_path)
    limits = ScanLimits(max_file_mb=10, max_texture_pixels=10**6, texture_working_size=64,
                        max_vertices=150)  # fmt: skip
    mesh, record = ingest_scan(tmp_path / "face.ply", "s", limits=limits, vertex_budget=100)
    assert record["status"] == "warning"
    assert "decimated 225 ->" in record["reason"] and "before cleaning" in record["reason"]
    assert record["n_vertices_raw"] == 225 and len(mesh.vertices) <= 150
    assert record["has_vertex_colors"]
    check()


def test_the_cli_and_the_pipeline_pass_the_same_limits() -> None:
    from face_health.config import base_section

    kwargs = base_section("ingest").as_kwargs()
    assert kwargs["limits"].max_texture_pixels == 64_000_000
    assert kwargs["limits"].texture_working_size == 4096


def test_the_service_checks_the_ingest_pixel_limit() -> None:
    from face_health.config import base_section
    from face_health.serving.settings import ServingSettings

    assert ServingSettings().max_texture_pixels == base_section("ingest").max_texture_pixels


# --- part 6: paths that leave the scan's folder ------------------------------------------


@pytest.mark.parametrize("reference", ["/etc/passwd", "../outside.mtl", "..\\..\\x.mtl"])
def test_mtllib_outside_the_folder_is_refused_by_name(
    tmp_path, reference, check_scan, unchanged
) -> None:
    (tmp_path / "outside.mtl").write_text("newmtl skin\nmap_Kd face.png\n")
    scan = write_textured_obj(tmp_path / "s", mtllib=reference)
    check = unchanged(tmp_path)
    name = reference.replace("\\", "/").rsplit("/", 1)[-1]  # JSON doubles the backslashes
    assert_clean_failure(check_scan(scan), name, "material file (mtllib)", "outside the scan")
    check()


def test_map_kd_outside_the_folder_is_refused_by_name(tmp_path, check_scan, unchanged) -> None:
    (tmp_path / "secret.png").write_bytes(texture_png())
    scan = write_textured_obj(tmp_path / "s", map_kd="../secret.png")
    check = unchanged(tmp_path)
    assert_clean_failure(check_scan(scan), "../secret.png", "map_kd in face.mtl", "outside")
    check()


def test_symlinked_material_that_leaves_the_folder_is_refused(tmp_path, unchanged) -> None:
    (tmp_path / "elsewhere.mtl").write_text("newmtl skin\nmap_Kd face.png\n")
    scan = write_textured_obj(tmp_path / "s", mtllib="link.mtl")
    (tmp_path / "s" / "link.mtl").symlink_to(tmp_path / "elsewhere.mtl")
    check = unchanged(tmp_path)
    _, record = ingest_scan(scan, "s")
    _failed(record, "link.mtl", "outside the scan's folder")
    check()


def test_commented_mtllib_is_not_a_reference(tmp_path, check_scan, unchanged) -> None:
    scan = write_textured_obj(tmp_path / "s", header="# mtllib /etc/passwd")
    check = unchanged(tmp_path / "s")
    result = check_scan(scan)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["has_texture"] and record["status"] == "ok", record
    assert "passwd" not in result.output
    check()


def test_commented_mtllib_alone_reads_no_material(tmp_path) -> None:
    (tmp_path / "face.obj").write_text(obj_text(None, header="# mtllib /etc/passwd"))
    mesh = read_scan(tmp_path / "face.obj", companion_texture=False)
    assert "passwd" not in json.dumps(mesh.metadata["warnings"])
    assert texture_array(mesh) is None


def test_ply_texture_file_outside_the_folder_is_refused(tmp_path, unchanged) -> None:
    data = coloured_mesh().export(file_type="ply")
    data = data.replace(b"format ", b"comment TextureFile /etc/hosts\nformat ", 1)
    (tmp_path / "face.ply").write_bytes(data)
    check = unchanged(tmp_path)
    _, record = ingest_scan(tmp_path / "face.ply", "s")
    _failed(record, "/etc/hosts", "outside the scan's folder")
    check()


def test_gltf_buffer_outside_the_folder_is_refused(tmp_path, unchanged) -> None:
    tree = {"asset": {"version": "2.0"}, "buffers": [{"uri": "../../etc/passwd", "byteLength": 9}]}
    (tmp_path / "face.gltf").write_text(json.dumps(tree))
    check = unchanged(tmp_path)
    _, record = ingest_scan(tmp_path / "face.gltf", "s")
    _failed(record, "../../etc/passwd", "outside the scan's folder")
    check()


# --- part 6: truncated files --------------------------------------------------------------


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def test_obj_cut_inside_a_face_line_is_truncated(tmp_path, check_scan, unchanged) -> None:
    scan = write_textured_obj(tmp_path / "s")
    text = scan.read_text()
    scan.write_text(text[: text.rindex("/")])  # 'f 12/12 13/13 14' cut before its last '/'
    check = unchanged(tmp_path / "s")
    assert_clean_failure(check_scan(scan), "truncated OBJ")
    check()


def test_obj_cut_in_its_texture_coordinates_is_truncated(tmp_path, check_scan, unchanged) -> None:
    scan = write_textured_obj(tmp_path / "s")
    text = scan.read_text()
    scan.write_text(text[: text.index("vt ") + 200].rsplit("\n", 1)[0] + "\n")
    check = unchanged(tmp_path / "s")
    result = check_scan(scan)
    assert_clean_failure(result, "truncated OBJ")
    assert "no colour" not in result.output
    check()


@pytest.mark.parametrize("encoding", ["binary_little_endian", "ascii"])
def test_ply_cut_short_is_truncated(tmp_path, encoding, check_scan, unchanged) -> None:
    data = coloured_mesh().export(
        file_type="ply", encoding="ascii" if encoding == "ascii" else "binary"
    )
    (tmp_path / "face.ply").write_bytes(_cut(data, 0.6))
    check = unchanged(tmp_path)
    result = check_scan(tmp_path / "face.ply")
    assert_clean_failure(result, "truncated PLY", "header promises 225 vertexs")
    assert "no colour" not in result.output and "heavy cleaning" not in result.output
    check()


def test_stl_cut_short_is_truncated(tmp_path, check_scan, unchanged) -> None:
    (tmp_path / "face.stl").write_bytes(_cut(coloured_mesh().export(file_type="stl"), 0.5))
    check = unchanged(tmp_path)
    assert_clean_failure(check_scan(tmp_path / "face.stl"), "truncated STL", "392 triangles")
    check()


def test_glb_cut_short_is_truncated(tmp_path, check_scan, unchanged) -> None:
    data = textured_mesh(Image.new("RGB", (32, 32), (200, 150, 120))).export(file_type="glb")
    (tmp_path / "face.glb").write_bytes(_cut(data, 0.5))
    check = unchanged(tmp_path)
    assert_clean_failure(check_scan(tmp_path / "face.glb"), "truncated GLB")
    check()


def test_off_cut_short_is_truncated(tmp_path, check_scan, unchanged) -> None:
    (tmp_path / "face.off").write_bytes(_cut(coloured_mesh().export(file_type="off").encode(), 0.5))
    check = unchanged(tmp_path)
    assert_clean_failure(check_scan(tmp_path / "face.off"), "truncated OFF")
    check()


# --- part 6: not a regular file -----------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_named_as_such_and_never_read(tmp_path) -> None:
    fifo = tmp_path / "face.obj"
    os.mkfifo(fifo)
    cli = Path(sys.executable).with_name("face-health")
    result = subprocess.run(
        [str(cli), "check-scan", str(fifo)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "a FIFO (named pipe)" in result.stdout and "file not found" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_named_as_such(check_scan) -> None:
    assert_clean_failure(check_scan(Path("/dev/zero")), "character device", "not a regular file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_link_to_a_device_named_like_a_scan_is_refused(tmp_path, check_scan) -> None:
    (tmp_path / "face.obj").symlink_to("/dev/zero")
    assert_clean_failure(check_scan(tmp_path / "face.obj"), "character device")


def test_a_folder_named_like_a_scan_is_refused(tmp_path) -> None:
    (tmp_path / "face.obj").mkdir()
    with pytest.raises(ScanError, match="is a folder"):
        read_scan(tmp_path / "face.obj")
    _, record = ingest_scan(tmp_path / "face.obj", "s")
    _failed(record, "not a regular file")


def test_a_missing_file_is_still_not_found(tmp_path) -> None:
    _, record = ingest_scan(tmp_path / "face.obj", "s")
    _failed(record, "file not found")


# --- part 6: one material resolution ------------------------------------------------------


def test_companion_png_and_mtl_give_the_same_ingested_scan(tmp_path, unchanged) -> None:
    png = texture_png((96, 64), seed=3)
    with_mtl = write_textured_obj(tmp_path / "mtl", png=png)
    beside = write_textured_obj(tmp_path / "beside", png=png, mtl=False)
    check = unchanged(tmp_path)
    a, record_a = ingest_scan(with_mtl, "s", require_colour=True)
    b, record_b = ingest_scan(beside, "s", require_colour=True)
    assert record_a["has_texture"] and record_b["has_texture"]
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.visual.uv, b.visual.uv)
    np.testing.assert_array_equal(texture_array(a), texture_array(b))
    for key in ("ambient", "diffuse", "specular"):
        np.testing.assert_array_equal(
            getattr(a.visual.material, key), getattr(b.visual.material, key)
        )
    assert a.visual.material.glossiness == b.visual.material.glossiness
    check()


def test_data_errors_are_data_errors(tmp_path) -> None:
    (tmp_path / "face.obj").write_text(obj_text("/etc/passwd"))
    with pytest.raises(DataError):
        read_scan(tmp_path / "face.obj")


# --- part 6: command-line limits and configuration ----------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [("--max-upload-mb", "inf"), ("--max-upload-mb", "nan"), ("--max-upload-mb", "0"),
     ("--request-timeout", "inf"), ("--request-timeout", "-1")],
)  # fmt: skip
def test_serve_refuses_an_impossible_limit_in_one_line(flag, value) -> None:
    from face_health.command_line import main

    result = CliRunner().invoke(main, ["serve", flag, value, "--insecure-dev"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"Invalid value for '{flag}'" in result.output and "positive, finite" in result.output


def test_env_without_local_globals_warns_once_naming_the_file(tmp_path, caplog) -> None:
    from face_health.hooks import warn_ignored_local_globals

    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "globals.yml").write_text("data_dir: /elsewhere\n")
    with caplog.at_level("WARNING", logger="face_health.hooks"):
        message = warn_ignored_local_globals(tmp_path, "tiny")
        again = warn_ignored_local_globals(tmp_path, "tiny")
    assert message == again and "conf/local/globals.yml is not read with --env tiny" in message
    assert [r.getMessage() for r in caplog.records].count(message) == 1
    assert warn_ignored_local_globals(tmp_path, "local") is None
    assert warn_ignored_local_globals(tmp_path, None) is None
    assert warn_ignored_local_globals(tmp_path / "nowhere", "tiny") is None


def test_the_warning_hook_is_registered() -> None:
    from face_health.hooks import IgnoredLocalConfigHook
    from face_health.settings import HOOKS

    assert any(isinstance(hook, IgnoredLocalConfigHook) for hook in HOOKS)


def test_png_bytes_helper_is_cheap(over_cap_png) -> None:
    # the corpus stays small: 64 MP of one colour in well under a megabyte
    assert len(over_cap_png) < 1_000_000
    with Image.open(io.BytesIO(over_cap_png)) as image:
        assert image.size[0] * image.size[1] > 64_000_000


def test_check_scan_with_env_warns_that_local_globals_are_left_out(
    project_copy, check_scan, tmp_path
) -> None:
    (project_copy / "conf" / "local" / "globals.yml").write_text("data_dir: /elsewhere\n")
    scan = write_textured_obj(tmp_path / "s")
    result = check_scan(scan, "--env", "tiny")
    assert result.exit_code == 0, result.output
    assert "conf/local/globals.yml is not read with --env tiny" in result.output
