"""Hostile clients and odd origins (issue 11, faults 11-14 and the malformed-input gaps), over
raw sockets: framing is what is tested, so neither end may be tidied up by an HTTP library.

Each case names the rule it pins and checks both ends: what the client received (status,
framing, and that the connection stays in step or is closed) and what the upstream saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import StartProxy
from .support import WAIT, Client, FakeUpstream, LoopbackServer, RawConnection, eventually

HOST = b"Host: example.com\r\n"
PASS_COOKIE = b"Cookie: remember_token=1\r\n"  # a logged-in visitor: the default rule passes
ACCESS = "sidecache.access"


async def closed_by_peer(connection: RawConnection, within: float = WAIT) -> bool:
    """True when the proxy closed the connection: a read returns EOF (or a reset)."""
    assert connection.reader is not None
    try:
        data = await asyncio.wait_for(connection.reader.read(1), within)
    except ConnectionResetError:
        return True
    return data == b""


async def rest_of_stream(connection: RawConnection, within: float = 0.5) -> bytes:
    """Whatever else arrives on the connection within `within` seconds (or until it closes)."""
    assert connection.reader is not None
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(connection.reader.read(65536), within):
            received += chunk
    return received


def shared(sidecache: StartProxy, **sections: Any) -> Any:
    """A proxy in shared mode: the origin's headers decide what is stored (RFC 9111)."""
    return sidecache(mode="shared", rules=[], **sections)


def access_statuses(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The status of every access-log line so far (the field after the request line)."""
    return [
        int(record.getMessage().split('" ', 1)[1].split()[0])
        for record in caplog.records
        if record.name == ACCESS
    ]


# --- a raw origin ----------------------------------------------------------------------------


@dataclass
class RawOrigin(LoopbackServer):
    """An origin on 127.0.0.1 that answers each path with exactly the bytes it is given (then
    closes the connection when `close_after` names the path). It records the request heads."""

    answers: dict[str, bytes]
    close_after: set[str] = field(default_factory=set)
    targets: list[str] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode("latin-1")
                self.targets.append(target)
                path = target.partition("?")[0]
                writer.write(self.answers[path])
                await writer.drain()
                if path in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def origin() -> AsyncIterator[RawOrigin]:
    fine = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=60\r\n\r\nfine"
    async with RawOrigin({"/fine": fine}) as raw:
        yield raw


# --- fault 11: what a stored response is answered with -----------------------------------------


@pytest.mark.parametrize("length", [b"", b"Content-Length: 0\r\n"])
async def test_a_204_is_answered_without_content_length(
    sidecache: StartProxy, origin: RawOrigin, length: bytes
) -> None:
    """RFC 9110 §8.6: a server must not send Content-Length in a 204 (nor in a 1xx). A stored
    204 was answered with `Content-Length: 0` on every hit, and a miss relayed the origin's
    own `Content-Length: 0` (a common origin habit); neither may carry one."""
    origin.answers["/empty"] = b"HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\n%b\r\n" % (
        length
    )
    client = await shared(sidecache, upstream_url=origin.url)

    async with client.connect() as connection:
        await connection.send(b"GET /empty HTTP/1.1\r\n" + HOST + b"\r\n")
        miss = await connection.response()
        await connection.send(b"GET /empty HTTP/1.1\r\n" + HOST + b"\r\n")
        hit = await connection.response()
        await connection.send(b"GET /fine HTTP/1.1\r\n" + HOST + b"\r\n")
        following = await connection.response()  # the stream is still in step

    assert (miss.status, miss.header("X-Cache")) == (204, "MISS")
    assert (hit.status, hit.header("X-Cache")) == (204, "HIT")
    for answer in (miss, hit):
        assert answer.header("Content-Length") is None, answer.headers
        assert answer.header("Transfer-Encoding") is None
    assert (following.status, following.body) == (200, b"fine")
    assert origin.targets == ["/empty", "/fine"]


PRECONDITIONS = {
    "if-none-match-star": ("If-None-Match", "*"),
    "if-none-match-its-etag": ("If-None-Match", '"v1"'),
    "if-modified-since-later": ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),
}


@pytest.mark.parametrize("case", PRECONDITIONS)
async def test_preconditions_are_ignored_for_a_stored_non_2xx(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    """RFC 9110 §13.2.1: preconditions are evaluated only when the response without them would
    be 2xx (or 412); a stored 404 is answered as it is, never turned into a 304 (§13.1.2: `*`
    is false when there is no current representation, which is what a 404 says)."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    headers = [("Cache-Control", "max-age=60"), ("ETag", '"v1"')]
    upstream.on("/gone", status=404, body=b"no such page", headers=headers)
    upstream.on("/here", body=b"a page", headers=headers)
    client = await shared(sidecache)
    name, value = PRECONDITIONS[case]

    first = await client.get("/gone")
    conditional = await client.get("/gone", {name: value})
    await client.get("/here")
    current = await client.get("/here", {name: value})  # a stored 200 still gets its 304

    assert (first.status, first.x_cache) == (404, "MISS")
    assert (conditional.status, conditional.x_cache) == (404, "HIT")
    assert conditional.body == b"no such page"
    assert conditional.headers.get("Content-Length") == str(len(b"no such page"))
    assert (current.status, current.x_cache, current.body) == (304, "HIT", b"")
    assert [s.path for s in upstream.seen] == ["/gone", "/here"]
    assert access_statuses(caplog) == [404, 404, 200, 304]


async def test_a_stored_404_answers_a_conditional_head_as_is(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    """RFC 9110 §13.2.1 on the hit path taken without a task (a HEAD, raw socket): 404 with the
    GET's Content-Length and no body, and the connection stays in step."""
    headers = [("Cache-Control", "max-age=60")]
    upstream.on("/gone", status=404, body=b"no such page", headers=headers)
    client = await shared(sidecache)

    async with client.connect() as connection:
        await connection.send(b"GET /gone HTTP/1.1\r\n" + HOST + b"\r\n")
        first = await connection.response()
        await connection.send(b"HEAD /gone HTTP/1.1\r\n" + HOST + b"If-None-Match: *\r\n\r\n")
        head = await connection.response(head=True)
        await connection.send(b"GET /next HTTP/1.1\r\n" + HOST + b"\r\n")
        following = await connection.response()

    assert (first.status, first.header("X-Cache")) == (404, "MISS")
    assert (head.status, head.header("X-Cache")) == (404, "HIT")
    assert head.header("Content-Length") == str(len(b"no such page"))
    assert (following.status, following.body) == (200, b"GET /next #1")
    assert [s.path for s in upstream.seen] == ["/gone", "/next"]


async def test_a_stored_404_behind_a_busy_worker_is_answered_as_is(
    sidecache: StartProxy, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9110 §13.2.1 on the worker's path (a hit pipelined behind a slow pass is served by
    the connection's worker, `respond_entry`): the stored 404 as is, logged as a 404."""
    caplog.set_level(logging.INFO, logger=ACCESS)
    upstream.on(
        "/gone", status=404, body=b"no such page", headers=[("Cache-Control", "max-age=60")]
    )
    upstream.on("/slow", delay=0.2)
    client = await shared(sidecache)
    conditional = b"GET /gone HTTP/1.1\r\n" + HOST + b"If-None-Match: *\r\n\r\n"

    async with client.connect() as connection:
        await connection.send(b"GET /gone HTTP/1.1\r\n" + HOST + b"\r\n")
        first = await connection.response()
        await connection.send(b"POST /slow HTTP/1.1\r\n" + HOST + b"Content-Length: 0\r\n\r\n")
        await connection.send(conditional)
        slow = await connection.response()
        behind = await connection.response()

    assert (first.status, slow.status) == (404, 200)
    assert (behind.status, behind.header("X-Cache"), behind.body) == (404, "HIT", b"no such page")
    assert [s.path for s in upstream.seen] == ["/gone", "/slow"]
    assert access_statuses(caplog) == [404, 200, 404]


# --- fault 12: a transfer coding the proxy does not understand ------------------------------

GZIPPED = gzip.compress(b"compressed, but nobody says so", mtime=0)
CODINGS = {
    "gzip-then-chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "two-fields": b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "chunked-twice": b"Transfer-Encoding: chunked, chunked\r\n",
    "gzip-alone": b"Transfer-Encoding: gzip\r\n",  # close-delimited (RFC 9112 §6.3)
}


@pytest.mark.parametrize("case", CODINGS)
@pytest.mark.parametrize("who", ["fill", "pass"])
async def test_an_upstream_transfer_coding_other_than_chunked_is_a_502_never_stored(
    sidecache: StartProxy, case: str, who: str
) -> None:
    """RFC 9112 §6.1: a proxy must not forward a message with a transfer coding it does not
    understand (and chunked is applied once at most, §7). Only the chunking was removed: the
    gzip body was stored and served with no header saying it was compressed. Now: 502
    `upstream-error` (nginx: "upstream sent unknown Transfer-Encoding"), nothing stored."""
    chunk = b"%x\r\n%b\r\n0\r\n\r\n" % (len(GZIPPED), GZIPPED)
    body = GZIPPED if case == "gzip-alone" else chunk
    answer = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n" + CODINGS[case] + b"\r\n" + body
    cookie = PASS_COOKIE if who == "pass" else b""
    closing = {"/coded"} if case == "gzip-alone" else set()
    async with RawOrigin({"/coded": answer}, close_after=closing) as raw:
        client = await sidecache(upstream_url=raw.url)
        async with client.connect() as connection:
            got = []
            for _ in range(2):
                await connection.send(b"GET /coded HTTP/1.1\r\n" + HOST + cookie + b"\r\n")
                got.append(await connection.response())

    for response in got:
        assert response.status == 502
        assert response.body.startswith(b"502 Bad Gateway"), response.body
        assert GZIPPED not in response.body
        assert response.header("Content-Encoding") is None
    assert raw.targets == ["/coded", "/coded"]  # the second was not answered from a store


# --- fault 13: Transfer-Encoding in an HTTP/1.0 request -------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_an_http10_request_with_transfer_encoding_is_400_and_closed(
    client: Client, upstream: FakeUpstream, method: str
) -> None:
    """RFC 9112 §6.1: a server that receives an HTTP/1.0 message with Transfer-Encoding must
    treat it as faulty framing and close the connection after it (HTTP/1.0 has no chunked: an
    intermediary between may read the body otherwise, which is how requests are smuggled).
    nginx answers 400; so does sidecache, and nothing reaches the upstream."""
    data = (
        f"{method} /upload HTTP/1.0\r\n".encode()
        + HOST
        + b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"5\r\nhello\r\n0\r\n\r\n"
        + b"GET /after HTTP/1.0\r\n"
        + HOST
        + b"Connection: keep-alive\r\n\r\n"
    )
    async with client.connect() as connection:
        await connection.send(data)
        answer = await connection.response()
        rest = await rest_of_stream(connection)

    assert answer.status == 400
    assert answer.header("Connection") != "keep-alive"
    assert rest == b""  # closed: /after was never answered
    assert upstream.seen == []


# --- fault 14: an upstream status below 100 -------------------------------------------------

FORGED = b"HTTP/1.1 200 OK\r\nX-Forged: 1\r\nContent-Length: 6\r\n\r\nforged"


@pytest.mark.parametrize("status", [b"099", b"000"])
@pytest.mark.parametrize("who", ["fill", "pass"])
async def test_an_upstream_status_below_100_is_a_502(
    sidecache: StartProxy, origin: RawOrigin, status: bytes, who: str
) -> None:
    """RFC 9110 §15: a status code is three digits, 100 to 599. One below 100 has no framing
    the front could give it (it is not a status with a body, nor one without), so its body
    went to the client as raw bytes: here, a forged second response. Now: 502."""
    origin.answers["/odd"] = (
        b"HTTP/1.1 "
        + status
        + b" X\r\nContent-Length: %d\r\n\r\n%b"
        % (
            len(FORGED),
            FORGED,
        )
    )
    client = await sidecache(upstream_url=origin.url)
    cookie = PASS_COOKIE if who == "pass" else b""

    async with client.connect() as connection:
        await connection.send(b"GET /odd HTTP/1.1\r\n" + HOST + cookie + b"\r\n")
        odd = await connection.response()
        await connection.send(b"GET /fine HTTP/1.1\r\n" + HOST + cookie + b"\r\n")
        following = await connection.response()
        rest = await rest_of_stream(connection, 0.2)

    assert odd.status == 502
    assert odd.body.startswith(b"502 Bad Gateway"), odd.body
    assert (following.status, following.body, following.header("X-Forged")) == (200, b"fine", None)
    assert b"forged" not in rest
    assert origin.targets == ["/odd", "/fine"]


# --- malformed chunked request bodies -------------------------------------------------------

BAD_CHUNKS = {
    "bare-lf-in-extension": b"5;ext=1\nhello\r\n0\r\n\r\n",
    "bare-lf-after-size": b"5\nhello\r\n0\r\n\r\n",
    "invalid-size": b"5x\r\nhello\r\n0\r\n\r\n",
    "overflowing-size": b"10000000000000000\r\nhello\r\n0\r\n\r\n",
    "bad-terminator": b"5\r\nhelloXX0\r\n\r\n",
    "bare-lf-after-data": b"5\r\nhello\n0\r\n\r\n",
}
UPLOAD = b"POST /upload HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("case", BAD_CHUNKS)
@pytest.mark.parametrize("when", ["with-the-head", "after-forwarding-began"])
async def test_a_malformed_chunked_body_is_400_then_closed(
    client: Client, upstream: FakeUpstream, case: str, when: str
) -> None:
    """RFC 9112 §7.1: a chunked body that breaks the grammar (a bare LF, a size that is not
    hex or overflows, a chunk not followed by CRLF) is malformed framing; as for a malformed
    head (§2.2, 400), the client is told `400 Bad Request` and the connection closed, when no
    response was under way yet; it was closed silently. The upstream never gets the request
    whole: nothing when the body was bad before forwarding began, a cut-off upload after."""
    async with client.connect() as connection:
        if when == "with-the-head":
            await connection.send(UPLOAD + BAD_CHUNKS[case])
        else:
            await connection.send(UPLOAD + b"3\r\nabc\r\n")
            await eventually(lambda: bool(upstream.to("/upload")))
            await connection.send(BAD_CHUNKS[case])
        answer = await connection.response()
        closed = await closed_by_peer(connection)

    assert answer.status == 400
    assert answer.header("Connection") == "close"
    assert answer.body.startswith(b"400 ")
    assert closed
    if when == "with-the-head":
        assert upstream.seen == []
    else:
        await eventually(lambda: upstream.active == 0)
        assert [(s.path, s.complete) for s in upstream.seen] == [("/upload", False)]


# --- HTTP/0.9 --------------------------------------------------------------------------------

SIMPLE_REQUESTS = {  # the pieces are sent one by one
    "line-only": [b"GET /\r\n"],  # an HTTP/0.9 client sends this and waits
    "line-split-before-lf": [b"GET /", b"\r", b"\n"],
    "line-then-header": [b"GET /\r\nHost: a\r\n"],
    "line-then-headers": [b"GET /\r\nHost: a\r\nAccept: */*\r\n"],
    "line-then-blank": [b"GET /\r\n\r\n"],
    "bare-lf": [b"GET /\n"],
}


@pytest.mark.parametrize("case", SIMPLE_REQUESTS)
async def test_an_http09_request_line_is_refused_at_once(
    client: Client, upstream: FakeUpstream, case: str
) -> None:
    """RFC 9112 §2.3 / RFC 9110 §2.5: a request line without HTTP-version is HTTP/0.9, which
    sidecache does not speak. nginx acts on such a line the moment it ends (no header is read:
    it serves a 0.9 GET with a bare body and closes, and refuses any other method with 400);
    sidecache, which serves no 0.9, refuses it at once: 400, then close, instead of waiting
    header_timeout (10 s) for a head that will never end."""
    async with client.connect() as connection:
        for piece in SIMPLE_REQUESTS[case]:
            await connection.send(piece)
            await asyncio.sleep(0.02)
        answer = await asyncio.wait_for(connection.response(), 1.0)
        closed = await closed_by_peer(connection, 1.0)

    assert answer.status == 400
    assert answer.header("Connection") in ("close", None)  # None: answering a whole 0.9 head
    assert closed
    assert upstream.seen == []
