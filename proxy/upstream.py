"""The upstream client: HTTP/1.1 requests over a capped pool of keep-alive connections.

Our own client on httptools (`upstream_connection.py`, pooled by `upstream_pool.py`), as the
front is: aiohttp's `ClientSession` cost ~10x nginx's CPU per forwarded request. What it does,
and what it deliberately does not:

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
  (`upstream_exchange.py` bounds them); the returned response is always the final one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from urllib.parse import urlsplit

from proxy.counters import UpstreamCounts
from proxy.settings import Upstream
from proxy.upstream_connection import UpstreamConnection
from proxy.upstream_exchange import Head, Interim, UpstreamError
from proxy.upstream_pool import Dial, UpstreamPool
from proxy.view import Headers, decode_fields, header_text

__all__ = ["InterimRelay", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

IDLE_SECONDS = 15.0  # aiohttp's keepalive_timeout; an upstream that closes sooner is noticed
SMALL_BODY = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Where a request's interim responses go: status, reason phrase, fields (as received).
InterimRelay = Callable[[int, str, Headers], None]


class UpstreamResponse:
    """Status line and headers of an upstream answer; the body is read with `chunks()`."""

    __slots__ = (
        "_connection",
        "_counts",
        "content_length",
        "framed",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self, connection: UpstreamConnection, head: Head, counts: UpstreamCounts | None = None
    ) -> None:
        self._connection: UpstreamConnection | None = connection
        self._counts = counts
        self.status = head.status
        self.reason = header_text(head.reason)
        self.headers: Headers = decode_fields(head.raw_headers)
        self.content_length = head.content_length
        self.framed = head.framed  # a short body shows (RFC 9112 §6.3)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError when it does not arrive whole."""
        connection = self._connection
        if connection is None:
            return
        try:
            while chunk := await connection.read():
                yield chunk
        except UpstreamError as exc:  # the answer broke off: counted as the request's failure
            if self._counts is not None:
                self._counts.failed(exc.kind)
            raise

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

    def __init__(
        self,
        settings: Upstream,
        idle_seconds: float = IDLE_SECONDS,
        dial: Dial | None = None,
        counts: UpstreamCounts | None = None,
    ) -> None:
        """`counts`: where answer times and failures are counted (the proxy's `Counters`, which
        outlive a client a reload replaces)."""
        self.settings = settings
        self.counts = counts if counts is not None else UpstreamCounts()
        self.idle_seconds = idle_seconds
        self._dial = dial  # None: the loop's sockets (tests script transports instead)
        self._pool: UpstreamPool | None = None
        # RFC 9112 §3.2: a request without Host (an HTTP/1.0 client's) gets the upstream's.
        self._host = (("Host", urlsplit(settings.url).netloc),)

    async def start(self) -> None:
        s = self.settings
        address = s.socket or _address(s.url)
        self._pool = UpstreamPool(
            address,
            s.max_connections,
            s.connect_timeout,
            s.read_timeout,
            self.idle_seconds,
            s.total_timeout,
            self._dial,
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
        in, after handing each interim response to `interim`. Counted: how long that took, or
        the failure's kind (a retry that succeeds is no failure)."""
        started = time.perf_counter()
        try:
            response = await self._request(method, target, headers, body, content_length, interim)
        except UpstreamError as exc:
            self.counts.failed(exc.kind)
            raise
        self.counts.answered(time.perf_counter() - started)
        return response

    async def _request(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
        content_length: int | None,
        interim: InterimRelay | None,
    ) -> UpstreamResponse:
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
                exchange = await connection.exchange(
                    data, body, content_length is None, method == "HEAD", closing, received
                )
            except UpstreamError:
                failed = connection.current
                if not (retry and failed is not None and failed.reused and failed.stale):
                    raise
                retry = False
                connection = await pool.acquire(fresh=True)
                continue
            return UpstreamResponse(connection, exchange.head, self.counts)


def _decoded(relay: InterimRelay) -> Interim:
    """`relay`, taking an interim response as the connection parses it."""

    def received(status: int, reason: bytes, raw: list[tuple[bytes, bytes]]) -> None:
        relay(status, header_text(reason), decode_fields(raw))

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
