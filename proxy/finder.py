"""Finding a lookup's entry in its store: the key, a Vary variant's key, and for a client that
accepts no coding an uncoded entry stored for clients that accept br or gzip.
"""

from __future__ import annotations

from proxy.decide import Lookup, recoded
from proxy.encoding import CODED, IDENTITY, uncoded
from proxy.freshness import RequestDirectives
from proxy.planner import usable
from proxy.store import CachedResponse, CacheStore
from proxy.vary import variant_key
from proxy.view import RequestView


async def find(
    store: CacheStore, lookup: Lookup, view: RequestView, asked: RequestDirectives, now: float
) -> tuple[CachedResponse | None, str]:
    """The entry for this request and its key (a variant's, when the response varies).
    A client that accepts no coding may also take a usable entry stored for clients that
    accept some, when its body is not coded (the app did not compress it): curl after a
    browser, a Range request (fetch sends Accept-Encoding: identity with Range)."""
    entry, key = await find_key(store, lookup.key, view)
    if entry is None and lookup.encoding == IDENTITY:
        for coding in CODED:
            other, other_key = await find_key(store, recoded(lookup, coding), view)
            if other is None or not uncoded(other.headers):
                continue
            if usable(other, asked, now):
                return other, other_key
    return entry, key


async def find_key(
    store: CacheStore, key: str, view: RequestView
) -> tuple[CachedResponse | None, str]:
    """The entry under `key`, or under its variant's key when a Vary marker is there."""
    entry = await store.get(key)
    if entry is not None and entry.is_marker:
        key = variant_key(key, entry.vary, view, entry.generation)
        entry = await store.get(key)
    return entry, key
