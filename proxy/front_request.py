"""A request as the front parses it: its head, its limits, and its body on the way upstream.

The connection (`http1.py`) makes a `ParsedRequest` per request the parser begins, fills it
from the parser's callbacks, and queues it once its head is whole; the worker serves it. The
body is a `flow.ByteQueue`, the same flow control the upstream side uses: reading pauses when
more than BODY_HIGH_WATER bytes wait for the upstream and resumes once at most BODY_LOW_WATER
do. The queue pauses and resumes only for itself (`ClientTransport.pause_for_body`): a
connection paused for a deep pipeline is not resumed by a body being read, nor the reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.client_transport import ClientTransport
from proxy.decide import Decision
from proxy.exchange import ClientGone
from proxy.flow import HIGH_WATER, LOW_WATER, ByteQueue
from proxy.view import RequestView

# aiohttp's defaults, which nginx's large_client_header_buffers (8 KiB) also sits near.
MAX_TARGET = 8190
MAX_FIELD = 8190
MAX_HEADERS = 128
MAX_HEAD = 64 * 1024  # request line and all header fields together (nginx: 4 x 8 KiB buffers)
BODY_HIGH_WATER = HIGH_WATER
BODY_LOW_WATER = LOW_WATER

Problem = tuple[int, str]

METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}


def parse_version(text: str) -> tuple[int, int]:
    """llhttp's "major.minor" as a tuple (the two usual ones without parsing)."""
    version = _VERSIONS.get(text)
    if version is None:
        major, _, minor = text.partition(".")
        version = (int(major or 1), int(minor or 1))
    return version


def fields_problem(raw_headers: list[tuple[bytes, bytes]]) -> Problem | None:
    """The field limits: MAX_HEADERS fields of MAX_FIELD bytes at most (431)."""
    too_many = len(raw_headers) > MAX_HEADERS
    if too_many or any(len(n) + len(v) > MAX_FIELD for n, v in raw_headers):
        return (431, "request header fields too large")
    return None


def upgrade_problem(raw_headers: list[tuple[bytes, bytes]]) -> Problem | None:
    """A WebSocket handshake is refused (501); any other upgrade (h2c) is ignored, which RFC 9110
    §7.8 allows."""
    wanted = b",".join(v for n, v in raw_headers if n.lower() == b"upgrade").lower()
    if b"websocket" in wanted:
        return (501, "WebSocket is not supported by sidecache yet")
    return None


def head_problem(
    request: ParsedRequest, data: bytes, parser_version: Callable[[], str]
) -> Problem | None:
    """A head still arriving, `data` more of it: refused when oversized (431; httptools hands
    over a header only once it is complete, so without this a client could stream megabytes
    into it), or when it is an HTTP/0.9 request line that just ended (400)."""
    request.head_bytes += len(data)
    if request.problem is None and request.head_bytes > MAX_HEAD:
        request.problem = (431, "request header fields too large")
    if request.problem is None and _simple_request(request, data, parser_version):
        request.problem = (400, "HTTP/0.9 is not supported")
    return request.problem


def _simple_request(request: ParsedRequest, data: bytes, parser_version: Callable[[], str]) -> bool:
    """An HTTP/0.9 request line (`GET /` and CRLF, no version) has ended. Its client sends
    nothing more, while llhttp reads header lines after it and would wait for their end
    until header_timeout; nginx acts on the line at once. llhttp sets the version (0.9) only
    at the next byte, so a line just ended shows as: no version yet, and the feed ends with
    the LF (the current request began in it or before; an HTTP/1.x line has its version
    before any LF). Only a head split across reads pays for this, never a hit."""
    if not request.target:
        return False
    version = parser_version()
    return version == "0.9" or (version == "0.0" and data.endswith(b"\n"))


class BodyTimeout(ClientGone):
    """No more of the request body came within body_timeout (nginx's client_body_timeout)."""


class RequestBody:
    """A request body on its way upstream: pieces queued by the parser, read by the handler."""

    __slots__ = ("_timeout", "done", "failed", "queue", "timed_out", "waiter")

    def __init__(self, connection: ClientTransport) -> None:
        self.queue = ByteQueue(
            connection.pause_for_body, connection.resume_for_body, BODY_HIGH_WATER, BODY_LOW_WATER
        )
        self._timeout = connection.limits.body_timeout
        self.done = False
        self.failed = False
        self.timed_out = False
        self.waiter: asyncio.Future[None] | None = None  # made only when the reader must wait

    @property
    def size(self) -> int:
        """Bytes received and not read yet."""
        return self.queue.size

    def feed(self, chunk: bytes) -> None:
        self.queue.append(chunk)
        self._wake()

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
        while not self.queue:
            if self.done:
                if self.failed:
                    raise ClientGone()
                return b""
            loop = asyncio.get_running_loop()
            self.waiter = loop.create_future()
            timer = loop.call_later(self._timeout, self._expire)
            try:
                await self.waiter
            finally:
                self.waiter = None
                timer.cancel()
        return self.queue.take()


class ParsedRequest:
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

    def __init__(self) -> None:
        self.target = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.version = (1, 1)
        self.keep_alive = True
        self.has_body = False
        self.content_length: int | None = None
        self.body: RequestBody | None = None  # made when the head says a body follows
        self.problem: Problem | None = None
        self.in_head = True  # until the parser has the whole head
        self.head_bytes = 0
        self.started = 0.0  # loop time of the head's first byte
        self.received = 0  # body bytes so far
        self.too_large = False  # the body passed max_body_size
        self.view: RequestView | None = None  # made once, by the hit path or the worker
        self.decision: Decision | None = None

    @classmethod
    def refused(cls, problem: Problem) -> ParsedRequest:
        """No request, only the answer to malformed input: `problem`, then close. The worker
        answers it as it answers any request's problem, with "-" as the method in the log."""
        request = cls()
        request.problem = problem
        request.in_head = False
        request.method, request.target = "-", b"/"
        request.keep_alive = False
        return request

    @property
    def body_pending(self) -> bool:
        """The request has a body that was not received to its end."""
        return self.body is not None and not self.body.done

    def fail_body(self) -> None:
        if self.body is not None:
            self.body.end(failed=True)
