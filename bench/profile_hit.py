"""The hit path's Python cost, without sockets: what `bench/run`'s CPU figures are made of.

    .venv/bin/python bench/profile_hit.py [--requests N] [--connections C] [--browser] [--profile]

Builds the real `Proxy` wiring (config parse, handler, store, HTTP/1.1 front) on uvloop, fills
the cache through a real upstream on 127.0.0.1 once, then feeds wrk's request (with --browser,
a browser's) to C front connections whose transports only count what is written. It prints the
CPU µs per hit spent in Python (the user time `bench/run` measures, minus the kernel's share),
and with --profile the functions that take it (cProfile, sorted by own time). Nothing here is
a test: numbers vary by machine; compare runs made one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import time
from typing import Any

import uvloop

from proxy.config import parse
from proxy.http1 import Http1Connection
from proxy.server import Proxy

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
PAGE = b"x" * 2048


class CountingTransport:
    """Just enough of asyncio.Transport for the front: counts responses, keeps nothing."""

    def __init__(self, done: asyncio.Event, batch: list[int]) -> None:
        self.done, self.batch = done, batch
        self.closing = False

    def write(self, data: bytes) -> None:
        self.batch[0] -= 1
        if self.batch[0] == 0:
            self.done.set()

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

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


async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await _serve_origin(reader, writer)
    writer.close()


async def _serve_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(PAGE), PAGE))
        await writer.drain()


async def main(requests: int, connections: int, profile: bool, request: bytes) -> None:
    upstream = await asyncio.start_server(origin, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    settings = parse(
        {
            "server": {"listen": ["127.0.0.1:0"]},
            "upstream": {"url": f"http://127.0.0.1:{port}"},
            "caches": {"default": {"ttl": "1h"}},
            "rules": [{"name": "anonymous-reads", "action": "cache"}],
        },
        "profile_hit.py",
    )
    proxy = Proxy(settings)
    await proxy.start()
    factory = proxy._http1
    assert factory is not None
    done = asyncio.Event()
    batch = [0]
    front: list[Http1Connection] = []
    for _ in range(connections):
        connection = factory()
        connection.connection_made(CountingTransport(done, batch))  # type: ignore[arg-type]
        front.append(connection)

    async def round_trip(conns: list[Http1Connection]) -> None:
        batch[0] = len(conns)
        done.clear()
        for connection in conns:
            connection.data_received(request)
        await done.wait()

    await round_trip(front[:1])  # the miss that fills the cache
    await round_trip(front)  # warm
    rounds = max(1, requests // connections)
    profiler = cProfile.Profile() if profile else None
    cpu = time.process_time()
    if profiler:
        profiler.enable()
    for _ in range(rounds):
        await round_trip(front)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - cpu
    hits = rounds * connections
    print(f"{hits} hits, {connections} connections: {cpu / hits * 1e6:.2f} µs CPU per hit")
    for connection in front:
        connection.connection_lost(None)
    await proxy.stop()
    upstream.close()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--browser", action="store_true", help="a browser's request, not wrk's")
    args = parser.parse_args()
    request = BROWSER if args.browser else REQUEST
    uvloop.run(main(args.requests, args.connections, args.profile, request))
