"""Purge through the shared tier (issues 15 and 16), with a real redis-server: a purge on one
instance removes the page from Redis and, by pub/sub, from every other instance's memory; tags,
prefixes and a `/path` for every host reach entries Redis holds through its index; Redis down
makes the purge a 502 (memory purged), never an error for visitors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from proxy.purge import parse_purge
from proxy.settings import RedisSettings
from proxy.store import CachedResponse, PurgeIncomplete
from proxy.store.redis_purge import purge_sets, read_message
from proxy.store.redis_tier import RedisTier

from .fleet import ENTRIES, StartFleet, get, tier, written
from .support import Client, FakeClock, FakeUpstream, eventually


async def subscribed(*clients: Client) -> None:
    await eventually(lambda: all(tier(c).listener.subscribed.is_set() for c in clients))


async def purge(client: Client, **args: str) -> tuple[int, dict[str, object]]:
    return await client.proxy.purge(parse_purge(args))


async def test_a_purge_on_one_instance_reaches_redis_and_every_instances_memory(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis
) -> None:
    a, b = await fleet(), await fleet()
    await subscribed(a, b)
    await get(a, "/page")
    await written(a)
    assert (await get(b, "/page")).x_cache == "HIT"  # from Redis, now in B's memory too
    answer = await purge(a, url="/page")
    await eventually(lambda: tier(b).listener.received == 1)

    on_b, on_a = await get(b, "/page"), await get(a, "/page")
    assert answer == (200, {"purged": 2})  # A's memory, Redis (B's memory by message)
    assert on_b.x_cache == "MISS" and on_b.body == b"GET /page #2"
    assert on_a.x_cache in ("MISS", "HIT")  # B's new fill may already be in Redis
    assert tier(a).listener.received == 0  # its own message is not purged twice


async def test_a_tag_purge_finds_what_only_redis_holds(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis
) -> None:
    upstream.on("/p/1", headers=[("Cache-Tag", "catalog p1")])
    upstream.on("/p/2", headers=[("Surrogate-Key", "catalog")])
    a, b = await fleet(), await fleet()
    await get(a, "/p/1")
    await get(a, "/p/2")
    await get(a, "/other")
    await written(a, 3)
    answer = await purge(b, tag="catalog")  # B never saw them: Redis's index names them

    assert answer == (200, {"purged": 2})
    assert len(await redis_client.keys(ENTRIES)) == 1  # /other stays
    assert not await redis_client.keys("sidecache:default:tag:catalog")  # the set went too
    assert [(await get(b, t)).x_cache for t in ("/p/1", "/p/2", "/other")] == [
        "MISS",
        "MISS",
        "HIT",
    ]


@pytest.mark.parametrize(
    ("args", "gone"),
    [
        ({"prefix": "/blog/"}, {"/blog/1", "/blog/2?x=1"}),
        ({"prefix": "http://www.example.com/blog"}, {"/blog/1", "/blog/2?x=1", "/blog*"}),
        ({"url": "/blog*"}, {"/blog*"}),  # a glob character is a character
        ({"url": "http://other.example/blog/1"}, set()),
    ],
)
async def test_prefix_and_path_purges_scan_the_index(
    fleet: StartFleet,
    upstream: FakeUpstream,
    redis_client: Redis,
    args: dict[str, str],
    gone: set[str],
) -> None:
    a, b = await fleet(), await fleet()
    targets = ("/blog/1", "/blog/2?x=1", "/blog*", "/about")
    for target in targets:
        await get(a, target)
    await written(a, len(targets))
    status, body = await purge(b, **args)
    left = [(await get(b, t)).x_cache for t in targets]

    assert (status, body) == (200, {"purged": len(gone)})
    assert left == ["MISS" if t in gone else "HIT" for t in targets]


async def test_redis_down_makes_a_purge_a_502_and_memory_is_purged_all_the_same(
    fleet: StartFleet, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    a = await fleet()
    await get(a, "/page")
    await written(a)
    redis_server.kill()
    status, body = await purge(a, url="/page")
    after = await get(a, "/page")

    assert status == 502 and body["purged"] == 1 and "redis" in str(body["error"])
    assert (after.status, after.x_cache) == (200, "MISS")  # the app answers, no 5xx


async def test_a_queued_write_of_a_purged_page_is_dropped() -> None:
    """A fill queued for Redis when the purge comes must not bring the page back (no writer
    runs here, and no Redis: the queue is all there is, and the purge says it is incomplete)."""
    clock = FakeClock()
    shared = RedisTier(RedisSettings("redis://127.0.0.1:1"), clock)
    shared.breaker.succeeded(0.0)  # as if connected
    entry = CachedResponse(200, "OK", (), b"x", clock(), clock() + 60, host="h", target="/a")
    shared.store("default", "k1", entry)
    shared.store("default", "k2", replace(entry, target="/b"))
    shared.store("other", "k3", entry)  # another cache's: not this purge's
    with pytest.raises(PurgeIncomplete):
        await shared.purge("default", parse_purge({"url": "/a"}))
    assert shared.pending == 2


def test_the_index_sets_a_purge_reads_or_scans() -> None:
    """The patterns escape glob characters; a host narrows the SCAN to that host's sets."""
    tag = parse_purge({"tag": "a*b"})
    path = parse_purge({"url": "/a*?[x]"})
    here = parse_purge({"url": "http://h.example/a"})
    prefix = parse_purge({"prefix": "http://h.example/blog"})
    assert purge_sets("p:", "c", tag) == (["p:c:tag:a*b"], None)  # read, not matched
    assert purge_sets("p:", "c", here) == (["p:c:u:h.example /a"], None)
    assert purge_sets("p:", "c", path) == ([], "p:c:u:* /a\\*\\?\\[x\\]")
    assert purge_sets("p:", "c", prefix) == ([], "p:c:u:h.example /blog*")
    assert purge_sets("p*:", "c", prefix) == ([], "p\\*:c:u:h.example /blog*")


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (b'{"from": "other", "cache": "c", "tag": "t"}', ("c", parse_purge({"tag": "t"}))),
        (b'{"from": "me", "cache": "c", "tag": "t"}', None),  # our own: already purged
        (b'{"from": "other", "cache": "c"}', None),  # names nothing
        (b'{"from": "other", "tag": "t"}', None),  # no cache
        (b'{"from": "other", "cache": 3, "tag": "t"}', None),
        (b"not json", None),
        (b"[1, 2]", None),
    ],
)
def test_a_purge_message(data: bytes, read: object) -> None:
    assert read_message(data, "me") == read
