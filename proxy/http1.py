"""The client-facing connection: HTTP/1.1 over `asyncio.Protocol` and httptools (llhttp).

It parses requests (pipelined ones answered strictly in order, by one worker per connection),
builds each `RequestView` and hands it to the driver through the `ClientSide` seam
(`client_side.py`); request bodies stream with flow control (`front_request.py`), limits and
malformed input get their 4xx and a close, a WebSocket Upgrade a 501 (h2c is ignored, RFC 9110
§7.8), and a client that leaves cancels its request. A cache hit takes no task at all: when the
worker is idle, a complete body-less request is decided and looked up in `data_received` itself
(`Driver.answer_now`) and a hit is written there and then; anything else goes to the worker
with the view and decision already made. What each part owns: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import httptools

from proxy.client_transport import ClientTransport, Listener
from proxy.decide import CACHEABLE_METHODS
from proxy.exchange import Outcome
from proxy.forwarding import DEBUG
from proxy.framing import request_framing
from proxy.front_request import (
    MAX_FIELD,
    MAX_HEADERS,
    MAX_TARGET,
    METHODS,
    ParsedRequest,
    RequestBody,
    fields_problem,
    head_problem,
    parse_version,
    upgrade_problem,
)
from proxy.serving import build_view, serve
from proxy.view import request_problem
from proxy.wire import entry_response

log = logging.getLogger("sidecache.front")

# Pipelining: reading pauses above QUEUE_HIGH parsed requests and resumes at QUEUE_LOW. A read
# larger than SLICE is parsed a slice at a time, the rest held back while the queue is full,
# so one read of tiny requests cannot queue thousands of them (and a head still arriving is
# charged at most a slice more than its size: MAX_HEAD has that margin).
QUEUE_HIGH = 16
QUEUE_LOW = 8
SLICE = 4096
_READS = CACHEABLE_METHODS  # the methods a hit can answer


class ClientConnection(ClientTransport):
    """One client connection: parses requests, hands them to one worker, in order."""

    def __init__(self, server: Listener) -> None:
        super().__init__()
        self.server = server
        self.driver, self.log_access, self.limits = server.driver, server.log_access, server.limits
        self.trust, self.scheme = server.trust, server.scheme
        self.parser = httptools.HttpRequestParser(self)
        self.busy = False  # a request is being served
        self.loop: asyncio.AbstractEventLoop  # set in connection_made
        self.peer = ""
        self._current: ParsedRequest | None = None
        self._queue: deque[ParsedRequest] = deque()
        self._wakeup: asyncio.Future[None] | None = None  # the idle worker waits on it
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
            self.refuse_connection()
            return
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.trusted = self.trust.trusts(self.peer)  # once per connection, not per request
        self.loop = asyncio.get_running_loop()
        self._worker = self.loop.create_task(self._work())
        self._arm_idle()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_check)

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
                self._pause_pipeline()
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

    def _answer_now(self, request: ParsedRequest) -> bool:
        """Serve `request` from memory if it is a hit; False leaves it to the worker."""
        started = time.perf_counter()
        view = request.view
        if view is None or request_problem(view) is not None:
            return False
        if DEBUG in view.header_map and self.driver.trace(view):
            return False  # a trace asked for: the worker answers and adds it on delivery
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
        self.writelines(entry_response(entry, age, block, view, close, outcome.status))
        self.log_access(view, outcome, time.perf_counter() - started)
        if close:
            self._broken = True
            self.close()
        return True

    def _check_head(self, data: bytes) -> None:
        """Refuse an oversized head while it is still arriving: httptools hands over a header
        only once it is complete, so without this a client could stream megabytes into it. And
        refuse an HTTP/0.9 request line as soon as it ends (see front_request.head_problem)."""
        request = self._current
        if request is None or not request.in_head:
            return
        problem = head_problem(request, data, self.parser.get_http_version)
        if problem is not None:
            self._reject(*problem)

    def _refill(self) -> None:
        """The queue is short again: parse what was held back, then read again (unless a
        request body holds reading paused: its queue resumes it as it is read)."""
        if self._broken or self.closed:
            return
        if self._held:
            self._feed_slices(b"")
            if self._held:
                return
        self._resume_pipeline()

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._current = ParsedRequest()
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
        request.method = METHODS.get(method) or method.decode("ascii", "replace")
        request.version = parse_version(self.parser.get_http_version())
        view = request.view = build_view(self, request)
        keep_alive, length, has_body, problem = request_framing(request.version, view.header_map)
        request.keep_alive, request.content_length = keep_alive, length
        view.has_body = request.has_body = has_body
        if request.head_bytes + self._fed > MAX_FIELD or len(request.raw_headers) > MAX_HEADERS:
            # Only a head this large can break the field limits.
            problem = problem or fields_problem(request.raw_headers)
        if problem is not None:
            request.problem = request.problem or problem
        limit = self.limits.max_body_size
        if limit and request.content_length is not None and request.content_length > limit:
            request.problem = request.problem or (413, "request body too large")
            request.keep_alive = False  # its body is never read: the stream is out of step
        if request.has_body:
            request.body = RequestBody(self)
        self._queue.append(request)  # data_received dispatches it when the feed is done
        if len(self._queue) > QUEUE_HIGH:  # a pipelining client that does not read: wait
            self._pause_pipeline()

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
                keep_going = await serve(self, request)
            finally:
                self.busy = False
                if request.body is not None:
                    request.body.queue.clear()  # unread: a pause it holds is no longer needed
                self.server.settled.set()
            if not keep_going:
                self.close()
                return
            if not self._queue:
                self._arm_idle()

    async def shutdown(self) -> None:
        """Stop reading new requests; close at once when idle, else after the one in flight."""
        self._broken = True
        if not self.busy and not self._queue:
            self.close()

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
        self._pause()
        request = ParsedRequest.refused((status, text.split(":", 1)[0]))
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
        problem = upgrade_problem(request.raw_headers) if request is not None else None
        if request is not None and problem is not None:
            request.problem = problem
            self._pause()
            self._broken = True  # nothing after the handshake is read
            return
        # Any other protocol (h2c): ignore the offer and go on parsing HTTP/1.1.
        self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)
