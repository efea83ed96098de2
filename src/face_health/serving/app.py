"""The FastAPI application: ``POST /v1/predictions``, ``GET /v1/model``, ``GET /healthz``.

:func:`create_app` takes a scorer (or a :class:`~face_health.serving.worker.ScoringPool`
that loads one) and the settings, so tests and the ``serve`` command build the same app.
Scoring runs in one worker process (:mod:`face_health.serving.worker`): the method renders
views with one OpenGL context and fits a CPU, so predictions queue rather than compete; at a
request's time limit the worker is killed, so the work stops with the request, and a new
worker takes its place. A request that times out while queued is dropped from the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import re
import tempfile
import time
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

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
from face_health.serving.uploads import (
    Limits,
    paced,
    prepare_scan,
    receive_upload,
    remove_folder,
)
from face_health.serving.worker import (
    JobTimeout,
    Preloaded,
    ScoringFailed,
    ScoringPool,
    WorkerCrashed,
    WorkerError,
)

#: Where the Swagger UI / ReDoc assets are served from (the service needs no network).
DOCS_ASSETS = "/docs-assets"
SUBJECT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_SUBJECT_ID = "scan"


class Scorer(Protocol):
    """What the app needs of a model: :class:`face_health.serving.scorer.ScanScorer` fits."""

    run_id: str

    def score(self, source: Any, subject_id: str | None = None) -> dict[str, Any]: ...


def create_app(
    scorer: Scorer | ScoringPool,
    settings: ServingSettings,
    model_info: dict[str, Any] | None = None,
) -> FastAPI:
    """Build the service around a model.

    Parameters
    ----------
    scorer : Scorer or ScoringPool
        Scores one scan file; ``score`` never raises for a bad scan. A scorer object is
        pickled into the scoring worker process, which is started on the first prediction
        (or when the app starts); a :class:`ScoringPool` is used as it is (the ``serve``
        command passes one that loads the model in the worker).
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
    if isinstance(scorer, ScoringPool):
        pool = scorer
    else:
        pool = ScoringPool(
            Preloaded(scorer),
            start_method=settings.worker_start_method,
            start_timeout_s=settings.worker_start_timeout_s,
        )
    run_id = pool.run_id if isinstance(scorer, ScoringPool) else scorer.run_id
    info = model_info or {"uri": None, "run_id": run_id or None}
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
        pool.start()  # a no-op when the serve command started it already
        yield
        await asyncio.to_thread(pool.close)

    # Swagger UI and ReDoc from the assets fastapi-offline ships, not from a public CDN.
    app = FastAPIOffline(
        title="face_health prediction service",
        summary="3D face scan -> age, clinical parameters and condition probabilities",
        version=_package_version(),
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
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

    def not_ready() -> ApiError:
        wait = pool.retry_after_s()
        if pool.state == "failed":
            message = "the scoring worker could not load the model; the service is retrying"
        else:
            message = "the scoring worker is starting (loading the model); retry in a moment"
        return ApiError(503, "worker_starting", message, headers={"Retry-After": str(wait)})

    @app.get(
        "/healthz", response_model=Health, tags=["service"], responses={503: ERROR_RESPONSES[503]}
    )
    def healthz() -> dict[str, str]:
        """Readiness: a scoring worker holds the model and takes scans (no token needed);
        503 with ``Retry-After`` while a worker is (re)starting."""
        pool.start()
        if not pool.ready:
            raise not_ready()
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
        deadline = time.monotonic() + settings.request_timeout_s
        timeout = ApiError(
            504,
            "timeout",
            f"the prediction took longer than the limit of {settings.request_timeout_s:g} s; "
            "its scoring was stopped",
        )
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                return await _predict(request, subject_id, deadline)
        except (TimeoutError, JobTimeout) as exc:
            raise timeout from exc

    async def _predict(request: Request, subject_id: str | None, deadline: float) -> dict[str, Any]:
        request_id = request.state.request_id
        folder = _workdir(settings.storage_dir, request_id)
        job: Future | None = None
        admitted = False
        try:
            # The upload first: a slow client holds its connection, never a prediction slot.
            upload = await receive_upload(
                paced(
                    request.stream(), settings.min_upload_bytes_per_s, settings.upload_rate_window_s
                ),
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                folder,
                limits.max_upload_bytes,
            )
            request.state.body_bytes = upload.body_bytes
            sid = _subject_id(subject_id or upload.fields.get("subject_id"))
            if pending["n"] >= settings.max_pending:
                raise ApiError(
                    503,
                    "busy",
                    "too many predictions in flight; retry in a moment",
                    headers={"Retry-After": "5"},
                )
            pending["n"] += 1
            admitted = True
            scan = await run_in_threadpool(prepare_scan, upload.path, folder, limits)
            request.state.scan_format = scan.format
            request.state.container = scan.container
            request.state.n_files = scan.n_files
            request.state.unpacked_bytes = scan.uncompressed_bytes
            pool.start()
            if not pool.ready:  # a refused upload says why whatever the worker's state
                raise not_ready()
            job = pool.submit(str(scan.path), sid, deadline)
            try:
                record = await asyncio.wrap_future(job)  # a cancelled wait drops a queued job
            except WorkerCrashed as exc:
                raise ApiError(
                    500,
                    "worker_crashed",
                    f"{exc}: the scan could not be scored (it may need more memory than the "
                    "service has); a new scoring process is being started",
                ) from exc
            except ScoringFailed as exc:
                log_internal_error(exc, request_id, where=exc.where, exc_type=exc.exc_type)
                raise ApiError(
                    500,
                    "internal_error",
                    f"internal error; quote request id {request_id} when reporting it",
                ) from exc
            except WorkerError as exc:
                if isinstance(exc, JobTimeout):
                    raise
                raise ApiError(500, exc.code, str(exc)) from exc
        except ClientDisconnect:
            request.state.client_disconnected = True
            raise
        finally:
            if admitted:
                pending["n"] -= 1
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
    app.state.scoring = pool
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

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Nobody is left to read this answer; the log line says "disconnected", not 500.
        request.state.client_disconnected = True
        return respond(request, 400, "client_disconnected", "the client closed the connection")

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
