"""Fixtures every tier of tests may use: a real redis-server (tests/redis_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, redis_server_binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free 127.0.0.1 port, killed by PID at the end."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(redis_server_binary(), directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()
