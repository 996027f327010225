"""`UpstreamClient` on its own, against a raw asyncio server that sends crafted bytes.

Issue: a lean pooled upstream client "as robust as aiohttp". Each test pins one promise of
`proxy/upstream.py` and `proxy/upstream_*.py` (RFC 9112 unless noted) over real sockets, counting
what the server saw: connections accepted, requests received, bytes it managed to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.settings import Upstream
from proxy.upstream import UpstreamClient, UpstreamError, UpstreamResponse
from proxy.upstream_exchange import interim_fault

WAIT = 5.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Peer:
    """The server's end of one connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: Any) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.index = server.accepted  # 1 for the first connection

    async def request(self) -> bytes | None:
        """The next request (head and body, a chunked body decoded), None once the client closed
        the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self._closed_by_client()
            return None
        lower = head.lower()
        length = re.search(rb"\r\ncontent-length: *(\d+)", lower)
        body = b""
        if length:
            body = await self.reader.readexactly(int(length[1]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        self.server.requests.append((self.index, head + body))
        self.server.changed.set()
        return head + body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Read (and drop) until the client closes the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self._closed_by_client()

    def _closed_by_client(self) -> None:
        self.server.closed_by_client += 1
        self.server.changed.set()


Serve = Callable[[Peer], Awaitable[None]]


class RawServer:
    """Counts connections (accepted, open at once) and keeps every request it read."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.closed_by_client = 0
        self.requests: list[tuple[int, bytes]] = []
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def _on_connection(self, reader: asyncio.StreamReader, writer: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.changed.set()
        try:
            await self.serve(Peer(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): ending quietly spares asyncio's streams a logged CancelledError
        finally:
            self.open -= 1
            writer.close()
            self.changed.set()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


Start = Callable[..., Awaitable[tuple[RawServer, UpstreamClient]]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Start]:
    """serve(handler, unix=False, idle_seconds=15.0, **upstream settings) → (server, client)."""
    servers: list[RawServer] = []
    clients: list[UpstreamClient] = []

    async def start(
        handler: Serve, unix: bool = False, idle_seconds: float = 15.0, **settings: Any
    ) -> tuple[RawServer, UpstreamClient]:
        raw = RawServer(handler)
        servers.append(raw)
        if unix:
            path = str(tmp_path / "upstream.sock")
            raw.server = await asyncio.start_unix_server(raw._on_connection, path)
            url = "http://localhost"
        else:
            path = ""
            raw.server = await asyncio.start_server(raw._on_connection, "127.0.0.1", 0)
            url = f"http://127.0.0.1:{raw.server.sockets[0].getsockname()[1]}"
        values = {"connect_timeout": 2.0, "read_timeout": 2.0, **settings}
        client = UpstreamClient(Upstream(url=url, socket=path, **values), idle_seconds)
        await client.start()
        clients.append(client)
        return raw, client

    yield start
    for client in clients:
        await client.close()
    for raw in servers:
        await raw.stop()


def keep_answering(*responses: bytes) -> Serve:
    """Answer each request on a connection with the next response (the last one repeats)."""

    async def handler(peer: Peer) -> None:
        sent = 0
        while await peer.request() is not None:
            await peer.send(responses[min(sent, len(responses) - 1)])
            sent += 1

    return handler


async def get(
    client: UpstreamClient, target: str = "/", method: str = "GET", **kwargs: Any
) -> tuple[UpstreamResponse, bytes]:
    """One whole exchange, bounded in time: the response (released) and its body."""

    async def exchange() -> tuple[UpstreamResponse, bytes]:
        response = await client.request(method, target, (("Host", "app"),), **kwargs)
        body = b"".join([chunk async for chunk in response.chunks()])
        response.release()
        return response, body

    return await asyncio.wait_for(exchange(), WAIT)


async def eventually(server: RawServer, condition: Callable[[], bool]) -> None:
    """Wait (bounded) until the server's counters satisfy `condition`."""
    async with asyncio.timeout(WAIT):
        while not condition():
            server.changed.clear()
            await server.changed.wait()


def body_of(data: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return chunks()


# --- keep-alive and retirement -------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(serve: Start) -> None:
    server, client = await serve(keep_answering(OK))
    answers = [await get(client, f"/{i}") for i in range(3)]
    assert [(r.status, body) for r, body in answers] == [(200, b"ok")] * 3
    assert server.accepted == 1
    assert [index for index, _ in server.requests] == [1, 1, 1]


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_a_connection_the_response_closes_is_not_reused(
    serve: Start, response: bytes
) -> None:
    # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    server, client = await serve(keep_answering(response))
    answers = [await get(client) for _ in range(2)]
    assert [body for _, body in answers] == [b"ok", b"ok"]
    assert server.accepted == 2


async def test_an_http10_keep_alive_response_keeps_the_connection(serve: Start) -> None:
    response = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    server, client = await serve(keep_answering(response))
    for _ in range(2):
        await get(client)
    assert server.accepted == 1


async def test_a_request_saying_connection_close_is_not_reused(serve: Start) -> None:
    server, client = await serve(keep_answering(OK))
    for _ in range(2):
        response = await client.request("GET", "/", (("Host", "a"), ("Connection", "close")))
        assert b"".join([c async for c in response.chunks()]) == b"ok"
        response.release()
    assert server.accepted == 2


async def test_an_idle_connection_is_closed_after_the_idle_timeout(serve: Start) -> None:
    server, client = await serve(keep_answering(OK), idle_seconds=0.2)
    await get(client)
    await eventually(server, lambda: server.closed_by_client == 1)  # the client closed it, idle
    await get(client)
    assert server.accepted == 2


async def test_a_connection_the_server_closes_while_idle_leaves_the_pool(serve: Start) -> None:
    async def once_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)  # keep-alive by the rules, but the server closes anyway

    server, client = await serve(once_then_close)
    await get(client)
    await eventually(server, lambda: server.open == 0)
    await asyncio.sleep(0.1)  # the FIN reaches the client's connection_lost
    # A POST is never retried: it can only succeed if the closed connection was dropped.
    response, body = await get(client, method="POST", body=body_of(b"x"), content_length=1)
    assert (response.status, body) == (200, b"ok")
    assert server.accepted == 2


async def close_on_second_request(peer: Peer) -> None:
    """Answer one request; read the next, then close without a byte of answer (the race of a
    keep-alive timeout: the server closes just as the client writes)."""
    if peer.index == 1:
        await peer.request()
        await peer.send(OK)
        await peer.request()
        return
    await keep_answering(OK)(peer)


async def test_a_get_failing_on_a_reused_connection_is_retried_once(serve: Start) -> None:
    server, client = await serve(close_on_second_request)
    await get(client, "/first")
    response, body = await get(client, "/second")
    assert (response.status, body) == (200, b"ok")
    seen = [(index, req.split(b" ")[1]) for index, req in server.requests]
    assert seen == [(1, b"/first"), (1, b"/second"), (2, b"/second")]


async def test_a_retry_opens_a_new_connection_rather_than_take_another_idle_one(
    serve: Start,
) -> None:
    # Two idle connections the server will drop (as after a restart), at max_connections:
    # a retry on the other idle one would fail too; the retry takes that one's slot instead.
    async def two_then_close(peer: Peer) -> None:
        if peer.index <= 2:
            await peer.request()
            await asyncio.sleep(0.1)  # both connections are opened before either answers
            await peer.send(OK)
            await peer.request()
            return
        await keep_answering(OK)(peer)

    server, client = await serve(two_then_close, max_connections=2)
    await asyncio.gather(get(client, "/a"), get(client, "/b"))
    response, body = await get(client, "/retried")
    assert (response.status, body) == (200, b"ok")
    retried = [index for index, request in server.requests if b" /retried " in request]
    assert len(retried) == 2 and retried[1] == 3
    assert server.accepted == 3


async def test_a_post_with_a_body_is_not_retried(serve: Start) -> None:
    # RFC 9110 §9.2.2: only idempotent requests may be repeated without the user knowing.
    server, client = await serve(close_on_second_request)
    await get(client, "/first")
    with pytest.raises(UpstreamError) as failed:
        await get(client, "/second", method="POST", body=body_of(b"x"), content_length=1)
    assert (failed.value.status, failed.value.kind) == (502, "upstream-error")
    assert server.accepted == 1
    assert len(server.requests) == 2


async def test_a_get_failing_on_a_new_connection_is_not_retried(serve: Start) -> None:
    async def read_then_close(peer: Peer) -> None:
        await peer.request()

    server, client = await serve(read_then_close)
    with pytest.raises(UpstreamError) as failed:
        await get(client)
    assert failed.value.status == 502
    assert server.accepted == 1


# --- response bodies -----------------------------------------------------------------------


async def test_a_content_length_body(serve: Start) -> None:
    _, client = await serve(keep_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
    response, body = await get(client)
    assert (body, response.content_length, response.framed) == (b"hello", 5, True)


async def test_a_chunked_body_with_trailers_then_a_reuse(serve: Start) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Sum: 7\r\n\r\n"
    )
    server, client = await serve(keep_answering(chunked, OK))
    response, body = await get(client)
    after, after_body = await get(client)
    assert (body, response.content_length, response.framed) == (b"abcdefg", None, True)
    assert ("X-Sum", "7") not in response.headers
    assert ("Transfer-Encoding", "chunked") in response.headers
    assert (after.status, after.headers, after_body) == (200, (("Content-Length", "2"),), b"ok")
    assert server.accepted == 1


async def test_a_close_delimited_body_is_unframed_and_ends_with_the_connection(
    serve: Start,
) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nall of")
        await peer.send(b" it")

    server, client = await serve(until_close)
    response, body = await get(client)
    assert (body, response.content_length, response.framed) == (b"all of it", None, False)
    await get(client)
    assert server.accepted == 2


async def test_a_head_response_has_no_body_and_the_next_response_parses(serve: Start) -> None:
    # RFC 9110 §9.3.2: a HEAD response carries the GET's Content-Length but no body.
    async def by_method(peer: Peer) -> None:
        while request := await peer.request():
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
            await peer.send(answer if request.startswith(b"HEAD ") else answer + b"0123456789")

    _, client = await serve(by_method)
    response, body = await get(client, method="HEAD")
    after, after_body = await get(client)
    assert (response.status, response.content_length, body) == (200, 10, b"")
    assert (after.status, after_body) == (200, b"0123456789")


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_204_and_304_have_no_body_and_keep_the_connection(
    serve: Start, status: bytes
) -> None:
    server, client = await serve(keep_answering(b"HTTP/1.1 " + status + b"\r\n\r\n", OK))
    response, body = await get(client)
    after, after_body = await get(client)
    assert (response.status, body) == (int(status[:3]), b"")
    assert (after.status, after_body) == (200, b"ok")
    assert server.accepted == 1


async def test_an_interim_100_continue_is_skipped(serve: Start) -> None:
    _, client = await serve(keep_answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    response, body = await get(client)
    assert (response.status, response.reason, body) == (200, "OK", b"ok")


async def test_interim_responses_go_to_the_callback_never_into_the_response(
    serve: Start,
) -> None:
    """RFC 9110 §15.2: each interim response is handed on as it arrives (status, reason,
    fields as received); the response returned is the final one, with its own fields only,
    and the connection is reused."""
    interim = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    )
    server, client = await serve(keep_answering(interim + OK))
    seen: list[tuple[int, str, tuple[tuple[str, str], ...]]] = []
    response, body = await get(client, interim=lambda *got: seen.append(got))
    again, _ = await get(client)
    assert seen == [
        (100, "Continue", ()),
        (102, "Processing", ()),
        (103, "Early Hints", (("Link", "</a.css>; rel=preload"),)),
    ]
    assert (response.status, response.headers, body) == (200, (("Content-Length", "2"),), b"ok")
    assert again.status == 200
    assert server.accepted == 1


async def test_an_upstream_101_is_a_502_and_never_handed_on(serve: Start) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    _, client = await serve(keep_answering(switch))
    seen: list[int] = []
    with pytest.raises(UpstreamError) as failed:
        await get(client, interim=lambda status, *_: seen.append(status))
    assert (failed.value.status, failed.value.kind, seen) == (502, "upstream-error", [])


@pytest.mark.parametrize(
    ("count", "fields", "fault"),
    [
        (16, 128, None),
        (17, 0, "more than 16 interim responses"),
        (1, 129, "interim response header fields too large"),
    ],
)
def test_interim_fault(count: int, fields: int, fault: str | None) -> None:
    assert interim_fault(count, fields, 100, False) == fault


def test_interim_fault_size_and_framing() -> None:
    assert interim_fault(1, 1, 64 * 1024, False) is None
    assert interim_fault(1, 1, 64 * 1024 + 1, False) == "interim response header fields too large"
    assert interim_fault(1, 1, 10, True) == "framing in an interim response"


# --- failures ------------------------------------------------------------------------------


async def test_a_truncated_body_raises_from_chunks(serve: Start) -> None:
    async def truncated(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)

    _, client = await serve(truncated)
    response = await asyncio.wait_for(client.request("GET", "/", (("Host", "a"),)), WAIT)
    with pytest.raises(UpstreamError) as failed:
        await asyncio.wait_for(_drain(response), WAIT)
    response.close()
    assert (failed.value.status, failed.value.kind) == (502, "upstream-error")


async def _drain(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response.chunks()])


@pytest.mark.parametrize("head", [b"HTTP/1.1 abc\r\n\r\n", b"garbage\r\n\r\n"])
async def test_a_malformed_head_is_a_502(serve: Start, head: bytes) -> None:
    _, client = await serve(keep_answering(head))
    with pytest.raises(UpstreamError) as failed:
        await get(client)
    assert (failed.value.status, failed.value.kind) == (502, "upstream-error")


async def test_no_head_within_the_read_timeout_is_a_504(serve: Start) -> None:
    async def silent(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()

    server, client = await serve(silent, read_timeout=0.2)
    with pytest.raises(UpstreamError) as failed:
        await get(client)
    assert (failed.value.status, failed.value.kind) == (504, "upstream-timeout")
    await eventually(server, lambda: server.closed_by_client == 1)


async def test_a_body_stalling_beyond_the_read_timeout_is_a_504_from_chunks(
    serve: Start,
) -> None:
    async def stalls(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await peer.until_closed()

    _, client = await serve(stalls, read_timeout=0.2)
    response = await asyncio.wait_for(client.request("GET", "/", (("Host", "a"),)), WAIT)
    chunks = []
    with pytest.raises(UpstreamError) as failed:
        async for chunk in response.chunks():
            chunks.append(chunk)
    response.close()
    assert chunks == [b"12345"]
    assert (failed.value.status, failed.value.kind) == (504, "upstream-timeout")


@pytest.mark.parametrize("where", ["closed-port", "missing-unix-socket"])
async def test_a_refused_connection_is_a_502_upstream_refused(tmp_path: Path, where: str) -> None:
    if where == "closed-port":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = Upstream(url=f"http://127.0.0.1:{port}")
    else:
        settings = Upstream(url="http://localhost", socket=str(tmp_path / "nobody.sock"))
    client = UpstreamClient(settings)
    await client.start()
    try:
        with pytest.raises(UpstreamError) as failed:
            await get(client)
    finally:
        await client.close()
    assert (failed.value.status, failed.value.kind) == (502, "upstream-refused")


# --- the cap, cancellation, flow control ---------------------------------------------------


async def test_max_connections_caps_open_connections_and_queues_the_rest(serve: Start) -> None:
    async def slow(peer: Peer) -> None:
        while await peer.request() is not None:
            await asyncio.sleep(0.1)
            await peer.send(OK)

    server, client = await serve(slow, max_connections=2)
    answers = await asyncio.gather(*(get(client, f"/{i}") for i in range(5)))
    assert [body for _, body in answers] == [b"ok"] * 5
    assert server.most_open == 2
    assert server.accepted == 2
    assert len(server.requests) == 5


async def test_cancelling_a_reader_mid_body_frees_its_slot(serve: Start) -> None:
    async def half_then_stall(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
            await peer.until_closed()
        else:
            await keep_answering(OK)(peer)

    server, client = await serve(half_then_stall, max_connections=1, read_timeout=30.0)
    response = await asyncio.wait_for(client.request("GET", "/", (("Host", "a"),)), WAIT)
    first = asyncio.Event()

    async def read() -> None:
        async for _ in response.chunks():
            first.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), WAIT)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    _, body = await get(client)  # would wait for the only slot, then time out
    assert body == b"ok"
    assert server.accepted == 2
    await eventually(server, lambda: server.closed_by_client == 1)


async def test_cancelling_a_request_waiting_for_the_head_frees_its_slot(serve: Start) -> None:
    async def silent_first(peer: Peer) -> None:
        if peer.index == 1:
            await peer.request()
            await peer.until_closed()
        else:
            await keep_answering(OK)(peer)

    server, client = await serve(silent_first, max_connections=1, read_timeout=30.0)
    waiting = asyncio.create_task(client.request("GET", "/", (("Host", "a"),)))
    await eventually(server, lambda: len(server.requests) == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    _, body = await get(client)
    assert body == b"ok"
    await eventually(server, lambda: server.closed_by_client == 1)


async def test_a_large_body_read_slowly_is_not_buffered_whole(serve: Start) -> None:
    total = 20 * 1024 * 1024
    written = 0

    async def big(peer: Peer) -> None:
        nonlocal written
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        while written < total:
            await peer.send(piece)
            written += len(piece)

    _, client = await serve(big)
    response = await asyncio.wait_for(client.request("GET", "/", (("Host", "a"),)), WAIT)
    last = -1
    while written != last:  # wait until the server's writes block (the reader reads nothing)
        last = written
        await asyncio.sleep(0.3)
    assert written < 8 * 1024 * 1024
    received = 0
    async with asyncio.timeout(10 * WAIT):
        async for chunk in response.chunks():
            assert len(chunk) <= 256 * 1024
            received += len(chunk)
    response.release()
    assert received == total


# --- request bodies ------------------------------------------------------------------------


async def test_request_heads_go_out_as_given(serve: Start) -> None:
    server, client = await serve(keep_answering(OK))
    headers = (("Host", "app"), ("X-Odd", "caf\xe9 \udcff"), ("cookie", "a=1"))
    response = await client.request("GET", "/p?q=1", headers)
    await _drain(response)
    response.release()
    assert server.requests[0][1] == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: app\r\nX-Odd: caf\xc3\xa9 \xff\r\ncookie: a=1\r\n\r\n"
    )


async def test_a_request_without_host_gets_the_upstreams(serve: Start) -> None:
    server, client = await serve(keep_answering(OK))
    response = await client.request("GET", "/", ())
    await _drain(response)
    response.release()
    port = server.server.sockets[0].getsockname()[1] if server.server else 0
    assert server.requests[0][1] == b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port


async def test_request_bodies_with_and_without_a_length(serve: Start) -> None:
    server, client = await serve(keep_answering(OK))

    def pieces() -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for part in (b"abc", b"", b"x" * 100_000):
                yield part

        return gen()

    for length in (100_003, None):
        response, _ = await get(client, method="PUT", body=pieces(), content_length=length)
        assert response.status == 200
    sized, chunked = (request for _, request in server.requests)
    assert b"\r\nContent-Length: 100003\r\n" in sized
    assert b"\r\nTransfer-Encoding: chunked\r\n" in chunked
    assert sized.endswith(b"\r\n\r\nabc" + b"x" * 100_000)
    assert chunked.endswith(b"\r\n\r\nabc" + b"x" * 100_000)
    assert server.accepted == 1


async def test_an_early_answer_during_a_large_upload_is_returned(serve: Start) -> None:
    async def refuses(peer: Peer) -> None:
        if peer.index == 1:
            await peer.reader.readuntil(b"\r\n\r\n")  # the head, not the body
            await peer.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
            await asyncio.sleep(3600)  # reads nothing more
        else:
            await keep_answering(OK)(peer)

    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield b"x" * 65536

    server, client = await serve(refuses)
    response, body = await get(client, "/upload", method="POST", body=endless())
    assert (response.status, body) == (413, b"big")
    await get(client)
    assert server.accepted == 2  # the upload was not sent whole: its connection is not reused
    assert sent < 64 * 1024 * 1024


async def test_a_unix_socket_upstream(serve: Start) -> None:
    server, client = await serve(keep_answering(OK), unix=True)
    answers = [await get(client) for _ in range(2)]
    assert [(r.status, body) for r, body in answers] == [(200, b"ok")] * 2
    assert server.accepted == 1
