"""GET /metrics after one request of each kind (issue 15): every PassReason and NotStoredReason a
request over real sockets can produce is counted once, under its reason, and nothing else is;
requests the front refuses, clients that leave, pipelined hits, evictions by the bytes bound,
and the admin token on /metrics. test_metrics.py has the sequences of hits, misses, passes,
stale answers and failures.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from .conftest import StartProxy
from .metrics_scrape import ADMIN, RULE, expect, key, not_cached, requests, scrape
from .support import WAIT, FakeUpstream, Reply, flask_session

FLASHES = {"_flashes": [["message", "Saved"]]}


def reply(*headers: tuple[str, str], **fields: Any) -> Reply:
    return Reply(headers=list(headers), **fields)


# One request to /page: (what the upstream answers, the request's headers and body, extra
# configuration) → (its X-Cache, its rule, why it was not cached).
NOT_CACHED: dict[str, tuple[Reply | None, dict[str, str], bytes | None, dict[str, Any], str]] = {
    # PassReason: decide's, before the store is looked at (src/reasons.py)
    "PASS no-rule": (None, {}, None, {"rules": []}, "-"),
    "PASS rule": (None, {}, None, {"rules": [{"name": "off", "action": "pass"}]}, "off"),
    "PASS authorization": (None, {"Authorization": "Bearer t"}, None, {}, RULE),
    "PASS authenticated": (None, {"Cookie": "remember_token=1|sig"}, None, {}, RULE),
    "PASS flashes": (None, {"Cookie": f"session={flask_session(FLASHES)}"}, None, {}, RULE),
    "PASS request-body": (None, {}, b"x=1", {}, RULE),
    "PASS range": (None, {"Range": "bytes=0-1"}, None, {}, RULE),
    # NotStoredReason: the fill's answer, delivered and not stored
    "MISS status": (reply(status=404), {}, None, {}, RULE),
    "MISS no-store": (reply(("Cache-Control", "no-store")), {}, None, {}, RULE),
    "MISS private": (reply(("Cache-Control", "private")), {}, None, {}, RULE),
    "MISS no-cache": (reply(("Cache-Control", "no-cache")), {}, None, {}, RULE),
    "MISS set-cookie": (reply(("Set-Cookie", "a=1")), {}, None, {}, RULE),
    "MISS vary-star": (reply(("Vary", "*")), {}, None, {}, RULE),
    "MISS too-big": (reply(body=b"x" * 70_000), {}, None, {}, RULE),
    "MISS request-no-store": (None, {"Cache-Control": "no-store"}, None, {}, RULE),
}


@pytest.mark.parametrize("case", NOT_CACHED)
async def test_each_reason_not_to_cache_is_counted_once_under_it(
    sidecache: StartProxy, upstream: FakeUpstream, case: str
) -> None:
    # DESIGN.md: every "why not cached" answer is a member of one enum, in logs and metrics
    cache, reason = case.split()
    answer, headers, body, sections, rule = NOT_CACHED[case]
    if answer is not None:
        upstream.on("/page", answer)
    client = await sidecache(admin=ADMIN, **sections)
    got = await client.fetch("GET", "/page", headers, data=body)
    assert got.x_cache == cache

    samples = await expect(
        client,
        {requests(cache, rule): 1, not_cached(reason, cache): 1},
        only="sidecache_requests_total",
    )
    reasons = {k: v for k, v in samples.items() if k[0] == "sidecache_not_cached_total" and v}
    assert reasons == {not_cached(reason, cache): 1}
    assert samples[key("sidecache_store_items", cache="default")] == 0


async def test_pipelined_hits_are_each_counted(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # the front answers hits at once, several per read: each is counted, once
    client = await sidecache(admin=ADMIN)
    await client.get("/page")
    request = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % client.port
    async with client.connect() as connection:
        await connection.send(request * 10)
        answers = [await connection.response() for _ in range(10)]
    assert [a.header("X-Cache") for a in answers] == ["HIT"] * 10
    await expect(
        client, {requests("HIT"): 10, requests("MISS"): 1}, only="sidecache_requests_total"
    )
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GET /page HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400, id="400"),
        pytest.param(b"GET /page HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400, id="cl"),
        pytest.param(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, id="414"),
    ],
)
async def test_a_request_the_front_refuses_counts_as_an_error_of_no_rule(
    sidecache: StartProxy, upstream: FakeUpstream, data: bytes, status: int
) -> None:
    client = await sidecache(admin=ADMIN)
    assert (await client.raw(data)).status == status
    await expect(client, {requests("ERROR", "-"): 1}, only="sidecache_requests_total")
    assert upstream.seen == []


async def test_a_client_that_leaves_before_the_answer_is_counted_once(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/slow", delay=0.3)
    client = await sidecache(admin=ADMIN)
    async with client.connect() as connection:
        await connection.send(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await asyncio.sleep(0.1)  # the fill is under way: the client hangs up
    await expect(client, {requests("MISS"): 1}, only="sidecache_requests_total")
    await asyncio.sleep(0.4)  # past the upstream's answer: still one
    await expect(client, {requests("MISS"): 1}, only="sidecache_requests_total")


async def test_evictions_by_the_bytes_bound_are_what_was_stored_less_what_is_held(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    caches = {"default": {"items": 100, "max_bytes": "16KiB", "item_size": "8KiB"}}
    client = await sidecache(admin=ADMIN, caches=caches)
    for n in range(6):
        upstream.on(f"/{n}", body=b"x" * 5_000)
        assert (await client.get(f"/{n}")).x_cache == "MISS"
    samples = await expect(client, {requests("MISS"): 6, not_cached("stored", "MISS"): 0})
    held = samples[key("sidecache_store_items", cache="default")]
    assert 0 < held < 6  # the bytes bound, not the items one, pushed entries out
    assert samples[key("sidecache_evictions_total", cache="default")] == 6 - held
    assert samples[key("sidecache_store_bytes", cache="default")] <= 16 * 1024


TOKEN = "metrics-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        pytest.param(None, 401, id="none"),
        pytest.param("Bearer wrong-token-0123456789abcdef", 401, id="wrong"),
        pytest.param(f"Basic {TOKEN}", 401, id="not-bearer"),
        pytest.param(f"Bearer {TOKEN}", 200, id="right"),
    ],
)
async def test_metrics_require_the_admin_token_when_one_is_set(
    sidecache: StartProxy, authorization: str | None, status: int
) -> None:
    # issue 15: [admin] token guards the operator endpoints; /health stays open (probes)
    client = await sidecache(admin={**ADMIN, "token": TOKEN})
    await client.get("/page")
    address = client.proxy.admin.addresses[0]
    headers = {"Authorization": authorization} if authorization else {}
    timeout = aiohttp.ClientTimeout(total=WAIT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(address + "/metrics", headers=headers) as response:
            assert response.status == status
            body = await response.text()
        async with session.get(address + "/health") as health:
            assert health.status == 200
    assert ("sidecache_requests_total" in body) is (status == 200)
    if status == 200:
        assert (await scrape(client, headers))[requests("MISS")] == 1
