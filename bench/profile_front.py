"""The Python cost of a request in the front, without client sockets: what `bench/run`'s CPU
figures are made of, minus the kernel's share.

    .venv/bin/python bench/profile_front.py [--requests N] [--connections C]
                                            [--browser | --pass] [--profile [SORT]]
                                            [--access-log [PATH]] [--default-gc]
                                            [--redis [URL]] [--l1-miss]

Builds the real `Proxy` wiring (config parse, handler, store, HTTP/1.1 front, upstream client)
on uvloop, with bench/upstream.py as the origin in a process of its own on 127.0.0.1. It fills
the cache once, then feeds C front connections, whose transports drop what is written, wrk's
request for the page (with --browser a browser's; with --pass a logged-in one, which goes
upstream over real sockets) and prints the CPU µs per request this process spent; with
--profile also the functions that take it (cProfile, by own time; its overhead inflates the
total). With --access-log each request also writes its access-log line through the real
buffered writer (`[server] access_log = PATH`), to /dev/null or
to PATH; without it the access log is off (`access_log = false`). With --redis the shared
tier is on (`[redis] url`; without a URL a redis-server of its own on a free 127.0.0.1 port,
killed at the end): hits are still from memory, the tier is only there. --l1-miss makes
every request miss memory: the cache holds one entry, and each round the connections ask
for URLs of their own that the round before did not ask for, so the entry in memory is
never one asked for. With --redis each request is
then a hit from Redis; without, a fill from the origin (what the tier saves). It also prints
the requests' latency (median, 99th percentile, from the front's own timing) and the
redis-server's CPU when it started one. Nothing here is a test: numbers vary by machine;
compare runs made one after another, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from proxy import lifecycle
from proxy.client_transport import LogAccess
from proxy.config import parse
from proxy.exchange import Outcome
from proxy.http1 import ClientConnection
from proxy.server import Proxy
from proxy.view import RequestView

TUNE_GC = True  # --default-gc: CPython's collector settings instead of sidecache's
REQUEST = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:18090\r\n\r\n"  # what wrk sends
BROWSER = (  # what a browser sends: more headers, compression, an anonymous visitor's cookies
    b"GET /page HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/131.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: _ga=GA1.1.123456789.1700000000; theme=dark\r\n"
    b"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nUpgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)
PASS = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nCookie: remember_token=1\r\n\r\n"


class NullTransport:
    """Just enough of asyncio.Transport for the front: drops what is written."""

    def __init__(self) -> None:
        self.closing = False

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Rounds:
    """Counts finished requests (the front logs each one, through `log`: the proxy's own
    access-log writer, or its no-op when the log is off) and wakes the driver at zero."""

    def __init__(self, log: LogAccess) -> None:
        self.log = log
        self.left = 0
        self.done = asyncio.Event()
        self.statuses: dict[str, int] = {}
        self.seconds: list[float] = []

    def log_access(self, view: RequestView, outcome: Outcome, seconds: float) -> None:
        self.log(view, outcome, seconds)
        self.seconds.append(seconds)
        self.statuses[outcome.cache] = self.statuses.get(outcome.cache, 0) + 1
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def start_origin() -> tuple[asyncio.subprocess.Process, int]:
    """bench/upstream.py in a process of its own, so its CPU time is not counted here."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(__file__).with_name("upstream.py")
    origin = await asyncio.create_subprocess_exec(sys.executable, str(script), str(port))
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return origin, port
    origin.kill()
    raise SystemExit("bench/upstream.py did not start")


class RedisServer:
    """A throwaway redis-server on a free 127.0.0.1 port (no persistence), by PID."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--redis without a URL runs redis-server: it is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = tempfile.TemporaryDirectory(prefix="profile-redis-")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", self.directory.name, "--logfile", ""]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise SystemExit("redis-server did not answer PING")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu(self) -> float:
        """Its user + system CPU seconds so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.directory.cleanup()


async def main(
    requests: int,
    connections: int,
    profile: str,
    request: bytes,
    access_log: str,
    redis: str,
    l1_miss: bool,
) -> None:
    origin, port = await start_origin()
    server = RedisServer() if redis == "start" else None
    try:
        url = server.url if server is not None else redis
        await measure(
            port, requests, connections, profile, request, access_log, url, l1_miss, server
        )
    finally:  # the origin is a process of its own: never leave it behind
        if origin.returncode is None:
            origin.kill()
        await origin.wait()
        if server is not None:
            server.stop()


def configuration(port: int, access_log: str, redis: str, l1_miss: bool) -> dict[str, Any]:
    cache: dict[str, Any] = {"ttl": "1h"}
    if l1_miss:  # one entry in memory: the one another connection asked for last
        cache["items"] = 1
    data: dict[str, Any] = {
        "server": {"listen": ["127.0.0.1:0"], "access_log": access_log or False},
        "admin": {"listen": ""},
        "upstream": {"url": f"http://127.0.0.1:{port}"},
        "caches": {"default": cache},
        "rules": [{"name": "anonymous-reads", "action": "cache"}],
    }
    if redis:
        data["redis"] = {"url": redis}
    return data


async def measure(
    port: int,
    requests: int,
    connections: int,
    profile: str,
    request: bytes,
    access_log: str,
    redis: str = "",
    l1_miss: bool = False,
    server: RedisServer | None = None,
) -> None:
    settings = parse(configuration(port, access_log, redis, l1_miss), "profile_front.py")
    proxy = Proxy(settings)
    await proxy.start()
    factory = proxy._http1
    assert factory is not None
    rounds = Rounds(factory.log_access)
    factory.log_access = rounds.log_access
    front: list[ClientConnection] = []
    for _ in range(connections):
        connection = factory()
        connection.connection_made(NullTransport())  # type: ignore[arg-type]
        front.append(connection)
    # --l1-miss: 2 x connections URLs, each round asking the half the last one did not, so
    # the one entry memory holds (the last one stored or promoted) is never asked for.
    halves = [
        [
            request.replace(b"GET /page ", b"GET /page?u=%d " % (n + half * connections))
            if l1_miss
            else request
            for n in range(connections)
        ]
        for half in (0, 1)
    ]
    turn = 0

    async def round_trip(conns: list[ClientConnection]) -> None:
        nonlocal turn
        asked = halves[turn % 2]
        turn += 1
        rounds.left = len(conns)
        rounds.done.clear()
        for n, connection in enumerate(conns):
            connection.data_received(asked[n])
        await rounds.done.wait()

    await round_trip(front[:1])  # the miss that fills the cache
    await round_trip(front)  # warm (and the upstream pool, for passes)
    if l1_miss:  # the other half too, and back to the first for the count
        await round_trip(front)
        turn = 0
    for _ in range(500):  # the fills' writes to Redis are in before the count starts
        if proxy.tier is None or not proxy.tier.pending:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05 if proxy.tier is not None else 0)
    rounds.statuses.clear()
    rounds.seconds.clear()
    redis_cpu = server.cpu() if server is not None else 0.0
    if TUNE_GC:
        lifecycle.tune_gc()  # as `sidecache` does once serving
    count = max(1, requests // connections)
    profiler = cProfile.Profile() if profile else None
    cpu, times = time.process_time(), os.times()
    if profiler:
        profiler.enable()
    for _ in range(count):
        await round_trip(front)
    if proxy.access_log is not None:  # every line written within the count
        await proxy.access_log.close()
    if profiler:
        profiler.disable()
    cpu, after = time.process_time() - cpu, os.times()
    served = count * connections
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(rounds.statuses.items()))
    user, system = ((b - a) / served * 1e6 for a, b in zip(times[:2], after[:2], strict=True))
    print(
        f"{kinds}; {connections} connections: {cpu / served * 1e6:.2f} µs CPU per request"
        f" (user {user:.1f}, system {system:.1f})"
    )
    if l1_miss:
        rounds.seconds.sort()
        latency = rounds.seconds
        p99 = latency[int(len(latency) * 0.99) - 1]
        redis_side = (server.cpu() - redis_cpu) / served * 1e6 if server is not None else 0.0
        print(
            f"latency from the front's head to its last write: median "
            f"{statistics.median(latency) * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs"
            + (f"; redis-server CPU {redis_side:.2f} µs per request" if server else "")
        )
        if proxy.tier is not None:
            print(f"tier: {proxy.tier.status()}")
    for connection in front:
        connection.connection_lost(None)
    await proxy.stop()
    if profiler:
        pstats.Stats(profiler).sort_stats(profile).print_stats(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--profile", nargs="?", const="tottime", default="", metavar="SORT", help="e.g. cumtime"
    )
    parser.add_argument("--browser", action="store_true", help="a browser's request, not wrk's")
    parser.add_argument("--pass", dest="pass_", action="store_true", help="a logged-in request")
    parser.add_argument(
        "--access-log",
        nargs="?",
        const=os.devnull,
        default="",
        metavar="PATH",
        help="log each request through the buffered writer to PATH (default /dev/null)",
    )
    parser.add_argument(
        "--default-gc", action="store_true", help="without lifecycle.tune_gc (to compare)"
    )
    parser.add_argument(
        "--redis",
        nargs="?",
        const="start",
        default="",
        metavar="URL",
        help="the shared tier on (default: a redis-server of its own on a free port)",
    )
    parser.add_argument(
        "--l1-miss",
        action="store_true",
        help="every request misses memory: a hit from Redis with --redis, else a fill",
    )
    args = parser.parse_args()
    TUNE_GC = not args.default_gc
    request = PASS if args.pass_ else BROWSER if args.browser else REQUEST
    redis = args.redis
    uvloop.run(
        main(
            args.requests,
            args.connections,
            args.profile,
            request,
            args.access_log,
            redis,
            args.l1_miss,
        )
    )
