"""A small, fast origin for the benchmark: Python 3.11 stdlib (uvloop when importable).

    python3 bench/upstream.py PORT [DEFAULT_SIZE]

Routes (the path prefix picks the page; anything after it only makes the cache key unique):

    /2k...     2,048-byte page            /50k...    51,200-byte page
    /slow...   2,048 bytes after 250 ms   /flood...  8,192-byte page (the unique-key flood)
    /__stats   JSON {"served": N, "routes": {...}}: requests served so far (not counted itself)
    anything else: DEFAULT_SIZE bytes (2,048), so `bench/quick.sh`'s /page keeps working

HTTP/1.1 keep-alive (HTTP/1.0 closes unless it asks for keep-alive), pipelined requests answered
in order, Content-Length request bodies read and dropped. No Cache-Control header: each proxy
caches by its own configuration (sidecache's rule ttl, nginx's proxy_cache_valid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Any

SLOW_SECONDS = 0.25
MAX_HEAD = 64 * 1024
SIZES = {"/2k": 2048, "/50k": 50 * 1024, "/slow": 2048, "/flood": 8192}
served = 0
routes: dict[str, int] = {}


class _Date:
    text, at = "", 0.0


def date_header() -> str:
    now = time.time()
    if now - _Date.at >= 1.0:
        _Date.text, _Date.at = formatdate(now, usegmt=True), now
    return _Date.text


def response(
    status: str,
    body: bytes,
    keep_alive: bool,
    head_only: bool = False,
    content_type: str = "text/html; charset=utf-8",
) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nServer: bench-origin\r\nDate: {date_header()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    ).encode("latin-1")
    return head if head_only else head + body


class Origin(asyncio.Protocol):
    def __init__(self, default_size: int) -> None:
        self.default_size = default_size
        self.buf = b""
        self.slots: deque[list[object]] = deque()  # [bytes | None, close_after]
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.fail("431 Request Header Fields Too Large")
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                self.fail("400 Bad Request")
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            if "chunked" in headers.get("transfer-encoding", ""):
                self.fail("501 Not Implemented")
                return
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            connection = headers.get("connection", "")
            keep = "close" not in connection and (
                version == "HTTP/1.1" or "keep-alive" in connection
            )
            self.handle(method, target, keep)
            if not keep:
                self.closing = True

    def handle(self, method: str, target: str, keep: bool) -> None:
        global served
        path = target.split("?", 1)[0]
        if path == "/__stats":
            body = json.dumps({"served": served, "routes": routes}).encode()
            self.push(response("200 OK", body, keep, content_type="application/json"), keep)
            return
        route = next((p for p in SIZES if path.startswith(p)), "")
        size = SIZES.get(route, self.default_size)
        served += 1
        routes[route or "/"] = routes.get(route or "/", 0) + 1
        data = response("200 OK", b"x" * size, keep, head_only=method == "HEAD")
        if route == "/slow":
            slot: list[object] = [None, not keep]
            self.slots.append(slot)
            asyncio.get_running_loop().call_later(SLOW_SECONDS, self.fill, slot, data)
        else:
            self.push(data, keep)

    def push(self, data: bytes, keep: bool) -> None:
        self.slots.append([data, not keep])
        self.flush()

    def fill(self, slot: list[object], data: bytes) -> None:
        slot[0] = data
        self.flush()

    def flush(self) -> None:
        while self.slots and self.slots[0][0] is not None:
            data, close = self.slots.popleft()
            if self.transport is None:
                self.slots.clear()
                return
            assert isinstance(data, bytes)
            self.transport.write(data)
            if close:
                self.transport.close()
                self.slots.clear()
                return

    def fail(self, status: str) -> None:
        self.closing = True
        self.push(response(status, b"", False), False)


async def main(port: int, default_size: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Origin(default_size), "127.0.0.1", port, reuse_address=True, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        run(main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2048))
