"""Upstream and client failures: quick 502/504 answers, aborted bodies, nothing stored.

Issue 2: refused or reset before the response starts → 502; connect or read timeout → 504, both
short plain text and within the configured timeout; an upstream dying mid-body aborts the client
connection (never a silently short 200) and stores nothing; a malformed request gets a 400 and the
proxy keeps serving.
"""

from __future__ import annotations

import logging
import re
import time

import aiohttp
import pytest

from .conftest import StartProxy
from .support import Client, FakeUpstream, Got, Reply, timed

FAST = {"connect_timeout": "300ms", "read_timeout": "300ms"}


def method_and_body(via: str) -> tuple[str, bytes | None]:
    return ("GET", None) if via == "fill" else ("POST", b"form=1")


def assert_gateway_error(answer: Got, status: int) -> None:
    """A short plain-text 502/504 that nobody will mistake for the page (decisions.md), tagged
    with what was tried and what failed (issue 12 point 9: it carried no tags)."""
    reason = {502: b"Bad Gateway", 504: b"Gateway Timeout"}[status]
    assert answer.status == status
    assert answer.body.startswith(b"%d %s" % (status, reason))
    assert len(answer.body) < 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    fill = answer.headers["X-Cache"] == "MISS"
    assert answer.headers["X-Cache"] in ("MISS", "PASS")
    assert re.fullmatch(
        r'sidecache; fwd=%s; detail="upstream-(refused|error|timeout)"'
        % ("miss" if fill else "method"),  # the passes here are POSTs
        answer.headers["Cache-Status"],
    ), answer.headers["Cache-Status"]


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_a_refused_connection_is_a_quick_502(
    sidecache: StartProxy, closed_port: int, via: str
) -> None:
    client = await sidecache(upstream_url=f"http://127.0.0.1:{closed_port}")
    method, data = method_and_body(via)

    answer, seconds = await timed(client.fetch(method, "/down", data=data))

    assert_gateway_error(answer, 502)
    assert seconds < 1.0


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_a_reset_before_the_response_is_a_502(
    client: Client, upstream: FakeUpstream, via: str
) -> None:
    upstream.on("/reset", reset=True)
    method, data = method_and_body(via)

    answer = await client.fetch(method, "/reset", data=data)

    assert_gateway_error(answer, 502)
    assert {s.method for s in upstream.seen} == {method}
    if via == "pass":  # a POST is never retried (RFC 9110 §9.2.2)
        assert len(upstream.seen) == 1


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_a_connect_timeout_is_a_504_within_the_timeout(
    sidecache: StartProxy, unanswered_port: int, via: str
) -> None:
    client = await sidecache(upstream_url=f"http://127.0.0.1:{unanswered_port}", upstream=FAST)
    method, data = method_and_body(via)

    answer, seconds = await timed(client.fetch(method, "/unreachable", data=data))

    assert_gateway_error(answer, 504)
    assert 0.25 <= seconds < 1.5


@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_a_read_timeout_before_headers_is_a_504_and_stores_nothing(
    sidecache: StartProxy, upstream: FakeUpstream, via: str
) -> None:
    client = await sidecache(upstream=FAST)
    upstream.on("/slow", delay=3.0)
    method, data = method_and_body(via)

    answer, seconds = await timed(client.fetch(method, "/slow", data=data))
    upstream.on("/slow")
    after = [await client.get("/slow") for _ in range(2)]

    assert_gateway_error(answer, 504)
    assert 0.25 <= seconds < 1.5
    assert [(a.status, a.x_cache) for a in after] == [(200, "MISS"), (200, "HIT")]
    assert len(upstream.seen) == 2


DYING = {
    "content-length": Reply(body=b"x" * 50_000, die_after=1_000),
    "chunked": Reply(chunks=[b"a" * 1_000, b"b" * 1_000, b"c" * 1_000], die_after=1_000),
}


@pytest.mark.parametrize("framing", DYING)
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_an_upstream_dying_mid_body_aborts_the_client_and_stores_nothing(
    client: Client,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    framing: str,
    via: str,
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    upstream.on("/dying", DYING[framing])
    method, data = method_and_body(via)

    with pytest.raises(aiohttp.ClientPayloadError):
        await client.fetch(method, "/dying", data=data)
    upstream.on("/dying")
    after = [await client.get("/dying") for _ in range(2)]

    assert [(a.x_cache, a.body) for a in after] == [
        ("MISS", b"GET /dying #2"),
        ("HIT", b"GET /dying #2"),
    ]
    assert len(upstream.seen) == 2
    first_line = next(r.getMessage() for r in caplog.records if r.name == "sidecache.access")
    assert first_line.endswith("detail=incomplete")


async def test_a_stall_mid_body_is_cut_within_the_read_timeout_and_stores_nothing(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(upstream=FAST)
    upstream.on("/stall", chunks=[b"a" * 100, b"b" * 100], chunk_delay=3.0)

    started = time.monotonic()
    async with client.session.get(client.url("/stall")) as response:
        assert (response.status, response.headers["X-Cache"]) == (200, "MISS")
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    seconds = time.monotonic() - started
    upstream.on("/stall")
    after = await client.get("/stall")

    assert 0.25 <= seconds < 1.5
    assert (after.x_cache, after.body) == ("MISS", b"GET /stall #2")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/1.1 trailing-junk\r\nHost: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello on the HTTP port
    ],
)
async def test_a_malformed_request_gets_400_and_the_proxy_keeps_serving(
    client: Client, upstream: FakeUpstream, request_bytes: bytes
) -> None:
    async with client.connect() as connection:
        await connection.send(request_bytes)
        answer = await connection.response()
    after = await client.get("/still-up")

    assert answer.status == 400
    assert (after.status, after.body) == (200, b"GET /still-up #1")
    assert [s.target for s in upstream.seen] == ["/still-up"]


async def test_a_malformed_request_is_logged_as_one_line_without_a_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # Product rule: bad input gets a clear error and the server keeps serving; a client must not
    # be able to flood the log with a traceback per request (aiohttp logs one by default).
    caplog.set_level(logging.DEBUG)
    async with client.connect() as connection:
        await connection.send(b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = await connection.response()

    assert answer.status == 400
    records = [r for r in caplog.records if "Invalid char in url path" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "sidecache.front"
    assert records[0].levelno == logging.INFO
    assert records[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info is not None]
