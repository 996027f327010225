"""bench/soak's origin: an aiohttp app with well-behaved pages and misbehaving ones.

    python bench/soak_origin.py        # binds 127.0.0.1 on a free port, prints "PORT n"

Routes (bodies from bench/soak_common.py; the query string only makes a key unique):

    /page/N      cacheable (Cache-Control: max-age=2, an ETag; If-None-Match gets a 304)
    /churn/N     cacheable, 4-44 KiB: many distinct keys fill and evict a small cache
    /cookie      cacheable headers, but sets a cookie on every answer (hit-for-pass)
    /big         4 MiB, cacheable headers, larger than item_size: streamed, never stored
    POST /upload echoes the request body (read whole first, as an app does)
    /bad/reset-head    TCP reset before any answer          /bad/garbage   a non-HTTP answer
    /bad/reset-body    headers + 8 KiB of 64 KiB, then reset /bad/5xx      500 or 503
    /bad/close-early   headers + 4 KiB of 16 KiB, then FIN   /bad/slow      8 KiB after 0.3 s,
    /bad/stall-head    answers after 3 s                                    in 4 parts 0.2 s apart
    /bad/stall-body    headers + 4 KiB, 3 s of silence, the rest
    /__stats     JSON: requests served per route
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections import Counter
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_common import KIB, page_body

STALL = 3.0  # longer than the soak config's read_timeout (1 s)
served: Counter[str] = Counter()
_errors = itertools.count()


def _route(path: str) -> str:
    if path.startswith("/bad/"):
        return path
    return "/" + path.split("/")[1]


def _cacheable(path: str) -> dict[str, str]:
    etag = '"' + hashlib.blake2b(path.encode(), digest_size=8).hexdigest() + '"'
    return {"Cache-Control": "max-age=2", "ETag": etag, "Content-Type": "text/plain"}


async def page(request: web.Request) -> web.StreamResponse:
    path = request.path
    served[_route(path)] += 1
    body = page_body(path)
    headers = _cacheable(path)
    if path == "/cookie":
        headers["Set-Cookie"] = f"sid={os.urandom(8).hex()}; Path=/; HttpOnly"
    elif request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers=headers)


async def upload(request: web.Request) -> web.Response:
    served["/upload"] += 1
    data = await request.read()
    return web.Response(body=data, content_type="application/octet-stream")


def _abort(request: web.Request, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


async def _partial(request: web.Request, total: int, sent: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = total
    await response.prepare(request)
    await response.write((page_body(request.path) + b"x" * sent)[:sent])
    await asyncio.sleep(0.05)  # let the part reach the proxy before the connection goes
    return response


async def bad(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    served["/bad/" + kind] += 1
    if kind == "reset-head":
        _abort(request, reset=True)
        raise asyncio.CancelledError  # nothing more to do on this connection
    if kind == "garbage":
        assert request.transport is not None
        request.transport.write(b"THIS IS NOT HTTP\r\n\r\n")
        _abort(request, reset=False)
        raise asyncio.CancelledError
    if kind == "reset-body":
        await _partial(request, 64 * KIB, 8 * KIB)
        _abort(request, reset=True)
        raise asyncio.CancelledError
    if kind == "close-early":
        await _partial(request, 16 * KIB, 4 * KIB)
        _abort(request, reset=False)
        raise asyncio.CancelledError
    if kind == "stall-head":
        await asyncio.sleep(STALL)
        return web.Response(text="late\n")
    if kind == "stall-body":
        response = await _partial(request, 32 * KIB, 4 * KIB)
        await asyncio.sleep(STALL)
        await response.write(b"y" * (28 * KIB))
        return response
    if kind == "5xx":
        status = 500 if next(_errors) % 2 else 503
        return web.Response(status=status, text=f"origin error {status}\n")
    if kind == "slow":
        await asyncio.sleep(0.3)
        body = page_body("/bad/slow")
        response = web.StreamResponse(headers={"Cache-Control": "max-age=2"})
        response.content_length = len(body)
        await response.prepare(request)
        quarter = len(body) // 4
        for i in range(4):
            await response.write(body[i * quarter : (i + 1) * quarter if i < 3 else None])
            if i < 3:
                await asyncio.sleep(0.2)
        await response.write_eof()
        return response
    raise web.HTTPNotFound()


async def stats(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps({"served": dict(served)}), content_type="application/json")


async def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # aborted connections are the point here
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/__stats", stats)
    app.router.add_post("/upload", upload)
    app.router.add_get("/bad/{kind}", bad)
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
