"""Pin proxy.store.memory: bounded by items (LRU), item size and total bytes; TTL on a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from proxy.config import parse
from proxy.settings import CacheSettings
from proxy.store import ENTRY_OVERHEAD, CachedResponse
from proxy.store.memory import MemoryStore

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    """A fake monotonic clock: tests move time forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(**fields: Any) -> CacheSettings:
    return parse({"caches": {"c": fields}}, "test.toml").caches["c"]


def entry(
    clock: Clock, body: bytes = b"x", *, ttl: float = 60.0, headers: Any = ()
) -> CachedResponse:
    return CachedResponse(200, "OK", headers, body, clock.now, clock.now + ttl)


def store_of(clock: Clock, **fields: Any) -> MemoryStore:
    return MemoryStore(cache(**fields), clock)


async def keys_present(store: MemoryStore, *keys: str) -> list[str]:
    return [k for k in keys if await store.get(k) is not None]


def test_entry_size_counts_body_headers_and_overhead() -> None:
    # product rule: max_bytes bounds bodies and headers of all entries together
    clock = Clock()
    value = entry(clock, b"12345", headers=(("Content-Type", "text/html"),))
    assert value.size == 5 + len("Content-Type") + len("text/html") + 4 + ENTRY_OVERHEAD


def test_get_returns_what_was_put() -> None:
    clock = Clock()
    store = store_of(clock)
    value = entry(clock, b"hello")
    assert run(store.put("k", value)) is True
    assert run(store.get("k")) is value
    assert run(store.get("other")) is None


def test_get_now_answers_like_get_and_counts_each_lookup_once() -> None:
    # The front's synchronous hit path asks get_now first; on a miss the handler's get follows,
    # so get_now counts hits only and a miss is counted once, by get.
    clock = Clock()
    store = store_of(clock)
    value = entry(clock, b"hello", ttl=60)
    run(store.put("k", value))
    assert store.get_now("k") is value
    assert store.get_now("other") is None
    assert run(store.get("other")) is None
    clock.now += 60  # expired: neither answers with it
    assert store.get_now("k") is None
    assert run(store.get("k")) is None
    stats = store.stats()
    assert (stats.hits, stats.misses) == (1, 2)


def test_get_now_refreshes_recency_like_get() -> None:
    clock = Clock()
    store = store_of(clock, items=2)
    run(store.put("a", entry(clock)))
    run(store.put("b", entry(clock)))
    assert store.get_now("a") is not None  # "a" is now the most recently used
    run(store.put("c", entry(clock)))
    assert run(keys_present(store, "a", "b", "c")) == ["a", "c"]


# --- items bound: least recently used goes first -------------------------------------------


def test_items_bound_evicts_least_recently_put() -> None:
    clock = Clock()
    store = store_of(clock, items=2)

    async def scenario() -> list[str]:
        for key in ("a", "b", "c"):
            assert await store.put(key, entry(clock))
        return await keys_present(store, "a", "b", "c")

    assert run(scenario()) == ["b", "c"]
    assert store.stats().items == 2
    assert store.stats().evictions == 1


def test_get_refreshes_recency() -> None:
    # LRU: a get makes the entry most recently used, so the other one is evicted
    clock = Clock()
    store = store_of(clock, items=2)

    async def scenario() -> list[str]:
        await store.put("a", entry(clock))
        await store.put("b", entry(clock))
        assert await store.get("a") is not None
        await store.put("c", entry(clock))
        return await keys_present(store, "a", "b", "c")

    assert run(scenario()) == ["a", "c"]


def test_items_bound_of_one() -> None:
    clock = Clock()
    store = store_of(clock, items=1)

    async def scenario() -> list[str]:
        await store.put("a", entry(clock))
        await store.put("b", entry(clock))
        return await keys_present(store, "a", "b")

    assert run(scenario()) == ["b"]


def test_expired_entries_make_room_without_evicting_fresh_ones() -> None:
    clock = Clock()
    store = store_of(clock, items=2)

    async def scenario() -> list[str]:
        await store.put("short", entry(clock, ttl=5))
        await store.put("long", entry(clock, ttl=500))
        clock.now += 10
        await store.put("new", entry(clock))
        return await keys_present(store, "short", "long", "new")

    assert run(scenario()) == ["long", "new"]
    assert store.stats().evictions == 0


# --- item_size bound: larger bodies are refused ----------------------------------------------


@pytest.mark.parametrize(
    ("size", "stored"),
    [
        # product rule: item_size is the largest body stored (uWSGI's cache2 blocksize)
        pytest.param(99, True, id="under"),
        pytest.param(100, True, id="exactly-item-size"),
        pytest.param(101, False, id="over-refused"),
    ],
)
def test_item_size_bound(size: int, stored: bool) -> None:
    clock = Clock()
    store = store_of(clock, item_size=100)
    assert run(store.put("k", entry(clock, b"x" * size))) is stored
    assert (run(store.get("k")) is not None) is stored
    assert store.stats().items == int(stored)
    assert store.stats().stores == int(stored)


def test_refused_put_keeps_the_old_entry() -> None:
    clock = Clock()
    store = store_of(clock, item_size=100)
    old = entry(clock, b"old")
    run(store.put("k", old))
    assert run(store.put("k", entry(clock, b"x" * 101))) is False
    assert run(store.get("k")) is old


def test_entry_over_max_bytes_is_refused() -> None:
    # body within item_size, but body + headers + overhead over max_bytes: can never fit
    clock = Clock()
    store = store_of(clock, item_size=400, max_bytes=600)
    assert run(store.put("k", entry(clock, b"x" * 400))) is False
    assert store.stats().items == 0


# --- max_bytes bound: least recently used goes first ----------------------------------------


def test_max_bytes_bound_evicts_lru() -> None:
    clock = Clock()
    body = b"x" * 300  # 556 bytes an entry with the overhead: two do not fit in 1000
    store = store_of(clock, item_size=500, max_bytes=1000)

    async def scenario() -> list[str]:
        await store.put("a", entry(clock, body))
        await store.put("b", entry(clock, body))
        return await keys_present(store, "a", "b")

    assert run(scenario()) == ["b"]
    stats = store.stats()
    assert (stats.items, stats.bytes, stats.evictions) == (1, 300 + ENTRY_OVERHEAD, 1)


def test_max_bytes_eviction_follows_recency() -> None:
    clock = Clock()
    small, big = b"x" * 100, b"x" * 300  # 356 + 356 fit in 1000; adding 556 needs one out
    store = store_of(clock, item_size=500, max_bytes=1000)

    async def scenario() -> list[str]:
        await store.put("a", entry(clock, small))
        await store.put("b", entry(clock, small))
        await store.get("a")
        await store.put("c", entry(clock, big))
        return await keys_present(store, "a", "b", "c")

    assert run(scenario()) == ["a", "c"]
    assert store.stats().bytes <= 1000


# --- TTL on the injected clock ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "fresh"),
    [
        pytest.param(0.0, True, id="just-stored"),
        pytest.param(59.999, True, id="just-before-expiry"),
        pytest.param(60.0, False, id="exactly-at-expiry"),
        pytest.param(3600.0, False, id="long-after"),
    ],
)
def test_ttl_expiry(elapsed: float, fresh: bool) -> None:
    clock = Clock()
    store = store_of(clock)
    run(store.put("k", entry(clock, ttl=60)))
    clock.now += elapsed
    assert (run(store.get("k")) is not None) is fresh
    assert store.stats().items == int(fresh)


def test_age_counts_from_stored_at() -> None:
    # RFC 9111 §4.2.3: age = the upstream's Age + time resident in the cache
    clock = Clock()
    value = CachedResponse(200, "OK", (), b"", clock.now, clock.now + 60, initial_age=5)
    assert value.age(clock.now) == 5
    assert value.age(clock.now + 12.7) == 17
    assert value.age(clock.now - 3) == 5


# --- replace, delete, stats -------------------------------------------------------------------


def test_put_same_key_replaces() -> None:
    clock = Clock()
    store = store_of(clock, items=2)
    first, second = entry(clock, b"first"), entry(clock, b"second-body")
    run(store.put("k", first))
    run(store.put("k", second))
    assert run(store.get("k")) is second
    stats = store.stats()
    assert (stats.items, stats.bytes, stats.evictions) == (1, second.size, 0)


def test_replacing_does_not_evict_others_when_full() -> None:
    clock = Clock()
    store = store_of(clock, items=2)

    async def scenario() -> list[str]:
        await store.put("a", entry(clock))
        await store.put("b", entry(clock))
        await store.put("a", entry(clock, b"new"))
        return await keys_present(store, "a", "b")

    assert run(scenario()) == ["a", "b"]
    assert store.stats().evictions == 0


def test_delete() -> None:
    clock = Clock()
    store = store_of(clock)
    run(store.put("k", entry(clock)))
    assert run(store.delete("k")) is True
    assert run(store.get("k")) is None
    assert run(store.delete("k")) is False
    assert store.stats().items == 0
    assert store.stats().bytes == 0


def test_delete_of_an_expired_entry() -> None:
    clock = Clock()
    store = store_of(clock)
    run(store.put("k", entry(clock, ttl=1)))
    clock.now += 2
    assert run(store.delete("k")) is False


def test_stats_counts() -> None:
    clock = Clock()
    store = store_of(clock, items=3, item_size=1000, max_bytes=10_000)

    async def scenario() -> None:
        await store.get("a")  # miss
        await store.put("a", entry(clock, b"x" * 10))
        await store.get("a")  # hit
        await store.get("a")  # hit
        await store.put("b", entry(clock, b"x" * 20))
        await store.put("big", entry(clock, b"x" * 1001))  # refused: not a store
        await store.get("big")  # miss

    run(scenario())
    stats = store.stats()
    assert (stats.hits, stats.misses, stats.stores, stats.evictions) == (2, 2, 2, 0)
    assert (stats.items, stats.bytes) == (2, 30 + 2 * ENTRY_OVERHEAD)
    assert (stats.max_items, stats.max_bytes) == (3, 10_000)


def test_expired_entry_counts_as_a_miss() -> None:
    clock = Clock()
    store = store_of(clock)
    run(store.put("k", entry(clock, ttl=1)))
    clock.now += 1
    assert run(store.get("k")) is None
    assert (store.stats().hits, store.stats().misses) == (0, 1)


def test_put_of_an_already_expired_entry_stores_and_evicts_nothing() -> None:
    # a rule with ttl = "0s" builds an entry whose expires_at is now: nothing is kept, so
    # nothing may be counted as stored or evicted
    clock = Clock()
    store = store_of(clock)
    run(store.put("k", entry(clock, ttl=0)))
    assert run(store.get("k")) is None
    stats = store.stats()
    assert (stats.items, stats.stores, stats.evictions) == (0, 0, 0)


async def test_async_protocol_in_a_running_loop() -> None:
    # the store methods are coroutines: they work inside the proxy's event loop too
    clock = Clock()
    store = store_of(clock)
    assert await store.put("k", entry(clock, b"body")) is True
    got = await store.get("k")
    assert got is not None and got.body == b"body"


async def test_long_keys_are_held_as_fixed_size_digests() -> None:
    # Review of issue 2: a key carries the raw target, which a visitor chooses; held whole, 20,000
    # keys of 8 KiB used ~160 MiB while max_bytes counted 6 MiB. Digests keep keys at 16 bytes.
    clock = Clock()
    store = store_of(clock)
    long_a, long_b = "/" + "a" * 8192 + "1", "/" + "a" * 8192 + "2"
    assert await store.put(long_a, entry(clock, b"A"))
    assert await store.put(long_b, entry(clock, b"B"))
    got_a, got_b = await store.get(long_a), await store.get(long_b)
    assert got_a is not None and got_a.body == b"A"
    assert got_b is not None and got_b.body == b"B"
    assert {len(k) for k in store._cache} == {16}
    assert await store.delete(long_a) is True
    assert await store.get(long_a) is None
