"""The store seam: a five-method protocol that knows nothing of caching rules.

`MemoryStore` (cachetools LRU) implements it today; a Redis tier will implement the same protocol
without touching callers. Entries are immutable: cachetools measures an entry's size when it is
inserted, so a stored value must never change afterwards.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from proxy.purge import Purge
from proxy.view import Headers, field_lines

# Per-entry bookkeeping (the entry object, the key, cachetools' links) counted against max_bytes,
# so a flood of tiny entries cannot exceed the byte budget by an order of magnitude.
ENTRY_OVERHEAD = 256


# RFC 9110 §15.4.5: the stored headers a 304 carries (with Age and the cache's own tags).
NOT_MODIFIED_FIELDS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored response. Times are on the store's clock (monotonic seconds): the entry is
    fresh until `fresh_until` and kept until `expires_at` (the rule's `keep` later, so that it
    can be revalidated instead of fetched again, or serve a request that accepts staleness)."""

    status: int
    reason: str
    headers: Headers
    body: bytes
    stored_at: float
    expires_at: float
    initial_age: float = 0.0  # RFC 9111 §4.2.3 corrected_initial_age when it was stored
    fresh_until: float = -1.0  # < stored_at: the same as expires_at
    must_revalidate: bool = False  # never served stale (§5.2.2.2, §5.2.2.8)
    etag: str | None = None
    last_modified: str | None = None
    # The request headers the response varies on (RFC 9111 §4.1). With status 0 the entry is
    # a marker under the primary key: the variants are under vary.variant_key.
    vary: tuple[str, ...] = ()
    generation: int = 0  # a marker's: part of its variants' keys
    stale_while_revalidate: float = 0.0  # seconds past fresh_until it may be served, refreshed
    stale_if_error: float = 0.0  # seconds past fresh_until it may stand in for a failure
    # Where it was stored for (the Host, lower-cased, and the target as the visitor sent it)
    # and the response's tags: what a purge by URL, prefix or tag looks for (purge.py).
    host: str = ""
    target: str = ""
    tags: tuple[str, ...] = ()
    size: int = field(init=False)
    # The headers as HTTP/1.1 field lines, serialised once at store time so a hit is one write;
    # and the subset a 304 carries.
    header_block: bytes = field(init=False, repr=False)
    not_modified_block: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        block = field_lines(self.headers)
        lowered = [(n.lower(), n, v) for n, v in self.headers]
        subset = tuple((n, v) for low, n, v in lowered if low in NOT_MODIFIED_FIELDS)
        object.__setattr__(self, "header_block", block)
        not_modified = field_lines(subset)
        object.__setattr__(self, "not_modified_block", not_modified)
        size = len(self.body) + len(block) + len(not_modified) + ENTRY_OVERHEAD
        size += len(self.host) + len(self.target) + sum(map(len, self.tags))
        object.__setattr__(self, "size", size)
        if self.fresh_until < self.stored_at:
            object.__setattr__(self, "fresh_until", self.expires_at)
        for low, _, value in lowered:
            if low == "etag" and self.etag is None:
                object.__setattr__(self, "etag", value)
            elif low == "last-modified" and self.last_modified is None:
                object.__setattr__(self, "last_modified", value)

    def age(self, now: float) -> int:
        """The Age header value (RFC 9111 §5.1, whole seconds, 2^31 at most)."""
        return min(int(self.initial_age + max(0.0, now - self.stored_at)), 2**31)

    def fresh(self, now: float) -> bool:
        return now < self.fresh_until

    @property
    def is_marker(self) -> bool:
        return self.status == 0


# Generations count up from a random 62-bit start: unique within a process, and (with a shared
# tier, where processes read each other's markers and variants outlive a process) apart from
# every other process's, so a marker made anew after an invalidation, here or on another
# instance, never leads back to the variants of the one it replaced.
_generations = itertools.count(secrets.randbits(62) | 1)


def vary_marker(names: tuple[str, ...], variant: CachedResponse) -> CachedResponse:
    """What the primary key holds when the response varies: the header names and a generation
    no other marker has (of this process for sure, of any other almost surely), the times,
    place and tags of the `variant` stored with it (a purge removes both), nothing else."""
    generation = next(_generations)
    return CachedResponse(
        0,
        "",
        (),
        b"",
        variant.stored_at,
        variant.expires_at,
        vary=names,
        generation=generation,
        host=variant.host,
        target=variant.target,
        tags=variant.tags,
    )


@dataclass(frozen=True, slots=True)
class StoreStats:
    items: int
    bytes: int
    max_items: int
    max_bytes: int
    hits: int
    misses: int
    stores: int
    evictions: int


class PurgeIncomplete(Exception):
    """A shared tier could not be purged (down, circuit open, too slow): what it holds may be
    served again, so the purge is reported as failed; `removed`: what was purged all the same
    (memory)."""

    def __init__(self, message: str, removed: int = 0) -> None:
        super().__init__(message)
        self.removed = removed


class CacheStore(Protocol):
    def get_now(self, key: str) -> CachedResponse | None:
        """The entry if it can be had without waiting (memory), else None; `get` decides."""

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, entry: CachedResponse) -> bool: ...

    async def delete(self, key: str) -> bool: ...

    async def purge(self, purge: Purge) -> int:
        """Remove every entry `purge` matches; how many were removed."""

    def stats(self) -> StoreStats: ...


class Fleet(Protocol):
    """Coalescing across instances (store/fleet.py, `[redis] coalesce`): the handler asks
    before a fill whether another instance is filling the key, and waits for it if so."""

    async def elsewhere(self, cache: str, key: str, wait: float) -> bool:
        """True once another instance's fill of `key` was waited for (look again); False:
        this instance fills it."""

    async def release(self, cache: str, key: str) -> None:
        """This instance's fill of `key` is over."""
