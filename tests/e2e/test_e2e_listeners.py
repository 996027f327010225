"""Listening on a unix socket and on IPv6; forwarding to an upstream on a unix socket."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sidecache_e2e import Seen, Upstream, fetch, free_port, has_ipv6_loopback, new_session


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory under /tmp: unix socket paths are limited to ~107 bytes."""
    with tempfile.TemporaryDirectory(prefix="sc-", dir="/tmp") as path:
        yield Path(path)


async def test_listen_on_unix_socket(upstream, start_sidecache, socket_dir):
    path = socket_dir / "proxy.sock"
    proxy = await start_sidecache(upstream=upstream.url, listen=f"unix:{path}")
    assert any(f"listening on unix:{path}" in line for line in proxy.stdout)

    async with new_session(aiohttp.UnixConnector(path=str(path))) as session:
        first = await fetch(session, "GET", "http://sidecache.test/")
        second = await fetch(session, "GET", "http://sidecache.test/")

    assert (first.status, first.x_cache, first.body) == (200, "MISS", b"/ #1")
    assert (second.status, second.x_cache, second.body) == (200, "HIT", b"/ #1")
    [seen] = upstream.seen
    assert seen.headers["Host"] == "sidecache.test"
    await proxy.wait_for_line('"GET / HTTP/1.1" 200 HIT')
    assert proxy.access_lines('"GET / HTTP/1.1" 200 HIT')[0].split()[4] == "unix"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")
async def test_listen_on_ipv6_loopback(upstream, client, start_sidecache):
    port = free_port("::1")
    base = f"http://[::1]:{port}"
    proxy = await start_sidecache(upstream=upstream.url, listen=f"[::1]:{port}", base_url=base)
    assert any(f"listening on http://[::1]:{port}" in line for line in proxy.stdout)

    first = await fetch(client, "GET", base + "/v6")
    second = await fetch(client, "GET", base + "/v6")

    assert (first.status, first.x_cache, first.body) == (200, "MISS", b"/v6 #1")
    assert (second.status, second.x_cache, second.body) == (200, "HIT", b"/v6 #1")
    [seen] = upstream.seen
    assert seen.headers["X-Forwarded-For"] == "::1"
    assert seen.headers["Host"] == f"[::1]:{port}"


async def test_upstream_on_unix_socket(client, start_sidecache, socket_dir):
    upstream = Upstream()

    async def upload(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(text=f"{seen.body_length} {seen.body_sha256}")

    upstream.route("/upload", upload)
    await upstream.start(unix=str(socket_dir / "app.sock"))
    try:
        proxy = await start_sidecache(upstream=upstream.url)
        first = await fetch(client, "GET", proxy.base_url + "/")
        second = await fetch(client, "GET", proxy.base_url + "/")
        body = os.urandom(1024 * 1024)
        posted = await fetch(client, "POST", proxy.base_url + "/upload", data=io.BytesIO(body))
    finally:
        await upstream.stop()

    assert (first.status, first.x_cache, first.body) == (200, "MISS", b"/ #1")
    assert (second.status, second.x_cache) == (200, "HIT")
    digest = hashlib.sha256(body).hexdigest()
    assert (posted.status, posted.body) == (200, f"{len(body)} {digest}".encode())
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/"), ("POST", "/upload")]
    # The client's Host is kept on the way to a unix-socket upstream too.
    assert upstream.seen[0].headers["Host"] == proxy.base_url.removeprefix("http://")
    assert any(f"ready, upstream unix:{socket_dir / 'app.sock'}" in ln for ln in proxy.stdout)
