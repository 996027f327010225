"""Reading GET /metrics in the integration tests: one scrape as samples, and `expect`, which
scrapes until the counters say what they must.

A request is counted when it ends, which for a miss or a pass is a moment after its last byte
reached the client: `expect` scrapes until the counters say what they must (or the deadline),
as varnishtest's `-expect` waits for a counter. Every scrape is parsed by prometheus_client's
own parser.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .support import WAIT, Client

ADMIN = {"listen": "127.0.0.1:0"}
RULE = "anonymous-reads"  # the test configuration's rule
Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[Key, float]


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def requests(cache: str, rule: str = RULE) -> Key:
    return key("sidecache_requests_total", cache=cache, rule=rule)


def not_cached(reason: str, cache: str) -> Key:
    return key("sidecache_not_cached_total", reason=reason, cache=cache)


async def scrape(client: Client, headers: dict[str, str] | None = None) -> Samples:
    address = client.proxy.admin.addresses[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(address + "/metrics", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def expect(client: Client, wanted: dict[Any, float], *, only: str = "") -> Samples:
    """Scrape until every sample in `wanted` has its value (a missing one reads 0), and, with
    `only`, no other sample of that family is above 0; fail with the last scrape after WAIT."""
    deadline = time.monotonic() + WAIT
    while True:
        got = await scrape(client)
        seen = {k: got.get(k, 0.0) for k in wanted}
        extra = {k: v for k, v in got.items() if k[0] == only and v and k not in wanted}
        if seen == wanted and not extra:
            return got
        if time.monotonic() > deadline:
            assert (seen, extra) == (wanted, {}), (seen, extra)
        await asyncio.sleep(0.02)
