"""The FastAPI application: ``POST /v1/predictions``, ``GET /v1/model``, ``GET /healthz``.

:func:`create_app` takes a loaded scorer and the settings, so tests and the ``serve`` command
build the same app. Scoring runs on one dedicated thread: the method renders views with one
OpenGL context and fits a CPU, so predictions queue rather than compete; a request that
times out while queued is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from face_health.serving.errors import ApiError, error_body
from face_health.serving.middleware import (
    RequestContextMiddleware,
    internal_error_response,
    log_internal_error,
)
from face_health.serving.responses import (
    ERROR_RESPONSES,
    UPLOAD_BODY,
    Health,
    Prediction,
)
from face_health.serving.scorer import json_record
from face_health.serving.settings import ServingSettings
from face_health.serving.uploads import Limits, prepare_scan, receive_upload, remove_folder

SUBJECT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_SUBJECT_ID = "scan"


class Scorer(Protocol):
    """What the app needs of a model: :class:`face_health.serving.scorer.ScanScorer` fits."""

    run_id: str

    def score(self, source: Any, subject_id: str | None = None) -> dict[str, Any]: ...


def create_app(
    scorer: Scorer, settings: ServingSettings, model_info: dict[str, Any] | None = None
) -> FastAPI:
    """Build the service around a loaded model.

    Parameters
    ----------
    scorer : Scorer
        Scores one scan file; ``score`` never raises for a bad scan.
    settings : ServingSettings
        Token, limits, time limit and storage folder (host and port are uvicorn's business).
    model_info : dict, optional
        What ``GET /v1/model`` answers (see
        :func:`face_health.serving.model_info.describe_model`); by default the run id only.

    Raises
    ------
    ValueError
        Without a token unless ``settings.insecure_dev``.
    """
    if not settings.token and not settings.insecure_dev:
        raise ValueError("the service needs a bearer token (or insecure_dev for local use)")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-health-scorer")
    info = model_info or {"uri": None, "run_id": scorer.run_id or None}
    limits = Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_zip_entries=settings.max_zip_entries,
        max_compression_ratio=settings.max_compression_ratio,
        max_texture_pixels=settings.max_texture_pixels,
    )
    pending = {"n": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="face_health prediction service",
        summary="3D face scan -> age, clinical parameters and condition probabilities",
        version=_package_version(),
        lifespan=lifespan,
    )
    bearer = HTTPBearer(auto_error=False, description="FACE_HEALTH_API_TOKEN")

    def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if not settings.token:
            return  # --insecure-dev on loopback
        if credentials is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing bearer token: send the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), settings.token.encode()):
            raise ApiError(
                401,
                "unauthorized",
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    @app.get("/healthz", response_model=Health, tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the process is up and holds a model (no token needed)."""
        return {"status": "ok"}

    v1 = APIRouter(
        prefix="/v1", dependencies=[Depends(require_token)], responses={401: ERROR_RESPONSES[401]}
    )

    @v1.get("/model", tags=["model"])
    def model() -> dict[str, Any]:
        """The model being served: URI, run id, when its run started and ended, the run's
        tags and parameters about the data it learnt from, and the targets it predicts."""
        return info

    @v1.post(
        "/predictions",
        response_model=Prediction,
        tags=["predictions"],
        openapi_extra={"requestBody": UPLOAD_BODY},
        responses={code: ERROR_RESPONSES[code] for code in (400, 413, 415, 422, 503, 504)},
    )
    async def predictions(
        request: Request,
        subject_id: str | None = Query(
            None, description="an id to echo back (letters, digits, '_', '.', '-'; 1-64)"
        ),
    ) -> dict[str, Any]:
        """Score one scan upload: every target with its unit, the condition probabilities,
        the out-of-distribution score (``ood``: 1.0 = the 99th percentile of the validation
        subjects, flagged beyond), the QC and the model's run id. A scan that fails QC is
        answered with 422."""
        if pending["n"] >= settings.max_pending:
            raise ApiError(503, "busy", "too many predictions in flight; retry in a moment")
        pending["n"] += 1
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                return await _predict(request, subject_id)
        except TimeoutError as exc:
            raise ApiError(
                504,
                "timeout",
                f"the prediction took longer than the limit of {settings.request_timeout_s:g} s",
            ) from exc
        finally:
            pending["n"] -= 1

    async def _predict(request: Request, subject_id: str | None) -> dict[str, Any]:
        request_id = request.state.request_id
        folder = _workdir(settings.storage_dir, request_id)
        job: Future | None = None
        try:
            upload = await receive_upload(
                request.stream(),
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                folder,
                limits.max_upload_bytes,
            )
            request.state.body_bytes = upload.body_bytes
            sid = _subject_id(subject_id or upload.fields.get("subject_id"))
            scan = await run_in_threadpool(prepare_scan, upload.path, folder, limits)
            request.state.scan_format = scan.format
            request.state.container = scan.container
            request.state.n_files = scan.n_files
            request.state.unpacked_bytes = scan.uncompressed_bytes
            job = executor.submit(scorer.score, scan.path, sid)
            record = await asyncio.wrap_future(job)  # a cancelled wait cancels a queued job
        finally:
            if settings.storage_dir is None:
                _remove_when_done(folder, job)
        request.state.score_seconds = record.get("seconds")
        request.state.qc_status = record.get("qc_status")
        if "ood_score" in record:  # drift shows in the service's log, not only in answers
            request.state.ood_score = round(float(record["ood_score"]), 3)
            request.state.ood_flag = record["ood_flag"]
        body = json_record(record)
        body["request_id"] = request_id
        if record.get("qc_status") == "failed":
            raise ApiError(
                422,
                "qc_failed",
                f"the scan failed quality control: {body['qc']['reason']}",
                extra={"qc": body["qc"], "model_run_id": body["model_run_id"]},
            )
        return body

    app.include_router(v1)
    _install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.state.settings = settings
    app.state.model_info = info
    return app


def _install_error_handlers(app: FastAPI) -> None:
    def respond(
        request: Request,
        status: int,
        code: str,
        message: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        content = error_body(status, code, message, request_id) | (body or {})
        return JSONResponse(content, status_code=status, headers=headers or None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(request, exc.status, exc.code, exc.message, exc.extra, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: f"not found: {request.url.path}", 405: "method not allowed"}
        message = messages.get(exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return respond(request, exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return respond(request, 400, "invalid_request", f"invalid request: {where}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log_internal_error(exc, request_id)
        return internal_error_response(request_id)


def _subject_id(value: str | None) -> str:
    if value is None or value == "":
        return DEFAULT_SUBJECT_ID
    if not SUBJECT_ID.fullmatch(value):
        raise ApiError(
            400, "invalid_subject_id", "subject_id: 1-64 letters, digits, '_', '.' or '-'"
        )
    return value


def _workdir(storage_dir: Path | None, request_id: str) -> Path:
    """A private folder for one upload: kept under ``storage_dir`` when configured, else a
    temporary one that is removed after the request."""
    if storage_dir is None:
        return Path(tempfile.mkdtemp(prefix="face_health_upload_"))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = storage_dir / f"{stamp}_{request_id}"
    folder.mkdir(parents=True, mode=0o700)
    return folder


def _remove_when_done(folder: Path, job: Future | None) -> None:
    # A scoring job that outlived its request (timeout) still reads the folder.
    if job is not None and not job.done():
        job.add_done_callback(lambda _: remove_folder(folder))
    else:
        remove_folder(folder)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("face_health")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
