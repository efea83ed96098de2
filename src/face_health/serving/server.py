"""Load the model the settings name and run the service with uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from face_health.serving.app import create_app
from face_health.serving.model_info import describe_model
from face_health.serving.settings import ServingSettings, check_startup

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_app(settings: ServingSettings) -> FastAPI:
    """Load the model (``settings.model``, or the newest that ``training`` logged in
    ``settings.tracking_uri``), read what its run says, and build the app.

    Raises
    ------
    LookupError
        No model given and none trained in the tracking backend.
    """
    from face_health.serving.scorer import load_scorer, resolve_model_uri

    uri = resolve_model_uri(settings.model, settings.tracking_uri)
    scorer = load_scorer(uri, settings.tracking_uri)
    scorer.warm_up()  # the first request should not pay for building the landmark network
    info = describe_model(uri, scorer.run_id, settings.tracking_uri)
    return create_app(scorer, settings, info)


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

    # No access log: its lines carry query strings; RequestContextMiddleware logs instead.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        server_header=False,
        log_level="info",
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
