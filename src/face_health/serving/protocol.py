"""The HTTP/1.1 connection handling of the service: uvicorn's h11 protocol with the limits
it lacks on the request head.

uvicorn (0.55) has no time limit on receiving a request's headers (a client that sends a
header line every 5 s keeps a connection forever), and its default httptools parser has no
size limit on them (a 64 MB header is read). h11 limits an incomplete head (16 KB by
default) but answers with a plain-text 400. :func:`guarded_protocol` builds a subclass of
uvicorn's ``H11Protocol`` that, before h11 sees the bytes:

- closes a connection whose request head is not complete ``header_timeout_s`` after its
  first byte (or after connecting): 408;
- refuses a request target longer than ``max_url_bytes``: 414;
- refuses a request line plus headers longer than ``max_header_bytes``: 431;
- answers h11's own protocol errors with JSON (400) too.

Each such answer is the service's JSON error body with ``Connection: close``, is logged as
one line like every request, and the connection is closed. The body's pace is checked in
the app (:func:`face_health.serving.uploads.paced`), where a slow body gets 408 too.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from face_health.serving.errors import error_body
from face_health.serving.middleware import REQUEST_ID_HEADER

logger = logging.getLogger("face_health.serving")
_END_OF_HEAD = b"\r\n\r\n"
#: Seconds a refused connection is still read (and dropped) before it is closed.
LINGER_S = 2.0


def error_bytes(status: int, code: str, message: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 response: the JSON error body, closing the connection."""
    body = json.dumps(error_body(status, code, message, request_id)).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
        f"{REQUEST_ID_HEADER.lower()}: {request_id}\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_protocol(
    *, header_timeout_s: float, max_header_bytes: int, max_url_bytes: int
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header time limit and header and URL size limits."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head = bytearray()
            self._head_timer: Any = None
            self._refused = False

        # ---------------------------------------------------------------- the timer

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if not self._head:  # an idle connection that never sent a byte: just close it
                self.transport.close()
                return
            self._refuse(
                408,
                "header_timeout",
                f"the request line and headers did not arrive within {header_timeout_s:g} s",
            )

        # ------------------------------------------------------------ the head check

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self.conn.their_state is h11.IDLE:
                if self._head_timer is None:  # the first byte of a keep-alive request
                    self._arm()
                if not self._check_head(data):
                    return
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is complete
                self._disarm()
                self._head.clear()

        def _check_head(self, data: bytes) -> bool:
            start = max(0, len(self._head) - 3)
            self._head += data[: max_header_bytes + 4]
            line_end = self._head.find(b"\r\n")
            line = self._head if line_end < 0 else self._head[:line_end]
            target = line.split(b" ")[1] if line.count(b" ") >= 1 else b""
            if len(target) > max_url_bytes or (line_end < 0 and len(line) > max_url_bytes + 32):
                self._refuse(
                    414,
                    "uri_too_long",
                    f"the URL is longer than the limit of {max_url_bytes / 1024:g} KB",
                )
                return False
            end = self._head.find(_END_OF_HEAD, start)
            if (end < 0 and len(self._head) > max_header_bytes) or end > max_header_bytes:
                self._refuse(
                    431,
                    "headers_too_large",
                    f"the request headers are larger than the limit of "
                    f"{max_header_bytes / 1024:g} KB",
                )
                return False
            if end >= 0:
                self._head.clear()
            return True

        def send_400_response(self, msg: str) -> None:  # h11 could not parse the request
            self._refuse(400, "bad_request", "the request is not valid HTTP/1.1")

        def _refuse(self, status: int, code: str, message: str) -> None:
            # A lingering close: answer, half-close, and read (and drop) what the client is
            # still sending for a moment, so that closing with unread data does not reset
            # the connection before the client has read the answer.
            self._refused = True
            self._disarm()
            request_id = uuid.uuid4().hex
            if not self.transport.is_closing():
                self.transport.write(error_bytes(status, code, message, request_id))
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                    self.loop.call_later(LINGER_S, self.transport.close)
                else:
                    self.transport.close()
            logger.info(
                "request_id=%s method=- path=- status=%s seconds=- refused=%s",
                request_id,
                status,
                code,
            )

    return GuardedH11Protocol
