"""The front's protocol factory: one for every listener, making a `ClientConnection` per accepted
connection and keeping track of them for a reload (a new driver) and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import time

from proxy.client_transport import LogAccess
from proxy.exchange import Driver
from proxy.http1 import ClientConnection
from proxy.settings import Limits, Trust
from proxy.view import Headers, field_lines

__all__ = ["Http1Server", "LogAccess"]


class Http1Server:
    """The protocol factory for every listener; tracks connections for a graceful stop."""

    def __init__(
        self,
        driver: Driver,
        log_access: LogAccess,
        trust: Trust,
        limits: Limits,
        scheme: str = "http",
    ) -> None:
        self.driver, self.log_access, self.trust, self.scheme = driver, log_access, trust, scheme
        self.limits = limits
        self.connections: set[ClientConnection] = set()
        self.settled = asyncio.Event()  # set whenever a connection finishes a request
        self._tags: Headers = ()
        self._tag_block = b""

    def set_driver(self, driver: Driver) -> None:
        """A reload: new requests, on every connection, go to `driver`."""
        self.driver = driver
        for connection in self.connections:
            connection.driver = driver

    def tag_block(self, tags: Headers) -> bytes:
        """`tags` as header lines, serialised again only when the tuple is another one."""
        if tags is not self._tags:
            self._tags, self._tag_block = tags, field_lines(tags)
        return self._tag_block

    def __call__(self) -> ClientConnection:
        return ClientConnection(self)

    async def shutdown(self, seconds: float) -> None:
        """Close idle connections now; give requests in flight `seconds`, then cut them."""
        for connection in list(self.connections):
            await connection.shutdown()
        deadline = time.monotonic() + seconds
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            self.settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settled.wait(), deadline - time.monotonic())
        for connection in list(self.connections):
            connection.close() if not connection.busy else connection.abort()
