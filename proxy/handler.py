"""The one driver: recv → decide → hit | miss | pass → deliver.

It turns decisions of the pure core into I/O through three seams: `ClientSide` (the front),
`UpstreamClient` and `CacheStore`. It never sees server or client library objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import assert_never

from proxy import fields
from proxy.coalescer import Coalescer
from proxy.conditional import not_modified
from proxy.decide import Decision, Lookup, Pass, decide
from proxy.entries import EntryWriter
from proxy.exchange import CacheResult, ClientSide, Outcome
from proxy.finder import find
from proxy.forwarding import fill_request, unconditional
from proxy.freshness import (
    NO_DIRECTIVES,
    RequestDirectives,
    request_directives,
)
from proxy.passes import PassForwarder
from proxy.planner import (
    Fill,
    Hit,
    NotCached,
    Partial,
    PassPersonal,
    RangeToApp,
    Revalidate,
    ServeStale,
    plan,
    servable,
    stand_in,
    usable,
)
from proxy.policy import (
    DontStore,
    Storability,
    Store,
    cache_control,
    personal,
)
from proxy.ranges import UNSATISFIABLE, byte_range, if_range_holds
from proxy.reasons import NotStoredReason, PassReason
from proxy.recorder import Recorder
from proxy.refresher import Refresher, validators
from proxy.relay import (
    NO_SET_COOKIE,
    Tags,
    fail,
    miss_headers,
    not_in_cache,
    own_request,
    record,
    relay_interim,
    stream,
)
from proxy.settings import Settings
from proxy.store import CachedResponse, CacheStore, Fleet
from proxy.trace import TRACE_HEADER, header_value, traced_decide
from proxy.upstream import UpstreamClient, UpstreamError, UpstreamResponse
from proxy.vary import variant_key
from proxy.view import Headers, RequestView

log = logging.getLogger("sidecache")
HIT, MISS, STALE = CacheResult.HIT, CacheResult.MISS, CacheResult.STALE


class Handler:
    def __init__(
        self,
        settings: Settings,
        stores: Mapping[str, CacheStore],
        upstream: UpstreamClient,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        fleet: Fleet | None = None,
    ) -> None:
        """`clock`: monotonic seconds, the stores' (freshness, keep, hit-for-pass); `wall`: epoch
        seconds, for what is compared with the origin's Date, Expires and Age. Both injected.
        `fleet`: coalescing across instances through Redis ([redis] coalesce), or None."""
        self.settings = settings
        self.fleet = fleet
        self.stores = stores
        self.upstream = upstream
        self.clock = clock
        self.coalescer = Coalescer(settings.caches, clock)
        self.entries = EntryWriter(settings, clock, wall)
        self.refresher = Refresher(self.coalescer, self.revalidate)
        self.tags = Tags(settings.headers)
        self.passes = PassForwarder(settings, stores, upstream, self.tags)

    def answer_now(
        self, view: RequestView, outcome: Outcome
    ) -> tuple[Decision, CachedResponse | None, int, Headers]:
        """The synchronous hit path a front may take before it starts any task: the decision,
        and when a store holds a usable entry in memory, the entry, its Age and the cache tags,
        with `outcome` filled in (`outcome.status` is 304 when the client's copy is current).
        Otherwise the front passes the decision on to `handle`."""
        decision = decide(view, self.settings.rules, self.settings.identity)
        if not isinstance(decision, Lookup):
            return decision, None, 0, ()
        store = self.stores[decision.rule.cache]
        entry = store.get_now(decision.key)
        if entry is None:
            return decision, None, 0, ()
        if entry.status == 0:  # a Vary marker
            entry = store.get_now(variant_key(decision.key, entry.vary, view, entry.generation))
            if entry is None:
                return decision, None, 0, ()
        # The common hit in a few dict lookups; Range, Cache-Control and conditional requests
        # take the general checks (and Range the worker).
        fields = view.header_map
        now = self.clock()
        if "range" in fields or not (
            usable(entry, self._request_directives(view), now)
            if "cache-control" in fields
            else now < entry.fresh_until
        ):
            return decision, None, 0, ()
        if "if-none-match" in fields or "if-modified-since" in fields:
            age = self._hit(view, entry, decision, outcome, now)
        else:
            sent = 0 if view.method == "HEAD" else len(entry.body)
            record(outcome, entry.status, HIT, "", decision.rule.label, sent)
            age = entry.age(now)
        return decision, entry, age, self.tags.hit

    def trace(self, view: RequestView) -> Headers:
        """Sidecache-Trace for a debug request from a peer `[admin] debug_from` lists: the
        decision made again, traced (trace.py), for the front to add on delivery only."""
        if not self.settings.debug_from.trusts(view.peer):
            return ()
        traced = traced_decide(view, self.settings.rules, self.settings.identity)
        return ((TRACE_HEADER, header_value(traced)),)

    async def handle(self, client: ClientSide, decision: Decision | None = None) -> Outcome:
        if decision is None:
            decision = decide(client.view, self.settings.rules, self.settings.identity)
        match decision:
            case Lookup():
                return await self.lookup(client, decision)
            case Pass():
                return await self.passes.forward(client, decision)
            case _:
                assert_never(decision)

    async def lookup(self, client: ClientSide, lookup: Lookup, fleet: bool = True) -> Outcome:
        """Find the entry, wait for a fill of the key under way (coalescing: one fill goes
        upstream, the others wait a bounded time for what it stores), then do what `plan`
        says. A fill another instance makes is waited for too (`fleet`), then looked for once
        more."""
        view = client.view
        store = self.stores[lookup.rule.cache]
        asked = self._request_directives(view)
        entry, key = await find(store, lookup, view, asked, self.clock())
        fill = self.coalescer.under_way(lookup.key)
        if fill is not None and not servable(entry, asked, self.clock()):
            await self.coalescer.wait_for(fill, lookup)
            entry, key = await find(store, lookup, view, asked, self.clock())
            if entry is not None and usable(entry, asked, self.clock()):
                client.outcome.detail = "coalesced"
        now = self.clock()
        ranged = view.header("range")
        state = plan(entry, asked, now, ranged=ranged, personal=self.coalescer.personal(lookup))
        match state:
            case Hit(entry=found):
                age = self._hit(view, found, lookup, client.outcome, now, client.outcome.detail)
                await client.respond_entry(found, age, self.tags.hit, client.outcome.status)
                return client.outcome
            case Partial(entry=found, wanted=wanted):
                return await self._partial(client, lookup, found, wanted, now)
            case RangeToApp():
                return await self.passes.forward(client, Pass(PassReason.RANGE, lookup.rule))
            case NotCached():
                return await not_in_cache(client, lookup)
            case ServeStale(entry=found):
                self.refresher.refresh_behind(store, lookup, view, found, key)
                return await self._serve_stale(client, lookup, found, "stale-while-revalidate")
            case PassPersonal():
                return await self.passes.forward(client, Pass(PassReason.HIT_FOR_PASS, lookup.rule))
            case Revalidate() | Fill():
                if fleet and isinstance(state, Fill) and await self._filled_elsewhere(lookup):
                    client.outcome.detail = "coalesced"
                    return await self.lookup(client, lookup, fleet=False)
                return await self._go_upstream(client, lookup, store, state, key)
            case _:
                assert_never(state)

    async def _go_upstream(
        self,
        client: ClientSide,
        lookup: Lookup,
        store: CacheStore,
        state: Revalidate | Fill,
        key: str,
    ) -> Outcome:
        """Lead the key's fill (others may wait for it) and revalidate or fill."""
        leader = self.coalescer.lead(lookup)
        try:
            if isinstance(state, Revalidate):
                return await self.revalidate(client, lookup, store, state.entry, key)
            return await self.fetch_miss(client, lookup, store, stale=state.stale)
        finally:
            if leader is not None:
                self.coalescer.release(lookup, leader, client.outcome)
            if self.fleet is not None:
                await self.fleet.release(lookup.rule.cache, lookup.key)

    async def _filled_elsewhere(self, lookup: Lookup) -> bool:
        """Another instance was filling the key, and was waited for (store/fleet.py)."""
        if self.fleet is None:
            return False
        wait = self.settings.caches[lookup.rule.cache].coalesce_wait
        return await self.fleet.elsewhere(lookup.rule.cache, lookup.key, wait)

    async def _partial(
        self, client: ClientSide, lookup: Lookup, entry: CachedResponse, wanted: str, now: float
    ) -> Outcome:
        """A Range request and a usable entry (RFC 9110 §14): a 304 if the client's copy is
        current, the whole response if If-Range says it changed (§13.1.5), else one range as a
        206 (416 when none of it exists). A Range this cache does not answer (several ranges,
        another unit) goes to the app, which may send multipart/byteranges."""
        view, outcome = client.view, client.outcome
        span = byte_range(wanted, len(entry.body))
        if_range = if_range_holds(view.header("if-range"), entry.etag, entry.last_modified)
        if span is None and if_range:
            return await self.passes.forward(client, Pass(PassReason.RANGE, lookup.rule))
        age = self._hit(view, entry, lookup, outcome, now)
        if outcome.status == 304 or span is None or not if_range:
            await client.respond_entry(entry, age, self.tags.hit, outcome.status)
            return outcome
        size = len(entry.body)
        headers = (*entry.headers, ("Age", str(age)), *self.tags.hit)
        if span == UNSATISFIABLE:
            record(outcome, 416, HIT, "", lookup.rule.label, 0)
            unsatisfied = (("Content-Range", f"bytes */{size}"), ("Age", str(age)), *self.tags.hit)
            await client.respond(416, "Range Not Satisfiable", unsatisfied, b"")
            return outcome
        first, last = span
        part = entry.body[first : last + 1]
        sent = 0 if view.method == "HEAD" else len(part)
        record(outcome, 206, HIT, "", lookup.rule.label, sent)
        ranged = (*headers, ("Content-Range", f"bytes {first}-{last}/{size}"))
        await client.respond(206, "Partial Content", ranged, part)
        return outcome

    def _request_directives(self, view: RequestView) -> RequestDirectives:
        if "cache-control" not in view.header_map:
            return NO_DIRECTIVES
        return request_directives(cache_control(view.headers), self.settings.request_directives)

    def _hit(
        self,
        view: RequestView,
        entry: CachedResponse,
        lookup: Lookup,
        outcome: Outcome,
        now: float,
        detail: str = "",
    ) -> int:
        """Record a hit (a 304 when the client's copy is current: preconditions apply only to
        what would be a 2xx, RFC 9110 §13.2.1); return the entry's Age."""
        fits = 200 <= entry.status < 300
        if fits and _conditional(view) and not_modified(view, entry.etag, _modified(entry)):
            record(outcome, 304, HIT, detail, lookup.rule.label, 0)
        else:
            sent = 0 if view.method == "HEAD" else len(entry.body)
            record(outcome, entry.status, HIT, detail, lookup.rule.label, sent)
        return entry.age(now)

    async def fetch_miss(
        self,
        client: ClientSide,
        lookup: Lookup,
        store: CacheStore,
        stale: CachedResponse | None = None,
    ) -> Outcome:
        """Fill as a brand-new visitor would, stream to the client, store if whole and storable.
        When the upstream fails, a `stale` entry answers if `stand_in` lets it."""
        response, authorized, asked = await self._ask(client, lookup, stale)
        if response is None:
            return client.outcome
        return await self._fill(client, lookup, store, response, authorized, asked)

    async def _ask(
        self,
        client: ClientSide,
        lookup: Lookup,
        stale: CachedResponse | None,
        validators: Headers = (),
    ) -> tuple[UpstreamResponse | None, bool, float]:
        """Send the fill request (with `validators`, to revalidate): the response, whether it
        carried Authorization, and when it was asked (epoch seconds). None when it failed and
        the client has been answered: by `stale` if `stand_in` lets it, else 502/504."""
        headers, authorized = fill_request(self.settings, client.view, lookup)
        outcome = record(client.outcome, 0, MISS, "", lookup.rule.label)
        asked = self.entries.wall()
        try:
            if validators:  # a revalidation asks about the stored response only
                headers = unconditional(headers) + validators
            # A fill without the client's cookies: its interim Set-Cookie is someone else's.
            # The purge tags are the site's own, in a 103 as in the final response.
            drop = self.settings.purge.stripped
            if not own_request(client.view, lookup.rule):
                drop |= NO_SET_COOKIE
            response = await self.upstream.request(
                "GET", client.view.target, headers, interim=relay_interim(client, drop)
            )
        except UpstreamError as exc:
            why = stand_in(stale, lookup.rule, self.clock(), unreachable=True)
            if stale is not None and why:
                await self._serve_stale(client, lookup, stale, why)
            else:
                await fail(client, exc, outcome, self.tags)
            return None, authorized, asked
        if response.status >= 500 and stale is not None:
            why = stand_in(stale, lookup.rule, self.clock(), unreachable=False)
            if why:
                response.close()
                await self._serve_stale(client, lookup, stale, why)
                return None, authorized, asked
        return response, authorized, asked

    async def _serve_stale(
        self, client: ClientSide, lookup: Lookup, entry: CachedResponse, why: str
    ) -> Outcome:
        """A stale entry answers (X-Cache: STALE, with its Age)."""
        outcome = client.outcome
        age = self._hit(client.view, entry, lookup, outcome, self.clock(), detail=why)
        outcome.cache = STALE
        tags = self.tags(STALE, f'sidecache; hit; detail="{why}"')
        await client.respond_entry(entry, age, tags, outcome.status)
        return outcome

    async def revalidate(
        self,
        client: ClientSide,
        lookup: Lookup,
        store: CacheStore,
        entry: CachedResponse,
        key: str,
    ) -> Outcome:
        """A stale entry with a validator: ask the origin whether it changed (RFC 9111 §4.3).
        304: the entry is refreshed and answers; anything else is a fill."""
        response, authorized, asked = await self._ask(client, lookup, entry, validators(entry))
        if response is None:
            return client.outcome
        outcome = client.outcome
        if response.status != 304:
            return await self._fill(client, lookup, store, response, authorized, asked)
        entry = await self.entries.refreshed(
            store, lookup, client.view, entry, key, response, asked
        )
        now = self.clock()
        age = self._hit(client.view, entry, lookup, outcome, now, detail="revalidated")
        await client.respond_entry(entry, age, self.tags.revalidated, outcome.status)
        return outcome

    async def aclose(self) -> None:
        """Cancel background refreshes (at shutdown)."""
        await self.refresher.aclose()

    async def _fill(
        self,
        client: ClientSide,
        lookup: Lookup,
        store: CacheStore,
        response: UpstreamResponse,
        authorized: bool,
        asked: float,
    ) -> Outcome:
        """Stream a fill response to the client; store it if it arrived whole and may be."""
        view, outcome = client.view, client.outcome
        cache = self.settings.caches[lookup.rule.cache]
        made_for_one = personal(response.headers, lookup.rule, self.settings.targeted)
        verdict: Storability
        if made_for_one is not None:
            self.coalescer.settle(lookup, made_for_one, response.status)
            if client.attended and not own_request(view, lookup.rule):  # made for someone else
                response.close()
                return await self.passes.forward(client, Pass(PassReason.HIT_FOR_PASS, lookup.rule))
            verdict = DontStore(made_for_one)
        else:
            verdict = self.entries.verdict(response, lookup, authorized)
        if self._request_directives(view).no_store and isinstance(verdict, Store):
            verdict = DontStore(NotStoredReason.REQUEST_NO_STORE)
        outcome.status = response.status
        if not isinstance(verdict, Store):
            outcome.detail = verdict.reason.value
            self.coalescer.settle(lookup, outcome.detail, response.status)  # nothing to wait for
            shown = miss_headers(
                self.tags, view, lookup.rule, response, verdict, self.settings.purge.stripped
            )
            await stream(client, response, shown, outcome)
            return outcome
        outcome.detail = "stored"
        recorder = Recorder(cache.item_size)

        async def keep() -> None:
            """The whole body is in: store it and wake the waiters, before the client is
            waited for."""
            if recorder.overflowed:
                outcome.detail = NotStoredReason.TOO_BIG.value
            else:
                outcome.detail = await self.entries.store_fill(
                    store, lookup, view, response, recorder.body(), verdict, asked
                )
            self.coalescer.settle(lookup, outcome.detail, response.status)

        shown = miss_headers(
            self.tags, view, lookup.rule, response, verdict, self.settings.purge.stripped
        )
        await stream(client, response, shown, outcome, recorder, keep)
        return outcome


def _conditional(view: RequestView) -> bool:
    fields = view.header_map
    return "if-none-match" in fields or "if-modified-since" in fields


def _modified(entry: CachedResponse) -> str | None:
    """What If-Modified-Since is compared with: Last-Modified, else Date (RFC 9111 §4.3.2)."""
    return entry.last_modified or fields.first(entry.headers, "date")
