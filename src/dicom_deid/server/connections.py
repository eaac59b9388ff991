"""Connection rules uvicorn's HTTP/1.1 protocol lacks: a header timeout and a cap.

uvicorn times a connection out only between requests (``timeout_keep_alive``), and this
server keeps that long on purpose (see ``serve._serve``). Nothing timed a request whose
line and headers never finished, or a connection that never sent a byte: a slow client
held its socket for good, and a thousand of them used up a 1,024-descriptor limit.
:func:`protocol` makes uvicorn's h11 protocol class with two rules added:

- **header timeout**: a new connection, and one whose next request has begun, must
  deliver the request line and headers within ``header_timeout_s``; else it is closed
  (with a 408 when part of a request came). Bodies and responses are not timed.
- **connection cap**: a connection that would make more than ``max_connections`` (per
  worker process) closes the one quiet the longest among those not in a request (idle
  between requests, or still sending headers), so idle and slow clients can never keep
  new ones out. If every connection is in a request, uvicorn's ``limit_concurrency``
  (the cap + 1) answers the newcomer 503 and closes it.
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT_S = 30.0
#: Idle keep-alive: as long as Google's front ends keep a connection (see serve.py).
DEFAULT_IDLE_TIMEOUT_S = 600.0
_MAX_DEFAULT_CONNECTIONS = 1000
#: ``serve --header-timeout-s``, ``--idle-timeout-s``, ``--max-connections``: set by the
#: command in the environment, read by every worker as it configures uvicorn.
HEADER_TIMEOUT_ENV = "DICOM_DEID_HEADER_TIMEOUT_S"
IDLE_TIMEOUT_ENV = "DICOM_DEID_IDLE_TIMEOUT_S"
MAX_CONNECTIONS_ENV = "DICOM_DEID_MAX_CONNECTIONS"
_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            b"Content-Length: 0\r\n\r\n")


def config_options() -> dict[str, Any]:
    """``uvicorn.Config`` keywords for the limits in the environment (else defaults)."""
    cap = connection_cap(int(os.environ.get(MAX_CONNECTIONS_ENV, 0)))
    return {
        "http": protocol(float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S)),
                         cap),
        "timeout_keep_alive": float(os.environ.get(IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_S)),
        "limit_concurrency": cap + 1,  # uvicorn counts the newcomer: 503 above the cap
    }


def connection_cap(requested: int = 0) -> int:
    """``requested``, or by default half this process's open-file limit (at most 1,000):
    each connection is a descriptor, and files, the catalog and pool pipes need the rest."""
    if requested > 0:
        return requested
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_DEFAULT_CONNECTIONS
    return max(1, min(_MAX_DEFAULT_CONNECTIONS, soft // 2))


def protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the rules of this module (set by :func:`protocol`)."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_connections: int = _MAX_DEFAULT_CONNECTIONS

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._header_timer: asyncio.TimerHandle | None = None
        self._served = 0  # requests answered on this connection
        self.quiet_since = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._make_room()
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        self.quiet_since = self.loop.time()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch_headers()

    def on_response_complete(self) -> None:
        self._served += 1
        self.quiet_since = self.loop.time()
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def between_requests(self) -> bool:
        """Not in a request: idle after a response, or its request's headers not all in.
        Closing such a connection loses no work."""
        return (self.conn.their_state is h11.IDLE and not self.transport.is_closing()
                and (self.cycle is None or self.cycle.response_complete))

    def _awaiting_headers(self) -> bool:
        """A request is due: the connection is new, or bytes of a request have come."""
        return self.between_requests() and (self._served == 0 or bool(self._pending()))

    def _pending(self) -> bytes:
        return self.conn.trailing_data[0]

    def _watch_headers(self) -> None:
        if not self._awaiting_headers():
            self._stop_header_timer()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers():
            return
        if self._pending():
            self.transport.write(_TIMEOUT)
        self.drop()

    def drop(self) -> None:
        """Close as uvicorn closes an idle keep-alive connection, and stop counting it
        now (the transport only reports the loss on the loop's next turn)."""
        self._stop_header_timer()
        self.timeout_keep_alive_handler()
        self.connections.discard(self)

    def _make_room(self) -> None:
        """At the cap, close the connection quiet the longest that is not in a request."""
        if len(self.connections) < self.max_connections:
            return
        idle = [c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c.between_requests()]
        if idle:
            min(idle, key=lambda c: c.quiet_since).drop()
