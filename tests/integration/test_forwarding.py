"""What the upstream receives and what the client gets back, for fills, hits and passes.

Issue 2, "Forwarding": method, raw target, headers and body unchanged except hop-by-hop headers
(RFC 9110 §7.6.1) and the forwarding headers the proxy vouches for.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from proxy.config import parse
from proxy.server import Proxy

from .conftest import StartProxy, config
from .support import WAIT, Client, FakeUpstream, Reply

RAW_TARGETS = [
    "/a%2Fb?x=%41&y",
    "/caf%C3%A9?q=a+b&q=%20&q=%2B",
    "/p;v=1/q?empty=&flag",
    "/%7Euser/file%20name.txt",
    "/search?q=%E2%9C%93&sort=-date",
    "/a//b",
    "/x?redirect=http%3A%2F%2Fexample.com%2F%3Fa%3D1",
]


@pytest.mark.parametrize("target", RAW_TARGETS)
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_the_raw_target_reaches_upstream_unquoted_and_unchanged(
    client: Client, upstream: FakeUpstream, target: str, via: str
) -> None:
    cookie = b"Cookie: remember_token=1\r\n" if via == "pass" else b""
    request = b"GET " + target.encode() + b" HTTP/1.1\r\nHost: example.com\r\n" + cookie
    response = await client.raw(request + b"Connection: close\r\n\r\n")

    assert response.status == 200
    assert response.header("X-Cache") == ("MISS" if via == "fill" else "PASS")
    assert [s.target for s in upstream.seen] == [target]


async def test_a_raw_target_is_also_the_cache_key(client: Client, upstream: FakeUpstream) -> None:
    request = b"GET /a%2Fb?x=%41&y HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    decoded = b"GET /a/b?x=A&y HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"

    answers = [await client.raw(r) for r in (request, decoded, request)]

    assert [a.header("X-Cache") for a in answers] == ["MISS", "MISS", "HIT"]
    assert [s.target for s in upstream.seen] == ["/a%2Fb?x=%41&y", "/a/b?x=A&y"]


BODY = os.urandom(200 * 1024)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_request_body_is_forwarded_intact_with_its_length(
    client: Client, upstream: FakeUpstream, method: str
) -> None:
    headers = {"Content-Type": "application/octet-stream"}

    answers = [await client.fetch(method, "/upload?id=7", headers, BODY) for _ in range(2)]

    assert [a.status for a in answers] == [200, 200]
    assert [a.x_cache for a in answers] == ["PASS", "PASS"]  # never answered from cache
    assert answers[1].body == f"{method} /upload?id=7 #2".encode()
    for seen in upstream.seen:
        assert (seen.method, seen.target, seen.body) == (method, "/upload?id=7", BODY)
        assert seen.values("Content-Length") == [str(len(BODY))]
        assert "transfer-encoding" not in seen.names
        assert seen.values("Content-Type") == ["application/octet-stream"]


PLAIN_JSON = b'{"event": "click", "target": "#buy"}\n' * 200
COMPRESSED = {
    "gzip": gzip.compress(PLAIN_JSON, mtime=0),
    "deflate": zlib.compress(PLAIN_JSON),
}


async def _in_pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 100):
        yield data[start : start + 100]


@pytest.mark.parametrize("encoding", COMPRESSED)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_compressed_request_body_is_forwarded_as_sent(
    client: Client, upstream: FakeUpstream, encoding: str, framing: str
) -> None:
    # The proxy does not decode content codings (RFC 9110 §8.4): the upstream decodes them.
    body = COMPRESSED[encoding]
    data = body if framing == "content-length" else _in_pieces(body)
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}

    answer = await client.fetch("POST", "/collect", headers, data)

    assert (answer.status, answer.body) == (200, b"POST /collect #1")
    seen = upstream.seen[0]
    assert seen.values("Content-Encoding") == [encoding]
    assert seen.body == body
    if framing == "content-length":
        assert seen.values("Content-Length") == [str(len(body))]


async def test_an_empty_post_is_forwarded_as_empty(client: Client, upstream: FakeUpstream) -> None:
    answer = await client.fetch("POST", "/ping", data=b"")

    assert (answer.status, answer.x_cache) == (200, "PASS")
    assert (upstream.seen[0].method, upstream.seen[0].body) == ("POST", b"")


REQUEST_HOP_BY_HOP = (
    b"Connection: keep-alive, X-Hop-Secret\r\n"
    b"X-Hop-Secret: only-for-the-proxy\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"TE: trailers\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Proxy-Authorization: Basic cHJveHk6cHc=\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"X-End-To-End: kept\r\n"
    b"User-Agent: kept-agent\r\n"
)
DROPPED = {
    "x-hop-secret",
    "keep-alive",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "upgrade",
}


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_hop_by_hop_request_headers_are_dropped(
    client: Client, upstream: FakeUpstream, via: str
) -> None:
    line = b"GET /hop HTTP/1.1\r\n" if via == "fill" else b"POST /hop HTTP/1.1\r\n"
    body = b"Content-Length: 4\r\n\r\nbody" if via == "pass" else b"\r\n"

    response = await client.raw(line + b"Host: example.com\r\n" + REQUEST_HOP_BY_HOP + body)

    assert response.status == 200
    seen = upstream.seen[0]
    assert DROPPED.isdisjoint(seen.names)
    assert all("x-hop-secret" not in v.lower() for v in seen.values("Connection"))
    assert seen.values("User-Agent") == ["kept-agent"]
    # A fill forwards an allowlist only (what a brand-new visitor sends); a pass forwards all.
    assert seen.values("X-End-To-End") == ([] if via == "fill" else ["kept"])


RESPONSE_HOP_BY_HOP = [
    ("Connection", "X-Upstream-Hop"),
    ("X-Upstream-Hop", "secret"),
    ("Keep-Alive", "timeout=30"),
    ("Proxy-Authenticate", 'Basic realm="up"'),
    ("Proxy-Agent", "upstream/1"),
    ("Upgrade", "h2c"),
    ("X-End-To-End", "kept"),
]


@pytest.mark.parametrize(
    ("via", "requests", "cache"),
    [("fill", 1, "MISS"), ("hit", 2, "HIT"), ("pass", 1, "PASS")],
)
async def test_hop_by_hop_response_headers_are_dropped(
    client: Client, upstream: FakeUpstream, via: str, requests: int, cache: str
) -> None:
    upstream.on("/hop", headers=RESPONSE_HOP_BY_HOP)
    method = "POST" if via == "pass" else "GET"

    answers = [await client.fetch(method, "/hop") for _ in range(requests)]

    answer = answers[-1]
    assert answer.x_cache == cache
    names = {name.lower() for name in answer.headers}
    assert {"x-upstream-hop", "keep-alive", "proxy-authenticate", "proxy-agent"}.isdisjoint(names)
    assert "upgrade" not in names
    assert all("x-upstream-hop" not in v.lower() for v in answer.headers.getall("Connection", []))
    assert answer.headers["X-End-To-End"] == "kept"


@pytest.mark.parametrize(
    ("upstream_host", "sent", "host", "forwarded_host"),
    [
        ("", "www.example.com", "www.example.com", "www.example.com"),
        ("", "www.example.com:8443", "www.example.com:8443", "www.example.com:8443"),
        ("app.internal", "www.example.com", "app.internal", "www.example.com"),
    ],
)
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_host_is_preserved_unless_a_rewrite_is_configured(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    upstream_host: str,
    sent: str,
    host: str,
    forwarded_host: str,
    via: str,
) -> None:
    client = await sidecache(upstream={"host": upstream_host})

    await client.fetch("GET" if via == "fill" else "POST", "/", {"Host": sent})

    seen = upstream.seen[0]
    assert seen.values("Host") == [host]
    assert seen.values("X-Forwarded-Host") == [forwarded_host]


CLIENT_FORWARDING = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Host": "public.example",
    "X-Forwarded-Proto": "https",
    "Forwarded": "for=6.6.6.6;proto=https",
    "X-Real-IP": "6.6.6.6",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
}
UNTRUSTED = {
    "x-forwarded-for": ["127.0.0.1"],
    "x-forwarded-host": ["www.example.com"],
    "x-forwarded-proto": ["http"],
    "x-real-ip": ["127.0.0.1"],
    "forwarded": [],
    "x-original-url": [],
    "x-rewrite-url": [],
}
TRUSTED = {
    "x-forwarded-for": ["6.6.6.6, 127.0.0.1"],
    "x-forwarded-host": ["public.example"],
    "x-forwarded-proto": ["https"],
    "x-real-ip": ["6.6.6.6"],
    "forwarded": ["for=6.6.6.6;proto=https"],
    "x-original-url": ["/admin"],
    "x-rewrite-url": ["/admin"],
}
NO_CLIENT_HEADERS = UNTRUSTED


@pytest.mark.parametrize(
    ("trusted_proxies", "sent", "expected"),
    [
        ([], CLIENT_FORWARDING, UNTRUSTED),
        (["10.0.0.0/8"], CLIENT_FORWARDING, UNTRUSTED),
        (["127.0.0.1/32"], CLIENT_FORWARDING, TRUSTED),
        (["127.0.0.0/8"], CLIENT_FORWARDING, TRUSTED),
        (["127.0.0.1/32"], {}, NO_CLIENT_HEADERS),
    ],
)
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_forwarding_headers_are_believed_only_from_trusted_proxies(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    trusted_proxies: list[str],
    sent: dict[str, str],
    expected: dict[str, list[str]],
    via: str,
) -> None:
    client = await sidecache(server={"trusted_proxies": trusted_proxies})
    headers = {"Host": "www.example.com", **sent}

    await client.fetch("GET" if via == "fill" else "POST", "/fwd", headers)

    seen = upstream.seen[0]
    assert {name: seen.values(name) for name in expected} == expected


async def test_x_forwarded_for_from_a_trusted_chain_is_appended_to(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"trusted_proxies": ["127.0.0.1/32"]})
    chain = [("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), ("X-Forwarded-For", "3.3.3.3")]

    await client.fetch("POST", "/fwd", chain)

    assert upstream.seen[0].values("X-Forwarded-For") == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_passed_through_not_followed(
    client: Client, upstream: FakeUpstream, status: int
) -> None:
    upstream.on("/old", status=status, headers=[("Location", "/new")])

    answer = await client.get("/old")

    assert (answer.status, answer.headers["Location"]) == (status, "/new")
    assert answer.cache_status == 'sidecache; fwd=miss; detail="status"'
    assert [s.target for s in upstream.seen] == ["/old"]


@pytest.fixture
async def unix_upstream() -> AsyncIterator[FakeUpstream]:
    """The fake upstream on a unix socket (short path: sun_path holds ~107 bytes)."""
    fake = FakeUpstream()
    directory = tempfile.mkdtemp(prefix="sc-", dir="/tmp")
    path = os.path.join(directory, "up.sock")
    runner = web.AppRunner(fake.app(), shutdown_timeout=1, auto_decompress=False)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    fake.url = f"unix:{path}"
    yield fake
    fake.release()
    await runner.cleanup()
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_unix_socket_upstream_serves_fills_hits_and_passes(
    sidecache: StartProxy, unix_upstream: FakeUpstream
) -> None:
    client = await sidecache(upstream_url=unix_upstream.url)

    miss = await client.get("/sock", {"Host": "www.example.com"})
    hit = await client.get("/sock", {"Host": "www.example.com"})
    posted = await client.fetch("POST", "/sock", data=b"over the socket")

    assert [(a.status, a.x_cache) for a in (miss, hit, posted)] == [
        (200, "MISS"),
        (200, "HIT"),
        (200, "PASS"),
    ]
    assert hit.body == miss.body == b"GET /sock #1"
    assert [(s.method, s.body) for s in unix_upstream.seen] == [
        ("GET", b""),
        ("POST", b"over the socket"),
    ]
    assert unix_upstream.seen[0].values("Host") == ["www.example.com"]


async def test_concurrent_requests_each_get_their_own_answer(
    client: Client, upstream: FakeUpstream
) -> None:
    for index in range(20):
        upstream.on(f"/c{index}", Reply(body=f"body {index}".encode(), delay=0.05))

    answers = await asyncio.gather(*(client.get(f"/c{index}") for index in range(20)))

    assert [a.body for a in answers] == [f"body {index}".encode() for index in range(20)]
    assert len(upstream.seen) == 20


@pytest.mark.parametrize(("via", "requests"), [("fill", 1), ("hit", 2), ("pass", 1)])
async def test_non_ascii_header_bytes_pass_through_unchanged(
    client: Client, upstream: FakeUpstream, via: str, requests: int
) -> None:
    # Header values are octets (RFC 9110 §5.5 obs-text); many apps send UTF-8 filenames raw.
    upstream.on("/cv", headers=[("Content-Disposition", 'attachment; filename="café.pdf"')])
    line = (
        b"POST /cv HTTP/1.1\r\nContent-Length: 0\r\n" if via == "pass" else b"GET /cv HTTP/1.1\r\n"
    )

    for _ in range(requests):
        answer = await client.raw(line + b"Host: example.com\r\nUser-Agent: Jos\xc3\xa9\r\n\r\n")

    assert answer.header("X-Cache") == {"fill": "MISS", "hit": "HIT", "pass": "PASS"}[via]
    disposition = (answer.header("Content-Disposition") or "").encode("latin-1")
    assert disposition == 'attachment; filename="café.pdf"'.encode()
    assert upstream.seen[0].values("User-Agent")[0].encode("latin-1") == "José".encode()


async def test_bodiless_statuses_keep_the_connection_in_step(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/etag", status=304, body=b"")
    upstream.on("/form", status=204, body=b"")

    async with client.connect() as connection:
        await connection.send(
            b"GET /etag HTTP/1.1\r\nHost: x\r\nCookie: remember_token=1\r\n"
            b'If-None-Match: "v1"\r\n\r\n'
        )
        not_modified = await connection.response(head=True)
        await connection.send(b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        no_content = await connection.response(head=True)
        await connection.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        following = await connection.response()

    for answer, status in [(not_modified, 304), (no_content, 204)]:
        assert (answer.status, answer.header("Transfer-Encoding")) == (status, None)
        assert answer.header("Content-Length") in (None, "0")
    assert (following.status, following.body) == (200, b"GET /next #1")
    assert upstream.seen[0].values("If-None-Match") == ['"v1"']


async def test_pipelined_requests_are_answered_in_order(
    client: Client, upstream: FakeUpstream
) -> None:
    request = b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n"

    async with client.connect() as connection:
        await connection.send(request % 1 + request % 2 + request % 1)
        answers = [await connection.response() for _ in range(3)]

    assert [(a.header("X-Cache"), a.body) for a in answers] == [
        ("MISS", b"GET /p1 #1"),
        ("MISS", b"GET /p2 #1"),
        ("HIT", b"GET /p1 #1"),
    ]


async def test_an_http_1_0_client_is_served(client: Client, upstream: FakeUpstream) -> None:
    answers = [await client.raw(b"GET /old-client HTTP/1.0\r\nHost: x\r\n\r\n") for _ in range(2)]

    assert [(a.status, a.header("X-Cache"), a.body) for a in answers] == [
        (200, "MISS", b"GET /old-client #1"),
        (200, "HIT", b"GET /old-client #1"),
    ]


UNFRAMED_BODY = b"a close-delimited body " * 100


@pytest.fixture
async def unframed_upstream() -> AsyncIterator[tuple[str, list[bytes]]]:
    """An upstream that ends its bodies by closing the connection (RFC 9112 §6.3, item 8)."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
            )
            writer.write(UNFRAMED_BODY)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", heads
    server.close()
    await server.wait_closed()


async def test_a_close_delimited_body_is_relayed_whole_and_not_stored(
    sidecache: StartProxy, unframed_upstream: tuple[str, list[bytes]]
) -> None:
    url, heads = unframed_upstream
    client = await sidecache(upstream_url=url)

    answers = [await client.get("/unframed") for _ in range(2)]

    assert [(a.status, a.x_cache, a.body) for a in answers] == [(200, "MISS", UNFRAMED_BODY)] * 2
    assert answers[0].cache_status == 'sidecache; fwd=miss; detail="unframed"'
    assert len(heads) == 2


@pytest.fixture
def regular_file() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    path = directory / "data.txt"
    path.write_text("precious")
    yield path
    shutil.rmtree(directory)


async def test_a_unix_listen_path_that_is_a_regular_file_is_never_replaced(
    upstream: FakeUpstream, regular_file: Path
) -> None:
    # Review of issue 2: connecting to a regular file is refused like a stale socket, and the
    # proxy deleted the file to bind its socket there. Only a dead socket file may be replaced.
    listen = {"listen": [f"unix:{regular_file}"]}
    proxy = Proxy(parse(config(upstream.url, server=listen), "test.toml"))
    try:
        with pytest.raises(OSError):
            await asyncio.wait_for(proxy.start(), 5)
    finally:
        await proxy.stop()
    assert await asyncio.to_thread(regular_file.read_text) == "precious"


async def test_an_absolute_form_target_is_served_with_its_authority_as_host(
    client: Client, upstream: FakeUpstream
) -> None:
    # RFC 9112 §3.2.2: a server must accept absolute-form; the authority replaces Host.
    first = await client.raw(b"GET http://www.example.com/abs?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    second = await client.get("/abs?q=1", {"Host": "www.example.com"})

    assert (first.status, first.header("X-Cache")) == (200, "MISS")
    assert (second.x_cache, second.body) == ("HIT", first.body)
    assert [(s.target, s.values("Host")) for s in upstream.seen] == [
        ("/abs?q=1", ["www.example.com"])
    ]


async def test_a_transfer_coding_other_than_chunked_is_501(
    client: Client, upstream: FakeUpstream
) -> None:
    # RFC 9112 §6.1: the front decodes chunked only; relaying the body without its other
    # coding would hand the app corrupt data, so it is refused before anything is forwarded.
    answer = await client.raw(
        b"POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert answer.status == 501
    assert upstream.seen == []
