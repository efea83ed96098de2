"""The prediction service over HTTP, with the model that the tiny ``training`` run logged."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from face_health import schema
from face_health.command_line import main
from face_health.serving import ServingSettings, SettingsError, check_startup, create_app
from face_health.serving.model_info import describe_model
from face_health.serving.scorer import load_scorer
from face_health.serving.settings import TOKEN_ENV_VAR, load_settings

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "models:/face_health@newest"


@pytest.fixture(scope="module")
def project(trained_tiny_project: Path) -> Path:
    return trained_tiny_project


@pytest.fixture(scope="module")
def tracking_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


@pytest.fixture(scope="module")
def scorer(tracking_uri: str) -> Any:
    return load_scorer(MODEL, tracking_uri)


@pytest.fixture(scope="module")
def scans(project: Path) -> Path:
    return project / "data" / "tiny" / "01_raw" / "synthetic_cohort" / "scans"


@pytest.fixture(scope="module")
def scan_zip(scans: Path) -> bytes:
    """S0001 as a phone app sends it: OBJ + MTL + texture in one zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for suffix in (".obj", ".mtl", ".png"):
            zf.write(scans / f"S0001{suffix}", f"S0001{suffix}")
    return buffer.getvalue()


#: The scoring pools of the apps a test made, closed (worker processes ended) after it.
OPEN_POOLS: list[Any] = []


@pytest.fixture(autouse=True)
def _close_scoring_workers():
    yield
    while OPEN_POOLS:
        OPEN_POOLS.pop().close()


def make_client(
    scorer: Any, info: dict | None = None, *, ready: bool = False, **settings: Any
) -> TestClient:
    """A client of an app around ``scorer`` (pickled into its scoring worker process); with
    ``ready``, the worker has loaded it (else the first prediction answers 503 while it
    starts). The worker is ended after the test."""
    app = create_app(scorer, ServingSettings(token=TOKEN, **settings), info)
    OPEN_POOLS.append(app.state.scoring)
    if ready:
        app.state.scoring.start(wait=True)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(scorer: Any, tracking_uri: str):
    info = describe_model(MODEL, scorer.run_id, tracking_uri)
    app = create_app(scorer, ServingSettings(token=TOKEN), info)
    app.state.scoring.start(wait=True)
    yield TestClient(app, raise_server_exceptions=False)
    app.state.scoring.close()


def post_scan(client: TestClient, name: str, data: bytes, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", AUTH)
    return client.post("/v1/predictions", files={"scan": (name, data)}, headers=headers, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["detail"] and body["request_id"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"] == code, body
    return body


def assert_prediction(body: dict, run_id: str) -> None:
    for target in schema.TARGETS:
        assert isinstance(body[target.name]["value"], float), target.name
        unit = target.unit if target.kind == "regression" else "probability"
        assert body[target.name]["unit"] == unit
    for condition in schema.BINARY_TARGETS:
        assert 0.0 <= body[condition]["value"] <= 1.0
    assert 0 < body["age"]["value"] < 120
    assert body["qc"]["status"] in ("ok", "warning")
    assert body["model_run_id"] == run_id


# ------------------------------------------------------------------------ predictions


def test_zip_of_obj_mtl_texture_is_scored(client: TestClient, scan_zip: bytes, scorer: Any):
    response = post_scan(client, "phone_upload.zip", scan_zip, params={"subject_id": "P-17"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction(body, scorer.run_id)
    assert body["subject_id"] == "P-17"
    assert set(body["ood"]) == {"score", "flag", "spaces"} and body["ood"]["spaces"]
    # Nothing to warn about but, possibly, the distance from the tiny cohort: S0001 is one of
    # its ~6 training subjects (in-sample for the facial-omics PCA) and the threshold is one
    # validation subject's distance.
    if body["ood"]["flag"]:
        assert body["qc"]["status"] == "warning"
        assert body["qc"]["reason"].startswith("out of distribution"), body["qc"]["reason"]
    else:
        assert body["qc"]["status"] == "ok", body["qc"]["reason"]


def test_single_obj_without_its_texture_is_refused_with_the_reason(
    client: TestClient, scans: Path, scorer: Any
) -> None:
    """An OBJ sent alone (raw body) is read, but without its MTL and texture it has no
    colour, which the model needs: 422 with the reason, not a made-up answer."""
    data = (scans / "S0001.obj").read_bytes()
    response = client.post("/v1/predictions", content=data, headers=AUTH)
    body = assert_error(response, 422, "qc_failed")
    assert body["qc"]["status"] == "failed" and "no colour" in body["qc"]["reason"]
    assert body["model_run_id"] == scorer.run_id


def test_failed_qc_is_422_with_the_reason(client: TestClient) -> None:
    points_only = "".join(f"v {i} {i * 2} {i % 7}\n" for i in range(100)).encode()
    body = assert_error(post_scan(client, "scan.obj", points_only), 422, "qc_failed")
    assert body["qc"]["status"] == "failed" and "zero faces" in body["qc"]["reason"]
    assert "zero faces" in body["detail"]


# ------------------------------------------------------------------ service and model


def test_healthz_needs_no_token(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_model_info_says_which_model_and_when(client: TestClient, scorer: Any) -> None:
    response = client.get("/v1/model", headers=AUTH)
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["run_id"] == scorer.run_id and info["uri"] == MODEL
    assert info["start_time"].startswith("20") and info["status"] == "FINISHED"
    assert info["registered_model"]["alias"] == "newest"
    assert isinstance(info["tags"], dict) and isinstance(info["data"], dict)
    assert any(key.startswith("cohort.") for key in info["data"])
    assert [t["name"] for t in info["targets"]] == list(schema.TARGET_NAMES)


def test_model_info_when_the_run_is_not_in_the_backend(tracking_uri: str) -> None:
    info = describe_model("/some/model/folder", "0" * 32, tracking_uri)
    assert info["run_id"] == "0" * 32 and info["start_time"] is None and info["note"]
    assert info["tags"] == {} and len(info["targets"]) == len(schema.TARGETS)


def test_openapi_docs_at_the_usual_paths(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/predictions", "/v1/model", "/healthz"} <= set(spec["paths"])
    post = spec["paths"]["/v1/predictions"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"413", "415", "422", "504"} <= set(post["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text and "https://" not in docs.text


def test_unknown_path_is_404_json(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here", headers=AUTH), 404, "not_found")
    assert_error(client.get("/v1/predictions", headers=AUTH), 405)


# ----------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
@pytest.mark.parametrize("path", ["/v1/model", "/v1/predictions"])
def test_token_is_required(client: TestClient, headers: dict, path: str) -> None:
    response = client.request("GET" if path == "/v1/model" else "POST", path, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_too_large_upload_is_413_while_streaming(scorer: Any, scans: Path) -> None:
    client = make_client(scorer, max_upload_mb=0.5)
    data = (scans / "S0001.obj").read_bytes()
    assert_error(post_scan(client, "scan.obj", data), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit must hold while the body streams
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    response = client.post("/v1/predictions", content=chunks(), headers=AUTH)
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("scan.obj", b"\x89PNG\r\n\x1a\n" + bytes(100)),  # an image behind a mesh's name
        ("scan.obj", b"%PDF-1.7\n" + bytes(100)),
        ("scan.ply", b"random words, not a mesh\n" * 10),
        ("scan.stl", os.urandom(1000)),
    ],
)
def test_unknown_content_is_415(client: TestClient, name: str, data: bytes) -> None:
    assert_error(post_scan(client, name, data), 415, "unsupported_media_type")


def zip_of(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../../evil.obj", "scan/../../evil.obj", "/tmp/evil.obj"])
def test_zip_slip_is_refused(client: TestClient, scans: Path, name: str) -> None:
    data = zip_of({name: (scans / "S0001.mtl").read_bytes()})
    assert_error(post_scan(client, "scan.zip", data), 400, "unsafe_zip_path")
    assert not Path("/tmp/evil.obj").exists()


def test_zip_bomb_is_refused(client: TestClient) -> None:
    bomb = zip_of({"scan.obj": b"v 0 0 0\n" * 2_000_000})  # 16 MB that zip to about 30 kB
    assert_error(post_scan(client, "scan.zip", bomb), 413, "compression_ratio")


def test_zip_over_the_unpacked_size_is_refused(scorer: Any, scan_zip: bytes) -> None:
    client = make_client(scorer, max_uncompressed_mb=1)
    assert_error(post_scan(client, "scan.zip", scan_zip), 413, "payload_too_large")


def test_zip_with_too_many_entries_is_refused(scorer: Any, scans: Path) -> None:
    client = make_client(scorer, max_zip_entries=3)
    data = zip_of({f"part{i}.mtl": (scans / "S0001.mtl").read_bytes() for i in range(4)})
    assert_error(post_scan(client, "scan.zip", data), 413, "too_many_entries")


def test_huge_texture_is_refused(client: TestClient, scans: Path) -> None:
    buffer = io.BytesIO()
    Image.new("L", (12000, 9000)).save(buffer, format="PNG")  # 108 MP in a few hundred kB
    entries = {"S0001.obj": (scans / "S0001.obj").read_bytes(), "S0001.png": buffer.getvalue()}
    data = zip_of(entries, zipfile.ZIP_STORED)
    assert_error(post_scan(client, "scan.zip", data), 413, "texture_too_large")


def test_unsafe_reference_in_a_file_is_refused(client: TestClient) -> None:
    data = b"mtllib ../../../../etc/passwd\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
    assert_error(post_scan(client, "scan.obj", data), 400, "unsafe_reference")


def test_several_files_are_refused(client: TestClient, scans: Path) -> None:
    files = [("scan", ("a.obj", b"v 0 0 0\n")), ("scan", ("b.obj", b"v 0 0 0\n"))]
    response = client.post("/v1/predictions", files=files, headers=AUTH)
    assert_error(response, 400, "several_files")


def test_bad_subject_id_is_refused(client: TestClient, scans: Path) -> None:
    response = post_scan(client, "a.obj", b"v 0 0 0\n", params={"subject_id": "../x y"})
    assert_error(response, 400, "invalid_subject_id")


class SlowScorer:
    """The real scorer, after a wait: a scan that takes longer than the time limit."""

    def __init__(self, scorer: Any, seconds: float) -> None:
        self.scorer, self.seconds, self.run_id = scorer, seconds, scorer.run_id

    def score(self, source: Any, subject_id: str | None = None) -> dict[str, Any]:
        time.sleep(self.seconds)
        return self.scorer.score(source, subject_id)


class BrokenScorer:
    run_id = "broken"

    def score(self, source: Any, subject_id: str | None = None) -> dict[str, Any]:
        raise RuntimeError(f"secret face data from {source}")


def test_timeout_is_504_and_stops_the_scoring(scorer: Any, scan_zip: bytes) -> None:
    """At the time limit the worker scoring the scan is killed (its work stops with the
    request), and a new one loads the model; until it is ready, 503 with Retry-After."""
    client = make_client(SlowScorer(scorer, 3.0), ready=True, request_timeout_s=1.0)
    pool = client.app.state.scoring
    worker = pool.pid
    started = time.perf_counter()
    body = assert_error(post_scan(client, "scan.zip", scan_zip), 504, "timeout")
    assert time.perf_counter() - started < 2.5 and "stopped" in body["detail"]
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left scoring
        os.kill(worker, 0)
    if not pool.ready:  # the replacement unpickles the model for a few seconds
        busy = post_scan(client, "scan.zip", scan_zip)
        assert_error(busy, 503, "worker_starting")
        assert int(busy.headers["retry-after"]) >= 1
        assert_error(client.get("/healthz"), 503, "worker_starting")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_too_many_predictions_in_flight_is_503(scorer: Any, scan_zip: bytes) -> None:
    """With one prediction allowed in flight, a second one while the first is scored is
    turned away at once with 503 (the first still gets its answer)."""
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(SlowScorer(scorer, 2.0), ready=True, max_pending=1)
    with ThreadPoolExecutor(max_workers=1) as other:
        first = other.submit(post_scan, client, "first.zip", scan_zip)
        time.sleep(0.5)  # the first upload is being scored
        started = time.perf_counter()
        second = post_scan(client, "second.zip", scan_zip)
        assert_error(second, 503, "busy")
        assert int(second.headers["retry-after"]) >= 1
        assert time.perf_counter() - started < 1.0
        assert first.result().status_code == 200


def test_unexpected_error_is_500_json_without_face_data(
    scorer: Any, scans: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(BrokenScorer(), ready=True)
    with caplog.at_level(logging.INFO, logger="face_health.serving"):
        response = post_scan(client, "Jane_Doe.obj", (scans / "S0001.obj").read_bytes())
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert body["request_id"] in caplog.text and "RuntimeError" in caplog.text
    assert "secret" not in caplog.text and "Jane_Doe" not in caplog.text


# ------------------------------------------------------------------------------ privacy


def test_uploads_are_deleted_and_logs_hold_no_face_data(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = "".join(f"v {i} {i * 2} {i % 7}\n" for i in range(100)).encode()
    with caplog.at_level(logging.INFO, logger="face_health.serving"):
        response = post_scan(client, "John_Smith_1970.obj", data, params={"subject_id": "MRN1234"})
    assert response.status_code == 422
    assert list(tmp_path.iterdir()) == []
    log = caplog.text
    assert response.headers["x-request-id"] in log and "status=422" in log
    assert "format=obj" in log and f"body_bytes={len(response.request.content)}" in log
    for secret in ("John_Smith", "MRN1234", "zero faces", "v 0 0 0"):
        assert secret not in log


def test_uploads_are_kept_only_in_the_storage_folder(scorer: Any, tmp_path: Path) -> None:
    client = make_client(scorer, ready=True, storage_dir=tmp_path / "kept")
    response = post_scan(client, "scan.obj", b"v 0 0 0\nv 1 1 1\n")
    assert response.status_code == 422
    [folder] = (tmp_path / "kept").iterdir()
    assert folder.name.endswith(response.headers["x-request-id"])
    assert (folder / "scan" / "scan.obj").read_bytes() == b"v 0 0 0\nv 1 1 1\n"


# --------------------------------------------------------------------- settings, startup


def test_startup_is_refused_without_a_token() -> None:
    with pytest.raises(SettingsError, match=TOKEN_ENV_VAR):
        check_startup(ServingSettings(host="127.0.0.1"))
    with pytest.raises(SettingsError, match="loopback"):
        check_startup(ServingSettings(host="0.0.0.0", insecure_dev=True))
    with pytest.raises(SettingsError, match="too short"):
        check_startup(ServingSettings(token="secret"))
    check_startup(ServingSettings(host="127.0.0.1", insecure_dev=True))
    check_startup(ServingSettings(host="::1", insecure_dev=True))
    check_startup(ServingSettings(host="0.0.0.0", token=TOKEN))
    with pytest.raises(SettingsError, match="both"):
        check_startup(ServingSettings(token=TOKEN, ssl_certfile=Path(__file__)))
    with pytest.raises(ValueError, match="token"):
        create_app(object(), ServingSettings())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"header_timeout_s": 0}, "header_timeout_s"),
        ({"min_upload_kb_per_s": float("inf")}, "min_upload_kb_per_s"),
        ({"max_upload_mb": float("inf")}, "max_upload_mb"),
        ({"max_url_kb": 64, "max_header_kb": 32}, "max_url_kb"),
        ({"worker_start_method": "fork"}, "spawn or forkserver"),
    ],
)
def test_connection_and_worker_settings_are_checked(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        check_startup(ServingSettings(token=TOKEN, **overrides))


def test_insecure_dev_serves_without_a_token(scorer: Any) -> None:
    app = create_app(scorer, ServingSettings(insecure_dev=True))
    assert TestClient(app).get("/v1/model").status_code == 200


def test_settings_layers(tmp_path: Path) -> None:
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "conf" / "base" / "serving.yml").write_text(
        "max_upload_mb: 20\nstorage_dir: kept\ntoken: null\n"
    )
    (tmp_path / "conf" / "local" / "serving.yml").write_text(f"token: {TOKEN}\nport: 9000\n")
    settings = load_settings(tmp_path / "conf", environ={})
    assert (settings.max_upload_mb, settings.port, settings.token) == (20, 9000, TOKEN)
    assert settings.storage_dir == tmp_path.resolve() / "kept"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    from_env = load_settings(tmp_path, environ={TOKEN_ENV_VAR: "from-the-environment-1234"})
    assert from_env.token == "from-the-environment-1234"
    assert from_env.with_overrides(port=1234, model=None).port == 1234
    (tmp_path / "conf" / "local" / "serving.yml").write_text("insecure_dev: true\n")
    with pytest.raises(SettingsError, match="flag"):
        load_settings(tmp_path, environ={})


def test_project_serving_yml_has_no_token() -> None:
    path = Path(__file__).resolve().parents[1] / "conf" / "base" / "serving.yml"
    values = yaml.safe_load(path.read_text())
    assert values["token"] is None and values["storage_dir"] is None
    assert set(values) <= set(ServingSettings.__dataclass_fields__) - {"insecure_dev"}


def test_serve_command_refuses_to_start_without_a_token(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 1 and TOKEN_ENV_VAR in result.output


# ------------------------------------------------------------------- the real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_served_over_http(project: Path, tracking_uri: str, scan_zip: bytes, scorer: Any):
    port = free_port()
    env = {**os.environ, TOKEN_ENV_VAR: TOKEN, "KEDRO_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-m", "face_health.command_line", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model", MODEL, "--tracking-uri", tracking_uri]  # fmt: skip
    log = project / f"serve_{port}.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert httpx.post(f"{url}/v1/predictions", timeout=10).status_code == 401
        response = httpx.post(
            f"{url}/v1/predictions",
            files={"scan": ("S0001.zip", scan_zip, "application/zip")},
            headers=AUTH,
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert_prediction(response.json(), scorer.run_id)
        assert httpx.get(f"{url}/v1/model", headers=AUTH).json()["run_id"] == scorer.run_id
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "status=200" in text and "format=obj" in text and "S0001" not in text
