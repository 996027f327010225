"""Is a large cached body cheaper sent with os.sendfile from a memfd than written with
writev? (issue 14's idea: "large bodies from a memfd with os.sendfile"). Nothing of sidecache
runs here: the same bare uvloop server answers every request with one body, either
`transport.writelines((head, body))` (what the hit path does) or the head written and the body
sent with os.sendfile from a memfd (the rest, after a partial send, written as writev does).

    .venv/bin/python bench/body_write.py [--size BYTES] [--pairs N] [--seconds S]

Runs N pairs, the two ways alternating, each a server pinned to CPU 0 and wrk (-t1 -c64) on
CPU 1 against 127.0.0.1, and prints the server's CPU µs per request (user + system, from
getrusage) for each run. Needs wrk and two CPUs. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import time

WAYS = ("writev", "sendfile")


class Server(asyncio.Protocol):
    """Answers each read with the one response (wrk's requests are small, one per read)."""

    def __init__(self, way: str, head: bytes, body: bytes, fd: int) -> None:
        self.way, self.head, self.body, self.fd = way, head, body, fd
        self.transport: asyncio.Transport | None = None
        self.sock = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket").fileno()

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.way == "writev" or transport.get_write_buffer_size():
            transport.writelines((self.head, self.body))
            return
        transport.write(self.head)
        if transport.get_write_buffer_size():  # the head waits: the body after it
            transport.write(self.body)
            return
        try:
            sent = os.sendfile(self.sock, self.fd, 0, len(self.body))
        except BlockingIOError:
            sent = 0
        if sent < len(self.body):
            transport.write(memoryview(self.body)[sent:])


async def serve(way: str, size: int, port: int, seconds: float) -> None:
    body = b"x" * size
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % size
    fd = os.memfd_create("body")
    os.write(fd, body)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Server(way, head, body, fd), "127.0.0.1", port, reuse_address=True
    )
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    server.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"cpu {usage.ru_utime + usage.ru_stime}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(way: str, size: int, seconds: float) -> tuple[float, int]:
    """One run: the server's CPU µs per request, and the requests wrk made."""
    port = free_port()
    serving = [way, str(size), str(port), str(seconds + 1.5)]
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, __file__, "--serve", *serving],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    wrk = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            "-c64",
            f"-d{round(seconds)}s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = float(server.stdout.readline().split()[1])
    server.wait()
    found = re.search(r"(\d+) requests in", wrk.stdout)
    assert found is not None, wrk.stdout
    requests = int(found.group(1))
    return cpu / requests * 1e6, requests


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        import uvloop

        way, size, port, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        uvloop.run(serve(way, size, port, float(seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=50 * 1024)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(args.pairs):
        for way in WAYS:
            micros, requests = run(way, args.size, args.seconds)
            results[way].append(micros)
            print(f"{way:8} {micros:5.1f} µs CPU per request ({requests:,} requests)", flush=True)
    for way in WAYS:
        ordered = sorted(results[way])
        print(f"{way:8} median {ordered[len(ordered) // 2]:5.1f} µs")


if __name__ == "__main__":
    main()
