"""Helpers for the in-process integration tests.

- `FakeUpstream`: a real aiohttp.web app that records every request it receives (method, raw
  target, header pairs, body) and answers each path as a test programs it with a `Reply`.
- `Client`: an aiohttp client session aimed at one running proxy, plus raw-socket exchanges for
  what aiohttp's client would tidy up (chunked uploads, odd targets, malformed request lines).
- `FakeClock`: the proxy's injected clock; tests move it instead of sleeping.

Every wait is bounded: a hung proxy fails a test, it never stalls the suite.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.server import Proxy

Pairs = list[tuple[str, str]]
WAIT = 5.0  # seconds: the longest any single step of a test may take


# --- what the upstream saw -----------------------------------------------------------------


@dataclass
class Seen:
    """One request as the fake upstream received it (the body grows while it arrives)."""

    method: str
    target: str
    headers: Pairs
    body: bytes = b""
    complete: bool = False
    peer: tuple[str, int] = ("", 0)  # the proxy's end of the upstream connection

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return ", ".join(values) if values else None


@dataclass
class Reply:
    """How the fake upstream answers one path (or one exact target).

    The default is a 200 text/plain whose body names the request and its ordinal on that path
    (`GET /x #2`), so an answer fresh from the upstream can be told from a stored one.
    """

    status: int = 200
    headers: Pairs = field(default_factory=list)
    body: bytes | None = None  # None: the default body above
    chunks: list[bytes] | None = None  # sent with chunked framing, one write per item
    delay: float = 0.0  # before the status line
    chunk_delay: float = 0.0  # before every chunk after the first
    gate: asyncio.Event | None = None  # awaited before the second chunk
    die_after: int | None = None  # close the connection after this many body bytes
    reset: bool = False  # close the connection before sending any response byte
    echo: bool = False  # body: JSON of what the upstream received
    gzip: bool = False  # gzip the body when the request accepts gzip (a well-behaved origin)
    # Answer 304 (with these headers, no body) when the request's If-None-Match names the
    # reply's ETag, or its If-Modified-Since is not before the reply's Last-Modified.
    conditional: bool = False


class FakeUpstream:
    """The origin behind the proxy: records requests, answers as programmed."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.replies: dict[str, Reply] = {}
        self.url = ""
        self.active = 0  # requests being answered now
        self.most_active = 0  # the most answered at once
        self._closing = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def on(self, path: str, reply: Reply | None = None, **fields: Any) -> Reply:
        """Program the answer for `path` (or an exact target with a query)."""
        self.replies[path] = reply if reply is not None else Reply(**fields)
        return self.replies[path]

    def to(self, path: str) -> list[Seen]:
        """Requests received for `path` (query ignored)."""
        return [seen for seen in self.seen if seen.path == path]

    def release(self) -> None:
        """Wake every sleeping handler so that shutdown never waits for a delay to run out."""
        self._closing.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return await self._answer(request)
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.raw_path, _pairs(request.raw_headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.peer = tuple(peer[:2]) if isinstance(peer, tuple) else ("", 0)
        self.seen.append(seen)
        async for chunk in request.content.iter_any():
            seen.body += chunk
        seen.complete = True
        reply = self.replies.get(seen.target) or self.replies.get(seen.path) or Reply()
        if reply.reset or (reply.delay and await self._nap(reply.delay)):
            return _hang_up(request, web.Response())
        headers = CIMultiDict(reply.headers)
        if reply.conditional and _current(seen, headers):
            not_modified = web.StreamResponse(status=304, headers=headers)
            await not_modified.prepare(request)
            await not_modified.write_eof()
            return not_modified
        headers.setdefault("Content-Type", "text/plain")
        body = self._body(reply, seen)
        if reply.gzip and "gzip" in (seen.header("Accept-Encoding") or ""):
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        if reply.gzip:
            headers["Vary"] = "Accept-Encoding"
        response = web.StreamResponse(status=reply.status, headers=headers)
        if reply.chunks is not None:
            return await self._send_chunks(request, response, reply)
        response.content_length = len(body)
        await response.prepare(request)
        if request.method != "HEAD":
            if reply.die_after is not None:
                await response.write(body[: reply.die_after])
                return _hang_up(request, response)
            await response.write(body)
        await response.write_eof()
        return response

    async def _send_chunks(
        self, request: web.Request, response: web.StreamResponse, reply: Reply
    ) -> web.StreamResponse:
        assert reply.chunks is not None
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        for index, chunk in enumerate(reply.chunks):
            if index and reply.chunk_delay and await self._nap(reply.chunk_delay):
                return _hang_up(request, response)
            if index == 1 and reply.gate is not None:
                await asyncio.wait_for(reply.gate.wait(), WAIT)
            await response.write(chunk)
            sent += len(chunk)
            if reply.die_after is not None and sent >= reply.die_after:
                return _hang_up(request, response)
        await response.write_eof()
        return response

    def _body(self, reply: Reply, seen: Seen) -> bytes:
        if reply.echo:
            received = {
                "method": seen.method,
                "target": seen.target,
                "headers": seen.headers,
                "body": seen.body.decode("latin-1"),
            }
            return json.dumps(received).encode()
        if reply.body is not None:
            return reply.body
        return f"{seen.method} {seen.target} #{len(self.to(seen.path))}".encode()

    async def _nap(self, seconds: float) -> bool:
        """Sleep `seconds`; True when the test is over and the handler should give up."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _current(seen: Seen, headers: CIMultiDict[str]) -> bool:
    """The origin's own conditional check: the client's copy is the current one."""
    none_match, etag = seen.header("If-None-Match"), headers.get("ETag")
    if none_match is not None:
        return etag is not None and etag in [t.strip() for t in none_match.split(",")]
    since, modified = seen.header("If-Modified-Since"), headers.get("Last-Modified")
    if since is None or modified is None:
        return False
    return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)


def _pairs(raw: tuple[tuple[bytes, bytes], ...]) -> Pairs:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]


def _hang_up(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Close the connection (after flushing what was written); aiohttp then sends nothing more."""
    if request.transport is not None:
        request.transport.close()
    return response


# --- the client side -----------------------------------------------------------------------


@dataclass
class Got:
    """A whole response as the client received it."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def x_cache(self) -> str | None:
        return self.headers.get("X-Cache")

    @property
    def cache_status(self) -> str | None:
        return self.headers.get("Cache-Status")


class Client:
    """An aiohttp client session aimed at one proxy: no cookie jar, no decompression."""

    def __init__(self, proxy: Proxy, session: aiohttp.ClientSession) -> None:
        self.proxy = proxy
        self.session = session
        self.port = proxy.port

    def url(self, target: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}{target}", encoded=True)

    async def fetch(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | Pairs | None = None,
        data: Any = None,
    ) -> Got:
        async with self.session.request(
            method, self.url(target), headers=headers, data=data, allow_redirects=False
        ) as response:
            body = await response.read()
            return Got(response.status, response.headers, body)

    async def get(self, target: str, headers: dict[str, str] | Pairs | None = None) -> Got:
        return await self.fetch("GET", target, headers)

    async def head(self, target: str, headers: dict[str, str] | Pairs | None = None) -> Got:
        return await self.fetch("HEAD", target, headers)

    async def raw(self, data: bytes) -> RawResponse:
        """Send `data` on a fresh connection and read one response."""
        async with RawConnection(self.port) as connection:
            await connection.send(data)
            return await connection.response()

    def connect(self) -> RawConnection:
        return RawConnection(self.port)


def open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        timeout=aiohttp.ClientTimeout(total=WAIT),
    )


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: Pairs
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return ", ".join(values) if values else None


class RawConnection:
    """A plain TCP connection to the proxy, for bytes aiohttp's client would not send."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawConnection:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), WAIT
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def response(self, *, head: bool = False) -> RawResponse:
        assert self.reader is not None
        return await asyncio.wait_for(_read_response(self.reader, head), WAIT)


async def _read_response(reader: asyncio.StreamReader, head: bool) -> RawResponse:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    _, _, status_and_reason = lines[0].partition(" ")
    status, _, reason = status_and_reason.partition(" ")
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:] if line)]
    response = RawResponse(int(status), reason, headers, b"")
    if head or response.status in (204, 304) or response.status < 200:  # no body (RFC 9112 §6.3)
        return response
    if "chunked" in (response.header("Transfer-Encoding") or "").lower():
        response.body = await _read_chunked(reader)
    elif response.header("Content-Length") is not None:
        response.body = await reader.readexactly(int(response.header("Content-Length") or 0))
    else:
        response.body = await reader.read()
    return response


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


# --- time and waiting ----------------------------------------------------------------------


class FakeClock:
    """The proxy's clock (monotonic seconds); tests advance it instead of sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(check: Callable[[], bool], within: float = WAIT) -> None:
    """Wait until `check()` holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


async def timed(awaitable: Awaitable[Any]) -> tuple[Any, float]:
    """The result of `awaitable` and the seconds it took."""
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


# --- identities ----------------------------------------------------------------------------


def flask_session(payload: dict[str, Any], *, compress: bool = False) -> str:
    """A Flask session cookie value as the app would set it (timestamp and signature faked)."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    data = zlib.compress(raw) if compress else raw
    segment = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return ("." if compress else "") + segment + ".Z0x1Aw.kq3Hn8Lw2Vb1-Zx_r0T9sE4mQpU"


class LoopbackServer:
    """A raw TCP origin on 127.0.0.1 for a test, used with `async with` (its `url` set on
    entry); a subclass (a dataclass with `url` and `_server` fields) answers in `_serve`."""

    url: str
    _server: asyncio.Server | None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), WAIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
