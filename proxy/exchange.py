"""The seam between a front (the client-facing server) and the handler.

A front turns its connection into a `ClientSide`; the handler never sees server objects. The
contract: `respond` sends a whole response; `start`/`write`/`finish` stream one; `abort` cuts the
connection so a client can never mistake a truncated body for a complete one; `interim` sends
an interim (1xx) response before the final one. For HEAD requests the front sends headers only
(Content-Length stays what a GET would get).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from proxy.decide import Decision
from proxy.store import CachedResponse
from proxy.view import Headers, RequestView


class CacheResult(StrEnum):
    """What the cache did for a request: the access log's CACHE field and X-Cache's value."""

    HIT = "HIT"  # answered from a stored entry
    MISS = "MISS"  # filled from the app (stored or not)
    PASS = "PASS"  # sent to the app as it came; nothing read from or written to a cache
    STALE = "STALE"  # a stale entry answered (stale-while-revalidate, -if-error, -unreachable)
    ERROR = "ERROR"  # the proxy answered itself: 502/504, a malformed request, a bug


class ClientGone(Exception):
    """The client went away while we were writing to it."""


@dataclass(slots=True)
class Outcome:
    """What happened, for the access log (and later, metrics)."""

    status: int = 0
    cache: CacheResult = CacheResult.PASS
    detail: str = ""  # a PassReason / NotStoredReason value, or "stored"
    rule: str = "-"
    sent: int = 0  # body bytes delivered


class ClientSide(Protocol):
    view: RequestView
    outcome: Outcome  # created by the front, filled in by the handler, logged by the front
    # False for a background refresh's client (refresher.Unattended): no one reads the answer,
    # so a body is read only as far as it is to be stored, and a personal answer is not passed.
    attended: bool

    def body(self) -> AsyncIterator[bytes] | None:
        """The request body as it arrives, or None when the request has none."""

    def body_length(self) -> int | None:
        """The request's Content-Length, when it sent one."""

    def interim(self, status: int, reason: str, headers: Headers) -> None:
        """Send an interim (1xx) response now, before the final one (RFC 9110 §15.2); the caller
        has decided that this client may have it (`policy.relays_interim`). Ignored once the
        final response has begun."""

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None: ...

    async def respond_entry(
        self, entry: CachedResponse, age: int, tags: Headers, status: int
    ) -> None:
        """A hit: the stored response plus Age and `tags` (the same tuple on every hit, so a
        front may keep it serialised). `status` is the entry's, or 304 when the client's copy
        is current: then only the headers RFC 9110 §15.4.5 names go out, and no body."""

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        """Send the status line and headers. `until_close`: the body has no length and is not
        chunked upstream either, so it goes out close-delimited and the connection is closed."""

    async def write(self, chunk: bytes, *, wait: bool = True) -> None:
        """Send a body chunk; raise ClientGone if the client disconnected. `wait=False`: queue
        it without waiting for a slow client to take it (the caller bounds what it queues)."""

    async def finish(self) -> None: ...

    def abort(self) -> None: ...


class Driver(Protocol):
    """What a front calls: the handler."""

    def answer_now(
        self, view: RequestView, outcome: Outcome
    ) -> tuple[Decision, CachedResponse | None, int, Headers]:
        """Decide and, when a usable entry is in memory, fill `outcome` (its status is 304 when
        the client's copy is current) and return the entry with its Age and the hit tags; else
        the entry is None."""

    async def handle(self, client: ClientSide, decision: Decision | None = None) -> Outcome:
        """Serve the request, taking `decision` when `answer_now` already made it."""

    def trace(self, view: RequestView) -> Headers:
        """The decision trace header for a request that asked for one (`Sidecache-Debug`)
        from a peer allowed to (`[admin] debug_from`); () for any other peer."""
