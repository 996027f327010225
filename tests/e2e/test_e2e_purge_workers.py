"""POST /purge on a master of `--workers 2`, with the real command: the master asks every
serving worker and sums their answers. A worker killed a moment ago (its slot waits for the
replacement) held no memory any more: the purge is still a 200."""

from __future__ import annotations

import os
import signal
from typing import Any

import aiohttp
from sidecache_e2e import Sidecache, Upstream, free_port
from test_e2e_workers import get, until_both_served, workers_of


async def admin_post(client: aiohttp.ClientSession, admin: int, url: str) -> tuple[int, Any]:
    async with client.post(f"http://127.0.0.1:{admin}/purge", params={"url": url}) as got:
        return got.status, await got.json()


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
