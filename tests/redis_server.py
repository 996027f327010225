"""A real `redis-server` for the tests of the shared tier, on a free 127.0.0.1 port.

Started with no persistence (`--save ''`, `--appendonly no`) in a directory of its own,
waited for until it answers PING, and killed by its PID at the end; `kill`, `pause`/`resume`
(SIGSTOP/SIGCONT: a Redis that hangs) and `restart` (same port) are what the failure tests do
to it. Where redis-server is missing the tests that need it skip, saying why, except in CI
(`CI=true`), where .ci/run installs it and a missing one is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

READY_WITHIN = 10.0  # seconds for redis-server to answer PING (~20 ms here)


def redis_server_binary() -> str:
    """The redis-server to run; skips (or, in CI, fails) the test when there is none."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("redis-server is missing in CI: .ci/run installs it (apt-get install)")
    pytest.skip("redis-server is not installed (apt-get install redis-server); CI requires it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _spawn(self) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._spawn()
        deadline = time.monotonic() + READY_WITHIN
        while not answers_ping(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port}: no PONG")
            time.sleep(0.01)

    async def restart(self) -> None:
        """Start it again on the same port (after `kill`), without blocking the loop."""
        self._spawn()
        deadline = time.monotonic() + READY_WITHIN
        while not await asyncio.to_thread(answers_ping, self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port}: no PONG")
            await asyncio.sleep(0.01)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")

    def kill(self) -> None:
        """SIGKILL by PID (SIGCONT first, in case it was paused) and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a Redis that hangs)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
