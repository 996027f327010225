"""Turning an upstream answer into a stored entry: the verdict (may it be stored, for how
long), the entry (freshness counted from when it was asked), and the put (under its key, or
its Vary variant's with a marker). Used by fills, revalidations and background refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.decide import Lookup
from proxy.freshness import TtlMode, initial_age
from proxy.policy import (
    Storability,
    Store,
    body_storability,
    refreshed_headers,
    storability,
    stored_headers,
)
from proxy.purge import response_tags
from proxy.reasons import NotStoredReason
from proxy.settings import Settings
from proxy.store import CachedResponse, CacheStore, vary_marker
from proxy.upstream import UpstreamResponse
from proxy.vary import variant_key
from proxy.view import Headers, RequestView


@dataclass(frozen=True, slots=True)
class Place:
    """What a purge finds an entry by: the Host and target it was stored for, its tags."""

    host: str
    target: str
    tags: tuple[str, ...]


class EntryWriter:
    """Verdicts, entries and puts for one configuration, on the injected clock."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock  # the store's monotonic clock: freshness and keep deadlines
        self.wall = wall  # epoch seconds: compared with the origin's Date, Expires, Age
        self.tag_names = settings.purge.tag_headers
        self.untold = settings.purge.stripped  # the tag headers no visitor gets

    async def refreshed(
        self,
        store: CacheStore,
        lookup: Lookup,
        view: RequestView,
        entry: CachedResponse,
        key: str,
        response: UpstreamResponse,
        asked: float,
    ) -> CachedResponse:
        """A 304 for `entry`: its headers updated (RFC 9111 §3.2) and stored again with new
        freshness; removed instead when the origin no longer allows storing it. Returns the
        entry that answers (the checked copy either way)."""
        response.release()  # a 304 has no body
        merged = refreshed_headers(entry.headers, response.headers, self.untold)
        # A 304 that names no tags keeps the stored ones (it updates, it does not replace).
        tags = response_tags(response.headers, self.tag_names) or entry.tags
        verdict = storability(
            entry.status,
            merged,
            lookup.rule,
            lookup.rule.policy,
            _keyed(lookup),
            False,
            self.wall(),
            self.settings.targeted,
        )
        if not isinstance(verdict, Store):
            await store.delete(key)
            return entry
        status_line = (entry.status, entry.reason)
        place = _place(lookup, view, tags)
        entry = self.entry(lookup, status_line, response, merged, entry.body, verdict, asked, place)
        if not await self.put(store, lookup, view, entry, verdict):
            await store.delete(key)
        return entry

    async def store_fill(
        self,
        store: CacheStore,
        lookup: Lookup,
        view: RequestView,
        response: UpstreamResponse,
        body: bytes,
        verdict: Store,
        asked: float,
    ) -> str:
        """Store a fill's whole `body`; the access log's detail: stored, or no-space."""
        headers = stored_headers(response.headers, self.wall(), self.untold)
        status_line = (response.status, response.reason)
        place = _place(lookup, view, response_tags(response.headers, self.tag_names))
        entry = self.entry(lookup, status_line, response, headers, body, verdict, asked, place)
        stored = await self.put(store, lookup, view, entry, verdict)
        return "stored" if stored else NotStoredReason.NO_SPACE.value

    def entry(
        self,
        lookup: Lookup,
        status_line: tuple[int, str],
        response: UpstreamResponse,
        headers: Headers,
        body: bytes,
        verdict: Store,
        asked: float,
        place: Place,
    ) -> CachedResponse:
        """An entry received now in `response` (a fill, or the 304 that revalidated it), asked
        for at `asked` (epoch seconds), for `place`: fresh for the
        verdict's lifetime, less the age it already had (§4.2.3) when the origin's headers
        decide (a forced ttl counts from now: an origin clock that is off must not cut it),
        then kept for revalidation."""
        now = self.clock()
        age = initial_age(response.headers, asked, self.wall())  # its Date and Age
        by_origin = lookup.rule.policy.mode is TtlMode.ORIGIN
        fresh_until = now + max(0.0, verdict.fresh_for - (age if by_origin else 0.0))
        return CachedResponse(
            status=status_line[0],
            reason=status_line[1],
            headers=headers,
            body=body,
            stored_at=now,
            expires_at=fresh_until + verdict.keep,
            initial_age=age,
            fresh_until=fresh_until,
            must_revalidate=verdict.must_revalidate,
            stale_while_revalidate=verdict.stale_while_revalidate,
            stale_if_error=verdict.stale_if_error,
            host=place.host,
            target=place.target,
            tags=place.tags,
        )

    async def put(
        self,
        store: CacheStore,
        lookup: Lookup,
        view: RequestView,
        entry: CachedResponse,
        verdict: Store,
    ) -> bool:
        """Store `entry` under the lookup's key, or when it varies under its variant's key with
        a marker naming the headers under the lookup's key (the marker already there, if it
        names the same headers, so the other variants stay reachable)."""
        if not verdict.vary:
            return await store.put(lookup.key, entry)
        marker = await store.get(lookup.key)
        if marker is None or not marker.is_marker or marker.vary != verdict.vary:
            marker = vary_marker(verdict.vary, entry)
        elif marker.expires_at < entry.expires_at:
            marker = replace(marker, expires_at=entry.expires_at)
        variant = variant_key(lookup.key, verdict.vary, view, marker.generation)
        if not await store.put(variant, replace(entry, vary=verdict.vary)):
            return False
        return await store.put(lookup.key, marker)

    def verdict(self, response: UpstreamResponse, lookup: Lookup, authorized: bool) -> Storability:
        """Storability from the status line and headers, then what they tell of the body."""
        rule = lookup.rule
        cache = self.settings.caches[rule.cache]
        policy = rule.policy
        return body_storability(
            storability(
                response.status,
                response.headers,
                rule,
                policy,
                _keyed(lookup),
                authorized,
                self.wall(),
                self.settings.targeted,
            ),
            response.headers,
            response.content_length,
            response.framed,
            cache.item_size,
            lookup.encoding,
        )


def _place(lookup: Lookup, view: RequestView, tags: tuple[str, ...]) -> Place:
    """Where a purge finds the entry `view` fills: every request its key sends there."""
    key = lookup.rule.key
    host, target = key.place(view) if key is not None else (view.host, view.target)
    return Place(host, target, tags)


def _keyed(lookup: Lookup) -> frozenset[str]:
    return lookup.rule.key.headers if lookup.rule.key else frozenset()
