"""One request/response exchange on an upstream connection, as a value: what the response's head
says so far, where its body stands, and the failure that ended it, if any.

The connection (`upstream_connection.py`) makes one `Exchange` per request and drops it when the
exchange is over, so no field of one exchange can leak into the next. The limits on interim
responses and the errors an exchange ends with are here too, beside the state they judge:

- An upstream that sends more than MAX_INTERIM interim responses (RFC 9110 §15.2), one with more
  than MAX_INTERIM_FIELDS fields or more than MAX_INTERIM_HEAD bytes of fields in all of them
  (the front's limits on a request head), or one with Transfer-Encoding or a non-zero
  Content-Length (RFC 9110 §8.6, RFC 9112 §6.1: a server must not send those in a 1xx; llhttp
  would read a body after some) is broken: the exchange fails (a 502). A 101 is a switch nobody
  asked for: never handed on, and a 502 too.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from proxy.flow import ByteQueue
from proxy.framing import body_is_framed

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


class Phase(enum.Enum):
    """Where the response of an exchange stands."""

    HEAD = "head"  # the final head has not arrived (interim responses may have)
    BODY = "body"  # the head is in; more body may come
    DONE = "done"  # no more body will come (or none will be kept: the exchange failed)


# The members as module constants for the per-byte paths: on Python 3.11 `Phase.HEAD` goes
# through the enum's metaclass (~70 ns a lookup, about a dozen per exchange), a global ~10 ns.
HEAD, BODY, DONE = Phase.HEAD, Phase.BODY, Phase.DONE


class Head:
    """A response head as the parser reports it: status line, fields, and their framing."""

    __slots__ = (
        "chunked",
        "coded",
        "content_length",
        "keep_alive",
        "raw_headers",
        "reason",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self.reason = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.coded = False  # a transfer coding we do not decode: refused (RFC 9112 §6.1)
        self.keep_alive = False

    @property
    def framed(self) -> bool:
        """Whether the body's end is marked, so a short one shows: close-delimited bodies cannot
        be told apart from truncated ones (RFC 9112 §6.3); a 204 or 304 has no body at all."""
        return body_is_framed(self.chunked, self.content_length, self.status)


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Exchange:
    """The state of one request and its response on a connection."""

    __slots__ = (
        "answered",
        "body",
        "closing",
        "data",
        "deadline",
        "drained",
        "failure",
        "head",
        "head_only",
        "head_ready",
        "interim",
        "interim_size",
        "interims",
        "out_of_step",
        "phase",
        "reused",
        "sent",
        "stale",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        body: ByteQueue,
        deadline: float,
        reused: bool,
        head_only: bool,
        closing: bool,
        interim: Interim | None,
    ) -> None:
        self.head_ready: asyncio.Future[None] = loop.create_future()  # the final head, or a failure
        self.body = body
        self.deadline = deadline  # the total timeout, as loop time (inf: none)
        self.reused = reused  # not the connection's first exchange
        self.head_only = head_only  # a HEAD request: the response has no body (RFC 9112 §6.3)
        self.closing = closing  # the request said Connection: close
        self.interim = interim  # where interim responses go (None: dropped)
        self.head = Head()
        self.phase = HEAD
        self.sent = False  # the request went out whole
        self.answered = False  # a response byte arrived
        self.stale = False  # lost before any response byte: the upstream may have seen nothing
        self.out_of_step = False  # bytes after the message: the connection cannot be reused
        self.failure: BaseException | None = None
        self.interims = 0
        self.interim_size = 0
        self.data: asyncio.Future[None] | None = None  # the reader waits for body
        self.drained: asyncio.Future[None] | None = None  # the sender waits to write more

    def __repr__(self) -> str:
        status = f" {self.head.status}" if self.phase is not HEAD else ""
        failed = f" failed: {self.failure}" if self.failure is not None else ""
        return f"<Exchange {self.phase.name}{status}, {self.body.size} bytes queued{failed}>"

    @property
    def clean(self) -> bool:
        """Over without a fault: the request sent whole, the response read whole, nothing after
        it, and both sides willing to keep the connection (RFC 9112 §9.3)."""
        return (
            self.phase is DONE
            and self.sent
            and self.head.keep_alive
            and not (self.head_only or self.out_of_step or self.closing or self.body)
            and self.failure is None
        )

    def fail(self, exc: BaseException) -> None:
        """The first failure is the one raised; every wait ends."""
        if self.failure is None:
            self.failure = exc
        self.wake()

    def lost(self, exc: Exception | None) -> None:
        """The connection is gone: a close-delimited body ends here (RFC 9112 §6.3); an
        unfinished one fails, as a stale exchange when nothing of the response had come."""
        if self.phase is DONE or self.failure is not None:
            return
        if self.phase is BODY and not self.head.framed and exc is None:
            self.phase = DONE
        elif self.answered:
            self.failure = broken("connection closed before the response was complete")
        else:
            self.stale = True
            self.failure = broken("connection closed before any response")

    def wake(self) -> None:
        _resolve(self.head_ready)
        _resolve(self.data)
        _resolve(self.drained)

    def interim_fault(self, status: int) -> str | None:
        """An interim response's head is complete: checked against the limits, handed on, and
        forgotten (the final head starts afresh). Returns why it shows a broken upstream."""
        head, self.head = self.head, Head()
        if self.failure is not None:
            return None
        fields = head.raw_headers
        self.interims += 1
        self.interim_size += sum([len(n) + len(v) for n, v in fields])
        framed = head.chunked or bool(head.content_length)
        fault = interim_fault(self.interims, len(fields), self.interim_size, framed)
        if fault is None and self.interim is not None and status != 101:
            self.interim(status, head.reason, fields)
        return fault
