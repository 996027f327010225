"""A request during a slow Redis purge (4a28a8a): memory is purged first, so the request
finds the old copy in Redis, not yet deleted, and promotes it back into memory. The purge
therefore purges memory again once Redis is done; without that, the old page was served from
memory after the purge had answered. Real redis-server; the purge is slow for real: a `/path`
purge SCANs the whole keyspace, here 200,000 keys that are not the cache's."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from proxy.purge import parse_purge

from .fleet import StartFleet, get, written
from .support import FakeUpstream

FILLER = 200_000  # SCAN's COUNT is 1000: some 200 round trips to Redis


async def fill_keyspace(redis_client: Redis) -> None:
    for first in range(0, FILLER, 20_000):
        await redis_client.mset({f"filler:{n}": b"" for n in range(first, first + 20_000)})


async def test_a_copy_promoted_during_the_redis_purge_is_purged_again(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis
) -> None:
    a = await fleet(redis={"timeout": "500ms"})  # a GET's fetch waits behind the SCAN
    await get(a, "/page")
    await written(a)
    await fill_keyspace(redis_client)

    purging = asyncio.ensure_future(a.proxy.purge(parse_purge({"url": "/page"})))
    during = []
    while not purging.done():  # memory was purged at once: the GETs go to Redis
        during.append((await get(a, "/page")).body)
    answer = await purging
    after = await get(a, "/page")

    assert b"GET /page #1" in during  # the old copy, from Redis, promoted into memory
    # Not the purged page. A MISS, or a HIT of the origin's new page: the last GET of the
    # loop may have filled it after the purge's last pass over memory (the purge has a
    # Redis client of its own, so the GETs do not wait behind its SCAN).
    assert after.body != b"GET /page #1"
    assert after.x_cache == "MISS" or after.body in during[during.index(b"GET /page #1") :]
    # Memory's copy and Redis's, then the one the GETs put back into memory.
    assert answer == (200, {"purged": 3})
