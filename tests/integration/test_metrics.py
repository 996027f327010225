"""GET /metrics on the admin listener (issue 15): counters asserted after known sequences of
hits, misses, passes, stale answers, coalesced waits and upstream failures, as Varnish's tests
assert varnishstat's. Every scrape is parsed by prometheus_client's own parser.

The scrape and its waits are metrics_scrape.py's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from proxy.config import parse

from .conftest import StartProxy, config
from .metrics_scrape import ADMIN, expect, key, not_cached, requests
from .support import WAIT, Client, FakeClock, FakeUpstream, Got, Reply, eventually


async def burst(client: Client, count: int, target: str) -> list[Got]:
    """`count` concurrent GETs, each on its own connection."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one() -> Got:
            async with session.get(client.url(target)) as response:
                return Got(response.status, response.headers, await response.read())

        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 2 * WAIT)


@pytest.mark.parametrize("access_log", [True, False], ids=["access-log-on", "access-log-off"])
async def test_hits_misses_and_passes_are_counted_exactly(
    sidecache: StartProxy, upstream: FakeUpstream, access_log: bool
) -> None:
    upstream.on("/private", headers=[("Cache-Control", "private")])
    client = await sidecache(admin=ADMIN, server={"access_log": access_log})
    for target in ("/a", "/a", "/a", "/b", "/b", "/private", "/private"):
        await client.get(target)
    await client.fetch("POST", "/form", data=b"x=1")
    await client.get("/a", headers={"Authorization": "Bearer t"})

    got = await expect(
        client,
        {
            requests("HIT"): 3,  # /a twice, /b once
            requests("MISS"): 3,  # /a, /b, /private
            # /private again (it proved personal: hit-for-pass), the GET with Authorization
            requests("PASS"): 2,
            requests("PASS", "-"): 1,  # the POST: no rule matches it
            not_cached("private", "MISS"): 1,
            not_cached("hit-for-pass", "PASS"): 1,
            not_cached("authorization", "PASS"): 1,
            not_cached("no-rule", "PASS"): 1,
        },
        only="sidecache_requests_total",
    )
    assert got[key("sidecache_store_items", cache="default")] == 2
    stored = client.proxy.stores["default"].stats().bytes
    assert got[key("sidecache_store_bytes", cache="default")] == stored > 0
    assert got[key("sidecache_evictions_total", cache="default")] == 0
    assert got[key("sidecache_upstream_request_duration_seconds_count")] == 6
    assert got[key("sidecache_coalesced_total")] == 0
    assert len(upstream.seen) == 6


async def test_evictions_are_counted_per_named_cache(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin=ADMIN, caches={"default": {"items": 2}})
    for target in ("/1", "/2", "/3", "/4"):
        await client.get(target)
    await expect(
        client,
        {
            key("sidecache_evictions_total", cache="default"): 2,
            key("sidecache_store_items", cache="default"): 2,
            requests("MISS"): 4,
        },
    )


async def test_a_burst_counts_one_fill_and_the_coalesced_waiters(
    client_with_admin: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/page", delay=0.25)
    answers = await burst(client_with_admin, 5, "/page")
    assert len(upstream.to("/page")) == 1
    assert sorted(a.headers["X-Cache"] for a in answers) == ["HIT"] * 4 + ["MISS"]
    await expect(
        client_with_admin,
        {
            requests("MISS"): 1,
            requests("HIT"): 4,
            key("sidecache_coalesced_total"): 4,
            key("sidecache_upstream_request_duration_seconds_count"): 1,
        },
    )


async def test_stale_answers_are_counted_with_what_allowed_them(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    rule = {"name": "page", "action": "cache", "ttl": "10s", "stale_while_revalidate": "30s"}
    rule["stale_if_error"] = "1m"
    client = await sidecache(admin=ADMIN, rules=[rule])
    await client.get("/page")
    clock.advance(15)
    assert (await client.get("/page")).x_cache == "STALE"  # refreshed behind
    await eventually(lambda: len(upstream.to("/page")) == 2 and upstream.active == 0)
    clock.advance(50)  # past the refreshed entry's revalidation window, inside stale-if-error
    upstream.on("/page", status=503)
    assert (await client.get("/page")).x_cache == "STALE"

    await expect(
        client,
        {
            requests("MISS", "page"): 1,
            requests("STALE", "page"): 2,
            key("sidecache_stale_served_total", reason="stale-while-revalidate"): 1,
            key("sidecache_stale_served_total", reason="stale-if-error"): 1,
            # the first fill, the refresh behind (counted, not a request), the 503
            key("sidecache_upstream_request_duration_seconds_count"): 3,
        },
        only="sidecache_requests_total",
    )


FAILURES: dict[str, tuple[dict[str, Any], Reply | None, str, int]] = {
    "refused": ({"upstream_url": "closed"}, None, "upstream-refused", 502),
    "reset": ({}, Reply(reset=True), "upstream-error", 502),
    "timeout": ({"upstream": {"read_timeout": "200ms"}}, Reply(delay=2.0), "upstream-timeout", 504),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_upstream_failures_are_counted_by_kind(
    sidecache: StartProxy, upstream: FakeUpstream, closed_port: int, failure: str
) -> None:
    sections, reply, kind, status = FAILURES[failure]
    if sections.get("upstream_url") == "closed":
        sections = {"upstream_url": f"http://127.0.0.1:{closed_port}"}
    client = await sidecache(admin=ADMIN, **sections)
    if reply is not None:
        upstream.on("/down", reply)
    assert (await client.get("/down")).status == status
    assert (await client.fetch("POST", "/down", data=b"x")).status == status

    await expect(
        client,
        {
            requests("ERROR"): 1,
            requests("ERROR", "-"): 1,
            key("sidecache_upstream_errors_total", kind=kind): 2,
            key("sidecache_upstream_request_duration_seconds_count"): 0,
        },
        only="sidecache_upstream_errors_total",
    )


async def test_an_answer_that_breaks_off_counts_an_upstream_error_and_why_not_stored(
    client_with_admin: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/dying", body=b"x" * 50_000, die_after=1_000)
    with pytest.raises(aiohttp.ClientPayloadError):
        await client_with_admin.get("/dying")
    await expect(
        client_with_admin,
        {
            requests("MISS"): 1,
            not_cached("incomplete", "MISS"): 1,
            key("sidecache_upstream_errors_total", kind="upstream-error"): 1,
            key("sidecache_upstream_request_duration_seconds_count"): 1,  # its head came
        },
    )


async def test_upstream_durations_land_in_their_buckets(
    client_with_admin: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/slow", delay=0.3)
    await client_with_admin.get("/slow")
    await client_with_admin.get("/slow")  # a hit: the upstream is not asked
    name = "sidecache_upstream_request_duration_seconds"
    got = await expect(client_with_admin, {key(f"{name}_count"): 1})
    assert got[key(f"{name}_bucket", le="0.25")] == 0
    assert got[key(f"{name}_bucket", le="+Inf")] == 1
    assert got[key(f"{name}_sum")] >= 0.3


async def test_client_connections_open_are_a_gauge(client_with_admin: Client) -> None:
    connections = [client_with_admin.connect() for _ in range(3)]
    for connection in connections:
        await connection.__aenter__()
    await expect(client_with_admin, {key("sidecache_client_connections"): 3})
    for connection in connections:
        await connection.__aexit__()
    await expect(client_with_admin, {key("sidecache_client_connections"): 0})


async def test_counters_survive_a_reload_and_a_replaced_store_keeps_its_evictions(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin=ADMIN, caches={"default": {"items": 1}})
    for target in ("/1", "/2", "/1"):
        await client.get(target)
    await expect(client, {key("sidecache_evictions_total", cache="default"): 2})
    changed = config(upstream.url, admin=ADMIN, caches={"default": {"items": 5}})
    await client.proxy.reload(parse(changed, "test.toml"))
    await client.get("/3")
    await expect(
        client,
        {
            requests("MISS"): 4,
            key("sidecache_evictions_total", cache="default"): 2,
            key("sidecache_store_items", cache="default"): 1,  # the new store's
        },
    )


@pytest.fixture
async def client_with_admin(sidecache: StartProxy) -> Client:
    return await sidecache(admin=ADMIN)
