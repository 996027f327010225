"""The transport side of a client connection: writing with back-pressure, and reading paused
for two reasons that never resume each other.

- `write`/`writelines` go to the transport while the connection is open; `drain` waits while
  the transport's buffer is past its high mark (`pause_writing`), so a slow client slows the
  response to it, not the proxy's memory;
- reading pauses when the pipeline is deep (`_pause_pipeline`: more parsed requests queued than
  the connection serves soon, or bytes held back unparsed) and when a request body has more
  queued than the upstream took (`pause_for_body`, called by the body's `flow.ByteQueue`). Each
  reason is resumed only by its own end, and reading resumes when neither holds; once the
  connection is broken (malformed input, a refused upgrade, a shutdown) nothing resumes it.

`ClientConnection` (`http1.py`) is this plus the parsing and the serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from proxy.exchange import ClientGone, Driver, Outcome
from proxy.settings import Limits, Trust
from proxy.view import Headers, RequestView
from proxy.wire import REFUSED

log = logging.getLogger("sidecache.front")


LogAccess = Callable[[RequestView, Outcome, float], None]


class Listener(Protocol):
    """What a client connection reads of the factory that made it (`front_server.Http1Server`):
    a protocol, so that the connection's modules need not import the factory's."""

    driver: Driver
    log_access: LogAccess
    trust: Trust
    limits: Limits
    scheme: str
    connections: set[Any]
    settled: asyncio.Event

    def tag_block(self, tags: Headers) -> bytes: ...


class ClientTransport(asyncio.Protocol):
    """Writes, drain and read pausing over one client transport."""

    # Set by ClientConnection; declared here for the parts that take a connection as this
    # class (the request body, the client side, the serving), which import no connection.
    server: Listener
    driver: Driver
    log_access: LogAccess
    limits: Limits
    loop: asyncio.AbstractEventLoop
    peer: str
    scheme: str
    trusted: bool

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._broken = False  # the parser failed (or the server stops): nothing more is read
        self._can_write = asyncio.Event()  # drain() waits on it
        self._can_write.set()
        self._writable = True  # the same, for the hit path to read without a call
        self._reading_paused = False  # the transport's state: either reason below holds it
        self._queue_full = False  # paused for pipelining: the queue is deep or bytes are held
        self._bodies_full = 0  # request bodies whose queue paused reading

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(data)

    async def drain(self) -> None:
        if self.closed:
            raise ClientGone()
        await self._can_write.wait()
        if self.closed:
            raise ClientGone()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _pause(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        paused = self._reading_paused and not self._broken
        if paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _pause_pipeline(self) -> None:
        self._queue_full = True
        self._pause()

    def _resume_pipeline(self) -> None:
        """The queue is short again and nothing is held back."""
        self._queue_full = False
        if not self._bodies_full:
            self._resume()

    def pause_for_body(self) -> None:
        """A request body's queue is past its high mark (its `ByteQueue` calls this)."""
        self._bodies_full += 1
        self._pause()

    def resume_for_body(self) -> None:
        """A request body's queue is down to its low mark, or was dropped."""
        self._bodies_full -= 1
        if not self._bodies_full and not self._queue_full:
            self._resume()

    def pause_writing(self) -> None:
        self._writable = False
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._writable = True
        self._can_write.set()

    def refuse_connection(self) -> None:
        """Over max_client_connections: a 503 (whatever was asked) and close, at once."""
        self.closed = self._broken = True
        assert self.transport is not None
        self.transport.write(REFUSED)
        self.transport.close()
        log.warning("503: max_client_connections reached, a connection was refused")
