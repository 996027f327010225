"""An in-process store: cachetools' time-aware LRU, bounded by items, item size and total bytes.

Keys are held as 16-byte BLAKE2b digests (Varnish keeps a digest too): a key carries the raw
target, which a visitor chooses and can make kilobytes long, so storing it would let memory run
far past `max_bytes`. A 128-bit digest makes a collision as unlikely as guessing a random key.

cachetools bounds one quantity (`maxsize` measured by `getsizeof`); we give it the byte budget and
enforce the item count ourselves by evicting the least recently used entry before an insert (and
make room for the bytes there too, so that each eviction is counted: /metrics reports them).
Expiry is per entry (`expires_at`, set from the rule's ttl), on the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from hashlib import blake2b

from cachetools import Cache, TLRUCache

from proxy.purge import Purge, url_targets
from proxy.settings import CacheSettings
from proxy.store import CachedResponse, StoreStats
from proxy.store.purge_index import PurgeIndex

Clock = Callable[[], float]


def _digest(key: str) -> bytes:
    return blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def _expiry(_key: bytes, entry: CachedResponse, _now: float) -> float:
    return entry.expires_at


def _size(entry: CachedResponse) -> int:
    return entry.size


class MemoryStore:
    def __init__(self, settings: CacheSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._cache: TLRUCache[bytes, CachedResponse] = TLRUCache(
            maxsize=settings.max_bytes, ttu=_expiry, timer=clock, getsizeof=_size
        )
        self._hits = self._misses = self._stores = self._evictions = 0
        self._index = PurgeIndex()

    def get_now(self, key: str) -> CachedResponse | None:
        """The entry, found without waiting (the front's synchronous hit path). Only a hit is
        counted: a miss here is followed by the `get` that counts it."""
        try:  # one lookup: get() would test membership first, then look up again
            entry = self._cache[_digest(key)]
        except KeyError:
            return None
        self._hits += 1
        return entry

    async def get(self, key: str) -> CachedResponse | None:
        entry = self._cache.get(_digest(key))
        if entry is None:
            self._misses += 1
        else:
            self._hits += 1
        return entry

    async def put(self, key: str, entry: CachedResponse) -> bool:
        """Store `entry`; False when it can never fit (body over item_size or over max_bytes)
        or is already expired."""
        if len(entry.body) > self.settings.item_size or entry.size > self.settings.max_bytes:
            return False
        if entry.expires_at <= self._clock():  # ttl 0: cachetools would drop it at once
            return False
        key_digest = _digest(key)
        cache = self._cache
        cache.pop(key_digest, None)
        cache.expire()
        # Room made here, by both bounds, so every eviction is counted where it happens
        # (cachetools would evict for the bytes inside the insert, uncounted).
        while len(cache) >= self.settings.items or cache.currsize + entry.size > cache.maxsize:
            cache.popitem()
            self._evictions += 1
        cache[key_digest] = entry
        self._stores += 1
        if self._index.add(key_digest, entry):
            self._index.rebuild((d, self._peek(d)) for d in list(self._cache))
        return True

    async def delete(self, key: str) -> bool:
        return self._cache.pop(_digest(key), None) is not None

    async def purge(self, purge: Purge) -> int:
        """Remove the entries `purge` matches; how many. A tag or a URL costs the entries
        indexed under it (some of them already gone), a prefix the distinct targets."""
        if purge.kind == "tag":
            candidates = self._index.by_tag.pop(purge.tag, set())
        elif purge.kind == "url":
            by_target = self._index.by_target
            candidates = set().union(*[by_target.get(t, ()) for t in url_targets(purge.target)])
        else:
            candidates = set().union(
                *[
                    digests
                    for target, digests in self._index.by_target.items()
                    if purge.reaches(target)
                ]
            )
        removed = 0
        for key_digest in candidates:
            entry = self._peek(key_digest)
            if entry is None or not purge.matches(entry.host, entry.target, entry.tags):
                continue
            try:
                del self._cache[key_digest]
            except KeyError:  # it expired since _peek: TLRUCache removes it and says so
                continue
            removed += 1
        return removed

    def _peek(self, key_digest: bytes) -> CachedResponse | None:
        """The live entry under `key_digest`, without making it the most recently used."""
        if key_digest not in self._cache:  # TLRUCache's `in` neither reorders nor expires
            return None
        entry: CachedResponse = Cache.__getitem__(self._cache, key_digest)
        return entry

    def stats(self) -> StoreStats:
        return StoreStats(
            items=len(self._cache),
            bytes=int(self._cache.currsize),
            max_items=self.settings.items,
            max_bytes=self.settings.max_bytes,
            hits=self._hits,
            misses=self._misses,
            stores=self._stores,
            evictions=self._evictions,
        )
