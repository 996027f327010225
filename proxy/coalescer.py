"""Request coalescing and what fills tell of their keys (Varnish's hit-for-pass).

Concurrent misses of one key: one fill leads, the others wait for it a bounded time
(`coalesce_wait`) and are answered from what it stored. A fill whose answer cannot be stored
marks its key (hitforpass.py): uncacheable keys are not waited on, personal ones are passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from proxy.decide import Lookup
from proxy.exchange import Outcome
from proxy.hitforpass import HitForPass, mark_for
from proxy.settings import CacheSettings


class Coalescer:
    """The fills under way, by key, and the marks their answers left."""

    def __init__(self, caches: Mapping[str, CacheSettings], clock: Callable[[], float]) -> None:
        self._caches = caches
        self._fills: dict[str, asyncio.Event] = {}  # key → the fill others wait for
        self._marks = HitForPass(clock)

    def under_way(self, key: str) -> asyncio.Event | None:
        """The fill of `key` others may wait for, if one leads."""
        return self._fills.get(key)

    def lead(self, lookup: Lookup) -> asyncio.Event | None:
        """Become the one fill of this key that others wait for, unless the key is remembered
        as uncacheable (hit-for-pass: the last fill could not be stored), coalescing is off,
        or another fill leads already (its waiters gave up on it)."""
        cache = self._caches[lookup.rule.cache]
        if cache.coalesce_wait <= 0 or lookup.key in self._fills:
            return None
        if self._marks.marked(cache.name, cache.hit_for_pass, lookup.key):
            return None
        fill = self._fills[lookup.key] = asyncio.Event()
        return fill

    def release(self, lookup: Lookup, fill: asyncio.Event, outcome: Outcome) -> None:
        """The fill is over: remember an uncacheable key (hit-for-pass), wake its waiters."""
        if 200 <= outcome.status < 500:
            self._mark(lookup, outcome.detail)
        if self._fills.get(lookup.key) is fill:
            del self._fills[lookup.key]
        fill.set()

    def _mark(self, lookup: Lookup, detail: str) -> None:
        """Remember what a fill's response said of its key: personal, uncacheable, or nothing."""
        personal = mark_for(detail)
        if personal and lookup.rule.forward_all:  # shared mode's fills are the visitor's own
            personal = False
        if personal is not None:
            cache = self._caches[lookup.rule.cache]
            self._marks.mark(cache.name, cache.hit_for_pass, lookup.key, personal=personal)

    def personal(self, lookup: Lookup) -> bool:
        """Is the key marked personal: is each request for it a pass of the visitor's own?"""
        cache = self._caches[lookup.rule.cache]
        return self._marks.personal(cache.name, cache.hit_for_pass, lookup.key)

    def settle(self, lookup: Lookup, detail: str, status: int) -> None:
        """The fill's fate is known before its first client has it all: remember what it says
        of the key and wake the requests waiting for it at once, so they never wait on that
        client. A stored entry answers them; a personal page sends them to pass with their
        own requests; anything else to fill on their own (the key is then not waited on)."""
        if 200 <= status < 500 or mark_for(detail):
            self._mark(lookup, detail)
        fill = self._fills.pop(lookup.key, None)
        if fill is not None:
            fill.set()

    async def wait_for(self, fill: asyncio.Event, lookup: Lookup) -> None:
        """Wait for another request's fill of this key, at most the cache's coalesce_wait."""
        wait = self._caches[lookup.rule.cache].coalesce_wait
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fill.wait(), wait)
