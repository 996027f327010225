"""Bodies stream both ways; the cache keeps a copy only of what fits and arrived whole.

Issue 2: request and response bodies are streamed, never fully buffered, on the pass path; a
response bigger than `item_size` is streamed to the client and not stored; a client that goes
away mid-fill leaves nothing stored. Streaming is shown with gates: the far side holds the rest
of a body back until the near side has seen the first part, so a buffering proxy would hang
(and fail on a bounded wait) instead of passing.
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from .conftest import StartProxy
from .support import WAIT, Client, FakeUpstream, Reply, eventually

KIB = 1024


@pytest.mark.parametrize("first_size", [KIB, 100 * KIB], ids=["small", "over-item-size"])
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_the_response_reaches_the_client_before_the_upstream_finishes(
    client: Client, upstream: FakeUpstream, via: str, first_size: int
) -> None:
    gate = asyncio.Event()
    first, rest = os.urandom(first_size), os.urandom(5 * KIB)
    upstream.on("/stream", chunks=[first, rest], gate=gate)
    method = "GET" if via == "fill" else "POST"

    async with client.session.request(method, client.url("/stream")) as response:
        head = await asyncio.wait_for(response.content.readexactly(first_size), WAIT)
        gate.set()
        tail = await response.read()
    after = await client.get("/stream")

    assert head + tail == first + rest
    stored = via == "fill" and first_size < 64 * KIB
    assert (after.x_cache, after.body) == ("HIT" if stored else "MISS", first + rest)
    assert len(upstream.seen) == (1 if stored else 2)


BIG = os.urandom(300 * KIB)
OVERSIZED = {
    "content-length": Reply(body=BIG),
    "chunked": Reply(chunks=[BIG[i : i + 16 * KIB] for i in range(0, len(BIG), 16 * KIB)]),
}


@pytest.mark.parametrize("framing", OVERSIZED)
async def test_an_oversized_body_is_streamed_whole_and_not_stored(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture, framing: str
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    upstream.on("/big", OVERSIZED[framing])

    answers = [await client.get("/big") for _ in range(2)]

    assert [(a.status, a.x_cache) for a in answers] == [(200, "MISS")] * 2
    assert [a.body == BIG for a in answers] == [True, True]
    if framing == "content-length":
        assert [a.headers["Content-Length"] for a in answers] == [str(len(BIG))] * 2
        assert answers[0].cache_status == 'sidecache; fwd=miss; detail="too-big"'
    assert len(upstream.seen) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "sidecache.access"]
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["detail=too-big"] * 2


async def test_cache_status_never_claims_stored_for_a_body_that_was_not(
    client: Client, upstream: FakeUpstream
) -> None:
    # RFC 9211 §2.7: "stored" says the cache stored the response. A chunked body's size is
    # unknown when the headers go out, so the claim cannot be made then.
    upstream.on("/big", OVERSIZED["chunked"])

    first = await client.get("/big")
    second = await client.get("/big")

    assert second.x_cache == "MISS"  # it really was not stored
    assert first.cache_status is not None
    assert "stored" not in first.cache_status


@pytest.mark.parametrize(
    ("size", "stored"),
    [(KIB - 1, True), (KIB, True), (KIB + 1, False)],
)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_item_size_is_the_largest_body_stored(
    sidecache: StartProxy, upstream: FakeUpstream, size: int, stored: bool, framing: str
) -> None:
    client = await sidecache(caches={"default": {"item_size": "1KiB"}})
    body = os.urandom(size)
    half = size // 2
    chunked = Reply(chunks=[body[:half], body[half:]])
    upstream.on("/edge", Reply(body=body) if framing == "content-length" else chunked)

    first, second = await client.get("/edge"), await client.get("/edge")

    assert first.body == second.body == body
    assert second.x_cache == ("HIT" if stored else "MISS")
    assert len(upstream.seen) == (1 if stored else 2)


async def test_a_chunked_request_body_is_streamed_upstream_as_it_arrives(
    client: Client, upstream: FakeUpstream
) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"

    async with client.connect() as connection:
        await connection.send(head + b"5\r\nfirst\r\n")
        await eventually(lambda: bool(upstream.seen) and upstream.seen[0].body == b"first")
        await connection.send(b"6\r\nsecond\r\n0\r\n\r\n")
        answer = await connection.response()

    assert (answer.status, answer.header("X-Cache")) == (200, "PASS")
    seen = upstream.seen[0]
    assert (seen.method, seen.body, seen.complete) == ("POST", b"firstsecond", True)
    assert "content-length" not in seen.names
    assert seen.values("Transfer-Encoding") == ["chunked"]


async def test_a_large_upload_is_streamed_upstream_before_it_is_complete(
    client: Client, upstream: FakeUpstream
) -> None:
    body = os.urandom(4 * KIB * KIB)
    half = len(body) // 2
    head = b"PUT /file HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % len(body)

    async with client.connect() as connection:
        await connection.send(head + body[:half])
        await eventually(lambda: bool(upstream.seen) and len(upstream.seen[0].body) >= half)
        assert not upstream.seen[0].complete
        await connection.send(body[half:])
        answer = await connection.response()

    assert (answer.status, answer.header("X-Cache")) == (200, "PASS")
    seen = upstream.seen[0]
    assert seen.body == body
    assert seen.values("Content-Length") == [str(len(body))]


async def test_a_client_leaving_mid_fill_leaves_nothing_stored(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    gate = asyncio.Event()
    upstream.on("/leave", chunks=[b"a" * KIB, b"b" * KIB], gate=gate)

    async with client.connect() as connection:
        await connection.send(b"GET /leave HTTP/1.1\r\nHost: example.com\r\n\r\n")
        await connection.response(head=True)
    gate.set()  # the rest of the body now meets a closed client connection
    await eventually(lambda: any(r.name == "sidecache.access" for r in caplog.records))
    upstream.on("/leave")
    after = await client.get("/leave", {"Host": "example.com"})

    assert (after.x_cache, after.body) == ("MISS", b"GET /leave #2")
    line = next(r.getMessage() for r in caplog.records if r.name == "sidecache.access")
    assert line.endswith("detail=incomplete")


async def test_an_upload_slower_than_the_read_timeout_is_not_cut(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # read_timeout bounds silence from the upstream, not the length of a client's upload.
    client = await sidecache(upstream={"read_timeout": "300ms"})
    head = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"

    async with client.connect() as connection:
        await connection.send(head)
        for _ in range(8):
            await connection.send(b"5\r\nabcde\r\n")
            await asyncio.sleep(0.1)
        await connection.send(b"0\r\n\r\n")
        answer = await connection.response()

    assert (answer.status, answer.body) == (200, b"POST /upload #1")
    assert upstream.seen[0].body == b"abcde" * 8


async def test_a_client_reading_slower_than_the_read_timeout_gets_the_whole_body(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Backpressure from a slow client must not look like a silent upstream.
    client = await sidecache(upstream={"read_timeout": "300ms"})
    body = os.urandom(32 * KIB * KIB)
    upstream.on("/video", body=body)

    async with client.session.get(client.url("/video")) as response:
        first = await response.content.readexactly(64 * KIB)
        await asyncio.sleep(0.8)
        rest = await response.read()

    assert first + rest == body


async def test_an_upload_with_expect_100_continue_is_forwarded(
    client: Client, upstream: FakeUpstream
) -> None:
    head = b"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"

    async with client.connect() as connection:
        await connection.send(head)
        interim = await connection.response(head=True)
        await connection.send(b"hello")
        answer = await connection.response()

    assert interim.status == 100
    assert (answer.status, answer.body) == (200, b"PUT /big #1")
    assert (upstream.seen[0].method, upstream.seen[0].body) == ("PUT", b"hello")


async def _close_delimited_origin(body: bytes) -> tuple[asyncio.Server, str]:
    """An origin that answers every request with a body ended only by closing the connection
    (RFC 9112 §6.3 item 8): no Content-Length, no chunking."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_a_close_delimited_body_is_relayed_close_delimited_and_not_stored(
    sidecache: StartProxy, via: str
) -> None:
    # Issue 2: never a silently short 200. A close-delimited body cannot be told from a truncated
    # one, so the proxy must not re-frame it as chunked (a last-chunk would vouch that it is
    # whole): it relays it close-delimited, and stores nothing (unframed).
    server, url = await _close_delimited_origin(b"A" * 1000)
    async with server:
        client = await sidecache(upstream_url=url)
        cookie = b"" if via == "fill" else b"Cookie: remember_token=1\r\n"
        answers = []
        for _ in range(2):
            async with client.connect() as connection:
                await connection.send(b"GET /cd HTTP/1.1\r\nHost: a\r\n" + cookie + b"\r\n")
                answers.append(await connection.response())

    for answer in answers:
        assert answer.status == 200
        assert answer.header("Transfer-Encoding") is None
        assert answer.header("Content-Length") is None
        assert answer.header("Connection") == "close"
        assert answer.body == b"A" * 1000
    expected = {"fill": ["MISS", "MISS"], "pass": ["PASS", "PASS"]}[via]
    assert [a.header("X-Cache") for a in answers] == expected


async def test_an_http10_keep_alive_client_is_not_left_waiting_on_an_unsized_body(
    client: Client, upstream: FakeUpstream
) -> None:
    # HTTP/1.0 has no chunking, so a body of unknown length ends at close; aiohttp alone left
    # the keep-alive connection open and the client waited for more until the idle timeout.
    upstream.on("/chunked", Reply(chunks=[b"a" * 50, b"b" * 50]))
    async with client.connect() as connection:
        await connection.send(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        answer = await connection.response()  # reads to EOF: bounded by WAIT
    assert answer.status == 200
    assert answer.body == b"a" * 50 + b"b" * 50
