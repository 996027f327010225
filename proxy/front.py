"""The client-facing front over aiohttp's low-level server (`web.Server`, no app or router).

This is the one adapter that knows aiohttp's request and response objects: it builds the
`RequestView` and implements `ClientSide`. A leaner HTTP/1.1 front can replace it without
touching the handler or anything behind it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy.exchange import ClientGone, Outcome
from proxy.settings import Trust
from proxy.store import CachedResponse
from proxy.upstream import CHUNK
from proxy.view import Headers, RequestView, header_text, origin_form, request_problem

Handle = Callable[["AiohttpClient"], Awaitable[Outcome]]
LogAccess = Callable[[RequestView, Outcome, float], None]


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs a traceback for every malformed request it answers 400, so any client could
    flood the log with them. Keep one INFO line naming the peer and the problem instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            problem = (exc.message or "").strip().splitlines()[:1] or ["malformed request"]
            record.msg, record.args = "%s: 400 %s", (record.getMessage(), problem[0].strip())
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


server_log = logging.getLogger("sidecache.front")
server_log.addFilter(_OneLineBadRequests())


def build_view(request: web.BaseRequest, scheme: str, trust: Trust) -> RequestView:
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    # A unix-socket peer has no address (""); a connection already gone gets "-", which no
    # trust setting matches (even when unix peers are trusted).
    address = peer[0] if isinstance(peer, tuple) else "" if transport is not None else "-"
    raw = tuple((header_text(n), header_text(v)) for n, v in request.raw_headers)
    target, headers = origin_form(request.raw_path, raw)
    return RequestView(
        request.method,
        target,
        headers,
        peer=address,
        scheme=scheme,
        version=(request.version.major, request.version.minor),
        has_body=request.body_exists,
        trusted=trust.trusts(address),
    )


class AiohttpClient:
    """`ClientSide` for one aiohttp request."""

    def __init__(self, request: web.BaseRequest, view: RequestView) -> None:
        self.request = request
        self.view = view
        self.outcome = Outcome()
        self.response: web.StreamResponse | None = None

    def body(self) -> AsyncIterator[bytes] | None:
        return self._chunks() if self.request.body_exists else None

    async def _chunks(self) -> AsyncIterator[bytes]:
        expect = self.request.headers.get("Expect", "").lower()
        if expect == "100-continue" and self.request.version >= (1, 1):
            # RFC 9110 §10.1.1: the client waits for this before it sends the body. aiohttp's
            # low-level server does not send it (its router does), so the adapter does.
            await self.request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        async for chunk in self.request.content.iter_chunked(CHUNK):
            yield chunk

    def body_length(self) -> int | None:
        return self.request.content_length

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        response = web.Response(
            status=status, reason=reason or None, headers=list(headers), body=body
        )
        self.response = response
        try:
            await response.prepare(self.request)
            await response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone() from exc

    async def respond_entry(self, entry: CachedResponse, extra: Headers) -> None:
        await self.respond(entry.status, entry.reason, entry.headers + extra, entry.body)

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        response = web.StreamResponse(status=status, reason=reason or None, headers=list(headers))
        if content_length is not None:
            response.content_length = content_length
        elif until_close:
            # Relay a close-delimited body as one (RFC 9112 §6.3): re-framing it as chunked would
            # add a last-chunk that vouches for a body nobody knows is whole. aiohttp has no
            # public switch for this; _length_check off is what it does for WebSockets.
            response._length_check = False
            response.force_close()
        elif self.request.version < (1, 1):
            # HTTP/1.0 has no chunking: the body ends at close. aiohttp leaves a keep-alive
            # connection open here, so the client would wait for more until the idle timeout.
            response.force_close()
        self.response = response
        try:
            await response.prepare(self.request)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone() from exc

    async def write(self, chunk: bytes) -> None:
        assert self.response is not None
        try:
            await self.response.write(chunk)
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone() from exc

    async def finish(self) -> None:
        assert self.response is not None
        try:
            await self.response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone() from exc

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        raise_on_return = self.response
        if raise_on_return is not None:
            raise_on_return.force_close()


def make_server(
    handle: Handle, log_access: LogAccess, trust: Trust, scheme: str = "http"
) -> web.Server:
    """An aiohttp low-level server whose every request goes through `handle`."""

    async def serve(request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        view = build_view(request, scheme, trust)
        problem = request_problem(view)
        if problem is not None:
            status, text = problem
            log_access(view, Outcome(status, "ERROR", "bad-request"), time.perf_counter() - started)
            return web.Response(status=status, text=f"{status} {text}\n")
        client = AiohttpClient(request, view)
        try:
            outcome = await handle(client)
        except ClientGone:
            outcome = Outcome(status=499, cache="ERROR", detail="client-gone")
        log_access(view, outcome, time.perf_counter() - started)
        if client.response is None:  # nothing was sent: cannot happen unless handle is broken
            return web.Response(status=500, text="500 Internal Server Error\n")
        return client.response

    # auto_decompress=False: a gzip request body is forwarded as sent, not inflated.
    return web.Server(
        serve,
        handler_cancellation=False,
        access_log=None,
        auto_decompress=False,
        logger=server_log,
    )
