"""The pool of connections to the upstream's one address.

- At most `limit` connections, busy or idle. Idle ones are reused last in, first out (the warmest
  first, so the coldest reach the idle timeout and close), and closed after `idle_seconds`.
- Requests beyond the cap wait first in, first out; the wait counts toward `connect_timeout` (a
  504), as aiohttp's connect timeout counts its pool wait.
- The bookkeeping is the pool's own: which connections hold a slot, which are idle and since
  when. A connection only says when it is closed (`discard`) and when its exchange is over
  (`finish`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from proxy.upstream_connection import CLOSED, UpstreamConnection
from proxy.upstream_exchange import UpstreamError, broken, timed_out

Factory = Callable[[], UpstreamConnection]
# Opens a transport to the upstream for the protocol `factory` makes, once `connection_made` has
# run: the event loop's sockets, or a test's scripted transports (no socket at all).
Dial = Callable[[Factory], Awaitable[UpstreamConnection]]


class UpstreamPool:
    """The connections to one address: at most `limit` open, idle ones reused newest first."""

    def __init__(
        self,
        address: tuple[str, int] | str,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        idle_seconds: float,
        total_timeout: float = 0.0,
        dial: Dial | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.address, self.limit = address, limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.idle_seconds = idle_seconds
        self._slots = 0  # slots taken: connections open or being opened
        self._open: set[UpstreamConnection] = set()  # the connections holding a slot
        self._idle: dict[UpstreamConnection, float] = {}  # since when, oldest first
        self._expiry: asyncio.TimerHandle | None = None  # closes the idle ones that timed out
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self._closed = False
        self._retiring = False  # a reload replaced us: no connection is kept once it is free
        self._emptied: asyncio.Future[None] | None = None
        self._dial = dial or self._open_socket

    def __repr__(self) -> str:
        where = self.address if isinstance(self.address, str) else "{}:{}".format(*self.address)
        state = " closed" if self._closed else " retiring" if self._retiring else ""
        return (
            f"<UpstreamPool {where}{state}: {self._slots}/{self.limit} slots taken,"
            f" {len(self._open)} open, {len(self._idle)} idle, {len(self._waiters)} waiting>"
        )

    async def acquire(self, fresh: bool = False) -> UpstreamConnection:
        """An idle connection (unless `fresh`), else a new one once a slot is free."""
        if self._idle and not fresh:
            return self._idle.popitem()[0]
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._slots < self.limit:
                    self._slots += 1
                elif fresh and self._idle:
                    self._steal(next(iter(self._idle)))  # the coldest gives up its slot
                else:
                    handed = await self._queue()
                    if handed is not None and not fresh:
                        return handed
                    if handed is not None:
                        self._steal(handed)
                return await self._connect()
        except TimeoutError:
            raise timed_out() from None

    async def _open_socket(self, factory: Factory) -> UpstreamConnection:
        """A connection over a socket to the address (what `dial` is unless a test's)."""
        if isinstance(self.address, str):
            _, connection = await self.loop.create_unix_connection(factory, self.address)
        else:
            _, connection = await self.loop.create_connection(factory, *self.address)
        return connection

    async def _queue(self) -> UpstreamConnection | None:
        """Wait in line: an idle connection or a free slot (None) is handed over."""
        waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed over as we gave up: pass it on
                handed = waiter.result()
                if handed is None:
                    self._free()
                else:
                    self.give(handed)
            raise

    async def _connect(self) -> UpstreamConnection:
        """A new connection in a slot already taken; the slot is freed if it fails."""
        try:
            if self._closed:
                raise broken("client closed")
            connection = await self._dial(lambda: UpstreamConnection(self))
        except OSError as exc:
            self._free()
            raise UpstreamError(502, "upstream refused the connection", "upstream-refused") from exc
        except BaseException:
            self._free()
            raise
        if connection.state is CLOSED:  # lost before we got it
            self._free()
            raise broken("connection closed at once")
        self._open.add(connection)
        return connection

    def give(self, connection: UpstreamConnection) -> None:
        """A reusable connection: to the first in line, else to the idle list."""
        connection.rest()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        now = self.loop.time()
        self._idle[connection] = now
        if self._expiry is None:
            self._expiry = self.loop.call_at(now + self.idle_seconds, self._expire)

    def finish(self, connection: UpstreamConnection) -> None:
        """An exchange is over: keep the connection if it may be reused, else close it."""
        if connection.reusable() and not self._retiring:
            self.give(connection)
        else:
            connection.abort()

    def discard(self, connection: UpstreamConnection) -> None:
        """`connection` is closed: its slot is free."""
        if connection in self._open:
            self._forget(connection)
            self._free()

    def _steal(self, connection: UpstreamConnection) -> None:
        """Close `connection` and keep its slot for a new one."""
        self._forget(connection)
        connection.abort()

    def _forget(self, connection: UpstreamConnection) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)

    def _expire(self) -> None:
        """Close the connections idle for idle_seconds; come back when the next one is due.
        One timer for the pool, not one per connection per exchange."""
        self._expiry = None
        now = self.loop.time()
        for connection, since in list(self._idle.items()):
            due = since + self.idle_seconds
            if now + 0.001 < due:  # the rest went idle later
                self._expiry = self.loop.call_at(due, self._expire)
                return
            connection.abort()  # discard() takes it off the idle list

    async def retire(self) -> None:
        """Close the idle connections now and each busy one as its exchange ends (requests
        already waiting for a slot still get one); return when no slot is taken."""
        self._retiring = True
        for connection in list(self._idle):
            connection.abort()  # its connection_lost frees the slot
        if self._slots:
            self._emptied = self.loop.create_future()
            await self._emptied

    def _free(self) -> None:
        """A slot is free: to the first in line, else back to the count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots -= 1
        if not self._slots and self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)

    async def close(self) -> None:
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for connection in list(self._open):
            connection.abort()
        await asyncio.sleep(0)  # let the transports' connection_lost run before the loop ends
