"""Relaying an upstream answer to the client: the cache tags, the body streamed (recorded
for the store on a fill), the proxy's own 502/504, interim responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.decide import CACHEABLE_METHODS, Lookup
from proxy.exchange import CacheResult, ClientGone, ClientSide, Outcome
from proxy.framing import response_has_body
from proxy.policy import (
    DontStore,
    Storability,
    Store,
    cache_status,
    end_to_end,
    relays_interim,
)
from proxy.reasons import NotStoredReason
from proxy.recorder import Recorder
from proxy.rules import Rule
from proxy.settings import Headers as HeaderSettings
from proxy.upstream import InterimRelay, UpstreamError, UpstreamResponse
from proxy.view import Headers, RequestView

HIT, MISS, PASS, ERROR = CacheResult.HIT, CacheResult.MISS, CacheResult.PASS, CacheResult.ERROR
NO_SET_COOKIE = frozenset({"set-cookie"})


def record(
    outcome: Outcome, status: int, cache: CacheResult, detail: str, rule: str, sent: int = 0
) -> Outcome:
    """Fill in what the access log and the dev view show of a request."""
    outcome.status, outcome.cache, outcome.detail, outcome.rule = status, cache, detail, rule
    outcome.sent = sent
    return outcome


class Tags:
    """The X-Cache and Cache-Status headers as configured, made once per distinct pair."""

    def __init__(self, headers: HeaderSettings) -> None:
        self._headers = headers
        self._memo: dict[tuple[CacheResult, str], Headers] = {}
        self.hit = self(HIT, cache_status(True))
        self.revalidated = self(HIT, "sidecache; fwd=stale; fwd-status=304")

    def __call__(self, x_cache: CacheResult, status: str) -> Headers:
        tags = self._memo.get((x_cache, status))
        if tags is None:
            tags = self._memo[(x_cache, status)] = self._make(x_cache, status)
        return tags

    def _make(self, x_cache: CacheResult, status: str) -> Headers:
        tags: list[tuple[str, str]] = []
        if self._headers.cache_status:
            tags.append(("Cache-Status", status))
        if self._headers.x_cache:
            tags.append(("X-Cache", x_cache))
        return tuple(tags)


async def stream(
    client: ClientSide,
    response: UpstreamResponse,
    headers: Headers,
    outcome: Outcome,
    recorder: Recorder | None = None,
    keep: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Relay the upstream body. With a `recorder` (a fill to store), the body is read at
    the upstream's pace: chunks are queued for the client without waiting for it (the
    recorder's cap bounds them) until it overflows, and `keep` runs once the body is in,
    before the client is waited for."""
    head_only = client.view.method == "HEAD" or not client.attended
    kept = False
    try:
        until_close = not response.framed and response_has_body(client.view.method, response.status)
        await client.start(
            response.status, response.reason, headers, response.content_length, until_close
        )
        async for chunk in response.chunks():
            if recorder is not None:
                recorder.feed(chunk)
            if not head_only:
                await client.write(chunk, wait=recorder is None or recorder.overflowed)
                outcome.sent += len(chunk)
            elif recorder is None or recorder.overflowed:
                response.close()  # HEAD and nothing (more) to keep: stop reading
                if recorder is not None:
                    outcome.detail = NotStoredReason.TOO_BIG.value
                await client.finish()
                return
        response.release()
        if keep is not None:
            await keep()
            kept = True
        await client.finish()
    except UpstreamError:
        # Headers are out: the only honest signal left is cutting the connection.
        client.abort()
        response.close()
        outcome.detail = NotStoredReason.INCOMPLETE.value
    except (ClientGone, asyncio.CancelledError) as exc:
        # The client went away (a front may cancel us for it): drop the upstream exchange.
        response.close()
        if not kept:  # else it is stored all the same
            outcome.detail = NotStoredReason.INCOMPLETE.value
        if isinstance(exc, asyncio.CancelledError):
            raise


async def fail(client: ClientSide, exc: UpstreamError, outcome: Outcome, tags: Tags) -> Outcome:
    """502/504 with a short plain-text body, before any response byte was sent. X-Cache
    says what was tried (MISS or PASS), Cache-Status what failed; the log says ERROR."""
    tried = outcome.cache
    fwd = pass_fwd(client.view) if tried == PASS else "miss"
    shown = tags(tried, cache_status(False, fwd=fwd, detail=exc.kind))
    reason = "Gateway Timeout" if exc.status == 504 else "Bad Gateway"
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))
    body = f"{exc.status} {reason}: {exc.message}\n".encode()
    await client.respond(exc.status, reason, headers + shown, body)
    outcome.status, outcome.cache, outcome.detail = exc.status, ERROR, exc.kind
    outcome.sent = 0 if client.view.method == "HEAD" else len(body)
    return outcome


def pass_fwd(view: RequestView) -> str:
    """RFC 9211's fwd for a pass: "method" when the method itself is never answered from a
    cache (POST...), else "bypass" (the configuration or the visitor sent it upstream)."""
    return "bypass" if view.method in CACHEABLE_METHODS else "method"


def relay_interim(client: ClientSide, drop: frozenset[str] = frozenset()) -> InterimRelay:
    """Where the interim responses to a client's forwarded request go: to that client, without
    hop-by-hop fields (and `drop`), when `relays_interim` says so (RFC 9110 §15.2). Never
    stored, never seen by a waiter or a hit: only the upstream exchange made for this client
    carries them (a background refresh's `Unattended` client drops them)."""
    version = client.view.version

    def relay(status: int, reason: str, headers: Headers) -> None:
        if relays_interim(status, version):
            client.interim(status, reason, end_to_end(headers, drop=drop))

    return relay


def miss_headers(
    tags: Tags,
    view: RequestView,
    rule: Rule,
    response: UpstreamResponse,
    verdict: Storability,
    untold: frozenset[str] = frozenset(),
) -> Headers:
    """The fill response's end-to-end headers (without the purge tag headers `untold`) and
    the MISS tags.

    A fill carries no cookies, so its Set-Cookie starts a session the client does not have
    and would clobber the one it has. A client that sent no cookies would have been given
    that session by the app itself (and shared mode's fills are the client's own request):
    it gets it, unless the response is stored.
    """
    stored = isinstance(verdict, Store)
    detail = verdict.reason.value if isinstance(verdict, DontStore) else ""
    # Claim "stored" only when the length is known to fit; a chunked body may yet overflow.
    sure = stored and response.content_length is not None
    shown = tags(MISS, cache_status(False, fwd="miss", stored=sure, detail=detail))
    own_session = not stored and own_request(view, rule)
    drop = untold if own_session else NO_SET_COOKIE | untold
    return end_to_end(response.headers, drop=drop) + shown


def own_request(view: RequestView, rule: Rule) -> bool:
    """Was the fill the client's own request, credentials and all? Yes when the client sent no
    cookies (a fill sends none), or in shared mode (its fills forward every header)."""
    return rule.forward_all or "cookie" not in view.header_map


async def not_in_cache(client: ClientSide, lookup: Lookup) -> Outcome:
    """only-if-cached and nothing usable: 504 (RFC 9111 §5.2.1.7)."""
    outcome = record(client.outcome, 504, MISS, "only-if-cached", lookup.rule.label)
    headers = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))
    await client.respond(504, "Gateway Timeout", headers, b"504 not in cache\n")
    return outcome
