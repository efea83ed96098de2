"""The one error type of the service and the JSON body every error response carries."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and a message a client can act on.

    Parameters
    ----------
    status : int
        HTTP status code (401, 413, 415, ...).
    code : str
        Short machine-readable name of the error, e.g. ``"payload_too_large"``.
    message : str
        Plain words for the client; never face data, never a stack trace.
    extra : dict, optional
        More JSON fields for the body (e.g. ``qc`` for a scan that failed quality control).
    headers : dict, optional
        Response headers (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def error_body(status: int, code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """The JSON body of an error: ``{"detail", "error", "status", "request_id"}``.

    ``detail`` keeps FastAPI's usual key, so generic clients show the message.
    """
    return {"detail": message, "error": code, "status": status, "request_id": request_id}
