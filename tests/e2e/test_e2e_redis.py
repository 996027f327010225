"""The shared tier (issue 16) in the real `sidecache` command: processes (and worker
processes) sharing fills through a real redis-server, Redis killed under load and started
again, and the proxy's memory over a bounded loop of hits from Redis.

Every request names one Host, as a fleet's visitors do (the cache key holds it). Writes to
Redis happen in the background: a test waits for them through /ready's `redis` field.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from conftest import StartSidecache
from redis_server import RedisServer
from sidecache_e2e import (
    Reply,
    Seen,
    Upstream,
    fetch,
    free_port,
    proc_status,
    run_sidecache,
)

HOST = "www.example.com"
MIB = 1024 * 1024
CONCURRENCY = 8


def redis_config(url: str, **more: str) -> str:
    """A config with the tier on, and a short cool-down so that a test sees it come back."""
    lines = [f'url = "{url}"', 'cooldown = "200ms"', 'connect_timeout = "200ms"']
    lines += [f'{key} = "{value}"' for key, value in more.items()]
    return "[redis]\n" + "\n".join(lines) + "\n"


async def get(client: aiohttp.ClientSession, base: str, target: str) -> Reply:
    return await fetch(client, "GET", base + target, headers={"Host": HOST})


async def ready(client: aiohttp.ClientSession, admin: int) -> tuple[int, dict[str, Any]]:
    reply = await fetch(client, "GET", f"http://127.0.0.1:{admin}/ready")
    return reply.status, json.loads(reply.body)


async def until_redis(
    client: aiohttp.ClientSession, admin: int, check: Any, within: float = 10.0
) -> dict[str, Any]:
    """/ready's `redis` field, once `check(field)` holds (within a deadline)."""
    deadline = time.monotonic() + within
    while True:
        _, body = await ready(client, admin)
        if check(body["redis"]):
            return dict(body["redis"])
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {body['redis']}")
        await asyncio.sleep(0.02)


async def test_two_processes_share_fills(
    upstream: Upstream,
    client: aiohttp.ClientSession,
    start_sidecache: StartSidecache,
    redis_server: RedisServer,
) -> None:
    admin = free_port()
    tier = ["--cache", "^/", "--redis", redis_server.url]
    a = await start_sidecache(upstream=upstream.url, args=[*tier, "--admin", f"127.0.0.1:{admin}"])
    b = await start_sidecache(upstream=upstream.url, args=tier)
    filled = await get(client, a.base_url, "/page")
    await until_redis(client, admin, lambda redis: redis["writes"] >= 1)
    shared = await get(client, b.base_url, "/page")

    assert (filled.status, filled.x_cache, filled.body) == (200, "MISS", b"/page #1")
    assert (shared.status, shared.x_cache, shared.body) == (200, "HIT", b"/page #1")
    assert shared.headers["Age"] == "0"
    assert upstream.count("/page") == 1
    assert any("redis redis://127.0.0.1" in line and ": up" in line for line in b.stdout)


async def test_a_purge_on_one_process_reaches_the_others_memory(
    upstream: Upstream,
    client: aiohttp.ClientSession,
    start_sidecache: StartSidecache,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    admin_a, admin_b = free_port(), free_port()
    tier = ["--cache", "^/", "--redis", redis_server.url]
    a = await start_sidecache(
        upstream=upstream.url, args=[*tier, "--admin", f"127.0.0.1:{admin_a}"]
    )
    b = await start_sidecache(
        upstream=upstream.url, args=[*tier, "--admin", f"127.0.0.1:{admin_b}"]
    )
    await until_redis(client, admin_b, lambda redis: redis["purges_subscribed"])
    await get(client, a.base_url, "/page")
    await until_redis(client, admin_a, lambda redis: redis["writes"] >= 1)
    in_b = [await get(client, b.base_url, "/page") for _ in range(2)]  # Redis, then memory

    purged = await asyncio.to_thread(
        run_sidecache, "purge", "--url", "/page", "--admin", f"127.0.0.1:{admin_a}", cwd=tmp_path
    )
    await until_redis(client, admin_b, lambda redis: redis["purges_received"] == 1)
    after = await get(client, b.base_url, "/page")

    assert [reply.x_cache for reply in in_b] == ["HIT", "HIT"]
    assert (purged.returncode, purged.stdout) == (0, "purged 2 (url=/page)\n")  # A's and Redis's
    assert (after.x_cache, after.body) == ("MISS", b"/page #2")  # B's memory was purged too


async def test_worker_processes_share_fills_and_the_master_pings_redis(
    upstream: Upstream,
    client: aiohttp.ClientSession,
    start_sidecache: StartSidecache,
    redis_server: RedisServer,
) -> None:
    """Each worker has its own memory; through Redis they fill a page once between them.
    Fresh connections, as the kernel spreads connections (not requests) over workers."""
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        args=[
            "--workers",
            "2",
            "--cache",
            "^/",
            "--redis",
            redis_server.url,
            "--admin",
            f"127.0.0.1:{admin}",
        ],
    )
    await get(client, proc.base_url, "/page")
    await asyncio.sleep(0.2)  # the fill's write to Redis (the master sees no counts)
    replies = []
    for _ in range(20):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as one:
            replies.append(await get(one, proc.base_url, "/page"))
    status, body = await ready(client, admin)

    assert {(r.status, r.body) for r in replies} == {(200, b"/page #1")}
    assert upstream.count("/page") == 1
    assert status == 200
    assert body["redis"] == {"state": "up", "url": redis_server.url}


async def test_redis_killed_under_load_then_started_again(
    upstream: Upstream,
    client: aiohttp.ClientSession,
    start_sidecache: StartSidecache,
    redis_server: RedisServer,
) -> None:
    """No 5xx and no stall while Redis dies (connections refused from then on), the circuit
    open on /ready (still 200), and Redis used again once it is back on its port."""
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        config=redis_config(redis_server.url),
        args=["--cache", "^/", "--items", "10", "--admin", f"127.0.0.1:{admin}"],
    )
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(600):
        queue.put_nowait(i)

    async def visitor() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            if i == 200:
                redis_server.kill()
            started = time.monotonic()
            reply = await get(client, proc.base_url, f"/load/{i % 60}")
            latencies.append(time.monotonic() - started)
            statuses.append(reply.status)

    await asyncio.wait_for(asyncio.gather(*(visitor() for _ in range(CONCURRENCY))), 60)
    down_status, down = await ready(client, admin)
    await redis_server.restart()
    up = await until_redis(client, admin, lambda redis: redis["state"] == "up")
    refill = await get(client, proc.base_url, "/after")
    await until_redis(client, admin, lambda redis: redis["writes"] > up["writes"])

    assert statuses == [200] * 600
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
    assert (down_status, down["ready"], down["redis"]["state"]) == (200, True, "open")
    assert refill.status == 200
    said = proc.output()
    assert said.count("circuit open") == 1, said  # once, not once per request
    assert said.count(": up\n") == 2, said  # at start, and once back


async def test_memory_stays_flat_over_hits_from_redis(
    upstream: Upstream,
    client: aiohttp.ClientSession,
    start_sidecache: StartSidecache,
    redis_server: RedisServer,
) -> None:
    """1,000 pages of 4 KiB and room for 50 in memory: after a round of fills, every round is
    mostly hits from Redis (decoded, promoted, evicted again). The process's resident size
    after round 2 and after round 6 must not differ by more than 2 MiB (a proxy that kept
    what it read would grow by 16 MiB)."""

    async def page(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(body=seen.target.encode().ljust(4096, b"."))

    upstream.route("/page", page)
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        args=[
            "--cache",
            "^/",
            "--items",
            "50",
            "--redis",
            redis_server.url,
            "--admin",
            f"127.0.0.1:{admin}",
        ],
    )

    async def round_of_pages() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(1000):
            queue.put_nowait(i)

        async def visitor() -> None:
            while not queue.empty():
                reply = await get(client, proc.base_url, f"/page?n={queue.get_nowait()}")
                assert reply.status == 200

        await asyncio.wait_for(asyncio.gather(*(visitor() for _ in range(CONCURRENCY))), 60)

    await round_of_pages()  # fills
    await until_redis(client, admin, lambda redis: redis["writes_queued"] == 0)
    await round_of_pages()
    settled = proc_status(proc.pid)["VmRSS"]
    for _ in range(4):
        await round_of_pages()
    after = proc_status(proc.pid)["VmRSS"]
    _, body = await ready(client, admin)

    print(f"VmRSS {settled / MIB:.1f} MiB -> {after / MIB:.1f} MiB; redis: {body['redis']}")
    assert body["redis"]["hits"] >= 4 * 900  # the later rounds came from Redis
    assert upstream.count() <= 1000 + 100  # fills once (a few twice, while being written)
    assert after - settled < 2 * MIB
