"""Purge through the shared tier (issues 15 and 16), with a real redis-server: a purge on one
instance removes the page from Redis and, by pub/sub, from every other instance's memory; tags,
prefixes and a `/path` for every host reach entries Redis holds through its index; Redis down
makes the purge a 502 (memory purged), never an error for visitors."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from proxy.admin_rules import ASK_WAIT, purge_wait
from proxy.purge import parse_purge
from proxy.settings import SCAN_SECONDS, CacheSettings, RedisSettings
from proxy.store import CachedResponse, PurgeIncomplete
from proxy.store.memory import MemoryStore
from proxy.store.redis_purge import purge_sets, read_message, scanned_place
from proxy.store.redis_tier import RedisTier
from proxy.store.tiered import TieredStore

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
    assert not await redis_client.keys("sidecache:default:tagged:catalog")  # the set went too
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


@pytest.mark.parametrize(
    "args",
    [
        {"url": "/about"},  # a path: SCAN
        {"url": "http://www.example.com/about?other=1"},  # a host: the sets it can be in
        {"prefix": "/ab"},
    ],
)
async def test_a_purge_reaches_what_redis_holds_by_any_url_its_key_answers(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis, args: dict[str, str]
) -> None:
    rules = [{"name": "r", "anonymous": True, "action": "cache", "key": "{host}{path}"}]
    a, b = await fleet(rules=rules), await fleet(rules=rules)
    await get(a, "/about?utm=x")
    await written(a)
    answer = await purge(b, **args)  # B never saw the page: Redis's index names it

    assert answer == (200, {"purged": 1})
    assert await redis_client.keys(ENTRIES) == []
    assert (await get(b, "/about")).x_cache == "MISS"


async def test_names_that_are_not_utf8_are_indexed_and_purged(redis_server: RedisServer) -> None:
    """A Host or a tag with a byte that is not UTF-8 (decoded with surrogateescape) is written
    to the index as those bytes: it neither fails the writes batched with it nor escapes a
    purge."""
    clock = FakeClock()
    shared = RedisTier(RedisSettings(redis_server.url), clock)
    await shared.start()
    try:
        store = TieredStore(MemoryStore(CacheSettings("default"), clock), shared)
        entry = CachedResponse(200, "OK", (), b"x", clock(), clock() + 60, host="h", target="/a")
        await store.put("a", entry)
        await store.put("b", replace(entry, host="caf\udce9", target="/b", tags=("t\udcff",)))
        await store.put("c", replace(entry, target="/c"))
        await eventually(lambda: shared.pending == 0 and shared.counts.writes >= 3)
        dropped = shared.counts.writes_dropped
        purged = [
            await shared.purge("default", parse_purge({"tag": "t\udcff"})),
            await shared.purge("default", parse_purge({"prefix": "/"})),
        ]
    finally:
        await shared.close()
    assert (dropped, purged) == (0, [1, 2])


async def test_an_index_set_holds_its_live_entries_only(
    redis_server: RedisServer, redis_client: Redis
) -> None:
    """A tag's set lives as long as its longest-lived entry, and each write into it drops
    the members already expired: however many short-lived pages (search results, say) pass
    through a tag while one page keeps it alive, the set holds about the live ones."""
    shared = RedisTier(RedisSettings(redis_server.url))
    await shared.start()

    async def write(name: str, ttl: float) -> None:
        now = time.monotonic()
        entry = CachedResponse(200, "OK", (), b"x", now, now + ttl, target=name, tags=("t",))
        shared.store("default", f"sidecache:default:{name}", entry)
        await eventually(lambda: shared.pending == 0)

    try:
        await write("long", 60)
        for number in range(3):
            await write(f"short{number}", 0.05)
            await asyncio.sleep(0.06)
        await write("last", 60)
        members = await redis_client.zrange("sidecache:default:tagged:t", 0, -1)
    finally:
        await shared.close()
    assert sorted(members) == [b"sidecache:default:last", b"sidecache:default:long"]


async def test_a_purge_takes_none_of_the_visitors_connections(
    redis_server: RedisServer, redis_client: Redis
) -> None:
    """Every connection of the tier's pool busy (as under load: max_connections visitors'
    calls in flight): a purge still runs, on a client of its own, and visitors' calls never
    wait behind it in the pool."""
    clock = FakeClock()
    shared = RedisTier(RedisSettings(redis_server.url, max_connections=2), clock)
    await shared.start()
    assert shared.client is not None
    pool = shared.client.connection_pool
    held = [await pool.get_connection() for _ in range(2)]
    try:
        await redis_client.set("sidecache:default:k", b"x")
        await redis_client.zadd("sidecache:default:url:h /a", {"sidecache:default:k": 1})
        removed = await asyncio.wait_for(
            shared.purge("default", parse_purge({"url": "/a"})), timeout=5
        )
    finally:
        for connection in held:
            await pool.release(connection)
        await shared.close()
    assert removed == 1 and not await redis_client.exists("sidecache:default:k")


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


async def test_caches_are_purged_side_by_side(
    fleet: StartFleet, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    """Redis hung (SIGSTOP) under four caches: each cache's Redis purge waits out its own
    connection's timeout (its first call gets no answer), all four side by side, so the purge
    answers (a 502, memory purged in every cache) in about one timeout, not four. The wait
    the workers get (admin_rules.purge_wait) counts one purge_seconds, whatever the caches."""
    caches = {name: {"items": 10} for name in ("a", "b", "c")}  # and "default"
    rules = [{"path": f"^/{name}/", "cache": name, "action": "cache"} for name in caches]
    a = await fleet(caches=caches, rules=rules)
    for name in caches:
        await get(a, f"/{name}/page")
    await written(a, 3)
    timeout = tier(a).settings.connect_timeout  # 0.2 s
    redis_server.pause()
    try:
        started = time.monotonic()
        status, body = await purge(a, prefix="/")
        took = time.monotonic() - started
    finally:
        redis_server.resume()

    assert len(a.proxy.stores) == 4
    assert status == 502 and body["purged"] == 3, body  # each cache's memory
    assert timeout <= took < 2 * timeout, took  # one after the other: 4 x 0.2 s
    assert purge_wait(a.proxy.settings) == pytest.approx(ASK_WAIT + SCAN_SECONDS + timeout)


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
    # Another instance's purge, heard over pub/sub, drops this one's queued writes too.
    await shared.listener.on_purge("default", parse_purge({"url": "/b"}))
    assert shared.pending == 1


def test_the_index_sets_a_purge_reads_or_scans() -> None:
    """A tag, or a URL with a host, reads the sets it can be in (the exact place, the path
    with any query, any target; on that host and on any host); a path or a prefix SCANs every
    place set of the cache (the prefix's glob characters escaped) and keeps what it reaches."""
    tag = parse_purge({"tag": "a*b"})
    here = parse_purge({"url": "http://h.example/a?x"})
    path = parse_purge({"url": "/a"})
    assert purge_sets("p:", "c", tag) == ([b"p:c:tagged:a*b"], None)  # read, not matched
    assert purge_sets("p:", "c", here) == (
        [
            b"p:c:url:h.example /a?x",
            b"p:c:url:h.example /a?*",
            b"p:c:url:h.example *",
            b"p:c:url:* /a?x",
            b"p:c:url:* /a?*",
            b"p:c:url:* *",
        ],
        None,
    )
    assert purge_sets("p:", "c", path) == ([], b"p:c:url:*")
    assert purge_sets("p*:", "c", path) == ([], b"p\\*:c:url:*")
    assert scanned_place("p:", "c", b"p:c:url:h.example /a b?\xff") == ("h.example", "/a b?\udcff")


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
