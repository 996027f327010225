"""GET /metrics of the real `sidecache` command (issue 15): the counters after a known sequence
of requests, each over a fresh connection, read with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import collections
import os
import signal

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sidecache_e2e import fetch, free_port
from test_e2e_workers import drive, get, served_by, workers_of

Totals = collections.Counter[tuple[str, str]]


async def scrape(client: aiohttp.ClientSession, admin: int) -> dict[str, Totals]:
    """Each family's samples summed by one label (or by none): family → (label, value) → n."""
    reply = await fetch(client, "GET", f"http://127.0.0.1:{admin}/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    summed: dict[str, Totals] = collections.defaultdict(collections.Counter)
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            for label in sample.labels.items() or [("", "")]:
                if label[0] in ("", "cache", "kind", "reason"):
                    summed[sample.name][label] += sample.value
    return summed


async def until_counted(
    client: aiohttp.ClientSession, admin: int, requests: int, within: float = 10.0
) -> dict[str, Totals]:
    """Scrape until `requests` requests are counted (each is counted once it has ended)."""
    async with asyncio.timeout(within):
        while True:
            got = await scrape(client, admin)
            if got["sidecache_requests_total"].total() >= requests:
                return got
            await asyncio.sleep(0.05)


async def test_metrics_of_the_real_process(upstream, client, start_sidecache):
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url, args=["--cache", "^/", "--admin", f"127.0.0.1:{admin}"]
    )
    await proc.wait_for_line(
        f"admin (/health, /ready, /metrics, /purge) on http://127.0.0.1:{admin}"
    )
    for _ in range(5):
        async with aiohttp.ClientSession() as fresh:  # a new connection each time
            assert (await fetch(fresh, "GET", proc.base_url + "/page")).status == 200
    await fetch(client, "POST", proc.base_url + "/form", data=b"x=1")

    got = await until_counted(client, admin, 6)
    requests = got["sidecache_requests_total"]
    assert requests.total() == 6
    assert requests[("cache", "MISS")] == 1
    assert requests[("cache", "HIT")] == 4
    assert requests[("cache", "PASS")] == 1
    assert got["sidecache_not_cached_total"][("cache", "PASS")] == 1
    assert got["sidecache_store_items"][("cache", "default")] == 1
    assert got["sidecache_upstream_request_duration_seconds_count"][("", "")] == 2
    assert upstream.count() == 2


async def test_a_masters_metrics_sum_its_workers_and_never_go_down(
    upstream, client, start_sidecache
):
    """--workers 2: the master asks each worker for its counters and adds them up; after one
    is killed, what it had counted stays in the totals and what it held (its entries) goes,
    before and after its replacement serves."""
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        args=["--workers", "2", "--cache", "^/", "--admin", f"127.0.0.1:{admin}"],
    )
    port = int(proc.base_url.rsplit(":", 1)[1])
    await drive(200, lambda: get(port, "/page"))
    lines = await proc.wait_for_lines(" sidecache.access ", 200)
    shares = served_by(proc, lines)
    counted = await until_counted(client, admin, 200)
    workers = workers_of(proc)

    os.kill(workers[2], signal.SIGKILL)
    await proc.wait_for_line(
        f"worker 2 (pid {workers[2]}) killed by signal SIGKILL", within=5.0, stderr=True
    )
    dead = await scrape(client, admin)  # the replacement serving yet or not: it has served none
    await until_serving(proc, 2, within=5.0)
    await drive(20, lambda: get(port, "/page"))
    later = served_by(proc, (await proc.wait_for_lines(" sidecache.access ", 220))[200:])
    after = await until_counted(client, admin, 220)

    assert min(shares.values()) > 0 and len(shares) == 2  # both served
    requests = counted["sidecache_requests_total"]
    assert requests.total() == 200 and requests[("cache", "MISS")] == 2  # one fill per worker
    assert counted["sidecache_store_items"][("cache", "default")] == 2  # one entry in each
    # the dead worker's requests kept, its entry not: worker 1's alone
    assert dead["sidecache_requests_total"].total() == 200
    assert dead["sidecache_store_items"][("cache", "default")] == 1
    # the replacement fills /page once if it got any of the 20
    refilled = int(later[2] > 0)
    assert after["sidecache_requests_total"].total() == 220
    assert after["sidecache_requests_total"][("cache", "MISS")] == 2 + refilled
    assert after["sidecache_store_items"][("cache", "default")] == 1 + refilled
    assert upstream.count() == 2 + refilled


async def until_serving(proc, count: int, within: float) -> None:
    """Until `count` workers have said they serve since the start, the replaced one too."""
    await proc.wait_for_lines(") serving", count + 1, within=within)
