"""One HTTP/1.1 connection to the upstream: a request out, its response parsed, the body queued.

The upstream's counterpart of the front's connection (`http1.py`): `asyncio.Protocol` and
httptools' response parser, one exchange at a time (no pipelining). The state of one exchange is
an `Exchange` (`upstream_exchange.py`); the pool that owns connections is in `upstream_pool.py`.
Rules (RFC 9112 unless noted):

- A connection is reusable only after a clean exchange: the request sent whole, the response
  read whole, no `Connection: close` either way, HTTP/1.1 or HTTP/1.0 with keep-alive (§9.3),
  no stray bytes after the response, and the upstream has not closed it.
- A connection tells its owner at once when the upstream closes it, idle or not.
- A response to HEAD ends with its head whatever its framing says (§6.3). httptools cannot be
  told, so its parser would wait for a body: the connection is retired after a HEAD instead.
- Interim 1xx responses (RFC 9110 §15.2) are handed to the exchange's `interim` callback as
  they arrive, within limits (`upstream_exchange.py`), and none of their fields reach the final
  response; 204 and 304 have no body (llhttp knows).
- A response the front could not frame faithfully fails the exchange (a 502): a status below
  100 (RFC 9110 §15: three digits, 1xx to 5xx; llhttp takes `099`, whose body would reach the
  client unframed), and a transfer coding other than one `chunked` (RFC 9112 §6.1: a proxy must
  not forward a coding it does not understand; only chunked is decoded, and it may be applied
  once, §7), as nginx refuses "unknown Transfer-Encoding" and a repeated one.
- The read timeout bounds every wait on the upstream: for the head once the request is sent,
  for each piece of body, and for the upstream to take more of a request body. The total
  timeout (when set) bounds the exchange from the request to the response's last byte: a wait
  that starts after it has run out fails at once. A slow reader does not count: reading pauses
  while HIGH_WATER bytes wait, and resumes at LOW_WATER (`flow.py`).
"""

from __future__ import annotations

import asyncio
import enum
import math
from collections.abc import AsyncIterable
from typing import Protocol

import httptools

from proxy.flow import ByteQueue
from proxy.framing import coding_refused, response_length
from proxy.upstream_exchange import BODY, DONE, HEAD, Exchange, Interim, broken, timed_out

CHUNK = 64 * 1024  # queued pieces are joined up to this size when read


class State(enum.Enum):
    """A connection's life (httpcore's connection states): NEW until its first exchange, ACTIVE
    during one, IDLE between two, CLOSED for good (by either side, possibly mid-exchange)."""

    NEW = "new"
    ACTIVE = "active"
    IDLE = "idle"
    CLOSED = "closed"


NEW, ACTIVE, IDLE, CLOSED = State.NEW, State.ACTIVE, State.IDLE, State.CLOSED  # see exchange.HEAD


class Owner(Protocol):
    """What a connection needs from the pool that owns it."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float
    total_timeout: float  # 0: none

    def discard(self, connection: UpstreamConnection) -> None:
        """The connection is closed (by either side): forget it and free its slot."""

    def finish(self, connection: UpstreamConnection) -> None:
        """The exchange is over: keep the connection for reuse, or close it."""


class UpstreamConnection(asyncio.Protocol):
    """One upstream connection: sends a request, parses its response, queues the body."""

    def __init__(self, pool: Owner) -> None:
        self.pool, self.loop = pool, pool.loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.state = NEW
        self.current: Exchange | None = None  # from the request until the pool takes it back
        self.exchanges = 0
        self.writable = True
        # Lent to each exchange: empty whenever the connection is reused (Exchange.clean).
        self._body = ByteQueue(self._pause_reading, self._resume_reading)
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0  # when the current wait began, or the last byte arrived
        self._waiting = False  # the upstream owes us something (the read timeout runs)

    def __repr__(self) -> str:
        current = f", {self.current!r}" if self.current is not None else ""
        return f"<UpstreamConnection {self.state.name}, {self.exchanges} exchanges{current}>"

    # --- one exchange ------------------------------------------------------------------------
    async def exchange(
        self,
        data: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        head_only: bool,
        closing: bool = False,
        interim: Interim | None = None,
    ) -> Exchange:
        """Send `data` (the head, perhaps with the whole body), then `body`; return the exchange
        at the final response head. Raises the failure: an UpstreamError, or what the body
        iterator raised. `closing`: the request said `Connection: close`, so the connection is
        not reused. `interim` is called with each interim response before the final one."""
        total = self.pool.total_timeout
        deadline = self.loop.time() + total if total > 0 else math.inf
        x = self.current = Exchange(
            self.loop, self._body, deadline, self.exchanges > 0, head_only, closing, interim
        )
        self.exchanges += 1
        try:
            if self.state is CLOSED:
                self._lose(None)
            else:
                self.state = ACTIVE
                self._write(data)
                if body is None:
                    x.sent = True
                    self._watch()
                    await x.head_ready
                else:
                    await self._send_while_waiting(x, body, chunked)
        except BaseException:
            self.abort()  # cancelled: the exchange is abandoned
            raise
        if x.failure is not None:
            raise x.failure
        return x

    async def _send_while_waiting(
        self, x: Exchange, body: AsyncIterable[bytes], chunked: bool
    ) -> None:
        """Stream the body while waiting for the head: an upstream may answer early (a 413);
        then sending stops, and the connection is retired (the request was not sent whole)."""
        sender = self.loop.create_task(self._send_body(x, body, chunked))
        try:
            await x.head_ready
        finally:
            if not sender.done():
                sender.cancel()
        if not sender.done():
            await asyncio.wait((sender,))

    async def _send_body(self, x: Exchange, body: AsyncIterable[bytes], chunked: bool) -> None:
        try:
            async for chunk in body:
                if x.phase is not HEAD or x.failure is not None:
                    return
                if chunked and chunk:
                    self._write(b"%x\r\n" % len(chunk), chunk, b"\r\n")
                elif chunk:
                    self._write(chunk)
                if not self.writable:
                    await self._drain(x)
            if chunked:
                self._write(b"0\r\n\r\n")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client left mid-body, or the upstream went away
            self._fail(exc)
            return
        x.sent = True
        if x.phase is HEAD:
            self._watch()

    def _write(self, *data: bytes) -> None:
        if self.state is CLOSED or self.transport is None:
            x = self.current
            raise (x.failure if x is not None else None) or broken("connection closed")
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)  # a chunk with its framing, without a copy

    async def _drain(self, x: Exchange) -> None:
        x.drained = self.loop.create_future()
        self._watch()
        try:
            await x.drained
        finally:
            x.drained, self._waiting = None, False
        if x.failure is not None:
            raise x.failure

    # --- the response body -------------------------------------------------------------------
    async def read(self) -> bytes:
        """The next piece of body (queued pieces joined up to CHUNK), b"" at its end."""
        x = self.current
        assert x is not None, "read() outside an exchange"
        body = x.body
        while not body:
            if x.failure is not None:
                raise x.failure
            if x.phase is DONE:
                return b""
            await self._wait_data(x)
        return body.take(CHUNK)

    async def _wait_data(self, x: Exchange) -> None:
        x.data = self.loop.create_future()
        self._watch()
        try:
            await x.data
        except BaseException:
            self.abort()  # cancelled mid-body: the exchange is abandoned
            raise
        finally:
            x.data, self._waiting = None, False

    def reusable(self) -> bool:
        x = self.current
        return self.state is not CLOSED and x is not None and x.clean

    def rest(self) -> None:
        """The exchange is over and the connection kept: it waits for the next one."""
        self.current = None  # and with it the client the exchange relayed interims to
        self.state = IDLE

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
        x = self.current
        if x is None:  # nothing was asked: the stream is out of step
            self.abort()
            return
        x.answered = True
        complete = x.phase is DONE  # (a name, so the check below is not narrowed away)
        if complete:
            x.out_of_step = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(broken("unexpected protocol switch"))
        except httptools.HttpParserError as exc:
            if x.phase is DONE:  # bytes after a whole message (e.g. after Connection: close)
                x.out_of_step = True
            else:
                self._fail(broken(f"malformed response ({exc})"))

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._since = self.loop.time()
        x = self.current
        if x is not None and x.drained is not None and not x.drained.done():
            x.drained.set_result(None)

    def _pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self.state is not CLOSED:
            self.transport.resume_reading()

    # --- httptools callbacks (only while feeding data_received's bytes: an exchange is on) ---
    def on_message_begin(self) -> None:
        x = self.current
        if x is not None and x.phase is not HEAD:  # a second response to one request
            x.out_of_step = True

    def on_status(self, status: bytes) -> None:
        x = self.current
        if x is not None and x.phase is HEAD:
            x.head.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        x = self.current
        if x is None or x.phase is not HEAD:
            return  # trailers (RFC 9112 §7.1.2) are dropped, as aiohttp dropped them
        head = x.head
        head.raw_headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            length = response_length(value)
            if length is not None:
                head.content_length = length
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            head.coded = head.coded or coding_refused(head.chunked, value)  # (framing.py)
            head.chunked = True

    def on_headers_complete(self) -> None:
        x = self.current
        if x is None or x.phase is not HEAD:
            return  # a second response: ignored, the connection retires (out_of_step)
        status = self.parser.get_status_code()
        head = x.head
        if 100 <= status < 200:  # interim (102 Processing, 103 Early Hints): the final one follows
            fault = x.interim_fault(status)
            if fault is not None:
                x.phase = DONE  # nothing after it is kept (on_body)
                self._fail(broken(fault))
            return
        if status < 100 or head.coded:
            x.phase = DONE  # nothing of its body is kept (on_body)
            what = "unknown Transfer-Encoding" if status >= 100 else f"invalid status {status:03d}"
            self._fail(broken(what))
            return
        head.status, self._waiting = status, False
        head.keep_alive = self.parser.should_keep_alive()
        if head.chunked:
            head.content_length = None
        x.phase = DONE if x.head_only else BODY
        if not x.head_ready.done():
            x.head_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        x = self.current
        if x is None or x.phase is not BODY:
            return  # a body after HEAD's head: ignored, the connection retires
        x.body.append(body)
        if x.data is not None and not x.data.done():
            x.data.set_result(None)

    def on_message_complete(self) -> None:
        x = self.current
        if x is not None and x.phase is BODY:
            x.phase = DONE
            if x.data is not None and not x.data.done():
                x.data.set_result(None)

    # --- endings and timers ------------------------------------------------------------------
    def _lose(self, exc: Exception | None) -> None:
        """The connection is gone: a close-delimited body ends here; any other wait fails."""
        self.state = CLOSED
        self._cancel_timer()
        self.pool.discard(self)
        x = self.current
        if x is not None:
            x.lost(exc)
            x.wake()

    def _fail(self, exc: BaseException) -> None:
        x = self.current
        if x is not None:
            x.fail(exc)
        self.abort()

    def abort(self) -> None:
        """Close at once, unsent bytes dropped; the pool's slot is freed now."""
        if self.state is not CLOSED:
            self.state = CLOSED
            self._cancel_timer()
            if self.transport is not None:
                self.transport.abort()
        self.pool.discard(self)

    def _watch(self) -> None:
        """The upstream owes us something: start (or keep) the read timeout."""
        x = self.current
        deadline = x.deadline if x is not None else math.inf
        self._waiting = True
        self._since = now = self.loop.time()
        seconds = min(self.pool.read_timeout, deadline - now)
        # One timer per connection, moved only when it would fire too late (not per wait).
        timer = self._timer
        if timer is not None and timer.when() <= now + seconds:
            return
        if timer is not None:
            timer.cancel()
        self._timer = self.loop.call_at(now + seconds, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.state is CLOSED or not self._waiting:
            return
        x = self.current
        deadline = self._since + self.pool.read_timeout
        if x is not None:
            deadline = min(deadline, x.deadline)  # total_timeout
        if self.loop.time() + 0.001 < deadline:
            self._timer = self.loop.call_at(deadline, self._tick)
        else:
            self._fail(timed_out())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
