"""The lean client-facing front: HTTP/1.1 over `asyncio.Protocol` and httptools (llhttp).

aiohttp.web's per-request machinery (request object, response object, header serialisation)
cost ~5x nginx's CPU on a cache hit; the same parser family on a bare protocol costs less than
nginx. This front keeps to the `ClientSide` seam: it builds a `RequestView`, and the handler
stays the one driver. What it owns (RFC 9112):

- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked) and close-delimited bodies;
- pipelined requests, answered strictly in order (one worker per connection);
- request bodies, Content-Length or chunked, streamed with flow control: reading pauses when
  BODY_HIGH_WATER bytes wait for the upstream, and resumes below BODY_LOW_WATER;
- responses streamed with flow control: `write` waits while the transport's buffer is full;
- `Expect: 100-continue` answered when the body is first read;
- limits: request target (414), header fields (431), malformed input (400, then close), and
  so for a malformed chunked body when no answer is under way, an HTTP/1.0 request with
  Transfer-Encoding (RFC 9112 §6.1) and an HTTP/0.9 request line (refused as soon as it ends);
- Upgrade: a WebSocket handshake is refused with 501; other upgrades (h2c) are ignored, which
  RFC 9110 §7.8 allows;
- a client that disconnects cancels its request, and with it the upstream exchange.

A cache hit takes no task at all: when the connection's worker is idle, a complete body-less
request is decided and looked up in `data_received` itself (`Driver.answer_now`), and a hit is
written there and then. Anything else (a miss, a pass, a problem) goes to the worker with the
view and decision already made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus

import httptools

from proxy.decide import Decision
from proxy.exchange import ClientGone, Driver, Outcome
from proxy.policy import response_has_body, status_has_body
from proxy.settings import Limits, Trust
from proxy.store import CachedResponse
from proxy.view import (
    Headers,
    RequestView,
    field_lines,
    header_text,
    origin_form,
    request_problem,
)

log = logging.getLogger("sidecache.front")

# aiohttp's defaults, which nginx's large_client_header_buffers (8 KiB) also sits near.
MAX_TARGET = 8190
MAX_FIELD = 8190
MAX_HEADERS = 128
MAX_CONTENT_LENGTH = 2**63 - 1  # nginx's bound too: no upstream reads a longer one the same way
MAX_HEAD = 64 * 1024  # request line and all header fields together (nginx: 4 x 8 KiB buffers)
BODY_HIGH_WATER = 256 * 1024
BODY_LOW_WATER = 64 * 1024
# Pipelining: reading pauses above QUEUE_HIGH parsed requests and resumes at QUEUE_LOW. A read
# larger than SLICE is parsed a slice at a time, the rest held back while the queue is full,
# so one read of tiny requests cannot queue thousands of them (and a head still arriving is
# charged at most a slice more than its size: MAX_HEAD has that margin).
QUEUE_HIGH = 16
QUEUE_LOW = 8
SLICE = 4096
_READS = frozenset({"GET", "HEAD"})  # the methods a hit can answer
# Statuses that never have content, so no Content-Length (RFC 9110 §8.6, §15.3.5, §15.4.5). No
# entry is 1xx or 304 (a 304 refreshes an entry); a 204 may be stored.
_BODILESS = frozenset({*range(100, 200), 204, 304})
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 32\r\nConnection: close\r\n\r\n503 too many client connections\n"
)

LogAccess = Callable[[RequestView, Outcome, float], None]
_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def _status_line(status: int, reason: str) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = f"HTTP/1.1 {status} {reason or _phrase(status)}\r\n".encode("latin-1", "replace")
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[(status, reason)] = line
    return line


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status code no RFC names: the reason phrase may be empty (§4)
        return ""


class _Clock:
    """The Date header value, formatted once per second (RFC 9110 §6.6.1: a proxy adds Date
    to a response that lacks one)."""

    second = -1
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, formatdate(now, usegmt=True).encode()
        return cls.value


def _connection_header(version: tuple[int, int], close: bool) -> bytes:
    if close:
        return b"Connection: close\r\n" if version >= (1, 1) else b""
    return b"Connection: keep-alive\r\n" if version < (1, 1) else b""


def _entry_response(
    entry: CachedResponse, age: int, tags: bytes, view: RequestView, close: bool, status: int
) -> tuple[bytes, ...]:
    """A hit on the wire: the entry's header block was serialised when it was stored, the
    tags once per server; only Age and the framing are formatted per hit. A small body rides
    in the same bytes (one small copy beats a second buffer); a large one is passed as is, for
    one writev. A 304 carries the entry's 304 subset of headers and nothing else; a 204 has
    no Content-Length (RFC 9110 §8.6)."""
    if status == 304:
        head = b"".join(
            (
                _status_line(304, "Not Modified"),
                entry.not_modified_block,
                b"Age: %d\r\n" % age,
                tags,
                _connection_header(view.version, close),
                b"\r\n",
            )
        )
        return (head,)
    if entry.status in _BODILESS:
        framing = b"Age: %d\r\n" % age
    else:
        framing = b"Age: %d\r\nContent-Length: %d\r\n" % (age, len(entry.body))
    head = b"".join(
        (
            _status_line(entry.status, entry.reason),
            entry.header_block,
            framing,
            tags,
            _connection_header(view.version, close),
            b"\r\n",
        )
    )
    if view.method == "HEAD":
        return (head,)
    if len(entry.body) <= 4096:
        return (head + entry.body,)
    return (head, entry.body)


class BodyTimeout(ClientGone):
    """No more of the request body came within body_timeout (nginx's client_body_timeout)."""


class _Body:
    """A request body on its way upstream: chunks queued by the parser, read by the handler."""

    __slots__ = ("chunks", "connection", "done", "failed", "size", "timed_out", "waiter")

    def __init__(self, connection: Http1Connection) -> None:
        self.connection = connection
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.done = False
        self.failed = False
        self.timed_out = False
        self.waiter: asyncio.Future[None] | None = None  # made only when the reader must wait

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._wake()
        if self.size > BODY_HIGH_WATER:
            self.connection.pause_reading()

    def end(self, failed: bool = False) -> None:
        self.done, self.failed = True, failed
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _expire(self) -> None:
        """body_timeout passed without a byte of body: the reader gives up (and with it the
        upstream exchange, so no pool slot waits on this client)."""
        self.timed_out = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BodyTimeout())

    async def read(self) -> bytes:
        """The next chunk, b"" at the end; raises ClientGone if the client went away mid-body."""
        while not self.chunks:
            if self.done:
                if self.failed:
                    raise ClientGone()
                return b""
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            timer = loop.call_later(self.connection.limits.body_timeout, self._expire)
            try:
                await self.waiter
            finally:
                self.waiter = None
                timer.cancel()
        chunk = self.chunks.popleft()
        self.size -= len(chunk)
        if self.size < BODY_LOW_WATER:
            self.connection.resume_reading()
        return chunk


class _Request:
    """A parsed request head, and its body as it arrives."""

    __slots__ = (
        "body",
        "content_length",
        "decision",
        "has_body",
        "head_bytes",
        "in_head",
        "keep_alive",
        "method",
        "problem",
        "raw_headers",
        "received",
        "started",
        "target",
        "too_large",
        "version",
        "view",
    )

    def __init__(self, connection: Http1Connection) -> None:
        self.target = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.version = (1, 1)
        self.keep_alive = True
        self.has_body = False
        self.content_length: int | None = None
        self.body: _Body | None = None  # made when the head says a body follows
        self.problem: tuple[int, str] | None = None
        self.in_head = True  # until the parser has the whole head
        self.head_bytes = 0
        self.started = 0.0  # loop time of the head's first byte
        self.received = 0  # body bytes so far
        self.too_large = False  # the body passed max_body_size
        self.view: RequestView | None = None  # made once, by the hit path or the worker
        self.decision: Decision | None = None

    @property
    def body_pending(self) -> bool:
        """The request has a body that was not received to its end."""
        return self.body is not None and not self.body.done

    def fail_body(self) -> None:
        if self.body is not None:
            self.body.end(failed=True)


class Http1Client:
    """`ClientSide` for one request on an `Http1Connection`."""

    def __init__(self, connection: Http1Connection, request: _Request, view: RequestView) -> None:
        self.connection = connection
        self.request = request
        self.view = view
        self.outcome = Outcome()
        self.started = False
        self._chunked = False
        self._held = b""  # a response head not written yet
        self._close_after = not request.keep_alive
        self._expect_answered = False

    # --- the request body --------------------------------------------------------------------
    def body(self) -> AsyncIterator[bytes] | None:
        return self._chunks() if self.request.has_body else None

    async def _chunks(self) -> AsyncIterator[bytes]:
        if not self._expect_answered and self._expects_continue():
            self._expect_answered = True
            self.connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.request.body
        assert body is not None, "a request with a body has a _Body from its head"
        while chunk := await body.read():
            yield chunk

    def _expects_continue(self) -> bool:
        expect = self.view.header("expect")
        return (
            expect is not None and expect.lower() == "100-continue" and self.view.version >= (1, 1)
        )

    def body_length(self) -> int | None:
        return self.request.content_length

    # --- the response ------------------------------------------------------------------------
    def _head(self, status: int, reason: str, headers: Headers, framing: list[bytes]) -> bytes:
        if self.request.body_pending:
            self._close_after = True  # answering before the body is in: the stream is out of step
        parts = [_status_line(status, reason), field_lines(headers), *framing]
        if not any(n.lower() == "date" for n, _ in headers):
            parts.append(b"Date: " + _Clock.date() + b"\r\n")
        parts.append(self._connection_header())
        parts.append(b"\r\n")
        return b"".join(parts)

    def _connection_header(self) -> bytes:
        return _connection_header(self.view.version, self._close_after)

    def interim(self, status: int, reason: str, headers: Headers) -> None:
        """Written at once, without waiting for the client to read: an exchange has few, small
        interim responses (upstream_exchange bounds them). No Date, no Connection: neither means
        anything on a 1xx."""
        if self.started or self.connection.closed:
            return
        self.connection.write(_status_line(status, reason) + field_lines(headers) + b"\r\n")

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        # A HEAD answer keeps the Content-Length a GET would get; 1xx/204/304 have none.
        framing = [b"Content-Length: %d\r\n" % len(body)] if status_has_body(status) else []
        head = self._head(status, reason, headers, framing)
        sent = response_has_body(self.view.method, status)
        self._send(head + body if sent else head)
        await self.finish()

    async def respond_entry(
        self, entry: CachedResponse, age: int, tags: Headers, status: int
    ) -> None:
        """A hit served by the worker (the store had to be waited for, or revalidated)."""
        block = self.connection.server.tag_block(tags)
        response = _entry_response(entry, age, block, self.view, self._close_after, status)
        self._send_lines(response)
        await self.finish()

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        framing: list[bytes] = []
        if content_length is not None:
            if status >= 200 and status != 204:  # never on 1xx/204 (RFC 9110 §8.6)
                framing.append(b"Content-Length: %d\r\n" % content_length)
        elif not response_has_body(self.view.method, status):
            pass
        elif until_close or self.view.version < (1, 1):
            self._close_after = True  # the body ends when the connection does (RFC 9112 §6.3)
        else:
            self._chunked = True
            framing.append(b"Transfer-Encoding: chunked\r\n")
        head = self._head(status, reason, headers, framing)
        if self.connection.closed:
            raise ClientGone()
        # Held until this task step ends, so a body already at hand (the common small response)
        # goes out in the same write; a body that has to be waited for finds the head sent.
        self.started, self._held = True, head
        self.connection.loop.call_soon(self._send_held)

    def _send_held(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self.connection.write(held)

    async def write(self, chunk: bytes, *, wait: bool = True) -> None:
        if not chunk or self.view.method == "HEAD":
            return
        if self._chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if self._held:
            self._send_lines((self._held, chunk))
            self._held = b""
        else:
            self._send(chunk)
        if wait:
            await self.connection.drain()

    async def finish(self) -> None:
        end = b"0\r\n\r\n" if self._chunked else b""
        self._chunked = False
        if self._held or end:
            self._send(self._held + end)
            self._held = b""
        await self.connection.drain()
        if self._close_after:
            self.connection.close()

    def abort(self) -> None:
        self._held = b""
        self.connection.abort()

    def _send(self, data: bytes) -> None:
        if self.connection.closed:
            raise ClientGone()
        self.started = True
        self.connection.write(data)

    def _send_lines(self, data: tuple[bytes, ...]) -> None:
        if self.connection.closed:
            raise ClientGone()
        self.started = True
        self.connection.writelines(data)


class Http1Connection(asyncio.Protocol):
    """One client connection: parses requests, hands them to one worker, in order."""

    def __init__(self, server: Http1Server) -> None:
        self.server = server
        self.driver, self.log_access, self.limits = server.driver, server.log_access, server.limits
        self.trust, self.scheme = server.trust, server.scheme
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False  # a request is being served
        self._broken = False  # the parser failed: nothing more is read
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop  # set in connection_made
        self.peer = ""
        self.closed = False
        self._current: _Request | None = None
        self._queue: deque[_Request] = deque()
        self._wakeup: asyncio.Future[None] | None = None  # the idle worker waits on it
        self._can_write = asyncio.Event()  # drain() waits on it
        self._can_write.set()
        self._writable = True  # the same, for _dispatch to read without a call
        self._reading_paused = False
        self._fed = 0  # bytes in the feed being parsed
        self._held = b""  # bytes read but not parsed yet: the queue was full
        self._silent = True  # nothing received yet: closed at header_timeout
        self._worker: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        self.trusted = False

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        if len(self.server.connections) >= self.limits.max_client_connections:
            self._refuse()
            return
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.trusted = self.trust.trusts(self.peer)  # once per connection, not per request
        self.loop = asyncio.get_running_loop()
        self._worker = self.loop.create_task(self._work())
        self._arm_idle()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_check)

    def _refuse(self) -> None:
        """Over max_client_connections: a 503 (whatever was asked) and close, at once."""
        self.closed = self._broken = True
        assert self.transport is not None
        self.transport.write(_REFUSED)
        self.transport.close()
        log.warning("503: max_client_connections reached, a connection was refused")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._can_write.set()
        self._writable = True
        if self._current is not None:
            self._current.fail_body()
        for request in self._queue:
            request.fail_body()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()  # cancels the upstream exchange of the request in flight

    def data_received(self, data: bytes) -> None:
        self._silent = False
        # The loop is kept from connection_made: on Python 3.11 get_running_loop() costs a
        # getpid() system call, which this per-read path would pay on every request.
        self._last_active = self.loop.time()  # the idle timer reads it when it fires
        if self._broken:
            return
        if self._held or len(data) > SLICE:
            self._feed_slices(data)
            self._dispatch()
            return
        # One read of a slice or less, nothing held back: _feed inlined (the hit path). A head
        # or body still arriving is checked; a request parsed whole (_current None) needs not.
        self._fed = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}")
        else:
            if self._current is not None:
                self._after_feed(data)
        self._dispatch()

    def _feed(self, data: bytes) -> None:
        """Parse one slice (the fast path of data_received does the same inline)."""
        self._fed = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}")
        else:
            self._after_feed(data)

    def _after_feed(self, data: bytes) -> None:
        """The checks after a feed that left a request unfinished: its head's size (and
        HTTP/0.9), and its chunked body's size."""
        self._check_head(data)
        if self._current is not None and self._current.too_large:
            self._reject(413, "request body too large")  # a chunked body past the limit

    def _feed_slices(self, data: bytes) -> None:
        """Parse what was held back and `data`, a slice at a time, until the queue is full;
        hold the rest back (reading stays paused) until it drains."""
        data, self._held = self._held + data, b""
        for start in range(0, len(data), SLICE):
            if self._broken:
                return
            if len(self._queue) > QUEUE_HIGH:
                self._held = data[start:]
                self.pause_reading()
                return
            self._feed(data[start : start + SLICE])

    def _dispatch(self) -> None:
        """Answer hits at once, in order, while the worker is idle; wake it for the rest."""
        queue = self._queue
        while queue and not self.busy and self._writable and not self.closed:
            request = queue[0]
            if request.has_body or request.problem is not None or request.method not in _READS:
                break
            if not self._answer_now(request):
                break
            queue.popleft()
            if not request.keep_alive:  # answered "Connection: close": nothing after it is
                queue.clear()
                break
        if (self._reading_paused or self._held) and len(queue) <= QUEUE_LOW:
            self._refill()
        if queue and self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _answer_now(self, request: _Request) -> bool:
        """Serve `request` from memory if it is a hit; False leaves it to the worker."""
        started = time.perf_counter()
        view = request.view
        if view is None or request_problem(view) is not None:
            return False
        outcome = Outcome()
        try:
            request.decision, entry, age, tags = self.driver.answer_now(view, outcome)
        except Exception:  # the worker tries again, and answers 500 if it fails too
            log.exception("error in the hit path for %s %s", view.method, view.target)
            return False
        if entry is None:
            return False
        close = not request.keep_alive
        block = self.server.tag_block(tags)
        self.writelines(_entry_response(entry, age, block, view, close, outcome.status))
        self.log_access(view, outcome, time.perf_counter() - started)
        if close:
            self._broken = True
            self.close()
        return True

    def _check_head(self, data: bytes) -> None:
        """Refuse an oversized head while it is still arriving: httptools hands over a header
        only once it is complete, so without this a client could stream megabytes into it. And
        refuse an HTTP/0.9 request line as soon as it ends (see _simple_request)."""
        request = self._current
        if request is None or not request.in_head:
            return
        request.head_bytes += len(data)
        if request.problem is None and request.head_bytes > MAX_HEAD:
            request.problem = (431, "request header fields too large")
        if request.problem is None and self._simple_request(request, data):
            request.problem = (400, "HTTP/0.9 is not supported")
        if request.problem is not None:
            self._reject(*request.problem)

    def _simple_request(self, request: _Request, data: bytes) -> bool:
        """An HTTP/0.9 request line (`GET /` and CRLF, no version) has ended. Its client sends
        nothing more, while llhttp reads header lines after it and would wait for their end
        until header_timeout; nginx acts on the line at once. llhttp sets the version (0.9) only
        at the next byte, so a line just ended shows as: no version yet, and the feed ends with
        the LF (the current request began in it or before; an HTTP/1.x line has its version
        before any LF). Only a head split across reads pays for this, never a hit."""
        if not request.target:
            return False
        version = self.parser.get_http_version()
        return version == "0.9" or (version == "0.0" and data.endswith(b"\n"))

    def _refill(self) -> None:
        """The queue is short again: parse what was held back, then read again (unless the
        body being received holds reading paused: its reader resumes it)."""
        if self._broken or self.closed:
            return
        if self._held:
            self._feed_slices(b"")
            if self._held:
                return
        body = self._current.body if self._current is not None else None
        if body is None or body.size < BODY_LOW_WATER:
            self.resume_reading()

    def pause_writing(self) -> None:
        self._writable = False
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._writable = True
        self._can_write.set()

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._current = _Request(self)
        self._current.started = self._last_active  # when the read with its first byte came

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.target += url
        if len(self._current.target) > MAX_TARGET and self._current.problem is None:
            self._current.problem = (414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.raw_headers.append((name, value))  # sizes are checked with the framing

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        request.in_head = False
        method = self.parser.get_method()
        request.method = _METHODS.get(method) or method.decode("ascii", "replace")
        request.version = _version(self.parser.get_http_version())
        view = request.view = self._view(request)
        _read_framing(request, view.header_map)
        view.has_body = request.has_body
        if request.head_bytes + self._fed > MAX_FIELD or len(request.raw_headers) > MAX_HEADERS:
            _check_fields(request)  # only a head this large can break the field limits
        limit = self.limits.max_body_size
        if limit and request.content_length is not None and request.content_length > limit:
            request.problem = request.problem or (413, "request body too large")
            request.keep_alive = False  # its body is never read: the stream is out of step
        if request.has_body:
            request.body = _Body(self)
        self._queue.append(request)  # data_received dispatches it when the feed is done
        if len(self._queue) > QUEUE_HIGH:  # a pipelining client that does not read: wait
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self._current
        assert request is not None and request.body is not None
        if request.too_large:
            return
        request.received += len(body)
        limit = self.limits.max_body_size
        if limit and request.received > limit:
            # Never let the upstream take the part before the limit for a whole body.
            request.too_large = True
            request.body.end(failed=True)
            return
        request.body.feed(body)

    def on_message_complete(self) -> None:
        assert self._current is not None
        if self._current.body is not None and not self._current.too_large:
            self._current.body.end()
        self._current = None

    # --- the worker --------------------------------------------------------------------------
    async def _work(self) -> None:
        while not self.closed:
            if not self._queue:
                # A future of our loop, not an asyncio.Event: Event.wait() looks the loop up,
                # which on Python 3.11 is a getpid() system call per request.
                self._wakeup = self.loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                continue
            request = self._queue.popleft()
            if len(self._queue) <= QUEUE_LOW:
                self._refill()
            self.busy = True
            try:
                keep_going = await self._serve(request)
            finally:
                self.busy = False
                self.server.settled.set()
            if not keep_going:
                self.close()
                return
            if not self._queue:
                self._arm_idle()

    def _view(self, request: _Request) -> RequestView:
        try:  # UTF-8 (and so ASCII) as almost every request is; header_text handles the rest
            raw = tuple([(n.decode(), v.decode()) for n, v in request.raw_headers])
        except UnicodeDecodeError:
            raw = tuple([(header_text(n), header_text(v)) for n, v in request.raw_headers])
        target, headers = origin_form(header_text(request.target), raw)
        return RequestView(
            request.method,
            target,
            headers,
            peer=self.peer if self.transport is not None else "-",
            scheme=self.scheme,
            version=request.version,
            has_body=request.has_body,
            trusted=self.trusted,
        )

    async def _serve(self, request: _Request) -> bool:
        started = time.perf_counter()
        view = request.view or self._view(request)
        client = Http1Client(self, request, view)
        problem = request.problem or request_problem(view)
        if problem is not None:
            await self._answer_problem(client, problem, view, started)
            return False
        try:
            outcome = await self.driver.handle(client, request.decision)
        except (ClientGone, asyncio.CancelledError):
            if request.problem is not None and not client.started and not self.closed:
                # Its body turned out malformed (or too large) while it was being forwarded.
                await self._answer_problem(client, request.problem, view, started)
                return False
            timed_out = request.body is not None and request.body.timed_out
            if timed_out and not client.started and not self.closed:
                await self._answer_problem(client, (408, "request body timed out"), view, started)
                return False
            if request.too_large and not client.started and not self.closed:
                # A chunked body ran past max_body_size while the request was forwarded.
                await self._answer_problem(client, (413, "request body too large"), view, started)
                return False
            # The client left (connection_lost cancels the worker, and the upstream exchange).
            outcome = client.outcome
            outcome.status = outcome.status or 499
            outcome.detail = outcome.detail if outcome.status != 499 else "client-gone"
            self.log_access(view, outcome, time.perf_counter() - started)
            return False
        except Exception:
            log.exception("error serving %s %s", view.method, view.target)
            outcome = Outcome(status=500, cache="ERROR", detail="internal-error")
            await self._internal_error(client)
            self.log_access(view, outcome, time.perf_counter() - started)
            return False
        self.log_access(view, outcome, time.perf_counter() - started)
        if request.body_pending:
            return False  # the body was not read to its end: the stream is out of step
        return not client._close_after and not self.closed

    async def _answer_problem(
        self, client: Http1Client, problem: tuple[int, str], view: RequestView, started: float
    ) -> None:
        status, text = problem
        client._close_after = True
        headers = (("Content-Type", "text/plain; charset=utf-8"),)
        with contextlib.suppress(ClientGone):
            await client.respond(status, "", headers, f"{status} {text}\n".encode())
        self.log_access(
            view, Outcome(status, "ERROR", "bad-request"), time.perf_counter() - started
        )

    async def _internal_error(self, client: Http1Client) -> None:
        """A bug in the handler: a 500 if nothing was sent yet, else cut the connection."""
        if client.started:
            client.abort()
            return
        client._close_after = True
        with contextlib.suppress(ClientGone):
            headers = (("Content-Type", "text/plain; charset=utf-8"),)
            await client.respond(500, "", headers, b"500 Internal Server Error\n")

    async def shutdown(self) -> None:
        """Stop reading new requests; close at once when idle, else after the one in flight."""
        self._broken = True
        if not self.busy and not self._queue:
            self.close()

    # --- transport helpers -------------------------------------------------------------------
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

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        """Note activity; the one idle timer of the connection checks it when it fires (a timer
        per request would cost a schedule and a cancel on every hit)."""
        self._last_active = self.loop.time()
        if self._idle is None:
            self._idle = self.loop.call_later(self.limits.keepalive_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self._idle = None
        if self.closed:
            return
        loop = self.loop
        quiet = loop.time() - self._last_active
        keepalive = self.limits.keepalive_timeout
        if self.busy or self._queue or self._current is not None:
            self._idle = loop.call_later(keepalive, self._idle_timeout)
        elif quiet >= keepalive:
            self.close()
        else:
            self._idle = loop.call_later(keepalive - quiet, self._idle_timeout)

    def _head_check(self) -> None:
        """The connection's one head timer (slowloris): a request head that has not arrived
        whole within header_timeout of its first byte is answered 408 and the connection
        closed; the timer is moved, never re-made per request."""
        self._head_timer = None
        if self.closed or self._broken:
            return
        if self._silent:  # not a byte since the accept: close, there is nothing to answer
            self.close()
            return
        limit = self.limits.header_timeout
        request = self._current
        if request is not None and request.in_head:
            late = request.started + limit
            if self.loop.time() >= late:
                self._reject(408, "request header timeout")
                self._dispatch()
                return
            self._head_timer = self.loop.call_at(late, self._head_check)
        else:
            self._head_timer = self.loop.call_later(limit, self._head_check)

    def _reject(self, status: int, text: str) -> None:
        """Malformed input: answer once (if no response is under way) and close."""
        log.info("%s: %s from %s", status, text, self.peer or "unix")
        self._broken = True
        self.pause_reading()
        request = _Request(self)
        request.problem = (status, text.split(":", 1)[0])
        request.in_head = False
        request.method, request.target = "-", b"/"
        request.raw_headers = [(b"Host", b"-")]
        request.keep_alive = False
        current = self._current
        if current is not None:
            if not current.in_head:
                # Its body broke off malformed: that request gets the answer (400, or 413 for
                # a chunked body past the limit), unless its response is under way (_serve).
                current.problem = current.problem or request.problem
            current.fail_body()
            self._current = None
        self._queue.append(request)

    def _upgrade(self, rest: bytes) -> None:
        """The parser stops at an Upgrade request (already queued, its head complete)."""
        request = self._queue[-1] if self._queue else None
        headers = request.raw_headers if request else []
        wanted = b",".join(v for n, v in headers if n.lower() == b"upgrade").lower()
        if request is not None and b"websocket" in wanted:
            request.problem = (501, "WebSocket is not supported by sidecache yet")
            self.pause_reading()
            self._broken = True  # nothing after the handshake is read
            return
        # Any other protocol (h2c): ignore the offer and go on parsing HTTP/1.1.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}


def _version(text: str) -> tuple[int, int]:
    version = _VERSIONS.get(text)
    if version is None:
        major, _, minor = text.partition(".")
        version = (int(major or 1), int(minor or 1))
    return version


def _read_framing(request: _Request, fields: Mapping[str, str]) -> None:
    """Keep-alive (RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with
    "keep-alive"), Content-Length and whether a body follows, from the joined fields."""
    connection = fields.get("connection")
    tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
    if request.version >= (1, 1):
        request.keep_alive = "close" not in tokens
    else:
        request.keep_alive = "keep-alive" in tokens
        _older_framing(request, fields)
    if "proxy-connection" in fields:
        # Not HTTP (RFC 9112 §9.6), yet llhttp closes on "Proxy-Connection: close" like on
        # Connection's and refuses what follows: say so, rather than invite a next request.
        request.keep_alive = (
            request.keep_alive and "close" not in fields["proxy-connection"].lower()
        )
    chunked = "transfer-encoding" in fields  # any coding but chunked is refused (501)
    length = fields.get("content-length")
    if length is not None and not _valid_length(length):
        # Several lengths (joined "5, 5") or junk: llhttp refuses these itself; should one get
        # through, no guess is made about where the body ends. A length of 2**63 or more (as
        # nginx refuses it) is one the upstream may read otherwise (aiohttp: as no body).
        request.problem = request.problem or (400, "invalid Content-Length")
        request.keep_alive = False
        length = None
    request.content_length = None if chunked or length is None else int(length)
    request.has_body = chunked or bool(request.content_length)


def _valid_length(length: str) -> bool:
    """One Content-Length of ASCII digits below 2**63 (RFC 9110 §8.6: guard against overflow)."""
    digits = length.strip(" \t")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return False
    return int(digits) <= MAX_CONTENT_LENGTH


def _older_framing(request: _Request, fields: Mapping[str, str]) -> None:
    """HTTP/1.0 and older (only their requests pay for this). RFC 9112 §6.1: an HTTP/1.0
    message with Transfer-Encoding has faulty framing (1.0 has no chunked; a 1.0 hop would read
    the body another way: smuggling), so 400 and close, as nginx does. A request line without
    a version (HTTP/0.9, RFC 9112 §2.3) is refused too: sidecache does not speak 0.9."""
    if request.version < (1, 0):
        problem = (400, "HTTP/0.9 is not supported")
    elif "transfer-encoding" in fields:
        problem = (400, "Transfer-Encoding in an HTTP/1.0 request")
    else:
        return
    request.problem = request.problem or problem
    request.keep_alive = False


def _check_fields(request: _Request) -> None:
    """The field limits: MAX_HEADERS fields of MAX_FIELD bytes at most (431)."""
    too_many = len(request.raw_headers) > MAX_HEADERS
    if too_many or any(len(n) + len(v) > MAX_FIELD for n, v in request.raw_headers):
        request.problem = request.problem or (431, "request header fields too large")


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
        self.connections: set[Http1Connection] = set()
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

    def __call__(self) -> Http1Connection:
        return Http1Connection(self)

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
