"""Forwarding through the real `sidecache` process: bodies, headers, upstream failures, bad
input."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time

import pytest
from aiohttp import web
from sidecache_e2e import Seen, Upstream, fetch, free_port, generated, parse_response, raw_exchange

MIB = 1024 * 1024


def echo_digest(upstream: Upstream) -> None:
    """/upload answers with the length and SHA-256 of the body it received."""

    async def upload(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(text=f"{seen.body_length} {seen.body_sha256}")

    upstream.route("/upload", upload)


async def test_post_body_is_forwarded_intact(upstream, client, start_sidecache):
    echo_digest(upstream)
    proxy = await start_sidecache(upstream=upstream.url)
    body = os.urandom(4 * MIB + 123)
    digest = hashlib.sha256(body).hexdigest()

    url = proxy.base_url + "/upload?x=1"
    first = await fetch(client, "POST", url, data=io.BytesIO(body))
    second = await fetch(client, "POST", url, data=io.BytesIO(body))

    assert first.status == second.status == 200
    assert first.body == second.body == f"{len(body)} {digest}".encode()
    assert (first.x_cache, first.cache_status) == (
        "PASS",
        'sidecache; fwd=method; detail="no-rule"',  # RFC 9211: POST is forwarded by its method
    )
    assert second.x_cache == "PASS"
    seen = upstream.requests("/upload?x=1")
    assert [(s.method, s.body_length, s.body_sha256) for s in seen] == [
        ("POST", len(body), digest)
    ] * 2
    assert seen[0].headers["Content-Length"] == str(len(body))


async def test_chunked_post_body_is_streamed_intact(upstream, client, start_sidecache):
    echo_digest(upstream)
    proxy = await start_sidecache(upstream=upstream.url)
    chunk = os.urandom(100_003)
    total = 3 * MIB + 17
    digest = hashlib.sha256()
    async for piece in generated(total, chunk):
        digest.update(piece)

    reply = await fetch(client, "POST", proxy.base_url + "/upload", data=generated(total, chunk))

    assert (reply.status, reply.body) == (200, f"{total} {digest.hexdigest()}".encode())
    [seen] = upstream.requests("/upload")
    assert (seen.method, seen.body_length, seen.body_sha256) == ("POST", total, digest.hexdigest())


async def test_get_with_a_body_is_passed_not_cached(upstream, client, start_sidecache):
    echo_digest(upstream)
    proxy = await start_sidecache(upstream=upstream.url)

    replies = [
        await fetch(client, "GET", proxy.base_url + "/upload", data=b"query-in-body")
        for _ in range(2)
    ]

    digest = hashlib.sha256(b"query-in-body").hexdigest()
    for reply in replies:
        assert (reply.x_cache, reply.body) == ("PASS", f"13 {digest}".encode())
        assert reply.cache_status == 'sidecache; fwd=bypass; detail="request-body"'
    assert [s.body_sha256 for s in upstream.requests("/upload")] == [digest, digest]


async def test_forwarding_headers_are_the_proxys_own(upstream, start_sidecache):
    async def form(request: web.Request, seen: Seen) -> web.StreamResponse:
        headers = {
            "X-App": "reply",
            "Connection": "X-Up-Hop",
            "X-Up-Hop": "upstream-only",
            "Proxy-Agent": "upstream",
            "Keep-Alive": "timeout=5",
        }
        return web.Response(text="ok", headers=headers)

    upstream.route("/form", form)
    proxy = await start_sidecache(upstream=upstream.url)
    port = int(proxy.base_url.rsplit(":", 1)[1])
    request = (
        b"POST /form?a=%2F&b HTTP/1.1\r\n"
        b"Host: site.example\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\n"
        b"X-Forwarded-Host: evil.example\r\n"
        b"X-Forwarded-Proto: https\r\n"
        b"Forwarded: for=6.6.6.6;host=evil.example\r\n"
        b"X-Real-IP: 6.6.6.6\r\n"
        b"X-Original-URL: /admin\r\n"
        b"X-Rewrite-URL: /admin\r\n"
        b"Connection: close, X-Hop\r\n"
        b"X-Hop: client-only\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"X-App: kept\r\n"
        b"Content-Length: 5\r\n"
        b"\r\nhello"
    )

    status, headers, body = parse_response(await raw_exchange("127.0.0.1", port, request))

    assert (status, body) == (200, b"ok")
    assert headers["x-app"] == ["reply"]
    assert "x-up-hop" not in headers
    assert "proxy-agent" not in headers
    assert "keep-alive" not in headers
    [seen] = upstream.requests("/form?a=%2F&b")
    assert (seen.method, seen.body_length) == ("POST", 5)
    assert seen.body_sha256 == hashlib.sha256(b"hello").hexdigest()
    got = {name: seen.headers.getall(name, []) for name in (
        "Host", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
        "Forwarded", "X-Original-URL", "X-Rewrite-URL", "X-Hop", "Keep-Alive", "X-App",
    )}  # fmt: skip
    assert got == {
        "Host": ["site.example"],
        "X-Forwarded-For": ["127.0.0.1"],
        "X-Forwarded-Host": ["site.example"],
        "X-Forwarded-Proto": ["http"],
        "X-Real-IP": ["127.0.0.1"],
        "Forwarded": [],
        "X-Original-URL": [],
        "X-Rewrite-URL": [],
        "X-Hop": [],
        "Keep-Alive": [],
        "X-App": ["kept"],
    }


async def test_upstream_down_is_502_quickly_and_the_proxy_keeps_serving(client, start_sidecache):
    port = free_port()  # nothing listens here
    proxy = await start_sidecache(upstream=f"http://127.0.0.1:{port}")

    for method in ("GET", "POST", "GET"):
        started = time.monotonic()
        reply = await fetch(
            client, method, proxy.base_url + "/", data=b"x" if method == "POST" else None
        )
        elapsed = time.monotonic() - started
        assert reply.status == 502
        assert elapsed < 1.0, f"502 took {elapsed:.3f} s"
        assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert reply.body.startswith(b"502 Bad Gateway")
        # What was tried and what failed (issue 12 point 9).
        assert reply.headers["X-Cache"] == ("PASS" if method == "POST" else "MISS")
        assert reply.headers["Cache-Status"].endswith('; detail="upstream-refused"')

    # The app comes up on that port: the same proxy now serves it (and cached no 502).
    later = Upstream()
    await later.start(port=port)
    try:
        first = await fetch(client, "GET", proxy.base_url + "/")
        second = await fetch(client, "GET", proxy.base_url + "/")
    finally:
        await later.stop()
    assert (first.status, first.x_cache, first.body) == (200, "MISS", b"/ #1")
    assert (second.status, second.x_cache) == (200, "HIT")
    assert later.count("/") == 1
    assert proxy.process.returncode is None


TIMEOUT_CONFIG = """
[upstream]
read_timeout = "500ms"
"""


async def test_upstream_read_timeout_is_504_within_the_timeout(upstream, client, start_sidecache):
    release = asyncio.Event()

    async def stuck(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="too late")

    upstream.route("/stuck", stuck)
    proxy = await start_sidecache(upstream=upstream.url, config=TIMEOUT_CONFIG)
    try:
        started = time.monotonic()
        reply = await fetch(client, "GET", proxy.base_url + "/stuck")
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert reply.status == 504
    assert reply.body.startswith(b"504 Gateway Timeout")
    assert 0.4 < elapsed < 1.5, f"504 after {elapsed:.3f} s"
    after = await fetch(client, "GET", proxy.base_url + "/")
    assert (after.status, after.body) == (200, b"/ #1")


@pytest.mark.parametrize(
    "payload",
    [b"GARBAGE\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost x\r\n\r\n"],
    ids=["garbage", "nul-in-target", "header-without-colon"],
)
async def test_malformed_request_is_400_and_the_proxy_keeps_serving(
    upstream, client, start_sidecache, payload
):
    proxy = await start_sidecache(upstream=upstream.url)
    port = int(proxy.base_url.rsplit(":", 1)[1])

    raw = await raw_exchange("127.0.0.1", port, payload, within=3.0)

    status, _, _ = parse_response(raw)
    assert status == 400
    assert upstream.count() == 0
    after = await fetch(client, "GET", proxy.base_url + "/")
    assert (after.status, after.x_cache, after.body) == (200, "MISS", b"/ #1")
    assert proxy.process.returncode is None


async def test_upstream_reset_before_the_response_is_502(upstream, client, start_sidecache):
    async def reset(request: web.Request, seen: Seen) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response(text="never sent")

    upstream.route("/reset", reset)
    proxy = await start_sidecache(upstream=upstream.url)

    got = await fetch(client, "GET", proxy.base_url + "/reset")
    posted = await fetch(client, "POST", proxy.base_url + "/reset", data=b"payload")
    after = await fetch(client, "GET", proxy.base_url + "/")

    for reply in (got, posted):
        assert reply.status == 502
        assert reply.body.startswith(b"502 Bad Gateway")
        assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    # A POST is not idempotent: it must never be sent twice behind the client's back.
    assert [s.body_length for s in upstream.requests("/reset") if s.method == "POST"] == [7]
    assert (after.status, after.body) == (200, b"/ #1")


async def test_access_log_lines_have_the_documented_fields(client, start_sidecache, upstream):
    """accesslog.py: `CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE BYTES TIMEus rule=RULE
    detail=DETAIL`, space-separated, "easy to grep and to split" - for errors too."""
    down = f"http://127.0.0.1:{free_port()}"
    proxy = await start_sidecache(upstream=upstream.url)
    broken = await start_sidecache(upstream=down)

    await fetch(client, "GET", proxy.base_url + "/a?b=c")
    await fetch(client, "GET", proxy.base_url + "/a?b=c")
    await fetch(client, "POST", proxy.base_url + "/form", data=b"x")
    await fetch(client, "GET", broken.base_url + "/")
    await proxy.wait_for_line('"POST /form HTTP/1.1"')
    await broken.wait_for_line('"GET / HTTP/1.1"')

    lines = proxy.access_lines() + broken.access_lines()
    fields = [line.split(" sidecache.access ", 1)[1].split() for line in lines]
    assert [f[:4] + f[5:7] for f in fields] == [
        ["127.0.0.1", '"GET', "/a?b=c", 'HTTP/1.1"', "MISS", "9"],
        ["127.0.0.1", '"GET', "/a?b=c", 'HTTP/1.1"', "HIT", "9"],
        ["127.0.0.1", '"POST', "/form", 'HTTP/1.1"', "PASS", "8"],
        ["127.0.0.1", '"GET', "/", 'HTTP/1.1"', "ERROR", "49"],  # the 502's own body
    ]
    assert [f[4] for f in fields] == ["200", "200", "200", "502"]
    assert all(len(f) == 10 for f in fields), lines
    assert all(f[7].endswith("us") and f[7][:-2].isdigit() for f in fields)
    assert [f[9] for f in fields[:3]] == ["detail=stored", "detail=-", "detail=no-rule"]
    assert fields[3][9].startswith("detail=")
