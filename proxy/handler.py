"""The one driver: recv → decide → hit | miss | pass → deliver.

It turns decisions of the pure core into I/O through three seams: `ClientSide` (the front),
`UpstreamClient` and `CacheStore`. It never sees server or client library objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import assert_never

from proxy.decide import Decision, Lookup, Pass, decide
from proxy.exchange import ClientGone, ClientSide, Outcome
from proxy.forwarding import fill_headers, pass_headers
from proxy.policy import (
    DontStore,
    Storability,
    Store,
    body_storability,
    cache_status,
    end_to_end,
    response_has_body,
    storability,
    stored_headers,
)
from proxy.reasons import NotStoredReason
from proxy.recorder import Recorder
from proxy.settings import Settings
from proxy.store import CachedResponse, CacheStore
from proxy.upstream import UpstreamClient, UpstreamError, UpstreamResponse
from proxy.view import Headers, RequestView

_NO_SET_COOKIE = frozenset({"set-cookie"})


class Handler:
    def __init__(
        self,
        settings: Settings,
        stores: Mapping[str, CacheStore],
        upstream: UpstreamClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.upstream = upstream
        self.clock = clock
        self._tag_memo: dict[tuple[str, str], Headers] = {}
        self._hit_tags = self._tags("HIT", cache_status(True))

    def _tags(self, x_cache: str, status: str) -> Headers:
        """The X-Cache and Cache-Status headers, made once per distinct pair (a handful)."""
        tags = self._tag_memo.get((x_cache, status))
        if tags is None:
            tags = self._tag_memo[(x_cache, status)] = self._make_tags(x_cache, status)
        return tags

    def _make_tags(self, x_cache: str, status: str) -> Headers:
        tags: list[tuple[str, str]] = []
        if self.settings.headers.cache_status:
            tags.append(("Cache-Status", status))
        if self.settings.headers.x_cache:
            tags.append(("X-Cache", x_cache))
        return tuple(tags)

    def answer_now(
        self, view: RequestView, outcome: Outcome
    ) -> tuple[Decision, CachedResponse | None, int, Headers]:
        """The synchronous hit path a front may take before it starts any task: the decision,
        and when a store holds the entry in memory, the entry, its Age and the cache tags, with
        `outcome` filled in. Otherwise the front passes the decision on to `handle`."""
        decision = decide(view, self.settings.rules, self.settings.identity)
        if isinstance(decision, Lookup):
            entry = self.stores[decision.rule.cache].get_now(decision.key)
            if entry is not None:
                return decision, entry, self._hit(view, entry, decision, outcome), self._hit_tags
        return decision, None, 0, ()

    async def handle(self, client: ClientSide, decision: Decision | None = None) -> Outcome:
        if decision is None:
            decision = decide(client.view, self.settings.rules, self.settings.identity)
        match decision:
            case Lookup():
                store = self.stores[decision.rule.cache]
                entry = await store.get(decision.key)
                if entry is not None:
                    age = self._hit(client.view, entry, decision, client.outcome)
                    await client.respond_entry(entry, age, self._hit_tags)
                    return client.outcome
                return await self.fetch_miss(client, decision, store)
            case Pass():
                return await self.forward_pass(client, decision)
            case _:
                assert_never(decision)

    def _hit(
        self, view: RequestView, entry: CachedResponse, lookup: Lookup, outcome: Outcome
    ) -> int:
        """Record a hit; return the entry's Age (RFC 9111 §5.1)."""
        sent = 0 if view.method == "HEAD" else len(entry.body)
        _record(outcome, entry.status, "HIT", "", lookup.rule.label, sent)
        return entry.age(self.clock())

    async def fetch_miss(self, client: ClientSide, lookup: Lookup, store: CacheStore) -> Outcome:
        """Fill as a brand-new visitor would, stream to the client, store if whole and storable."""
        view, rule = client.view, lookup.rule
        cache = self.settings.caches[rule.cache]
        authorized = rule.allow_authorization and view.header("authorization") is not None
        headers = fill_headers(
            view,
            self.settings.trust,
            self.settings.upstream,
            encoding=lookup.encoding,
            keep_cookies=rule.keep_cookies,
            keep_authorization=authorized,
            keep_headers=rule.fill_headers,
        )
        outcome = _record(client.outcome, 0, "MISS", "", rule.label)
        try:
            response = await self.upstream.request("GET", view.target, headers)
        except UpstreamError as exc:
            return await self._fail(client, exc, outcome)
        verdict = self._verdict(response, lookup, authorized)
        recorder = Recorder(cache.item_size) if isinstance(verdict, Store) else None
        outcome.status = response.status
        outcome.detail = verdict.reason.value if isinstance(verdict, DontStore) else "stored"
        shown = self._miss_headers(view, response, verdict)
        if not await self._stream(client, response, shown, recorder, outcome):
            return outcome
        if recorder is not None and isinstance(verdict, Store):
            outcome.detail = await self._store(store, lookup.key, response, recorder, verdict)
        return outcome

    def _verdict(self, response: UpstreamResponse, lookup: Lookup, authorized: bool) -> Storability:
        """Storability from the status line and headers, then what they tell of the body."""
        rule = lookup.rule
        cache = self.settings.caches[rule.cache]
        ttl = cache.ttl if rule.ttl is None else rule.ttl
        keyed = rule.key.headers if rule.key else frozenset()
        return body_storability(
            storability(response.status, response.headers, rule, ttl, keyed, authorized),
            response.headers,
            response.content_length,
            response.framed,
            cache.item_size,
            lookup.encoding,
        )

    def _miss_headers(
        self, view: RequestView, response: UpstreamResponse, verdict: Storability
    ) -> Headers:
        """The fill response's end-to-end headers and the MISS tags.

        A fill carries no cookies, so its Set-Cookie starts a session the client does not have
        and would clobber the one it has. A client that sent no cookies would have been given
        that session by the app itself: it gets it, unless the response is stored.
        """
        stored = isinstance(verdict, Store)
        detail = verdict.reason.value if isinstance(verdict, DontStore) else ""
        # Claim "stored" only when the length is known to fit; a chunked body may yet overflow.
        sure = stored and response.content_length is not None
        tags = self._tags("MISS", cache_status(False, fwd="miss", stored=sure, detail=detail))
        own_session = not stored and "cookie" not in view.header_map
        drop = frozenset() if own_session else _NO_SET_COOKIE
        return end_to_end(response.headers, drop=drop) + tags

    async def _store(
        self,
        store: CacheStore,
        key: str,
        response: UpstreamResponse,
        recorder: Recorder,
        verdict: Store,
    ) -> str:
        if recorder.overflowed:
            return NotStoredReason.TOO_BIG.value
        now = self.clock()
        entry = CachedResponse(
            status=response.status,
            reason=response.reason,
            headers=stored_headers(response.headers, time.time()),
            body=recorder.body(),
            stored_at=now,
            expires_at=now + verdict.ttl,
            initial_age=_age(response.headers),
        )
        if not await store.put(key, entry):
            return NotStoredReason.NO_SPACE.value
        return "stored"

    async def forward_pass(self, client: ClientSide, decision: Pass) -> Outcome:
        """Forward as is, bodies streamed both ways; the store is never touched."""
        view = client.view
        label = decision.rule.label if decision.rule else "-"
        outcome = _record(client.outcome, 0, "PASS", decision.reason.value, label)
        headers = pass_headers(view, self.settings.trust, self.settings.upstream)
        try:
            response = await self.upstream.request(
                view.method, view.target, headers, client.body(), client.body_length()
            )
        except UpstreamError as exc:
            return await self._fail(client, exc, outcome)
        tags = self._tags("PASS", cache_status(False, fwd="bypass", detail=outcome.detail))
        outcome.status = response.status
        await self._stream(client, response, end_to_end(response.headers) + tags, None, outcome)
        return outcome

    async def _stream(
        self,
        client: ClientSide,
        response: UpstreamResponse,
        headers: Headers,
        recorder: Recorder | None,
        outcome: Outcome,
    ) -> bool:
        """Relay the upstream body; True when it ended cleanly on both sides."""
        head_only = client.view.method == "HEAD"
        try:
            until_close = not response.framed and response_has_body(
                client.view.method, response.status
            )
            await client.start(
                response.status, response.reason, headers, response.content_length, until_close
            )
            async for chunk in response.chunks():
                if recorder is not None:
                    recorder.feed(chunk)
                if not head_only:
                    await client.write(chunk)
                    outcome.sent += len(chunk)
                elif recorder is None or recorder.overflowed:
                    response.close()  # HEAD and nothing (more) to keep: stop reading
                    if recorder is not None:
                        outcome.detail = NotStoredReason.TOO_BIG.value
                    await client.finish()
                    return False
            await client.finish()
        except UpstreamError:
            # Headers are out: the only honest signal left is cutting the connection.
            client.abort()
            response.close()
            outcome.detail = NotStoredReason.INCOMPLETE.value
            return False
        except (ClientGone, asyncio.CancelledError) as exc:
            # The client went away (a front may cancel us for it): drop the upstream exchange.
            response.close()
            outcome.detail = NotStoredReason.INCOMPLETE.value
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        response.release()
        return True

    async def _fail(self, client: ClientSide, exc: UpstreamError, outcome: Outcome) -> Outcome:
        """502/504 with a short plain-text body, before any response byte was sent."""
        outcome.status, outcome.cache, outcome.detail = exc.status, "ERROR", exc.kind
        reason = "Gateway Timeout" if exc.status == 504 else "Bad Gateway"
        headers = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))
        await client.respond(
            exc.status, reason, headers, f"{exc.status} {reason}: {exc.message}\n".encode()
        )
        return outcome


def _record(
    outcome: Outcome, status: int, cache: str, detail: str, rule: str, sent: int = 0
) -> Outcome:
    outcome.status, outcome.cache, outcome.detail, outcome.rule = status, cache, detail, rule
    outcome.sent = sent
    return outcome


def _age(headers: Headers) -> int:
    """The Age the upstream reported (RFC 9111 §5.1); invalid values count as 0."""
    for name, value in headers:
        if name.lower() == "age" and value.strip().isdigit():
            return int(value.strip())
    return 0
