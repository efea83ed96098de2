"""Start the scoring worker on the model the settings name and run the service with uvicorn
(its h11 protocol, with the header limits of :mod:`face_health.serving.protocol`)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from face_health.serving.app import create_app
from face_health.serving.model_info import describe_model
from face_health.serving.protocol import guarded_protocol
from face_health.serving.settings import ServingSettings, check_startup
from face_health.serving.worker import ModelLoader, ScoringPool

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_app(settings: ServingSettings) -> FastAPI:
    """Start the scoring worker, which loads the model (``settings.model``, or the newest
    that ``training`` logged in ``settings.tracking_uri``) and warms it up, wait until it is
    ready, read what the model's run says, and build the app. The server process itself
    never holds the model.

    Raises
    ------
    LookupError
        No model given and none trained in the tracking backend, or the worker could not
        load it (:class:`~face_health.serving.worker.WorkerStartFailed`).
    """
    from face_health.serving.scorer import resolve_model_uri

    uri = resolve_model_uri(settings.model, settings.tracking_uri)
    pool = ScoringPool(
        ModelLoader(uri, settings.tracking_uri),
        start_method=settings.worker_start_method,
        start_timeout_s=settings.worker_start_timeout_s,
    )
    try:
        pool.start(wait=True)  # the first request should not pay for loading the model
    except BaseException:
        pool.close()
        raise
    info = describe_model(uri, pool.run_id, settings.tracking_uri)
    return create_app(pool, settings, info)


def uvicorn_config(app: FastAPI, settings: ServingSettings, **overrides: Any) -> Any:
    """uvicorn's configuration for the app: the guarded h11 protocol, the keep-alive time,
    TLS, and no access log (its lines carry query strings; RequestContextMiddleware logs
    instead)."""
    import uvicorn

    protocol = guarded_protocol(
        header_timeout_s=settings.header_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_url_bytes=settings.max_url_bytes,
    )
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        http=protocol,
        h11_max_incomplete_event_size=settings.max_header_bytes + 1024,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout_s)),
        access_log=False,
        server_header=False,
        log_level="info",
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _request_logger() -> logging.Logger:
    """The service's own log lines on standard error, apart from other libraries' logging."""
    logger = logging.getLogger("face_health.serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def serve(settings: ServingSettings) -> None:
    """Check the settings, load the model, and serve until interrupted.

    Raises
    ------
    SettingsError
        The service must not start with these settings (e.g. no token off loopback).
    """
    from face_health.quiet import silence_known_library_noise

    silence_known_library_noise()  # also when called without the face-health CLI
    check_startup(settings)
    logger = _request_logger()
    app = build_app(settings)
    info = app.state.model_info
    logger.info(
        "serving model %s (run %s, started %s) on %s://%s:%s%s",
        info.get("uri"),
        info.get("run_id"),
        info.get("start_time"),
        "https" if settings.ssl_certfile else "http",
        settings.host,
        settings.port,
        " WITHOUT a token (--insecure-dev)" if not settings.token else "",
    )
    import uvicorn

    try:
        uvicorn.Server(uvicorn_config(app, settings)).run()
    finally:
        app.state.scoring.close()
