"""Coalescing across instances (`[redis] coalesce = true`, off by default): a cold page asked
of ten sidecars at once reaches the app about once.

Each process already coalesces its own concurrent misses (coalescer.py). With this, the
process about to fill a key first takes a short lock in Redis (`SET lock token NX PX
coalesce_wait`, next to the key's entry). If it gets it, it fills as usual and deletes the lock
when the fill is over (its own token only: a lock that expired and was taken by another is
not touched). If another instance holds it, this one waits, asking Redis every POLL seconds
whether the key's entry is there: once it is, the request looks again and is a hit
(`detail=coalesced`). It stops waiting and fills itself when the lock is gone and the entry
still is not there one poll later (the other fill was not stored, or its write was lost),
after `coalesce_wait` at most, or at once when Redis fails. The lock's lifetime is the cache's
`coalesce_wait`, the time its own waiters wait for a fill: a fill slower than that is done by
each instance, as without the lock.

Why polling rather than pub/sub: a waiter needs the entry itself, which one GET gives; a
subscription would need a connection of its own per process and still a GET. A wait costs a
poll every 10 ms, for at most the fill's duration.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable

from redis.asyncio import Redis

from proxy.store.redis_tier import RedisTier

POLL = 0.01  # seconds between two looks at Redis while another instance fills
# Delete the lock only if it is still ours (KEYS[1] the lock, ARGV[1] our token).
UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class FleetFills:
    def __init__(self, tier: RedisTier) -> None:
        self.tier = tier
        self._owned: dict[str, str] = {}  # the locks this process holds: lock key -> token

    def _keys(self, cache: str, key: str) -> tuple[str, str]:
        entry = self.tier.key(cache, key)
        return entry, f"{entry}:fill"

    async def elsewhere(self, cache: str, key: str, wait: float) -> bool:
        """Take the fill of `key` for this instance (False: fill it), or wait for another
        instance's fill (True, after it: look again). False too when waiting is off
        (`wait` 0), this process already holds the lock, or Redis cannot say."""
        entry, lock = self._keys(cache, key)
        if wait <= 0 or lock in self._owned:
            return False
        token = secrets.token_hex(8)
        ttl_ms = max(1, int(wait * 1000))
        taken = await self.tier.run(lambda client: _set_once(client, lock, token, ttl_ms))
        if taken is None:
            return False
        if taken:
            self._owned[lock] = token
            return False
        await self._wait(entry, lock, wait)
        return True

    async def _wait(self, entry: str, lock: str, wait: float) -> None:
        """Until the entry is there, the lock is gone (and the entry still missing a poll
        later), `wait` has passed, or Redis fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        unlocked = False
        while loop.time() < deadline:
            await asyncio.sleep(POLL)
            found = await self.tier.run(lambda client: _both_exist(client, entry, lock))
            if found is None:
                return
            there, locked = found
            if there or (unlocked and not locked):
                return
            unlocked = not locked

    async def release(self, cache: str, key: str) -> None:
        """The fill of `key` is over: delete the lock if this process holds it."""
        _, lock = self._keys(cache, key)
        token = self._owned.pop(lock, None)
        if token is not None:
            await self.tier.run(lambda client: _unlock(client, lock, token))


async def _set_once(client: Redis, lock: str, token: str, ttl_ms: int) -> bool:
    return bool(await client.set(lock, token, nx=True, px=ttl_ms))


async def _both_exist(client: Redis, entry: str, lock: str) -> tuple[bool, bool]:
    pipe = client.pipeline(transaction=False)
    _ = pipe.exists(entry)
    _ = pipe.exists(lock)
    there, locked = await pipe.execute()
    return bool(there), bool(locked)


async def _unlock(client: Redis, lock: str, token: str) -> bool:
    deleted: Awaitable[object] = client.eval(UNLOCK, 1, lock, token)
    return bool(await deleted)
