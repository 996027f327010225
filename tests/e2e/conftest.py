"""Fixtures for the end-to-end tests: a recording upstream, the real `sidecache` command, a client.

Each `sidecache` a test starts is stopped in the fixture's teardown by its PID, whatever the test
did; each wait has a deadline (see sidecache_e2e).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
from sidecache_e2e import Sidecache, Upstream, free_port, new_session, spawn, wait_ready


class StartSidecache(Protocol):
    def __call__(
        self,
        *,
        upstream: str | None,
        config: str | None = None,
        args: Sequence[str] = (),
        listen: str | None = None,
        base_url: str | None = None,
    ) -> Awaitable[Sidecache]: ...


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


@pytest.fixture
async def start_sidecache(tmp_path: Path) -> AsyncIterator[StartSidecache]:
    """Start `sidecache [--config FILE] --upstream URL --listen ADDR ARGS`; wait for "ready"."""
    started: list[Sidecache] = []

    async def start(
        *,
        upstream: str | None,
        config: str | None = None,
        args: Sequence[str] = (),
        listen: str | None = None,
        base_url: str | None = None,
    ) -> Sidecache:
        command: list[str] = []
        if config is not None:
            path = tmp_path / f"sidecache-{len(started)}.toml"
            path.write_text(config, encoding="utf-8")
            command += ["--config", str(path)]
        if upstream is not None:
            command += ["--upstream", upstream]
        if listen is None:
            port = free_port()
            listen, base_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        command += ["--listen", listen, *args]
        proc = await spawn(command, base_url or "", cwd=tmp_path)
        started.append(proc)
        await wait_ready(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            await proc.stop()
