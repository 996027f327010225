"""Two tiers behind the one store protocol: this process's memory (L1, `MemoryStore`) in front
of Redis (L2, shared by every worker and every sidecar; `RedisTier`). The handler, the finder
and the entry writer call it as they call a `MemoryStore`.

- `get_now` is L1's own method, bound once: the synchronous hit path pays nothing for the
  second tier (a Redis answer has to be waited for, so it is never there).
- `get`: L1, else Redis (when the circuit allows); a Redis hit is promoted into L1, so the next
  request for the key is a synchronous hit again.
- `put`: L1, then the write to Redis is queued (never awaited: a fill's response does not
  wait for Redis), with the entry's keep time as its TTL. What L1 refuses (a body over the
  cache's `item_size`, an entry already expired) is never written to Redis either.
- `delete`: both tiers (invalidation, §4.4), Redis within its timeout.
- `purge`: memory, then Redis and every other instance's memory (store/redis_purge.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.purge import Purge
from proxy.store import CachedResponse, PurgeIncomplete, StoreStats
from proxy.store.memory import MemoryStore

if TYPE_CHECKING:  # redis-py is imported only when [redis] is configured (server.py)
    from proxy.store.redis_tier import RedisTier


class TieredStore:
    get_now: Callable[[str], CachedResponse | None]

    def __init__(self, memory: MemoryStore, tier: RedisTier) -> None:
        self.memory = memory
        self.tier = tier
        self.settings = memory.settings
        self.get_now = memory.get_now  # the hit path: L1 only, no call in between

    async def get(self, key: str) -> CachedResponse | None:
        entry = await self.memory.get(key)
        if entry is not None:
            return entry
        entry = await self.tier.fetch(self.tier.key(self.settings.name, key))
        if entry is None:
            return None
        await self.memory.put(key, entry)  # promoted; never written back to Redis
        return entry

    async def put(self, key: str, entry: CachedResponse) -> bool:
        if not await self.memory.put(key, entry):
            return False
        self.tier.store(self.settings.name, self.tier.key(self.settings.name, key), entry)
        return True

    async def delete(self, key: str) -> bool:
        in_memory = await self.memory.delete(key)
        in_redis = await self.tier.delete([self.tier.key(self.settings.name, key)])
        return in_memory or in_redis

    async def purge(self, purge: Purge) -> int:
        """Memory, then Redis, which tells the other instances (PurgeIncomplete when Redis
        could not be purged: memory was)."""
        removed = await self.memory.purge(purge)
        try:
            removed += await self.tier.purge(self.settings.name, purge)
        except PurgeIncomplete as exc:
            exc.removed += removed + await self.memory.purge(purge)
            raise
        # Again: a request during the Redis purge may have promoted the old copy back.
        return removed + await self.memory.purge(purge)

    def stats(self) -> StoreStats:
        """L1's figures (the tier's own are `RedisTier.counts`, shared by every cache)."""
        return self.memory.stats()
