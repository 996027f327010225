"""The driver without a socket (issue 13): a real Handler, memory store and upstream client,
the upstream played by scripted transports (the pool's injectable dial) and the client by a
recording ClientSide. A miss is filled and stored, the next request is the synchronous hit,
a POST is passed with its body and stores nothing, a personal answer marks its key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from scripted import ScriptedTransport

from proxy.config import parse
from proxy.exchange import Outcome
from proxy.handler import Handler
from proxy.store.memory import MemoryStore
from proxy.upstream import UpstreamClient
from proxy.upstream_connection import UpstreamConnection
from proxy.upstream_pool import Factory
from proxy.view import Headers, RequestView


class App:
    """The upstream: answers each request head it is sent with the next scripted response."""

    def __init__(self, *responses: bytes) -> None:
        self.responses = list(responses)
        self.requests: list[bytes] = []

    async def dial(self, factory: Factory) -> UpstreamConnection:
        connection = factory()
        transport = ScriptedTransport(connection)
        connection.connection_made(transport)  # type: ignore[arg-type]
        asyncio.get_running_loop().create_task(self._answer(connection, transport))
        return connection

    async def _answer(self, connection: UpstreamConnection, transport: ScriptedTransport) -> None:
        while self.responses and not transport.aborted:
            while b"\r\n\r\n" not in transport.written:
                transport.wrote.clear()
                await transport.wrote.wait()
            head, _, rest = bytes(transport.written).partition(b"\r\n\r\n")
            self.requests.append(head + b"\r\n\r\n" + rest)
            transport.written.clear()
            connection.data_received(self.responses.pop(0))


@dataclass
class Client:
    """A ClientSide that records what the handler sends."""

    view: RequestView
    sent_body: bytes = b""
    outcome: Outcome = field(default_factory=Outcome)
    status: int = 0
    headers: Headers = ()
    received: bytearray = field(default_factory=bytearray)
    interims: list[int] = field(default_factory=list)
    attended: bool = True

    def body(self) -> AsyncIterator[bytes] | None:
        if not self.sent_body:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            yield self.sent_body

        return chunks()

    def body_length(self) -> int | None:
        return len(self.sent_body) if self.sent_body else None

    def interim(self, status: int, reason: str, headers: Headers) -> None:
        self.interims.append(status)

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        self.status, self.headers = status, headers
        self.received += body

    async def respond_entry(self, entry: Any, age: int, tags: Headers, status: int) -> None:
        self.status, self.headers = status, (*entry.headers, *tags)
        self.received += entry.body

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        self.status, self.headers = status, headers

    async def write(self, chunk: bytes, *, wait: bool = True) -> None:
        self.received += chunk

    async def finish(self) -> None: ...

    def abort(self) -> None: ...


def header(headers: Headers, name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name.lower()), None)


def request(method: str, target: str, *pairs: tuple[str, str]) -> RequestView:
    return RequestView(
        method, target, (("Host", "example.com"), *pairs), peer="127.0.0.1", has_body=False
    )


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test opened a connection")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_unix_connection", refuse)


def run_with(app: App, scenario: Any) -> Any:
    async def main() -> Any:
        settings = parse({"rules": [{"name": "pages", "ttl": "1m"}]}, "test.toml")
        stores = {name: MemoryStore(cache) for name, cache in settings.caches.items()}
        upstream = UpstreamClient(settings.upstream, dial=app.dial)
        await upstream.start()
        handler = Handler(settings, stores, upstream)
        try:
            return await asyncio.wait_for(scenario(handler), 5)
        finally:
            await handler.aclose()
            await upstream.close()

    return asyncio.run(main())


PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=60\r\n\r\npage"


def test_a_miss_is_filled_and_stored_then_answered_synchronously() -> None:
    app = App(PAGE)

    async def scenario(handler: Handler) -> None:
        miss = Client(request("GET", "/a"))
        await handler.handle(miss)
        hit_view = request("GET", "/a")
        _, entry, _, tags = handler.answer_now(hit_view, Outcome())

        assert (miss.status, bytes(miss.received)) == (200, b"page")
        assert (header(miss.headers, "X-Cache"), miss.outcome.detail) == ("MISS", "stored")
        assert entry is not None and entry.body == b"page"
        assert header(tags, "X-Cache") == "HIT"

    run_with(app, scenario)
    (sent,) = app.requests
    assert sent.startswith(b"GET /a HTTP/1.1\r\n")
    assert b"cookie" not in sent.lower()


def test_a_post_is_passed_with_its_body_and_nothing_is_stored() -> None:
    app = App(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")

    async def scenario(handler: Handler) -> None:
        post = RequestView(
            "POST", "/form", (("Host", "example.com"), ("Content-Length", "3")), has_body=True
        )
        client = Client(post, sent_body=b"a=1")
        await handler.handle(client)
        assert (client.status, bytes(client.received)) == (201, b"ok")
        assert (header(client.headers, "X-Cache"), client.outcome.detail) == ("PASS", "no-rule")
        assert handler.answer_now(request("GET", "/form"), Outcome())[1] is None

    run_with(app, scenario)
    assert app.requests[0].endswith(b"\r\n\r\na=1")


def test_a_personal_answer_marks_its_key_for_the_visitors_own_requests() -> None:
    personal = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: sid=1\r\n\r\nhi"
    app = App(personal, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")

    async def scenario(handler: Handler) -> None:
        first = Client(request("GET", "/form"))
        await handler.handle(first)
        second = Client(request("GET", "/form", ("Cookie", "_ga=1")))
        await handler.handle(second)
        assert first.outcome.detail == "set-cookie"
        assert header(first.headers, "Set-Cookie") == "sid=1"  # its own session: no cookies sent
        assert (second.outcome.cache, second.outcome.detail) == ("PASS", "hit-for-pass")
        assert bytes(second.received) == b"mine"

    run_with(app, scenario)
    assert b"Cookie: _ga=1" in app.requests[1]
