"""The shared tier on Redis (issue 16), over real sockets: in-process proxies (the real `Proxy`
wiring) sharing one real redis-server, in front of the recording fake upstream.

Each proxy has a clock of its own, as processes on different hosts do: an entry written by
one and read by another must keep its Age and freshness (codec.py moves its times through
the wall clock). Writes to Redis happen in the background, so a test waits for them
(`written`) before another instance reads. Every request names one Host, as a fleet's
visitors do (the key holds it; each test proxy listens on a port of its own).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from proxy.config import parse
from proxy.settings import CacheSettings, RedisSettings
from proxy.store import CachedResponse
from proxy.store.memory import MemoryStore
from proxy.store.redis_tier import WRITE_BYTES, WRITE_QUEUE, RedisTier
from proxy.store.tiered import TieredStore

from .fleet import ENTRIES, HOST, SHARED, StartFleet, get, tier, written
from .support import Client, FakeClock, FakeUpstream, eventually


async def test_a_fill_on_one_instance_is_a_hit_from_redis_on_another(
    fleet: StartFleet, upstream: FakeUpstream
) -> None:
    a, b = await fleet(), await fleet()
    filled = await get(a, "/page")
    await written(a)
    from_redis = await get(b, "/page")
    from_memory = await get(b, "/page")

    assert (filled.x_cache, filled.body) == ("MISS", b"GET /page #1")
    assert (from_redis.status, from_redis.x_cache, from_redis.body) == (200, "HIT", b"GET /page #1")
    assert (from_memory.x_cache, from_memory.body) == ("HIT", b"GET /page #1")
    assert len(upstream.to("/page")) == 1  # the app was asked once for the fleet
    # the second hit on B was from its memory: the entry was promoted, Redis not asked again
    assert (tier(b).counts.hits, tier(b).counts.misses) == (1, 0)
    # and /metrics says so
    shown = b.proxy.metrics_snapshot()["redis"]
    assert (shown["hits"], shown["misses"], shown["up"], shown["writes"]) == (1, 0, 1, 0)


async def test_an_entry_from_redis_keeps_its_headers_age_and_freshness(
    fleet: StartFleet, upstream: FakeUpstream
) -> None:
    """Two instances whose monotonic clocks are 49,000 s apart, as two hosts' are: Age is the
    entry's own (the origin's 30 s), and it goes stale on B when it would on A."""
    upstream.on(
        "/page",
        headers=[
            ("Cache-Control", "max-age=60"),
            ("Age", "30"),
            ("ETag", '"v1"'),
            ("X-Custom", "kept as sent"),
            ("Content-Type", "text/html; charset=utf-8"),
        ],
        body=b"<p>caf\xc3\xa9</p>",
        conditional=True,
    )
    clock_b = FakeClock(50_000.0)
    a = await fleet(FakeClock(1_000.0), **SHARED)
    b = await fleet(clock_b, **SHARED)
    filled = await get(a, "/page")
    await written(a)
    hit = await get(b, "/page")
    clock_b.advance(25)
    later = await get(b, "/page")
    clock_b.advance(10)  # 30 + 35 > 60: stale, revalidated with the stored ETag
    revalidated = await get(b, "/page")

    assert hit.x_cache == "HIT" and hit.body == filled.body == b"<p>caf\xc3\xa9</p>"
    for name in ("Cache-Control", "ETag", "X-Custom", "Content-Type", "Content-Length"):
        assert hit.headers.getall(name) == filled.headers.getall(name), name
    assert hit.headers["Age"] == "30"
    assert (later.x_cache, later.headers["Age"]) == ("HIT", "55")
    assert revalidated.cache_status == "sidecache; fwd=stale; fwd-status=304"
    assert [s.header("If-None-Match") for s in upstream.to("/page")] == [None, '"v1"']


async def test_vary_markers_and_variants_are_shared(
    fleet: StartFleet, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")])
    a, b = await fleet(**SHARED), await fleet(**SHARED)
    english, french = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
    await get(a, "/page", english)
    await written(a, 2)  # the variant and the marker
    english_on_b = await get(b, "/page", english)
    french_on_b = await get(b, "/page", french)
    await written(b, 2)
    french_on_a = await get(a, "/page", french)

    assert (english_on_b.x_cache, english_on_b.body) == ("HIT", b"GET /page #1")
    assert (french_on_b.x_cache, french_on_b.body) == ("MISS", b"GET /page #2")
    assert (french_on_a.x_cache, french_on_a.body) == ("HIT", b"GET /page #2")
    assert [s.header("Accept-Language") for s in upstream.to("/page")] == ["en", "fr"]


async def test_the_keep_time_is_the_redis_ttl_and_big_entries_stay_out(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis
) -> None:
    upstream.on("/big", body=b"x" * 2000)
    a = await fleet(caches={"default": {"item_size": "1KiB", "ttl": "10s", "keep": "50s"}})
    b = await fleet(caches={"default": {"item_size": "1KiB", "ttl": "10s", "keep": "50s"}})
    await get(a, "/big")
    await get(a, "/small")
    await written(a)
    keys = await redis_client.keys(ENTRIES)
    ttl_ms = await redis_client.pttl(keys[0])
    (index,) = await redis_client.keys("sidecache:default:url:*")
    index_ttl_ms = await redis_client.pttl(index)
    big_on_b = await get(b, "/big")

    assert len(keys) == 1  # /small only: /big is over item_size
    assert 59_000 < ttl_ms <= 60_000  # fresh for 10 s, then kept 50 s for revalidation
    assert index.endswith(b" /small") and 59_000 < index_ttl_ms <= 60_000  # as long as it
    assert big_on_b.x_cache == "MISS" and len(upstream.to("/big")) == 2


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"not an entry at all", id="another-program"),
        pytest.param(b"SC\x02" + b"\x00" * 80, id="another-version"),
        pytest.param(None, id="truncated"),
    ],
)
async def test_a_value_that_does_not_decode_is_a_counted_miss(
    fleet: StartFleet, upstream: FakeUpstream, redis_client: Redis, value: bytes | None
) -> None:
    a, b = await fleet(), await fleet()
    await get(a, "/page")
    await written(a)
    (key,) = await redis_client.keys(ENTRIES)
    stored = await redis_client.get(key)
    await redis_client.set(key, value if value is not None else stored[: len(stored) // 2])
    got = await get(b, "/page")

    assert (got.status, got.x_cache, got.body) == (200, "MISS", b"GET /page #2")
    assert tier(b).counts.undecodable == 1
    assert tier(b).counts.errors == 0  # a bad value is not a failure of Redis


async def test_an_invalidation_deletes_the_entry_in_redis(
    fleet: StartFleet, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    a, b, c = await fleet(**SHARED), await fleet(**SHARED), await fleet(**SHARED)
    await get(a, "/page")
    await written(a)
    posted = await b.fetch("POST", "/page", {"Host": HOST}, data=b"x")  # RFC 9111 §4.4 on B
    on_c = await get(c, "/page")

    assert posted.status == 200
    assert (on_c.x_cache, on_c.body) == ("MISS", b"GET /page #3")  # #2 was the POST
    assert tier(b).counts.deletes == 1


async def test_ready_stays_ready_and_says_how_redis_is(
    fleet: StartFleet, redis_server: RedisServer
) -> None:
    a = await fleet(admin={"listen": "127.0.0.1:0"}, redis={"failures": 2})

    async def ready() -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(a.proxy.admin.addresses[0] + "/ready") as response,
        ):
            return response.status, json.loads(await response.text())

    up_status, up = await ready()
    redis_server.kill()
    for n in range(100):  # L1 misses, until two failures a timeout apart open the circuit
        assert (await get(a, f"/p{n}")).status == 200
        if tier(a).breaker.state == "open":
            break
        await asyncio.sleep(0.006)
    assert (await get(a, "/skipped")).status == 200
    open_status, opened = await ready()

    assert (up_status, up["ready"], up["redis"]["state"]) == (200, True, "up")
    assert up["redis"]["url"] == redis_server.url
    assert (open_status, opened["ready"], opened["redis"]["state"]) == (200, True, "open")
    assert opened["redis"]["errors"] >= 2 and opened["redis"]["skipped"] >= 1
    assert 0 < opened["redis"]["retry_in"] <= 0.2


async def load(
    client: Client, count: int, paths: int, during: Callable[[int], None]
) -> list[float]:
    """`count` GETs over `paths` URLs, 8 at a time, calling `during(i)` before the i-th;
    returns each request's seconds and asserts every answer is a 200."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            during(i)
            started = time.monotonic()
            got = await get(client, f"/load/{i % paths}")
            latencies.append(time.monotonic() - started)
            assert got.status == 200, (i, got.status, got.body)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), 60)
    return latencies


@pytest.mark.parametrize("failure", ["killed", "hung"])
async def test_redis_failing_mid_load_costs_visitors_nothing(
    fleet: StartFleet, redis_server: RedisServer, failure: str
) -> None:
    """Killed (connections refused) or hung (SIGSTOP: nothing answers, each call waits out
    its 5 ms timeout until the circuit opens): every request still gets its 200, none waits
    long, and the circuit is open at the end. Small entries and few items, so that L1
    misses keep asking Redis."""
    a = await fleet(caches={"default": {"items": 5}}, redis={"timeout": "5ms"})

    def fail_at_100(i: int) -> None:
        if i == 100 and failure == "killed":
            redis_server.kill()
        elif i == 100:
            redis_server.pause()

    latencies = await load(a, 400, 40, fail_at_100)
    if failure == "hung":
        redis_server.resume()

    counts = tier(a).counts
    assert tier(a).breaker.state == "open"
    # then it stopped asking: calls failed for the few milliseconds it takes to count five
    # failures a timeout apart, then (from up to 3 per request) most were skipped
    assert counts.errors >= tier(a).settings.failures
    assert counts.skipped > 4 * counts.errors, counts
    # no stall: the slowest request is the app's time plus one timeout, far below a second
    assert max(latencies) < 0.5, sorted(latencies)[-5:]


async def test_redis_back_on_its_port_is_used_again_after_the_cool_down(
    fleet: StartFleet, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    a = await fleet(redis={"failures": 1})
    b = await fleet(redis={"failures": 1})
    redis_server.kill()
    assert (await get(a, "/before")).status == 200  # fails once: the circuit opens
    assert tier(a).breaker.state == "open"
    await redis_server.restart()
    await eventually(lambda: tier(a).breaker.state == "up")  # the probe, after 200 ms
    await get(a, "/after")
    await written(a)
    on_b = await get(b, "/after")

    assert (on_b.x_cache, on_b.body) == ("HIT", b"GET /after #1")


async def test_the_tiered_store_writes_nothing_its_memory_refuses(
    redis_server: RedisServer,
) -> None:
    """A fill over item_size never reaches `put` (the recorder stops at it); `put` refuses
    it too, in both tiers, whoever calls it."""
    clock = FakeClock()
    settings = RedisSettings(redis_server.url)
    shared = RedisTier(settings, clock)
    await shared.start()
    try:
        store = TieredStore(MemoryStore(CacheSettings("default", item_size=1024), clock), shared)
        small = CachedResponse(200, "OK", (), b"x" * 1024, clock(), clock() + 60)
        big = replace(small, body=b"x" * 1025)
        stored = [await store.put("/small", small), await store.put("/big", big)]
        queued = shared.pending
    finally:
        await shared.close()
    assert (stored, queued) == ([True, False], 1)


def test_the_write_queue_is_bounded_in_entries_and_bytes() -> None:
    """Writes wait in a queue of at most WRITE_QUEUE entries and WRITE_BYTES; past either,
    a write is dropped and counted (no writer runs here: the queue only fills)."""
    clock = FakeClock()
    shared = RedisTier(RedisSettings("redis://127.0.0.1:1"), clock)
    shared.breaker.succeeded(0.0)  # as if connected
    small = CachedResponse(200, "OK", (), b"x", clock(), clock() + 60)
    queued = [shared.store("default", f"k{i}", small) for i in range(WRITE_QUEUE + 10)]
    again = shared.store("default", "k0", small)  # a newer write of a queued key replaces it
    counted = (shared.pending, shared.counts.writes_dropped)

    big = CachedResponse(200, "OK", (), b"x" * (WRITE_BYTES // 4), clock(), clock() + 60)
    other = RedisTier(RedisSettings("redis://127.0.0.1:1"), clock)
    other.breaker.succeeded(0.0)
    by_bytes = [other.store("default", f"b{i}", big) for i in range(5)]

    assert queued == [True] * WRITE_QUEUE + [False] * 10
    assert again and counted == (WRITE_QUEUE, 10)
    assert by_bytes == [True, True, True, False, False]  # each is a quarter, plus overhead


# --- coalescing across instances ([redis] coalesce) -----------------------------------------


@pytest.mark.parametrize(("coalesce", "app_asked"), [(True, 1), (False, 3)])
async def test_a_cold_page_asked_of_three_instances_at_once(
    fleet: StartFleet, upstream: FakeUpstream, coalesce: bool, app_asked: int
) -> None:
    """With coalesce, one instance fills (a lock in Redis) and the others wait for its entry
    in Redis; without, each fills (the control)."""
    upstream.on("/slow", delay=0.3)
    a, b, c = [await fleet(redis={"coalesce": coalesce}) for _ in range(3)]
    replies = await asyncio.gather(get(a, "/slow"), get(b, "/slow"), get(c, "/slow"))

    assert len(upstream.to("/slow")) == app_asked
    assert {r.status for r in replies} == {200}
    if coalesce:
        assert sorted(r.x_cache or "" for r in replies) == ["HIT", "HIT", "MISS"]
        assert {r.body for r in replies} == {b"GET /slow #1"}


async def test_a_fill_that_is_not_stored_lets_the_others_fill_at_once(
    fleet: StartFleet, upstream: FakeUpstream
) -> None:
    """The lock is released as the leader's fill ends: the waiters see it gone, no entry,
    and fill themselves then, not after coalesce_wait (5 s)."""
    upstream.on("/private", delay=0.3, headers=[("Cache-Control", "no-store")])
    a, b = [await fleet(redis={"coalesce": True}) for _ in range(2)]
    started = time.monotonic()
    replies = await asyncio.gather(get(a, "/private"), get(b, "/private"))
    took = time.monotonic() - started

    assert [r.status for r in replies] == [200, 200]
    assert len(upstream.to("/private")) == 2
    assert took < 1.5, took  # two fills of 0.3 s one after the other, and a few polls


async def test_a_reload_keeps_the_tier_and_says_a_restart_applies_redis_changes(
    fleet: StartFleet,
) -> None:
    a = await fleet()
    tier_before = tier(a)
    raw = dict(a.proxy.settings.raw)
    same = parse(raw, "test.toml")
    changed = parse({**raw, "redis": {**raw["redis"], "prefix": "other:"}}, "test.toml")
    notes_same = await a.proxy.reload(same)
    notes_changed = await a.proxy.reload(changed)
    await get(a, "/page")
    await written(a)

    assert "[redis] changed: a restart applies it" not in notes_same
    assert "[redis] changed: a restart applies it" in notes_changed
    assert tier(a) is tier_before and tier(a).settings.prefix == "sidecache:"
