"""The shared tier's test helpers: a fleet's clients all name one Host, as a fleet's visitors
do (the key holds it); its fixtures (`fleet`, `redis_client`) are conftest.py's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proxy.store.redis_tier import RedisTier

from .support import Client, Got, eventually

StartFleet = Callable[..., Awaitable[Client]]
SHARED = {"mode": "shared", "rules": []}  # the origin's headers decide; invalidation on
ENTRIES = "sidecache:default:[0-9a-f]*"  # the entries (digests), not the purge index's sets


HOST = "www.example.com"


async def get(client: Client, target: str, headers: dict[str, str] | None = None) -> Got:
    return await client.get(target, {"Host": HOST, **(headers or {})})


def tier(client: Client) -> RedisTier:
    assert client.proxy.tier is not None
    return client.proxy.tier


async def written(client: Client, count: int = 1) -> None:
    """Wait until `client`'s proxy has written `count` entries to Redis in all."""
    await eventually(lambda: tier(client).counts.writes >= count and tier(client).pending == 0)
