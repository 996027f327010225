"""POST /purge on a master of `--workers 2`, with the real command: the master asks every
serving worker and sums their answers. A worker killed a moment ago (its slot waits for the
replacement) held no memory any more: the purge is still a 200. Queries that overlap (two
purges, a purge and /metrics) each get their own workers' answers (4a28a8a)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
from sidecache_e2e import Sidecache, Upstream, free_port
from test_e2e_workers import get, until_both_served, workers_of

# Seconds between the two purges of each round: a pipe round trip to the workers is ~1 ms.
STAGGER = [0.0, 0.0002, 0.0005, 0.001, 0.0015, 0.002, 0.003] * 3


async def admin_post(client: aiohttp.ClientSession, admin: int, url: str) -> tuple[int, Any]:
    async with client.post(f"http://127.0.0.1:{admin}/purge", params={"url": url}) as got:
        return got.status, await got.json()


async def admin_metrics(client: aiohttp.ClientSession, admin: int) -> int:
    async with client.get(f"http://127.0.0.1:{admin}/metrics") as got:
        await got.read()
        return got.status


async def two_workers(start_sidecache, upstream: Upstream) -> tuple[Sidecache, int, int]:
    """A master of two workers caching everything, with an admin listener: (it, port, admin)."""
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        config=f'[admin]\nlisten = "127.0.0.1:{admin}"\n',
        args=["--workers", "2", "--cache", "^/"],
    )
    return proc, int(proc.base_url.rsplit(":", 1)[1]), admin


async def test_a_purge_right_after_a_worker_is_killed_is_200(
    upstream: Upstream, client, start_sidecache
) -> None:
    proc, port, admin = await two_workers(start_sidecache, upstream)
    await until_both_served(proc, lambda: get(port, "/page"))
    workers = workers_of(proc)

    os.kill(workers[2], signal.SIGKILL)
    await proc.wait_for_line(f"worker 2 (pid {workers[2]}) killed by signal SIGKILL", stderr=True)
    purged = await admin_post(client, admin, "/page")
    async with client.get(f"http://127.0.0.1:{admin}/ready") as ready:
        serving = (await ready.json())["workers"]

    assert serving == {"serving": 1, "wanted": 2}  # so at the purge too: 2 was not replaced yet
    assert purged == (200, {"purged": 1})  # worker 1's copy; worker 2's went with it


async def test_overlapping_queries_each_get_their_answers(
    upstream: Upstream, client, start_sidecache
) -> None:
    """The second purge starts while the first waits for its answers, a little later each
    round (the first's answers must come before the second's: the old master then dropped
    the second's, 502 after ASK_WAIT), and /metrics with them."""
    proc, port, admin = await two_workers(start_sidecache, upstream)
    await until_both_served(proc, lambda: get(port, "/first"))
    await until_both_served(proc, lambda: get(port, "/second"))

    async def later(delay: float) -> tuple[int, Any]:
        await asyncio.sleep(delay)
        return await admin_post(client, admin, "/second")

    answers = []
    for delay in STAGGER:
        answers.append(
            await asyncio.gather(
                admin_post(client, admin, "/first"), later(delay), admin_metrics(client, admin)
            )
        )

    assert answers[0] == [(200, {"purged": 2}), (200, {"purged": 2}), 200]  # one copy per worker
    assert answers[1:] == [[(200, {"purged": 0}), (200, {"purged": 0}), 200]] * (len(STAGGER) - 1)
