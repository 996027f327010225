"""Fixtures: a recording fake upstream, the real `Proxy` in front of it, and clients.

`sidecache(**sections)` starts a proxy whose configuration is the base below with the given
top-level sections replaced (tables are merged one level deep), and returns a `Client` for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from proxy.accesslog import log_access
from proxy.config import parse
from proxy.server import Proxy
from proxy.settings import Settings

from .fleet import StartFleet
from .support import WAIT, Client, FakeClock, FakeUpstream, open_session

StartProxy = Callable[..., Awaitable[Client]]


def config(upstream_url: str, **sections: Any) -> dict[str, Any]:
    """The base test configuration: one anonymous cache rule, as the embedded default."""
    data: dict[str, Any] = {
        "server": {"listen": ["127.0.0.1:0"]},
        "admin": {"listen": ""},  # off: the admin tests turn it on (on port 0)
        "upstream": {"url": upstream_url, "connect_timeout": "2s", "read_timeout": "2s"},
        "caches": {"default": {"items": 100, "item_size": "64KiB", "ttl": "10s"}},
        "rules": [{"name": "anonymous-reads", "anonymous": True, "action": "cache"}],
    }
    for name, value in sections.items():
        base = data.get(name)
        data[name] = {**base, **value} if isinstance(base, dict) else value
    return data


@pytest.fixture
async def upstream(aiohttp_server: Any) -> AsyncIterator[FakeUpstream]:
    """The fake upstream on 127.0.0.1; it records request bodies as sent (no decompression)."""
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app(), host="127.0.0.1", auto_decompress=False)
    fake.url = f"http://127.0.0.1:{server.port}"
    yield fake
    fake.release()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sidecache(upstream: FakeUpstream, clock: FakeClock) -> AsyncIterator[StartProxy]:
    started = Started()

    async def start(**sections: Any) -> Client:
        url = sections.pop("upstream_url", upstream.url)
        return await started.start(parse(config(url, **sections), "test.toml"), clock)

    yield start
    upstream.release()
    await started.stop()


class Started:
    """The proxies a fixture started, and their clients, all stopped at its end."""

    def __init__(self) -> None:
        self.proxies: list[Proxy] = []
        self.clients: list[Client] = []

    async def start(self, settings: Settings, clock: FakeClock) -> Client:
        # Access-log lines through `logging`, for caplog (test_access_log_writer.py: the file).
        proxy = Proxy(settings, clock, access=log_access)
        self.proxies.append(proxy)
        await asyncio.wait_for(proxy.start(), WAIT)
        client = Client(proxy, open_session())
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        for client in self.clients:
            await client.session.close()
        for proxy in self.proxies:
            await asyncio.wait_for(proxy.stop(), 2 * WAIT)


@pytest.fixture
async def client(sidecache: StartProxy) -> Client:
    """A client of a proxy with the base configuration."""
    return await sidecache()


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A local port whose accept queue is full, so a new connection's SYN goes unanswered.

    With a backlog of 0 Linux queues one connection and drops SYNs after it: a connect then
    hangs until the caller's timeout, which is how an unreachable upstream looks.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture
async def fleet(upstream: FakeUpstream, redis_server: RedisServer) -> AsyncIterator[StartFleet]:
    """Start a proxy using `redis_server` (a fast cool-down, so a test sees it come back);
    each call is another instance of the fleet, with a clock of its own."""
    started = Started()

    async def start(clock: FakeClock | None = None, **sections: Any) -> Client:
        redis = {
            "url": redis_server.url,
            "cooldown": "200ms",
            "connect_timeout": "200ms",
            **sections.pop("redis", {}),
        }
        settings = parse(config(upstream.url, redis=redis, **sections), "test.toml")
        return await started.start(settings, clock or FakeClock())

    yield start
    upstream.release()
    await started.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's own, to look into Redis (and spoil entries)."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()
