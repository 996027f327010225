"""A reload (SIGHUP) while responses are streaming (issue 11, fault 8)."""

from __future__ import annotations

import asyncio

from proxy.config import parse

from .conftest import StartProxy, config
from .support import FakeUpstream, eventually


async def test_a_reload_that_changes_the_upstream_lets_running_responses_finish(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Product rule: a reload drops no connection; an exchange in flight finishes with the
    # upstream client it started with, however long it takes (shutdown_timeout is for stop).
    server = {"shutdown_timeout": "200ms"}
    client = await sidecache(server=server)
    upstream.on("/slow", chunks=[b"a" * 10] * 8, chunk_delay=0.1)  # ~0.7 s of body
    answer = asyncio.create_task(client.fetch("POST", "/slow", data=b"x"))
    await asyncio.sleep(0.2)  # streaming now
    changed = config(upstream.url, server=server, upstream={"read_timeout": "3s"})
    await client.proxy.reload(parse(changed, "test.toml"))
    got = await asyncio.wait_for(answer, 5)
    assert (got.status, got.body) == (200, b"a" * 80)
    # The old client is closed once its last exchange is over (nothing leaks).
    await eventually(lambda: not client.proxy._retired)
    after = await client.fetch("POST", "/slow", data=b"x")  # the new client works too
    assert after.status == 200
