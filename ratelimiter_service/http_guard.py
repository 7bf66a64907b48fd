"""The HTTP protocol of a node: uvicorn's httptools protocol, bounded against hostile clients.

Without bounds a client with no token could degrade a node (issue 20, finding 8): a 200 MB
body grew a worker by hundreds of MB, and connections that never finish their headers held
file descriptors until the node stopped answering `/health`. Here, per connection:

- the request line and headers must arrive within `RATELIMITER_HEADER_TIMEOUT_MS` (from the
  connection's start, or from the first byte of the next request on a kept-alive connection),
  else 408 and the connection is closed;
- they may total at most `RATELIMITER_MAX_HEADER_BYTES`, else 431;
- a body may have at most `RATELIMITER_MAX_BODY_BYTES`: a larger `Content-Length` is refused
  with 413 before any of it is read, and a chunked body is cut off with 413 as it crosses it.

The refusals are answered here, below the app (it never sees the request), as RFC 9457
`application/problem+json`, and the connection is closed. uvicorn itself bounds idle
kept-alive connections (`RATELIMITER_KEEP_ALIVE_TIMEOUT_MS`) and the connections of a worker
(`RATELIMITER_MAX_CONNECTIONS_PER_WORKER`: past it, 503).
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ratelimiter_service.api.problems import PROBLEM_JSON, problem_body
from ratelimiter_service.settings import Settings, load_settings


# How long a refused connection's further input is read and dropped before it is closed.
LINGER_S = 2.0


@dataclass(frozen=True)
class GuardLimits:
    max_body_bytes: int
    max_header_bytes: int
    header_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> GuardLimits:
        return cls(settings.max_body_bytes, settings.max_header_bytes, settings.header_timeout_ms / 1000)


@functools.cache
def limits_from_env() -> GuardLimits:
    """Read once per worker process: the protocol is built per connection."""
    return GuardLimits.of(load_settings())


def problem_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 response (RFC 9457 body) that closes the connection."""
    body = json.dumps(problem_body(status, detail)).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with the bounds of the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits_from_env()
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._body_bytes = 0
        self._refused = False

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._body_bytes = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        if self._count_header_bytes(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count_header_bytes(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm_header_timer()
        declared = _content_length(self.headers)
        if declared is not None and declared > self._limits.max_body_bytes:
            self._refuse(413, f"the body has {declared} bytes, above the maximum of "
                         f"{self._limits.max_body_bytes} (RATELIMITER_MAX_BODY_BYTES)")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            if self.cycle is not None:
                self.cycle.disconnected = True  # the app, if it runs, sees the client gone
            self._refuse(413, f"the body is above the maximum of {self._limits.max_body_bytes} bytes "
                         "(RATELIMITER_MAX_BODY_BYTES)")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # -- bounds ----------------------------------------------------------------------------------

    def _count_header_bytes(self, size: int) -> bool:
        """Count request-line and header bytes; False (and refused) once they are too many."""
        if self._refused:
            return False
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, f"the request line and headers are above the maximum of "
                         f"{self._limits.max_header_bytes} bytes (RATELIMITER_MAX_HEADER_BYTES)")
            return False
        return True

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self._limits.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the next one re-arms the timer when it starts
        self._refuse(408, f"the request line and headers did not arrive within "
                     f"{self._limits.header_timeout_s * 1000:.0f} ms (RATELIMITER_HEADER_TIMEOUT_MS)")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` and close. A lingering close: the write side is shut at once, what
        the client still sends is read and dropped for a moment, so that its kernel does not
        receive a reset that would discard the answer before the client has read it."""
        self._refused = True
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        started = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if not started:
            self.transport.write(problem_response(status, detail))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


def _content_length(headers: list[tuple[bytes, bytes]] | None) -> int | None:
    for name, value in headers or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the parser refuses a malformed length itself
    return None
