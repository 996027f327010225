"""Support for the end-to-end tests: a recording upstream, the real `sidecache` process, sockets.

Everything here talks over real sockets on 127.0.0.1, ::1 or unix sockets, and every wait has a
deadline. A started `sidecache` is always stopped by its own PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

READY_TIMEOUT = 10.0  # seconds for `sidecache` to log "ready" (imports + bind take ~0.5 s here)
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
OUTPUT_LINES = 30_000  # most lines of stdout/stderr kept per process (bounded capture; the
# workers' test counts 10,000 access lines)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bound to port 0, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def wait_for_port(port: int, host: str = "127.0.0.1", within: float = 15.0) -> None:
    """Wait until something accepts TCP connections on host:port, at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        return
    raise AssertionError(f"nothing listening on {host}:{port} after {within} s")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- the upstream


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    target: str  # raw path and query
    headers: CIMultiDictProxy[str]
    body_length: int
    body_sha256: str


Route = Callable[[web.Request, Seen], Awaitable[web.StreamResponse]]


class Upstream:
    """An aiohttp app that records every request (body hashed while streamed, never kept)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[str, Route] = {}
        self.url = ""
        self.socket_path = ""
        self._runner: web.AppRunner | None = None

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def count(self, target: str | None = None) -> int:
        """Requests seen for `target` (path + query), or in all when None."""
        return sum(1 for s in self.seen if target is None or s.target == target)

    def requests(self, target: str) -> list[Seen]:
        return [s for s in self.seen if s.target == target]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        digest, length = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        seen = Seen(request.method, request.raw_path, request.headers, length, digest.hexdigest())
        self.seen.append(seen)
        handler = self.routes.get(request.path, self._default)
        return await handler(request, seen)

    async def _default(self, request: web.Request, seen: Seen) -> web.StreamResponse:
        """200 text naming the target and how many times the upstream has seen it."""
        return web.Response(text=f"{seen.target} #{self.count(seen.target)}")

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1024**4)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0, unix: str = "") -> None:
        # Short shutdown: a handler still sleeping for a timeout test must not hold teardown.
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite
        if unix:
            site = web.UnixSite(self._runner, unix)
            await site.start()
            self.socket_path = unix
            self.url = f"unix:{unix}"
            return
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.url = f"http://{host}:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --------------------------------------------------------------------------- the proxy


def sidecache_command(*args: str) -> list[str]:
    """The real command line: the same interpreter the tests run under."""
    return [sys.executable, "-m", "proxy", *args]


RUN_TIMEOUT = 15  # seconds for a `sidecache` that is expected to exit by itself


def run_sidecache(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `sidecache ARGS` to its end (check, a refused start...) and capture its output."""
    return subprocess.run(
        sidecache_command(*args),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
        env=dict(os.environ, **(env or {})),
    )


@dataclass
class Sidecache:
    """A running `sidecache` subprocess and what it printed so far."""

    process: asyncio.subprocess.Process
    base_url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def access_lines(self, needle: str = "") -> list[str]:
        """Access-log lines (logger "sidecache.access") containing `needle`."""
        return [line for line in self.stdout if " sidecache.access " in line and needle in line]

    async def wait_for_line(self, needle: str, within: float = 5.0, stderr: bool = False) -> str:
        """The first stdout (or stderr) line containing `needle`, waiting up to `within` s."""
        return (await self.wait_for_lines(needle, 1, within, stderr))[0]

    async def wait_for_lines(
        self, needle: str, count: int, within: float = 5.0, stderr: bool = False
    ) -> list[str]:
        """The stdout (or stderr) lines containing `needle`, once there are `count` of them."""
        deadline = time.monotonic() + within
        lines = self.stderr if stderr else self.stdout
        while time.monotonic() < deadline:
            found = [line for line in lines if needle in line]
            if len(found) >= count:
                return found
            if self.process.returncode is not None and all(r.done() for r in self._readers):
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"not {count} lines with {needle!r} in {within} s:\n{self.output()}")

    async def wait_exit(self, within: float) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await self._drain()
        return code

    async def stop(self) -> int:
        """SIGTERM by PID, wait, SIGKILL if still alive; return the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        await self._drain()
        assert self.process.returncode is not None
        return self.process.returncode

    async def _drain(self) -> None:
        if self._readers:
            await asyncio.wait_for(asyncio.gather(*self._readers), STOP_TIMEOUT)


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        if len(into) < OUTPUT_LINES:
            into.append(line.decode("utf-8", "replace"))


async def spawn(
    args: Sequence[str],
    base_url: str,
    cwd: Path | None = None,
    command: Sequence[str] | None = None,
    pass_fds: Sequence[int] = (),
    extra_env: Mapping[str, str] | None = None,
) -> Sidecache:
    """Start `sidecache ARGS` (or `command ARGS`) with its output captured; not yet waited for."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
    process = await asyncio.create_subprocess_exec(
        *(list(command) + list(args) if command else sidecache_command(*args)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        pass_fds=tuple(pass_fds),
    )
    proc = Sidecache(process, base_url)
    proc._readers = [
        asyncio.create_task(_collect(process.stdout, proc.stdout)),
        asyncio.create_task(_collect(process.stderr, proc.stderr)),
    ]
    return proc


async def wait_ready(proc: Sidecache, needle: str = " ready, upstream ") -> None:
    try:
        await proc.wait_for_line(needle, within=READY_TIMEOUT)
    except AssertionError:
        await proc.stop()
        raise


# --------------------------------------------------------------------------- clients


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def x_cache(self) -> str | None:
        return self.headers.get("X-Cache")

    @property
    def cache_status(self) -> str | None:
        return self.headers.get("Cache-Status")

    @property
    def set_cookies(self) -> list[str]:
        return self.headers.getall("Set-Cookie", [])


def new_session(
    connector: aiohttp.BaseConnector | None = None, timeout: float = 30.0
) -> aiohttp.ClientSession:
    """A client that keeps no cookies between requests and never decompresses; bounded in time."""
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: object = None,
) -> Reply:
    async with session.request(
        method, url, headers=headers, data=data, allow_redirects=False
    ) as response:
        body = await response.read()
        return Reply(response.status, response.headers, body)


async def raw_exchange(host: str, port: int, payload: bytes, within: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; return everything read until close or `within` s."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    try:
        writer.write(payload)
        await writer.drain()
        received = b""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def generated(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    """`total` bytes made of repeats of `chunk` (the last one cut), produced as they are sent."""
    left = total
    while left > 0:
        piece = chunk if left >= len(chunk) else chunk[:left]
        left -= len(piece)
        yield piece


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in bytes, from /proc/PID/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            number, unit = rest.split()
            assert unit == "kB"
            values[name] = int(number) * 1024
    return values


def parse_response(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP/1.x response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ")
    assert version.startswith("HTTP/1."), status_line
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status), headers, body
