"""The prediction service against hostile but legitimate clients, over a real socket.

A uvicorn server runs in a thread of the test process with the service's own configuration
(:func:`face_health.serving.server.uvicorn_config`: the guarded h11 protocol), short limits,
and a light test double in the scoring worker process instead of a model, put there through
the documented hook (``create_app(scorer, ...)`` pickles the scorer into the worker): it
sleeps for ``subject_id=slow`` and segfaults for ``subject_id=crash``. Each case asserts the
status, a JSON message naming the problem, and no traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from face_health.serving import ServingSettings, create_app
from face_health.serving.server import uvicorn_config

TOKEN = "reliability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
SETTINGS = dict(
    token=TOKEN,
    request_timeout_s=4.0,
    header_timeout_s=2.0,
    max_header_kb=8,
    max_url_kb=2,
    min_upload_kb_per_s=1.0,
    upload_rate_window_s=2.0,
    max_pending=1,
    worker_start_timeout_s=180.0,
)


class DoubleScorer:
    """Stands in for the model in the worker: quick, or slow, or crashing, by subject id."""

    run_id = "double"

    def score(self, source: Any, subject_id: str | None = None) -> dict[str, Any]:
        size = Path(source).stat().st_size  # the saved upload is there to read
        if subject_id == "slow":
            time.sleep(60)  # far past the time limit: only killing the worker stops it
        if subject_id == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        return {
            "subject_id": subject_id,
            "model_run_id": self.run_id,
            "qc_status": "ok",
            "qc_reason": "",
            "seconds": 0.01,
            "age": float(size),
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    """(url, port, app) of a running server whose scoring worker is ready."""
    import uvicorn

    app = create_app(DoubleScorer(), ServingSettings(**SETTINGS))
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, app.state.settings, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, 180)
    yield url, port, app
    server.should_exit = True
    thread.join(30)
    app.state.scoring.close()


def wait_until_ready(url: str, seconds: float) -> list[int]:
    """Poll /healthz until 200; the statuses seen on the way."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/healthz", timeout=5).status_code
            seen.append(status)
            if status == 200:
                return seen
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service was not ready within {seconds} s (saw {seen})")


def raw_exchange(port: int, parts: list[bytes], pause: float = 0.0, limit: float = 30.0):
    """Send ``parts`` (``pause`` s apart) on a raw socket, read until the server closes.

    Returns (status, headers, body, seconds until the server closed the connection).
    """
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.05)
        closed = False
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            received, closed = _read(sock, received, pause)
            if closed:
                break
        while not closed and time.monotonic() - started < limit:
            received, closed = _read(sock, received, 0.1)
        seconds = time.monotonic() - started
    assert closed, f"the server kept the connection open for {limit} s"
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else None
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body, seconds


def _read(sock: socket.socket, received: bytes, seconds: float) -> tuple[bytes, bool]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if time.monotonic() >= deadline:
                return received, False
            continue
        except ConnectionResetError:
            return received, True
        if not data:
            return received, True
        received += data


def assert_json_error(status: int | None, headers: dict, body: bytes, expected: int, code: str):
    assert status == expected, (status, body[:300])
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["status"] == expected and error["error"] == code and error["detail"]
    assert b"Traceback" not in body
    return error


def post(url: str, subject_id: str, data: bytes = OBJ, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/predictions",
        params={"subject_id": subject_id},
        files={"scan": ("scan.obj", data)},
        headers=AUTH,
        timeout=timeout,
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == status and body["error"] == code and body["detail"]
    assert "Traceback" not in response.text
    return body


# --------------------------------------------------------------------- slow clients


def test_a_valid_request_is_served(service) -> None:
    url, _, _ = service
    response = post(url, "S1")
    assert response.status_code == 200, response.text
    assert response.json()["age"]["value"] == float(len(OBJ))


def test_a_header_sent_a_line_at_a_time_is_cut_off_at_the_header_timeout(service) -> None:
    """A line every 0.5 s would keep the head coming for 20 s; the server answers 408 and
    closes once the 2 s header timeout has passed."""
    _, port, _ = service
    parts = [b"POST /v1/predictions HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 40
    status, headers, body, seconds = raw_exchange(port, parts, pause=0.5)
    error = assert_json_error(status, headers, body, 408, "header_timeout")
    assert "2 s" in error["detail"]
    assert seconds < SETTINGS["header_timeout_s"] + 1.5


def test_an_idle_connection_is_closed_at_the_header_timeout(service) -> None:
    _, port, _ = service
    status, _, _, seconds = raw_exchange(port, [], limit=10)
    assert status is None and seconds < SETTINGS["header_timeout_s"] + 1.5


def test_an_oversized_header_is_431(service) -> None:
    _, port, _ = service
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    status, headers, body, _ = raw_exchange(
        port, [head[i : i + 4096] for i in range(0, len(head), 4096)]
    )
    error = assert_json_error(status, headers, body, 431, "headers_too_large")
    assert "8 KB" in error["detail"]


def test_a_long_url_is_414_json(service) -> None:
    _, port, _ = service
    request = b"GET /healthz?x=" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body, _ = raw_exchange(port, [request])
    error = assert_json_error(status, headers, body, 414, "uri_too_long")
    assert "URL" in error["detail"] and "2 KB" in error["detail"]


def test_garbage_instead_of_http_is_400_json(service) -> None:
    _, port, _ = service
    status, headers, body, _ = raw_exchange(port, [b"\x16\x03\x01 not http at all\r\n\r\n"])
    assert_json_error(status, headers, body, 400, "bad_request")


def test_a_slow_body_gets_408_and_holds_no_prediction_slot(service) -> None:
    """With max_pending 1, a body trickling in at 2 bytes/s (under 1 KB/s) does not take
    the one slot: a valid request sent meanwhile is served, then the slow one gets 408."""
    url, port, _ = service
    body = OBJ * 40
    head = (
        b"POST /v1/predictions?subject_id=drip HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/octet-stream\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    outcome: dict[str, Any] = {}

    def slow_client() -> None:
        outcome["result"] = raw_exchange(port, [head] + [bytes([b]) for b in body], pause=0.5)

    thread = threading.Thread(target=slow_client)
    thread.start()
    time.sleep(0.5)
    served = post(url, "meanwhile")
    assert served.status_code == 200, served.text  # before: 503 busy at once
    thread.join(30)
    status, headers, answer, seconds = outcome["result"]
    error = assert_json_error(status, headers, answer, 408, "upload_too_slow")
    assert "KB/s" in error["detail"]
    assert seconds < SETTINGS["upload_rate_window_s"] + 2.5
    assert post(url, "after").status_code == 200  # the slot is free


def test_a_client_that_disconnects_is_logged_as_such(service, caplog) -> None:
    url, port, _ = service
    head = (
        b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n".encode()
    )
    with caplog.at_level(logging.INFO, logger="face_health.serving"):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + OBJ * 10)
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while "disconnected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.1)
    line = next(r.getMessage() for r in caplog.records if "disconnected" in r.getMessage())
    assert "status=disconnected" in line
    assert "status=500" not in caplog.text and "internal error" not in caplog.text
    assert post(url, "after-disconnect").status_code == 200


# ---------------------------------------------------------------- the scoring worker


def test_a_timeout_kills_the_scoring_worker_and_a_new_one_takes_over(service) -> None:
    url, _, app = service
    pool = app.state.scoring
    before = pool.pid
    assert before is not None
    started = time.monotonic()
    body = assert_error(post(url, "slow"), 504, "timeout")
    assert "4 s" in body["detail"] and "stopped" in body["detail"]
    assert time.monotonic() - started < SETTINGS["request_timeout_s"] + 3
    deadline = time.monotonic() + 10
    while _alive(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(before), "the worker that ran the slow job is still there"
    # While the replacement loads, /healthz and predictions say 503 with Retry-After.
    starting = httpx.get(f"{url}/healthz", timeout=5)
    if starting.status_code == 503:
        assert starting.json()["error"] == "worker_starting"
        assert int(starting.headers["retry-after"]) >= 1
    wait_until_ready(url, 180)
    assert pool.pid not in (None, before)
    assert post(url, "next").status_code == 200


def test_a_crashed_worker_is_500_with_the_reason_and_replaced(service) -> None:
    url, _, app = service
    pool = app.state.scoring
    before = pool.pid
    body = assert_error(post(url, "crash"), 500, "worker_crashed")
    assert "SIGSEGV" in body["detail"] and "new scoring process" in body["detail"]
    wait_until_ready(url, 180)
    assert pool.pid not in (None, before)
    assert post(url, "next").status_code == 200


def test_a_worker_killed_while_idle_is_replaced(service) -> None:
    """The out-of-memory killer (SIGKILL) may strike between scans: the service notices,
    says 503 while a new worker loads, and then scores again; it never hangs."""
    url, _, app = service
    pool = app.state.scoring
    before = pool.pid
    os.kill(before, signal.SIGKILL)
    time.sleep(0.3)  # delivered and reaped
    wait_until_ready(url, 180)
    assert pool.pid not in (None, before)
    assert post(url, "after-oom").status_code == 200


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ----------------------------------------------------------------------------- docs


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_need_no_network(service, page: str) -> None:
    """Every script, style sheet and icon of the documentation pages is served by the
    service itself, and is there."""
    import re

    url, _, _ = service
    html = httpx.get(f"{url}{page}", timeout=10)
    assert html.status_code == 200
    assert "http://" not in html.text and "https://" not in html.text, html.text
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html.text)
    assets += re.findall(r"url:\s*'([^']+)'", html.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        response = httpx.get(f"{url}{asset}", timeout=10)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset


def missing_model() -> Any:
    raise LookupError("no trained model at /nowhere: run `kedro run --pipelines=training` first")


def test_a_worker_that_cannot_load_the_model_stops_the_start_with_the_reason() -> None:
    """What ``face-health serve`` shows when the model cannot be loaded in the worker: the
    loader's own message (the command turns it into one line), not a hang or a trace."""
    from face_health.serving.worker import ScoringPool, WorkerStartFailed

    pool = ScoringPool(missing_model, start_timeout_s=120)
    try:
        with pytest.raises(WorkerStartFailed, match="no trained model at /nowhere"):
            pool.start(wait=True)
        assert not pool.ready and pool.state == "failed"
    finally:
        pool.close()
    assert pool.pid is None
