"""`ClientSide` for one request on a client connection: the request body as the handler reads
it, and the response as the handler writes it, framed for this client (`framing.py`).

- `Expect: 100-continue` is answered when the body is first read (RFC 9110 §10.1.1);
- a response begun before the request body was received whole ends the connection: the stream
  is out of step (the body's rest would be read as the next request);
- a streamed response's head is held until the task step ends, so a body at hand goes out in
  the same write;
- a request that asked for a trace (`Sidecache-Debug`, see serving.py) gets `Sidecache-Trace`
  on whatever is sent to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from proxy import fields
from proxy.client_transport import ClientTransport
from proxy.exchange import ClientGone, Outcome
from proxy.framing import (
    CHUNKED,
    CLOSE,
    LENGTH,
    connection_header,
    response_has_body,
    status_has_body,
    streamed_framing,
)
from proxy.front_request import ParsedRequest, Problem
from proxy.store import CachedResponse
from proxy.view import Headers, RequestView, field_lines
from proxy.wire import date_now, entry_response, status_line

_TEXT = (("Content-Type", "text/plain; charset=utf-8"),)


class Http1Client:
    """`ClientSide` for one request on a client connection (`http1.ClientConnection`)."""

    attended = True

    def __init__(
        self, connection: ClientTransport, request: ParsedRequest, view: RequestView
    ) -> None:
        self.connection = connection
        self.request = request
        self.view = view
        self.outcome = Outcome()
        self.started = False
        self.closing = not request.keep_alive  # this response is the connection's last
        self._chunked = False
        self._held = b""  # a response head not written yet
        self._expect_answered = False
        # Sidecache-Trace, when the request asked for it (serving.py): added to what is sent,
        # never to what is stored (entries are made from the upstream's answer).
        self.trace: Headers = ()

    # --- the request body --------------------------------------------------------------------
    def body(self) -> AsyncIterator[bytes] | None:
        return self._chunks() if self.request.has_body else None

    async def _chunks(self) -> AsyncIterator[bytes]:
        if not self._expect_answered and self._expects_continue():
            self._expect_answered = True
            self.connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.request.body
        assert body is not None, "a request with a body has a RequestBody from its head"
        while chunk := await body.read():
            yield chunk

    def _expects_continue(self) -> bool:
        expect = self.view.header("expect")
        return (
            expect is not None and expect.lower() == "100-continue" and self.view.version >= (1, 1)
        )

    def body_length(self) -> int | None:
        return self.request.content_length

    # --- the response ------------------------------------------------------------------------
    def _head(self, status: int, reason: str, headers: Headers, framing: list[bytes]) -> bytes:
        if self.request.body_pending:
            self.closing = True  # answering before the body is in: the stream is out of step
        parts = [status_line(status, reason), field_lines(headers), *framing]
        if self.trace:
            parts.append(field_lines(self.trace))
        if not fields.has(headers, "date"):
            parts.append(b"Date: " + date_now() + b"\r\n")
        parts.append(connection_header(self.view.version, self.closing))
        parts.append(b"\r\n")
        return b"".join(parts)

    def interim(self, status: int, reason: str, headers: Headers) -> None:
        """Written at once, without waiting for the client to read: an exchange has few, small
        interim responses (upstream_exchange bounds them). No Date, no Connection: neither means
        anything on a 1xx."""
        if self.started or self.connection.closed:
            return
        self.connection.write(status_line(status, reason) + field_lines(headers) + b"\r\n")

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        # A HEAD answer keeps the Content-Length a GET would get; 1xx/204/304 have none.
        framing = [b"Content-Length: %d\r\n" % len(body)] if status_has_body(status) else []
        head = self._head(status, reason, headers, framing)
        sent = response_has_body(self.view.method, status)
        self._send(head + body if sent else head)
        await self.finish()

    async def refuse(self, problem: Problem) -> None:
        """Answer `problem` (a short text/plain status and reason) as this connection's last
        response; a client already gone is nothing to answer."""
        status, text = problem
        self.closing = True
        with contextlib.suppress(ClientGone):
            await self.respond(status, "", _TEXT, f"{status} {text}\n".encode())

    async def fail(self) -> None:
        """A bug in the handler: a 500 if nothing was sent yet, else cut the connection."""
        if self.started:
            self.abort()
            return
        self.closing = True
        with contextlib.suppress(ClientGone):
            await self.respond(500, "", _TEXT, b"500 Internal Server Error\n")

    async def respond_entry(
        self, entry: CachedResponse, age: int, tags: Headers, status: int
    ) -> None:
        """A hit served by the worker (the store had to be waited for, or revalidated)."""
        block = self.connection.server.tag_block(tags)
        if self.trace:
            block += field_lines(self.trace)
        response = entry_response(entry, age, block, self.view, self.closing, status)
        self._send_lines(response)
        await self.finish()

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        view = self.view
        framing: list[bytes] = []
        kind = streamed_framing(view.method, status, view.version, content_length, until_close)
        if kind is LENGTH and content_length is not None:
            framing.append(b"Content-Length: %d\r\n" % content_length)
        elif kind is CHUNKED:
            self._chunked = True
            framing.append(b"Transfer-Encoding: chunked\r\n")
        elif kind is CLOSE:
            self.closing = True  # the body ends when the connection does (RFC 9112 §6.3)
        head = self._head(status, reason, headers, framing)
        if self.connection.closed:
            raise ClientGone()
        # Held until this task step ends, so a body already at hand (the common small response)
        # goes out in the same write; a body that has to be waited for finds the head sent.
        self.started, self._held = True, head
        self.connection.loop.call_soon(self._send_held)

    def _send_held(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self.connection.write(held)

    async def write(self, chunk: bytes, *, wait: bool = True) -> None:
        if not chunk or self.view.method == "HEAD":
            return
        if self._chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        if self._held:
            self._send_lines((self._held, chunk))
            self._held = b""
        else:
            self._send(chunk)
        if wait:
            await self.connection.drain()

    async def finish(self) -> None:
        end = b"0\r\n\r\n" if self._chunked else b""
        self._chunked = False
        if self._held or end:
            self._send(self._held + end)
            self._held = b""
        await self.connection.drain()
        if self.closing:
            self.connection.close()

    def abort(self) -> None:
        self._held = b""
        self.connection.abort()

    def _send(self, data: bytes) -> None:
        if self.connection.closed:
            raise ClientGone()
        self.started = True
        self.connection.write(data)

    def _send_lines(self, data: tuple[bytes, ...]) -> None:
        if self.connection.closed:
            raise ClientGone()
        self.started = True
        self.connection.writelines(data)
