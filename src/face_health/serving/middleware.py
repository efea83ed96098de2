"""Request ids, one log line per request, and the last line of defence against stack traces.

The log holds the request id, method, path (no query string), status, upload size, the
format the content showed and timings: never a file name, a subject id, a QC reason or an
exception's message, since any of them may carry something about the person scanned.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from face_health.serving.errors import error_body

logger = logging.getLogger("face_health.serving")
REQUEST_ID_HEADER = "X-Request-ID"
#: ``request.state`` keys that the log line reports when an endpoint sets them.
LOGGED_STATE = ("body_bytes", "scan_format", "container", "n_files", "unpacked_bytes",
                "score_seconds", "qc_status", "ood_score", "ood_flag")  # fmt: skip


def internal_error_response(request_id: str | None) -> JSONResponse:
    """The 500 answer: a plain message and the request id, nothing of the cause."""
    message = f"internal error; quote request id {request_id} when reporting it"
    return JSONResponse(error_body(500, "internal_error", message, request_id), status_code=500)


def log_internal_error(
    exc: BaseException,
    request_id: str | None,
    *,
    where: str | None = None,
    exc_type: str | None = None,
) -> None:
    """Log where an unexpected error happened (type, files, lines, functions), not its
    message or local values, which may hold data from the scan. ``where`` and ``exc_type``
    describe an error raised in the scoring worker (its frames are in another process)."""
    if where is None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = " <- ".join(f"{f.filename}:{f.lineno}:{f.name}" for f in reversed(frames[-8:]))
    name = exc_type or type(exc).__name__
    logger.error("request_id=%s internal error %s at %s", request_id, name, where)


class RequestContextMiddleware:
    """Give each request an id (``X-Request-ID``), log it once, and turn any exception that
    escapes the app into a JSON 500 without re-raising it (so no server prints a trace)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # noqa: BLE001 - nothing may reach the client as a trace
            log_internal_error(exc, request_id)
            if not status:
                await internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            extras = " ".join(f"{k}={state[k]}" for k in LOGGED_STATE if k in state)
            shown: Any = status[0] if status else "none"
            if state.get("client_disconnected"):  # not an error of the service: no 500
                shown = "disconnected"
                extras = f"client disconnected before the answer {extras}".rstrip()
            logger.info(
                "request_id=%s method=%s path=%s status=%s seconds=%.3f %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                shown,
                time.perf_counter() - started,
                extras,
            )
