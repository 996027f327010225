"""The upstream client: HTTP/1.1 requests over a capped pool of keep-alive connections.

Our own client on httptools (`h1conn.py`), as the front is: aiohttp's `ClientSession` cost ~10x
nginx's CPU per forwarded request. What it does, and what it deliberately does not:

- Requests go out as given: the request line, then the headers the handler built, byte for byte
  (text encoded as UTF-8, as the front does). Nothing is added but the framing, and `Host` when
  there is none (an HTTP/1.0 client's; RFC 9112 §3.2): no Accept, Accept-Encoding, User-Agent
  or Content-Type. No cookie jar, no decompression, no redirects.
- A body with a known length is sent with `Content-Length` (in the head's write when it is at
  most SMALL_BODY, read whole first), any other with `Transfer-Encoding: chunked`.
- At most `max_connections` connections, busy or idle; idle ones are reused last in, first out,
  and closed after IDLE_SECONDS. Requests beyond the cap wait first in, first out; the wait
  counts toward `connect_timeout` (a 504), as aiohttp's connect timeout counts its pool wait.
- A request that fails on a reused connection before any response byte (the upstream closed it
  as we wrote) is sent once more on a new connection, if that is safe: an idempotent method
  (RFC 9110 §9.2.2) whose body, if any, is still in hand (aiohttp, too, retries only those).
- Errors become `UpstreamError`, carrying the status to answer: 504 for timeouts, 502 else.
- Interim (1xx) responses go to the request's `interim` callback, if any, as they arrive
  (`h1conn.py` bounds them); the returned response is always the final one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from urllib.parse import urlsplit

from proxy.h1conn import Connection, Interim, UpstreamError, broken, timed_out
from proxy.settings import Upstream
from proxy.view import Headers, header_text

__all__ = ["InterimRelay", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

IDLE_SECONDS = 15.0  # aiohttp's keepalive_timeout; an upstream that closes sooner is noticed
SMALL_BODY = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Where a request's interim responses go: status, reason phrase, fields (as received).
InterimRelay = Callable[[int, str, Headers], None]


class Pool:
    """The connections to one address: at most `limit` open, idle ones reused newest first."""

    def __init__(
        self,
        address: tuple[str, int] | str,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        idle_seconds: float,
        total_timeout: float = 0.0,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.address, self.limit = address, limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.idle_seconds = idle_seconds
        self._slots = 0  # slots taken: connections open or being opened
        self._open: set[Connection] = set()
        self._idle: list[Connection] = []
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False
        self._retiring = False  # a reload replaced us: no connection is kept once it is free
        self._emptied: asyncio.Future[None] | None = None

    async def acquire(self, fresh: bool = False) -> Connection:
        """An idle connection (unless `fresh`), else a new one once a slot is free."""
        if self._idle and not fresh:
            connection = self._idle.pop()
            connection.idle = False
            return connection
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._slots < self.limit:
                    self._slots += 1
                elif fresh and self._idle:
                    self._steal(self._idle[0])  # the coldest idle connection gives up its slot
                else:
                    handed = await self._queue()
                    if handed is not None and not fresh:
                        return handed
                    if handed is not None:
                        self._steal(handed)
                return await self._connect()
        except TimeoutError:
            raise timed_out() from None

    async def _queue(self) -> Connection | None:
        """Wait in line: an idle connection or a free slot (None) is handed over."""
        waiter: asyncio.Future[Connection | None] = self.loop.create_future()
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

    async def _connect(self) -> Connection:
        """A new connection in a slot already taken; the slot is freed if it fails."""
        try:
            if self._closed:
                raise broken("client closed")
            if isinstance(self.address, str):
                _, connection = await self.loop.create_unix_connection(
                    lambda: Connection(self), self.address
                )
            else:
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self), *self.address
                )
        except OSError as exc:
            self._free()
            raise UpstreamError(502, "upstream refused the connection", "upstream-refused") from exc
        except BaseException:
            self._free()
            raise
        if connection.closed:  # lost before we got it
            self._free()
            raise broken("connection closed at once")
        connection.counted = True
        self._open.add(connection)
        return connection

    def give(self, connection: Connection) -> None:
        """A reusable connection: to the first in line, else to the idle list."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                connection.rest(idle=False)
                waiter.set_result(connection)
                return
        self._idle.append(connection)
        connection.rest(idle=True)

    def finish(self, connection: Connection) -> None:
        """An exchange is over: keep the connection if it may be reused, else close it."""
        if connection.reusable() and not self._retiring:
            self.give(connection)
        else:
            connection.abort()

    def discard(self, connection: Connection) -> None:
        if connection.counted:
            self._forget(connection)
            self._free()

    def _steal(self, connection: Connection) -> None:
        """Close `connection` and keep its slot for a new one."""
        self._forget(connection)
        connection.abort()

    def _forget(self, connection: Connection) -> None:
        connection.counted = False
        self._open.discard(connection)
        if connection.idle:
            connection.idle = False
            self._idle.remove(connection)

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
        for connection in list(self._open):
            connection.abort()
        await asyncio.sleep(0)  # let the transports' connection_lost run before the loop ends


class UpstreamResponse:
    """Status line and headers of an upstream answer; the body is read with `chunks()`."""

    __slots__ = ("_connection", "content_length", "framed", "headers", "reason", "status")

    def __init__(self, connection: Connection) -> None:
        self._connection: Connection | None = connection
        self.status = connection.status
        self.reason = header_text(connection.reason)
        self.headers: Headers = _text(connection.raw_headers)
        self.content_length = connection.content_length
        # Close-delimited bodies cannot be told apart from truncated ones (RFC 9112 §6.3); a
        # 204 or 304 has no body at all, so nothing of it can be missing.
        self.framed = (
            connection.chunked
            or connection.content_length is not None
            or connection.status in (204, 304)
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError when it does not arrive whole."""
        connection = self._connection
        if connection is None:
            return
        while chunk := await connection.read():
            yield chunk

    def close(self) -> None:
        """Drop the connection: the body was not read to its end."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.abort()

    def release(self) -> None:
        """Return the connection to the pool if it may be reused (the body was read whole)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.pool.finish(connection)


class UpstreamClient:
    """Sends requests to the one configured upstream over a pool of connections."""

    def __init__(self, settings: Upstream, idle_seconds: float = IDLE_SECONDS) -> None:
        self.settings = settings
        self.idle_seconds = idle_seconds
        self._pool: Pool | None = None
        # RFC 9112 §3.2: a request without Host (an HTTP/1.0 client's) gets the upstream's.
        self._host = (("Host", urlsplit(settings.url).netloc),)

    async def start(self) -> None:
        s = self.settings
        address = s.socket or _address(s.url)
        self._pool = Pool(
            address,
            s.max_connections,
            s.connect_timeout,
            s.read_timeout,
            self.idle_seconds,
            s.total_timeout,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def retire(self) -> None:
        """Replaced by a reload: return once every exchange in flight has ended (their
        connections are closed as they end); `close` then releases the rest."""
        if self._pool is not None:
            await self._pool.retire()

    async def request(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
        content_length: int | None = None,
        interim: InterimRelay | None = None,
    ) -> UpstreamResponse:
        """Send the request (streaming `body`); return once the final status and headers are
        in, after handing each interim response to `interim`."""
        pool = self._pool
        assert pool is not None, "UpstreamClient.start() was not awaited"
        has_host, closing = _scan(headers)
        if not has_host:
            headers = self._host + headers
        data = _head(method, target, headers, body is not None, content_length)
        if body is not None and content_length is not None and content_length <= SMALL_BODY:
            data += b"".join([chunk async for chunk in body])  # one write, and replayable
            body = None
        retry = body is None and method in IDEMPOTENT
        received = None if interim is None else _decoded(interim)
        connection = await pool.acquire()
        while True:
            try:
                await connection.exchange(
                    data, body, content_length is None, method == "HEAD", closing, received
                )
            except UpstreamError:
                if not (retry and connection.reused and connection.stale):
                    raise
                retry = False
                connection = await pool.acquire(fresh=True)
                continue
            return UpstreamResponse(connection)


def _text(raw: list[tuple[bytes, bytes]]) -> Headers:
    """Field lines as text: UTF-8 (and so ASCII), as almost every response's are; header_text
    does the rest."""
    try:
        return tuple([(n.decode(), v.decode()) for n, v in raw])
    except UnicodeDecodeError:
        return tuple([(header_text(n), header_text(v)) for n, v in raw])


def _decoded(relay: InterimRelay) -> Interim:
    """`relay`, taking an interim response as the connection parses it."""

    def received(status: int, reason: bytes, raw: list[tuple[bytes, bytes]]) -> None:
        relay(status, header_text(reason), _text(raw))

    return received


def _head(
    method: str, target: str, headers: Headers, has_body: bool, content_length: int | None
) -> bytes:
    """The request line and header block, in one buffer (RFC 9112 §3, §6)."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    lines.extend(f"{n}: {v}\r\n" for n, v in headers)
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}\r\n")
    elif has_body:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def _scan(headers: Headers) -> tuple[bool, bool]:
    """(a Host header is there, a Connection header says close)."""
    host = closing = False
    for name, value in headers:
        if len(name) == 4 and name.lower() == "host":
            host = True
        elif len(name) == 10 and name.lower() == "connection" and "close" in value.lower():
            closing = True
    return host, closing


def _address(url: str) -> tuple[str, int]:
    """(host, port) of `http://host[:port]` (config.parse_upstream has checked the form)."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 80
