"""The lean HTTP/1.1 front (proxy/http1.py), over real sockets.

Issue 3, "A lean front": everything aiohttp.web's server gave us stays true: keep-alive and
HTTP/1.0 close semantics, pipelined requests answered in order, request bodies streamed
upstream, `Expect: 100-continue`, flow control both ways, limits, 400 and close on malformed
input, client disconnects cancelling the upstream exchange, Upgrade refused or ignored, hits
byte-identical, and a Date on every response (RFC 9110 §6.6.1).

Each test checks both ends: what the client received, and what the upstream saw. Where the
aiohttp fake upstream cannot behave as needed (count bytes it wrote, stop reading a body,
notice a closed connection, answer without Date) a small raw origin (`Origin`) stands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import pytest

from .conftest import StartProxy
from .support import (
    WAIT,
    Client,
    FakeClock,
    FakeUpstream,
    RawConnection,
    RawResponse,
    eventually,
)

KIB = 1024
MIB = 1024 * KIB
HOST = b"Host: example.com\r\n"
PASS_COOKIE = b"Cookie: remember_token=1\r\n"  # a logged-in visitor: the default rule passes
ACCESS = "sidecache.access"


# --- helpers -------------------------------------------------------------------------------


def request(
    method: str, target: str, *extra: bytes, version: bytes = b"HTTP/1.1", body: bytes = b""
) -> bytes:
    """One request's bytes; `extra` are whole header lines. A body gets a Content-Length."""
    line = f"{method} {target} ".encode() + version + b"\r\n"
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return line + HOST + b"".join(extra) + length + b"\r\n" + body


def chunked(*parts: bytes) -> bytes:
    """`parts` in chunked framing, terminated."""
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def closed_by_peer(connection: RawConnection) -> bool:
    """True when the proxy closed the connection: a read returns EOF (or a reset)."""
    assert connection.reader is not None
    try:
        data = await asyncio.wait_for(connection.reader.read(1), WAIT)
    except ConnectionResetError:
        return True
    return data == b""


def without(headers: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() != name.lower()]


_ACCESS_LINE = re.compile(r'"(\S+) (\S+) HTTP/\S+" (\d+) (\w+) \d+ \d+us rule=\S+ detail=(\S+)$')


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int, str, str]]:
    """(method, target, status, cache, detail) of every access-log line so far."""
    found = []
    for record in caplog.records:
        if record.name == ACCESS:
            match = _ACCESS_LINE.search(record.getMessage())
            assert match is not None, record.getMessage()
            method, target, status, cache, detail = match.groups()
            found.append((method, target, int(status), cache, detail))
    return found


@dataclass
class Head:
    """A request head as a raw origin received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next request head on an origin connection; None at EOF."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = raw.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:] if line)]
    return Head(method, target, headers)


async def read_body(reader: asyncio.StreamReader, head: Head) -> bytes:
    """A whole request body (Content-Length or chunked) as an origin receives it."""
    if "chunked" in (head.header("Transfer-Encoding") or "").lower():
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        return body
    return await reader.readexactly(int(head.header("Content-Length") or 0))


Answer = Callable[[Head, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Origin:
    """A raw HTTP/1.1 origin on 127.0.0.1: `answer` serves each request of each connection
    (keep-alive: it must frame its responses). It records the request heads it received."""

    answer: Answer
    rcvbuf: int | None = None  # SO_RCVBUF of accepted connections (set before listen)
    heads: list[Head] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def __aenter__(self) -> Origin:
        sock = socket.socket()
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._serve, sock=sock)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), WAIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while (head := await read_head(reader)) is not None:
                self.heads.append(head)
                await self.answer(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the proxy hung up mid-exchange
        finally:
            writer.close()


async def until_eof(reader: asyncio.StreamReader) -> None:
    """Wait (bounded) until the proxy closes this origin connection."""
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(64 * KIB), 2 * WAIT):
            pass


# --- 1. keep-alive and HTTP/1.0 close semantics ---------------------------------------------


async def test_an_http11_connection_serves_requests_until_connection_close(
    client: Client, upstream: FakeUpstream
) -> None:
    async with client.connect() as connection:
        answers: list[RawResponse] = []
        for data in (
            request("GET", "/ka"),
            request("GET", "/ka"),
            request("POST", "/form", body=b"a=1"),
            request("GET", "/other"),
        ):
            await connection.send(data)
            answers.append(await connection.response())
        await connection.send(request("GET", "/bye", b"Connection: close\r\n"))
        last = await connection.response()
        closed = await closed_by_peer(connection)

    got = [(a.status, a.header("X-Cache"), a.body, a.header("Connection")) for a in answers]
    assert got == [
        (200, "MISS", b"GET /ka #1", None),
        (200, "HIT", b"GET /ka #1", None),
        (200, "PASS", b"POST /form #1", None),
        (200, "MISS", b"GET /other #1", None),
    ]
    assert (last.status, last.body, last.header("Connection")) == (200, b"GET /bye #1", "close")
    assert closed
    assert [(s.method, s.target, s.body) for s in upstream.seen] == [
        ("GET", "/ka", b""),
        ("POST", "/form", b"a=1"),
        ("GET", "/other", b""),
        ("GET", "/bye", b""),
    ]
    assert all("keep-alive" not in (s.header("Connection") or "") for s in upstream.seen)


PERSISTENCE = {
    # version, the Connection header sent, stays open, the Connection header answered
    "1.1": (b"HTTP/1.1", b"", True, None),
    "1.1-close": (b"HTTP/1.1", b"Connection: close\r\n", False, "close"),
    "1.0": (b"HTTP/1.0", b"", False, None),
    "1.0-keep-alive": (b"HTTP/1.0", b"Connection: keep-alive\r\n", True, "keep-alive"),
    "1.0-close": (b"HTTP/1.0", b"Connection: close\r\n", False, None),
}


@pytest.mark.parametrize("via", ["miss", "hit", "pass"])
@pytest.mark.parametrize("case", PERSISTENCE)
async def test_persistence_follows_the_version_and_connection_header(
    client: Client, upstream: FakeUpstream, case: str, via: str
) -> None:
    version, sent, stays_open, answered = PERSISTENCE[case]
    if via == "hit":
        assert (await client.get("/page", {"Host": "example.com"})).x_cache == "MISS"
    extra = (sent, PASS_COOKIE) if via == "pass" else (sent,)

    async with client.connect() as connection:
        await connection.send(request("GET", "/page", *extra, version=version))
        answer = await connection.response()
        if stays_open:
            await connection.send(request("GET", "/next", sent, version=version))
            following = await connection.response()
            assert (following.status, following.body) == (200, b"GET /next #1")
        else:
            assert await closed_by_peer(connection)

    assert answer.status == 200
    assert answer.header("X-Cache") == via.upper()
    assert answer.body == b"GET /page #1"
    assert answer.header("Content-Length") == str(len(answer.body))  # sized, not close-ended
    assert answer.values("Connection") == ([answered] if answered else [])
    assert len(upstream.to("/page")) == 1
    assert len(upstream.to("/next")) == (1 if stays_open else 0)


# --- 2. pipelining -------------------------------------------------------------------------


async def test_pipelined_requests_are_answered_whole_and_in_order(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/slow", delay=0.3)  # the first answer takes longest
    assert (await client.get("/hit", {"Host": "example.com"})).x_cache == "MISS"
    form = os.urandom(3000)
    burst = b"".join(
        [
            request("GET", "/slow"),
            request("GET", "/hit"),
            request("POST", "/form", PASS_COOKIE, body=form),
            request("GET", "/miss"),
            request("PUT", "/upload", b"Transfer-Encoding: chunked\r\n")
            + chunked(b"x" * 10, b"y" * 20),
            request("HEAD", "/hit"),
            request("GET", "/last"),
        ]
    )
    upstream.on("/form", echo=True)

    async with client.connect() as connection:
        await connection.send(burst)  # one write
        answers = [await connection.response() for _ in range(5)]
        head = await connection.response(head=True)
        answers.append(await connection.response())

    got = [(a.status, a.header("X-Cache"), a.body) for a in answers]
    assert got[:2] == [(200, "MISS", b"GET /slow #1"), (200, "HIT", b"GET /hit #1")]
    assert got[2][:2] == (200, "PASS")
    assert got[2][2].startswith(b'{"method": "POST", "target": "/form"')
    assert got[3:] == [
        (200, "MISS", b"GET /miss #1"),
        (200, "PASS", b"PUT /upload #1"),
        (200, "MISS", b"GET /last #1"),
    ]
    assert (head.status, head.header("X-Cache")) == (200, "HIT")
    assert head.header("Content-Length") == str(len(b"GET /hit #1"))
    assert [(s.method, s.path) for s in upstream.seen] == [
        ("GET", "/hit"),
        ("GET", "/slow"),
        ("POST", "/form"),
        ("GET", "/miss"),
        ("PUT", "/upload"),
        ("GET", "/last"),
    ]
    assert upstream.to("/form")[0].body == form
    assert upstream.to("/upload")[0].body == b"x" * 10 + b"y" * 20


async def test_a_long_pipeline_from_a_client_not_reading_is_answered_in_order(
    client: Client, upstream: FakeUpstream
) -> None:
    # More requests than the front queues (it stops reading at 16) and more response bytes
    # than the socket buffers hold while the client does not read: reading must resume.
    pages = {"/a": os.urandom(40 * KIB), "/b": os.urandom(40 * KIB)}
    for path, page in pages.items():
        upstream.on(path, body=page)
        assert (await client.get(path, {"Host": "example.com"})).body == page
    order = ["/a", "/b", "/b", "/a"] * 50 + ["/c"]

    async with client.connect() as connection:
        await connection.send(b"".join(request("GET", path) for path in order))
        await asyncio.sleep(0.3)
        answers = [await connection.response() for _ in order]

    assert [a.body for a in answers[:-1]] == [pages[path] for path in order[:-1]]
    assert {a.header("X-Cache") for a in answers[:-1]} == {"HIT"}
    assert (answers[-1].header("X-Cache"), answers[-1].body) == ("MISS", b"GET /c #1")
    assert [s.path for s in upstream.seen] == ["/a", "/b", "/c"]


# --- 3. request bodies stream upstream -----------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_request_body_reaches_the_upstream_intact_and_streamed(
    client: Client, upstream: FakeUpstream, framing: str
) -> None:
    body = os.urandom(2 * MIB + 123)
    first, rest = body[: 700 * KIB], body[700 * KIB :]
    if framing == "content-length":
        head = request("PUT", "/file", b"Content-Length: %d\r\n" % len(body))
        part1, part2 = first, rest
    else:
        head = request("PUT", "/file", b"Transfer-Encoding: chunked\r\n")
        part1 = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (first[:1000], first[1000:]))
        part2 = chunked(rest[:5], rest[5:])

    async with client.connect() as connection:
        await connection.send(head + part1)
        await eventually(lambda: bool(upstream.seen) and len(upstream.seen[0].body) >= len(first))
        early = upstream.seen[0].complete
        await connection.send(part2)
        answer = await connection.response()

    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "PASS", b"PUT /file #1")
    assert not early  # the upstream had the first part before the client sent the rest
    seen = upstream.seen[0]
    assert seen.complete
    assert hashlib.sha256(seen.body).hexdigest() == hashlib.sha256(body).hexdigest()
    if framing == "content-length":
        assert seen.values("Content-Length") == [str(len(body))]
    else:
        assert seen.values("Transfer-Encoding") == ["chunked"]


# --- 4. Expect: 100-continue ---------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    client: Client, upstream: FakeUpstream, framing: str
) -> None:
    body = os.urandom(100 * KIB)
    expect = b"Expect: 100-continue\r\n"
    if framing == "content-length":
        head = request("PUT", "/put", expect, b"Content-Length: %d\r\n" % len(body))
        payload = body
    else:
        head = request("PUT", "/put", expect, b"Transfer-Encoding: chunked\r\n")
        payload = chunked(body[:1], body[1:])

    async with client.connect() as connection:
        await connection.send(head)  # the head only: the client waits for 100 Continue
        interim = await connection.response(head=True)
        await connection.send(payload)
        answer = await connection.response()
        await connection.send(request("GET", "/after"))
        after = await connection.response()

    assert (interim.status, interim.reason, interim.headers) == (100, "Continue", [])
    assert (answer.status, answer.header("X-Cache"), answer.body) == (200, "PASS", b"PUT /put #1")
    assert (after.status, after.body) == (200, b"GET /after #1")
    seen = upstream.to("/put")[0]
    assert seen.complete
    assert seen.body == body
    assert "expect" not in seen.names  # the proxy answered it; the upstream is not asked again


async def test_an_http10_request_is_not_sent_100_continue(
    client: Client, upstream: FakeUpstream
) -> None:
    # RFC 9110 §10.1.1: a server must not send 100 Continue to an HTTP/1.0 client.
    data = request("PUT", "/old", b"Expect: 100-continue\r\n", version=b"HTTP/1.0", body=b"hello")

    async with client.connect() as connection:
        await connection.send(data)
        answer = await connection.response()

    assert (answer.status, answer.body) == (200, b"PUT /old #1")
    assert upstream.to("/old")[0].body == b"hello"


# --- 5. flow control -----------------------------------------------------------------------


async def settled(count: Callable[[], int], quiet: float = 0.4) -> int:
    """`count()` once it has stopped growing for `quiet` seconds (bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"still growing after {WAIT}s: {last}"
        await asyncio.sleep(0.05)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last


def block(index: int) -> bytes:
    """The `index`th 64 KiB block of a large body: distinct, so a reordering would show."""
    return index.to_bytes(8, "big") * (8 * KIB)


@pytest.mark.parametrize("via", ["pass", "fill"])
async def test_a_slow_client_holds_the_upstream_back(sidecache: StartProxy, via: str) -> None:
    # The fill is far over item_size: streamed, not stored, and held back just the same.
    blocks = 800  # 50 MiB
    written = [0]

    async def answer(
        head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KIB)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (blocks * 64 * KIB))
        for index in range(blocks):
            writer.write(block(index))
            await writer.drain()
            written[0] += 64 * KIB

    async with Origin(answer) as origin:
        proxy = await sidecache(upstream_url=origin.url)
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", proxy.port)), WAIT)
            cookie = PASS_COOKIE if via == "pass" else b""
            await loop.sock_sendall(sock, request("GET", "/video", cookie))
            # The client reads nothing: the upstream must stall once the buffers are full.
            held = await settled(lambda: written[0])
            received, digest, head = 0, hashlib.sha256(), b""
            while b"\r\n\r\n" not in head:
                head += await asyncio.wait_for(loop.sock_recv(sock, 4096), WAIT)
            head, _, start = head.partition(b"\r\n\r\n")
            digest.update(start)
            received = len(start)
            deadline = time.monotonic() + 2 * WAIT
            while received < blocks * 64 * KIB and time.monotonic() < deadline:
                data = await asyncio.wait_for(loop.sock_recv(sock, MIB), WAIT)
                if not data:
                    break
                digest.update(data)
                received += len(data)

    expected = hashlib.sha256(b"".join(block(i) for i in range(blocks))).hexdigest()
    # Kernel socket buffers (tcp_rmem/wmem, up to 32 MiB here) hold some; the proxy must not
    # hold the rest of the 50 MiB. 24 MiB leaves room for a loaded machine (13 MiB was seen).
    assert 0 < held < 24 * MIB, f"the upstream wrote {held / MIB:.1f} MiB to a client not reading"
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nX-Cache: %b\r\n" % via.replace("fill", "miss").upper().encode() in head + b"\r\n"
    assert (received, digest.hexdigest()) == (blocks * 64 * KIB, expected)
    assert written[0] == blocks * 64 * KIB
    assert [h.target for h in origin.heads] == ["/video"]


async def test_an_upload_to_an_upstream_not_reading_holds_the_client_back(
    sidecache: StartProxy,
) -> None:
    size = 40 * MIB
    body = os.urandom(size)
    gate = asyncio.Event()
    received: list[bytes] = []

    async def answer(
        head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await asyncio.wait_for(gate.wait(), 3 * WAIT)  # read nothing of the body until then
        received.append(await asyncio.wait_for(read_body(reader, head), WAIT))
        digest = hashlib.sha256(received[-1]).hexdigest().encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(digest), digest))
        await writer.drain()

    async with Origin(answer, rcvbuf=64 * KIB) as origin:
        proxy = await sidecache(upstream_url=origin.url, upstream={"read_timeout": "10s"})
        async with proxy.connect() as connection:
            assert connection.writer is not None
            connection.writer.write(request("PUT", "/upload", body=body))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(connection.writer.drain(), 1.0)
            pending = connection.writer.transport.get_write_buffer_size()
            heads = list(origin.heads)
            gate.set()
            await asyncio.wait_for(connection.writer.drain(), 2 * WAIT)
            answer_ = await connection.response()

    absorbed = size - pending  # what the proxy and the kernel took while the upstream waited
    assert absorbed < 24 * MIB, f"the proxy took {absorbed / MIB:.1f} MiB of a stalled upload"
    assert [(h.method, h.target) for h in heads] == [("PUT", "/upload")]
    assert (answer_.status, answer_.header("X-Cache")) == (200, "PASS")
    assert answer_.body == hashlib.sha256(body).hexdigest().encode()
    assert len(received) == 1 and len(received[0]) == size


# --- 6. limits and malformed input ---------------------------------------------------------

LIMITS = {
    # the request, the status expected (200: served, the boundary case)
    "target-8190": (request("GET", "/" + "a" * 8189), 200),
    "target-8191": (request("GET", "/" + "a" * 8190), 414),
    # a field's size is its name and value (without ": " and CRLF), as aiohttp counted it
    "field-8190": (request("GET", "/f", b"X-Big: " + b"v" * (8190 - 5) + b"\r\n"), 200),
    "field-8191": (request("GET", "/f", b"X-Big: " + b"v" * (8191 - 5) + b"\r\n"), 431),
    "name-8191": (request("GET", "/f", b"X-" + b"n" * 8189 + b": v\r\n"), 431),
    "128-fields": (request("GET", "/f", *(b"X-H%d: v\r\n" % i for i in range(127))), 200),
    "129-fields": (request("GET", "/f", *(b"X-H%d: v\r\n" % i for i in range(128))), 431),
    "not-http": (b"GARBAGE\r\n\r\n", 400),
    "bad-version": (b"GET / HTTP/9.9\r\n" + HOST + b"\r\n", 400),
    "bad-protocol": (b"GET / FOO/1.1\r\n" + HOST + b"\r\n", 400),
    "extra-token": (b"GET / HTTP/1.1 x\r\n" + HOST + b"\r\n", 400),
    "space-in-target": (b"GET /a b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "binary": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", LIMITS)
async def test_limits_and_malformed_requests(
    client: Client, upstream: FakeUpstream, case: str
) -> None:
    data, status = LIMITS[case]

    async with client.connect() as bystander, client.connect() as connection:
        await connection.send(data)
        answer = await connection.response()
        closed = status != 200 and await closed_by_peer(connection)
        await bystander.send(request("GET", "/bystander"))
        other = await bystander.response()
    fresh = await client.get("/fresh", {"Host": "example.com"})

    assert answer.status == status
    assert len(answer.values("Date")) == 1
    if status == 200:
        assert len(upstream.seen) == 3
        assert upstream.seen[0].target == data.split(b" ")[1].decode()
    else:
        assert closed  # the connection is closed after the error
        assert answer.header("Connection") == "close"
        assert answer.body.startswith(b"%d " % status)
        assert [s.path for s in upstream.seen] == ["/bystander", "/fresh"]
    assert (other.status, other.body) == (200, b"GET /bystander #1")
    assert (fresh.status, fresh.body) == (200, b"GET /fresh #1")


OVERLONG = {
    # the start of a head, then 1 MiB (128 times the limit) of the part that is too long
    "target": (b"GET /", b"a", 414),
    "field-value": (b"GET / HTTP/1.1\r\n" + HOST + b"X-Big: ", b"v", 431),
    "field-name": (b"GET / HTTP/1.1\r\n" + HOST + b"X-", b"n", 431),
    "field-count": (b"GET / HTTP/1.1\r\n" + HOST, b"X-Many: v\r\n", 431),
}


@pytest.mark.parametrize("case", OVERLONG)
async def test_an_oversized_head_is_refused_while_it_is_still_arriving(
    client: Client, upstream: FakeUpstream, case: str
) -> None:
    # A limit bounds what the proxy reads and keeps: past it the proxy must answer (or at least
    # hang up), not go on buffering a request line or header that never ends. aiohttp's server
    # did so (it reset the connection after ~128 KiB).
    start, unit, status = OVERLONG[case]
    filler = unit * (MIB // len(unit))

    async with client.connect() as connection:
        assert connection.reader is not None and connection.writer is not None
        connection.writer.write(start + filler)  # the head never ends
        try:
            first = await asyncio.wait_for(connection.reader.read(64), 2.0)
        except ConnectionResetError:
            first = b""  # hung up with our bytes unread: acceptable, the proxy stopped reading
        except TimeoutError:
            pytest.fail(f"no answer within 2 s to a {case} 128 times over the limit")

    assert first == b"" or first.startswith(b"HTTP/1.1 %d " % status), first
    assert upstream.seen == []
    fresh = await client.get("/fresh", {"Host": "example.com"})
    assert (fresh.status, fresh.body) == (200, b"GET /fresh #1")


async def test_a_malformed_request_after_a_good_one_is_answered_in_turn_and_closes(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/first", delay=0.2)

    async with client.connect() as connection:
        await connection.send(request("GET", "/first") + b"NOT HTTP\r\n\r\n")
        first = await connection.response()
        second = await connection.response()
        closed = await closed_by_peer(connection)

    assert (first.status, first.body) == (200, b"GET /first #1")
    assert second.status == 400
    assert closed
    assert [s.path for s in upstream.seen] == ["/first"]


# --- 7. a client that leaves cancels the upstream exchange ---------------------------------

LEAVING = {
    # cookie (pass or fill), whether the origin starts the body, the access-log line expected
    "pass-waiting": (PASS_COOKIE, False, (499, "PASS", "client-gone")),
    "fill-waiting": (b"", False, (499, "MISS", "client-gone")),
    "fill-streaming": (b"", True, (200, "MISS", "incomplete")),
    "pass-streaming": (PASS_COOKIE, True, (200, "PASS", "incomplete")),
}


@pytest.mark.parametrize("case", LEAVING)
async def test_a_client_leaving_cancels_the_upstream_request(
    sidecache: StartProxy, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    cookie, streaming, expected = LEAVING[case]
    cut: list[float] = []

    async def answer(
        head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # The app is still working (2 s); it notices at once when the proxy hangs up.
        if streaming and head.target == "/work":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"a" * 1000)
            await writer.drain()
        try:
            await asyncio.wait_for(until_eof(reader), 2.0)
        except TimeoutError:
            body = b"late"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + body)
            return
        cut.append(time.monotonic())

    async with Origin(answer) as origin:
        client = await sidecache(upstream_url=origin.url)
        async with client.connect() as connection:
            await connection.send(request("GET", "/work", cookie))
            await eventually(lambda: len(origin.heads) == 1)
            if streaming:
                got = await connection.response(head=True)
                assert connection.reader is not None
                start = await asyncio.wait_for(connection.reader.readexactly(1000), WAIT)
                assert (got.status, start) == (200, b"a" * 1000)
        left = time.monotonic()  # the client has hung up
        await eventually(lambda: bool(cut), within=1.5)
        await eventually(lambda: bool(access_lines(caplog)))

    assert cut[0] - left < 1.0, f"the upstream request was cut {cut[0] - left:.2f}s later"
    status, cache, detail = expected
    assert access_lines(caplog) == [("GET", "/work", status, cache, detail)]
    assert [h.target for h in origin.heads] == ["/work"]


async def test_a_fill_cut_by_the_client_is_not_stored(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    gate = asyncio.Event()
    upstream.on("/cut", chunks=[b"a" * KIB, b"b" * KIB], gate=gate)

    async with client.connect() as connection:
        await connection.send(request("GET", "/cut"))
        await connection.response(head=True)
    await eventually(lambda: bool(access_lines(caplog)))
    gate.set()
    upstream.on("/cut")
    after = await client.get("/cut", {"Host": "example.com"})

    assert access_lines(caplog)[0] == ("GET", "/cut", 200, "MISS", "incomplete")
    assert (after.x_cache, after.body) == ("MISS", b"GET /cut #2")
    assert len(upstream.to("/cut")) == 2


# --- 8. Upgrade ----------------------------------------------------------------------------

WEBSOCKET = {
    "canonical": b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    "lower-case": b"upgrade: websocket\r\nconnection: upgrade\r\n",
    "upper-case": b"UPGRADE: websocket\r\nCONNECTION: Upgrade\r\n",
    "mixed-token": b"Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n",
}


@pytest.mark.parametrize("case", WEBSOCKET)
async def test_a_websocket_upgrade_is_refused_with_501_and_closed(
    client: Client, upstream: FakeUpstream, case: str
) -> None:
    handshake = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

    async with client.connect() as connection:
        await connection.send(request("GET", "/ws", WEBSOCKET[case], handshake))
        answer = await connection.response()
        assert (answer.status, answer.header("Connection")) == (501, "close"), answer
        assert await closed_by_peer(connection)

    assert answer.header("Upgrade") is None
    assert answer.body.startswith(b"501 ")
    assert upstream.seen == []


@pytest.mark.parametrize("writes", ["one-write", "two-writes"])
@pytest.mark.parametrize("via", ["fill", "pass"])
async def test_an_h2c_upgrade_is_ignored_and_served_as_http11(
    client: Client, upstream: FakeUpstream, via: str, writes: str
) -> None:
    offer = (
        b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n"
    )
    cookie = PASS_COOKIE if via == "pass" else b""
    first, second = request("GET", "/h2", offer, cookie), request("GET", "/next", cookie)

    async with client.connect() as connection:
        if writes == "one-write":
            await connection.send(first + second)
            answers = [await connection.response(), await connection.response()]
        else:
            await connection.send(first)
            answers = [await connection.response()]
            await connection.send(second)
            answers.append(await connection.response())

    # An upgrade offer is never a cacheable read (decide.py): it is passed, as HTTP/1.1.
    then = "PASS" if via == "pass" else "MISS"
    got = [(a.status, a.header("X-Cache"), a.body, a.header("Upgrade")) for a in answers]
    assert got == [(200, "PASS", b"GET /h2 #1", None), (200, then, b"GET /next #1", None)]
    reason = "upgrade" if via == "fill" else "authenticated"  # a logged-in visitor is passed
    assert f'detail="{reason}"' in (answers[0].header("Cache-Status") or "")
    assert [s.path for s in upstream.seen] == ["/h2", "/next"]
    assert not {"upgrade", "http2-settings"} & upstream.seen[0].names
    assert "upgrade" not in (upstream.seen[0].header("Connection") or "").lower()


# --- 9. hits -------------------------------------------------------------------------------


async def test_a_hit_is_byte_identical_across_requests(
    client: Client, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60"), ("X-App", "a")])
    async with client.connect() as connection:
        await connection.send(request("GET", "/page"))
        miss = await connection.response()
    hits: list[RawResponse] = []
    for advance in (1, 3):
        clock.advance(advance)
        async with client.connect() as connection:
            await connection.send(request("GET", "/page"))
            hits.append(await connection.response())

    assert miss.header("X-Cache") == "MISS"
    assert [h.header("X-Cache") for h in hits] == ["HIT", "HIT"]
    assert [h.header("Age") for h in hits] == ["1", "4"]
    assert without(hits[0].headers, "Age") == without(hits[1].headers, "Age")
    assert hits[0].body == hits[1].body == miss.body == b"GET /page #1"
    for hit in hits:
        assert len(hit.values("Date")) == 1
        assert len(hit.values("Content-Length")) == 1
        assert hit.header("X-App") == "a"
    assert hits[0].header("Date") == miss.header("Date")  # the stored response's Date
    assert len(upstream.seen) == 1


async def test_head_of_a_hit_has_the_get_length_and_no_body(
    client: Client, upstream: FakeUpstream
) -> None:
    page = os.urandom(5000)
    upstream.on("/page", body=page)
    assert (await client.get("/page", {"Host": "example.com"})).body == page

    async with client.connect() as connection:
        await connection.send(
            request("HEAD", "/page") + request("GET", "/page") + request("HEAD", "/page")
        )
        head = await connection.response(head=True)
        get = await connection.response()
        head2 = await connection.response(head=True)
        await connection.send(request("GET", "/other"))
        other = await connection.response()

    assert (head.status, head.header("X-Cache")) == (200, "HIT")
    assert head.header("Content-Length") == str(len(page))
    assert (get.status, get.header("X-Cache"), get.body) == (200, "HIT", page)
    assert (
        without(head.headers, "Age") == without(get.headers, "Age") == without(head2.headers, "Age")
    )
    assert (other.status, other.body) == (200, b"GET /other #1")  # nothing stray in between
    assert [(s.method, s.path) for s in upstream.seen] == [("GET", "/page"), ("GET", "/other")]


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
async def test_nothing_pipelined_after_a_hit_that_closes_is_answered(
    client: Client, upstream: FakeUpstream, version: bytes
) -> None:
    # A hit is answered as soon as its head is read; the requests after it in the same read
    # must still be dropped when it ends the connection.
    assert (await client.get("/page", {"Host": "example.com"})).x_cache == "MISS"
    close = b"Connection: close\r\n" if version == b"HTTP/1.1" else b""

    async with client.connect() as connection:
        await connection.send(
            request("GET", "/page", close, version=version)
            + request("GET", "/page")
            + request("GET", "/after")
        )
        hit = await connection.response()
        closed = await closed_by_peer(connection)

    assert (hit.status, hit.header("X-Cache"), hit.body) == (200, "HIT", b"GET /page #1")
    assert closed
    assert [s.path for s in upstream.seen] == ["/page"]


async def test_hits_wait_their_turn_behind_a_slow_request_on_the_connection(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.on("/slow", delay=0.3)
    assert (await client.get("/page", {"Host": "example.com"})).x_cache == "MISS"
    caplog.set_level(logging.INFO, logger=ACCESS)

    async with client.connect() as connection:
        await connection.send(request("GET", "/slow"))
        await eventually(lambda: len(upstream.to("/slow")) == 1)
        await connection.send(request("GET", "/page") + request("HEAD", "/page"))  # while busy
        answers = [await connection.response(), await connection.response()]
        answers.append(await connection.response(head=True))
        await connection.send(request("GET", "/page"))  # idle again
        answers.append(await connection.response())

    assert [(a.status, a.header("X-Cache")) for a in answers] == [
        (200, "MISS"),
        (200, "HIT"),
        (200, "HIT"),
        (200, "HIT"),
    ]
    assert [a.body for a in answers] == [b"GET /slow #1", b"GET /page #1", b"", b"GET /page #1"]
    assert [line[:4] for line in access_lines(caplog)] == [
        ("GET", "/slow", 200, "MISS"),
        ("GET", "/page", 200, "HIT"),
        ("HEAD", "/page", 200, "HIT"),
        ("GET", "/page", 200, "HIT"),
    ]


async def test_header_octets_that_are_not_utf8_pass_through_unchanged(
    sidecache: StartProxy,
) -> None:
    # RFC 9110 §5.5: field values may carry obs-text octets; a proxy relays them as they are
    # (cache-tests' conditional-etag-strong-respond-obs-text), in both directions, on a miss,
    # a hit and a 304 made from the stored ETag.
    async def answer(
        head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_body(reader, head)
        writer.write(
            b'HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: "abc\xfc"\r\n'
            b"X-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()

    async with Origin(answer) as origin:
        origin_rule = {"name": "origin", "action": "cache", "ttl": "origin"}
        client = await sidecache(upstream_url=origin.url, rules=[origin_rule])
        miss = await client.raw(request("GET", "/page", b"User-Agent: \xe9t\xe9\r\n"))
        hit = await client.raw(request("GET", "/page"))
        current = await client.raw(request("GET", "/page", b'If-None-Match: "abc\xfc"\r\n'))

    for got in (miss, hit):
        assert got.header("ETag") == '"abc\xfc"'  # the headers are read as latin-1: one octet
        assert got.header("X-Name") == "caf\xe9"
    assert [miss.header("X-Cache"), hit.header("X-Cache")] == ["MISS", "HIT"]
    assert (current.status, current.header("ETag")) == (304, '"abc\xfc"')
    assert origin.heads[0].header("User-Agent") == "\xe9t\xe9"


# --- 10. Date ------------------------------------------------------------------------------

ORIGIN_DATE = "Tue, 15 Nov 1994 08:12:31 GMT"


@pytest.mark.parametrize("via", ["miss", "hit", "pass", "error"])
@pytest.mark.parametrize("upstream_date", [True, False], ids=["with-date", "no-date"])
async def test_every_response_carries_one_date(
    sidecache: StartProxy, via: str, upstream_date: bool
) -> None:
    async def answer(
        head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_body(reader, head)
        if head.target == "/error":
            writer.close()  # no response at all: the proxy answers 502 itself
            return
        date = f"Date: {ORIGIN_DATE}\r\n".encode() if upstream_date else b""
        body = f"{head.method} {head.target}".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=60\r\n"
            + date
            + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()

    async with Origin(answer) as origin:
        client = await sidecache(upstream_url=origin.url)
        target = "/error" if via == "error" else "/dated"
        extra = PASS_COOKIE if via == "pass" else b""
        if via == "hit":
            assert (await client.raw(request("GET", target))).header("X-Cache") == "MISS"
        before = time.time()
        answer_ = await client.raw(request("GET", target, extra))
        after = time.time()

    expected = {"miss": "MISS", "hit": "HIT", "pass": "PASS", "error": "MISS"}[via]
    assert answer_.status == (502 if via == "error" else 200)
    assert answer_.header("X-Cache") == expected
    assert len(answer_.values("Date")) == 1
    date = answer_.values("Date")[0]
    if upstream_date and via != "error":
        assert date == ORIGIN_DATE  # the origin's Date is kept (RFC 9110 §6.6.1)
    else:
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", date), date
        assert before - 2 <= parsedate_to_datetime(date).timestamp() <= after + 1
    assert {h.target for h in origin.heads} == {target}
    if via != "error":
        assert len(origin.heads) == 1
