"""The store seam: a five-method protocol that knows nothing of caching rules.

`MemoryStore` (cachetools LRU) implements it today; a Redis tier will implement the same protocol
without touching callers. Entries are immutable: cachetools measures an entry's size when it is
inserted, so a stored value must never change afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from proxy.view import Headers

# Per-entry bookkeeping (the entry object, the key, cachetools' links) counted against max_bytes,
# so a flood of tiny entries cannot exceed the byte budget by an order of magnitude.
ENTRY_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored 200 response. Times are on the store's clock (monotonic seconds)."""

    status: int
    reason: str
    headers: Headers
    body: bytes
    stored_at: float
    expires_at: float
    initial_age: int = 0  # Age the upstream already reported (RFC 9111 §4.2.3)
    size: int = field(init=False)
    # The headers as HTTP/1.1 field lines, serialised once at store time so a hit is one write.
    header_block: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        block = b"".join(
            f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in self.headers
        )
        object.__setattr__(self, "header_block", block)
        object.__setattr__(self, "size", len(self.body) + len(block) + ENTRY_OVERHEAD)

    def age(self, now: float) -> int:
        return self.initial_age + max(0, int(now - self.stored_at))


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


class CacheStore(Protocol):
    def get_now(self, key: str) -> CachedResponse | None:
        """The entry if it can be had without waiting (memory), else None; `get` decides."""

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, entry: CachedResponse) -> bool: ...

    async def delete(self, key: str) -> bool: ...

    def stats(self) -> StoreStats: ...
