"""One HTTP/1.1 connection to the upstream: a request out, its response parsed, the body queued.

The upstream's counterpart of `http1.py`: `asyncio.Protocol` and httptools' response parser, one
exchange at a time (no pipelining). The pool that owns connections is in `upstream.py`. Rules
(RFC 9112 unless noted):

- A connection is reusable only after a clean exchange: the request sent whole, the response
  read whole, no `Connection: close` either way, HTTP/1.1 or HTTP/1.0 with keep-alive (§9.3),
  no stray bytes after the response, and the upstream has not closed it.
- An idle connection closes after its owner's idle timeout, and tells its owner at once when
  the upstream closes it.
- A response to HEAD ends with its head whatever its framing says (§6.3). httptools cannot be
  told, so its parser would wait for a body: the connection is retired after a HEAD instead.
- Interim 1xx responses (RFC 9110 §15.2) are handed to the exchange's `interim` callback as
  they arrive, and none of their fields reach the final response; 204 and 304 have no body
  (llhttp knows). An upstream that sends more than MAX_INTERIM of them, one with more than
  MAX_INTERIM_FIELDS fields or more than MAX_INTERIM_HEAD bytes of fields in all of them (the
  front's limits on a request head), or one with Transfer-Encoding or a non-zero
  Content-Length (RFC 9110 §8.6, RFC 9112 §6.1: a server must not send those in a 1xx; llhttp
  would read a body after some) is broken: the exchange fails (a 502). A 101 is a switch nobody
  asked for: never handed on, and a 502 too.
- A response the front could not frame faithfully fails the exchange (a 502): a status below
  100 (RFC 9110 §15: three digits, 1xx to 5xx; llhttp takes `099`, whose body would reach the
  client unframed), and a transfer coding other than one `chunked` (RFC 9112 §6.1: a proxy must
  not forward a coding it does not understand; only chunked is decoded, and it may be applied
  once, §7), as nginx refuses "unknown Transfer-Encoding" and a repeated one.
- The read timeout bounds every wait on the upstream: for the head once the request is sent,
  for each piece of body, and for the upstream to take more of a request body. The total
  timeout (when set) bounds the exchange from the request to the response's last byte: a wait
  that starts after it has run out fails at once. A slow reader
  does not count: reading pauses while HIGH_WATER bytes wait, and resumes below LOW_WATER.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterable, Callable
from typing import Protocol

import httptools

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
CHUNK = 64 * 1024  # queued pieces are joined up to this size when read
# Interim responses per exchange: a slow app sends a 102 now and then, a 103 or two is usual;
# an endless stream of them is a broken (or hostile) upstream holding the exchange open.
MAX_INTERIM = 16
MAX_INTERIM_FIELDS = 128  # per interim response, as http1.MAX_HEADERS per request
MAX_INTERIM_HEAD = 64 * 1024  # field bytes of all interim responses, as http1.MAX_HEAD

# An interim response as received: status, reason phrase, field lines.
Interim = Callable[[int, bytes, list[tuple[bytes, bytes]]], None]


class UpstreamError(Exception):
    """A failed upstream exchange, carrying the status to answer with (RFC 9110 §15.6.3/§15.6.5)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # a one-word token for logs: upstream-timeout, -refused, -error


def timed_out() -> UpstreamError:
    return UpstreamError(504, "upstream timed out", "upstream-timeout")


def broken(what: str) -> UpstreamError:
    return UpstreamError(502, f"upstream failed: {what}", "upstream-error")


def interim_fault(count: int, fields: int, size: int, framed: bool) -> str | None:
    """Why the `count`th interim response of an exchange (`fields` field lines, `size` field
    bytes in all interim responses so far, `framed`: Transfer-Encoding or a non-zero
    Content-Length) shows a broken upstream; None when it does not."""
    if count > MAX_INTERIM:
        return f"more than {MAX_INTERIM} interim responses"
    if fields > MAX_INTERIM_FIELDS or size > MAX_INTERIM_HEAD:
        return "interim response header fields too large"
    if framed:
        return "framing in an interim response"
    return None


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Owner(Protocol):
    """What a connection needs from the pool that owns it."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float
    total_timeout: float  # 0: none
    idle_seconds: float

    def discard(self, connection: Connection) -> None:
        """The connection is closed (by either side): forget it and free its slot."""

    def finish(self, connection: Connection) -> None:
        """The exchange is over: keep the connection for reuse, or close it."""


class Connection(asyncio.Protocol):
    """One upstream connection: sends a request, parses its response, queues the body."""

    def __init__(self, pool: Owner) -> None:
        self.pool, self.loop = pool, pool.loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = False  # holds one of the pool's slots
        self.idle = False
        self.busy = False
        self.exchanges = 0
        self.reused = False  # the current exchange is not the connection's first
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0  # when the current wait began, or the last byte arrived
        self._waiting = False  # the upstream owes us something (the read timeout runs)
        self._deadline = math.inf  # the exchange's total_timeout, as loop time
        self._drained: asyncio.Future[None] | None = None
        self._data: asyncio.Future[None] | None = None
        self._head: asyncio.Future[None] | None = None
        self._pieces: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self.writable = True
        self._begin(False)

    def _begin(self, head_only: bool) -> None:
        self.head_only = head_only
        self.status, self.reason = 0, b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.coded = False  # a transfer coding we do not decode: refused (RFC 9112 §6.1)
        self.keep_alive = False
        self.head_done = False
        self.done = False  # no more body will come
        self.sent = False  # the request went out whole
        self.answered = False  # a response byte arrived
        self.stale = False  # lost before any response byte: the upstream may have seen nothing
        self.failure: BaseException | None = None
        self._extra = False  # bytes after the message: the connection is out of step
        self._closing = False  # the request said Connection: close
        self.interim: Interim | None = None  # where interim responses go (None: dropped)
        self._interims = 0
        self._interim_size = 0

    # --- one exchange ------------------------------------------------------------------------
    async def exchange(
        self,
        data: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        head_only: bool,
        closing: bool = False,
        interim: Interim | None = None,
    ) -> None:
        """Send `data` (the head, perhaps with the whole body), then `body`; return at the final
        response head. Raises the failure: an UpstreamError, or what the body iterator raised.
        `closing`: the request said `Connection: close`, so the connection is not reused.
        `interim` is called with each interim response that arrives before the final one."""
        self._begin(head_only)
        self._closing, self.interim = closing, interim
        self.busy, self.reused = True, self.exchanges > 0
        self.exchanges += 1
        total = self.pool.total_timeout
        self._deadline = self.loop.time() + total if total > 0 else math.inf
        self._head = self.loop.create_future()
        try:
            if self.closed:
                self._lose(None)
            elif body is None:
                self._write(data)
                self.sent = True
                self._watch()
                await self._head
            else:
                self._write(data)
                await self._send_while_waiting(body, chunked)
        except BaseException:
            self.abort()  # cancelled: the exchange is abandoned
            raise
        if self.failure is not None:
            raise self.failure

    async def _send_while_waiting(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        """Stream the body while waiting for the head: an upstream may answer early (a 413);
        then sending stops, and the connection is retired (the request was not sent whole)."""
        sender = self.loop.create_task(self._send_body(body, chunked))
        assert self._head is not None
        try:
            await self._head
        finally:
            if not sender.done():
                sender.cancel()
        if not sender.done():
            await asyncio.wait((sender,))

    async def _send_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        try:
            async for chunk in body:
                if self.head_done or self.failure is not None:
                    return
                if chunked and chunk:
                    self._write(b"%x\r\n" % len(chunk), chunk, b"\r\n")
                elif chunk:
                    self._write(chunk)
                if not self.writable:
                    await self._drain()
            if chunked:
                self._write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client left mid-body, or the upstream went away
            self._fail(exc)
            return
        self.sent = True
        if not self.head_done:
            self._watch()

    def _write(self, *data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.failure or broken("connection closed")
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)  # a chunk with its framing, without a copy

    async def _drain(self) -> None:
        self._drained = self.loop.create_future()
        self._watch()
        try:
            await self._drained
        finally:
            self._drained, self._waiting = None, False
        if self.failure is not None:
            raise self.failure

    # --- the response body -------------------------------------------------------------------
    async def read(self) -> bytes:
        """The next piece of body (queued pieces joined up to CHUNK), b"" at its end."""
        pieces = self._pieces
        while not pieces:
            if self.failure is not None:
                raise self.failure
            if self.done:
                return b""
            await self._wait_data()
        chunk = pieces.popleft()
        if pieces and len(chunk) + len(pieces[0]) <= CHUNK:
            parts = [chunk]
            size = len(chunk)
            while pieces and size + len(pieces[0]) <= CHUNK:
                parts.append(pieces.popleft())
                size += len(parts[-1])
            chunk = b"".join(parts)
        self._queued -= len(chunk)
        if self._paused and self._queued <= LOW_WATER:
            self._paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        return chunk

    async def _wait_data(self) -> None:
        self._data = self.loop.create_future()
        self._watch()
        try:
            await self._data
        except BaseException:
            self.abort()  # cancelled mid-body: the exchange is abandoned
            raise
        finally:
            self._data, self._waiting = None, False

    def reusable(self) -> bool:
        return (
            self.done
            and self.sent
            and self.keep_alive
            and not (self.closed or self.head_only or self._extra or self._closing)
            and not self._pieces
            and self.failure is None
        )

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc)

    def eof_received(self) -> None:
        """The upstream closed its side: the connection is lost now, not when the transport has
        closed; bytes still unsent have nobody to read them."""
        self._lose(None)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._since = self.loop.time()
        if not self.busy:  # nothing was asked: the stream is out of step
            self.abort()
            return
        self.answered = True
        if self.done:
            self._extra = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(broken("unexpected protocol switch"))
        except httptools.HttpParserError as exc:
            if self.done:  # bytes after a whole message (e.g. after Connection: close)
                self._extra = True
            else:
                self._fail(broken(f"malformed response ({exc})"))

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._since = self.loop.time()
        _resolve(self._drained)

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.head_done:  # a second response to one request
            self._extra = True

    def on_status(self, status: bytes) -> None:
        if not self.head_done:
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # trailers (RFC 9112 §7.1.2) are dropped, as aiohttp dropped them
        self.raw_headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length" and value.strip().isdigit():
            self.content_length = int(value)
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            # Exactly one "chunked", as nginx takes it: anything else (gzip, chunked twice,
            # a second field) is a coding we would pass on undecoded and unlabelled.
            self.coded = self.chunked or self.coded or value.strip().lower() != b"chunked"
            self.chunked = True

    def on_headers_complete(self) -> None:
        if self.head_done:
            return  # a second response: ignored, the connection retires (_extra)
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim (102 Processing, 103 Early Hints): the final one follows
            self._interim(status)
            return
        if status < 100 or self.coded:
            self.done = True  # nothing of its body is kept (on_body)
            what = "unknown Transfer-Encoding" if status >= 100 else f"invalid status {status:03d}"
            self._fail(broken(what))
            return
        self.status, self.head_done, self._waiting = status, True, False
        self.keep_alive = self.parser.should_keep_alive()
        if self.chunked:
            self.content_length = None
        if self.head_only:
            self.done = True
        _resolve(self._head)

    def _interim(self, status: int) -> None:
        """An interim response: checked against the limits, handed on, and forgotten."""
        fields, reason = self.raw_headers, self.reason
        framed = self.chunked or bool(self.content_length)
        self.reason, self.raw_headers, self.content_length, self.chunked = b"", [], None, False
        self.coded = False
        if self.failure is not None:
            return
        self._interims += 1
        self._interim_size += sum([len(n) + len(v) for n, v in fields])
        fault = interim_fault(self._interims, len(fields), self._interim_size, framed)
        if fault is not None:
            self.done = True  # nothing after it is kept (on_body)
            self._fail(broken(fault))
        elif self.interim is not None and status != 101:
            self.interim(status, reason, fields)

    def on_body(self, body: bytes) -> None:
        if self.done:
            return  # a body after HEAD's head: ignored, the connection retires
        self._pieces.append(body)
        self._queued += len(body)
        _resolve(self._data)
        if self._queued > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.head_done and not self.done:
            self.done = True
            _resolve(self._data)

    # --- endings and timers ------------------------------------------------------------------
    def _lose(self, exc: Exception | None) -> None:
        """The connection is gone: a close-delimited body ends here; any other wait fails."""
        self.closed = True
        self._cancel_timer()
        self.pool.discard(self)
        if self.busy and not self.done and self.failure is None:
            framed = self.chunked or self.content_length is not None
            if self.head_done and not framed and exc is None:
                self.done = True  # RFC 9112 §6.3: the body ends with the connection
            elif self.answered:
                self.failure = broken("connection closed before the response was complete")
            else:
                self.stale = True
                self.failure = broken("connection closed before any response")
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self._wake()
        self.abort()

    def _wake(self) -> None:
        _resolve(self._head)
        _resolve(self._data)
        _resolve(self._drained)

    def abort(self) -> None:
        """Close at once, unsent bytes dropped; the pool's slot is freed now."""
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            if self.transport is not None:
                self.transport.abort()
        self.pool.discard(self)

    def rest(self, idle: bool) -> None:
        """The exchange is over; `idle`: the connection waits in the pool."""
        self.busy, self.idle, self._head = False, idle, None
        self.interim = None  # the client it relayed to is done with
        if idle:
            self._arm(self.pool.idle_seconds)

    def _watch(self) -> None:
        self._waiting = True
        self._arm(min(self.pool.read_timeout, self._deadline - self.loop.time()))

    def _arm(self, seconds: float) -> None:
        """One timer per connection, moved only when it would fire too late (not per wait)."""
        self._since = now = self.loop.time()
        timer = self._timer
        if timer is not None and timer.when() <= now + seconds:
            return
        if timer is not None:
            timer.cancel()
        self._timer = self.loop.call_at(now + seconds, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed or not (self.idle or self._waiting):
            return
        deadline = self._since + (self.pool.idle_seconds if self.idle else self.pool.read_timeout)
        if not self.idle:
            deadline = min(deadline, self._deadline)  # total_timeout
        if self.loop.time() + 0.001 < deadline:
            self._timer = self.loop.call_at(deadline, self._tick)
        elif self.idle:
            self.abort()
        else:
            self._fail(timed_out())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
