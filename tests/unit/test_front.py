"""The client-side connection without a socket (as uvicorn's tests drive `data_received` on a
mock transport): a scripted driver stands in for the handler, the test feeds the client's bytes
and reads what the connection wrote. Rules: RFC 9112 §9.3 (persistence), §9.3.2 (pipelining:
answers in order), our product rules in proxy/http1.py (hits answered in data_received, reading
paused above QUEUE_HIGH requests) and proxy/front_request.py (request body flow control)."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from proxy.decide import Pass
from proxy.exchange import CacheResult, ClientSide, Outcome
from proxy.front_request import BODY_HIGH_WATER, BODY_LOW_WATER
from proxy.front_server import Http1Server
from proxy.http1 import QUEUE_HIGH, QUEUE_LOW, ClientConnection
from proxy.reasons import PassReason
from proxy.settings import Limits, Trust
from proxy.store import CachedResponse
from proxy.view import RequestView

T = TypeVar("T")


class NeverWaits(selectors.SelectSelector):
    """A scenario has no socket to wait for: a wait with nothing ready fails at once."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and (timeout is None or timeout > 0):
            raise AssertionError("the scenario waits for something that never comes")
        return ready


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(NeverWaits())) as runner:
        return runner.run(main())


async def settle() -> None:
    """Let the worker and the callbacks it scheduled run."""
    for _ in range(8):
        await asyncio.sleep(0)


class MockTransport:
    """Just enough of asyncio.Transport: records what is written, reading paused or not, and a
    close (reported to the protocol as connection_lost, as a real transport does)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closing = False
        self.protocol: ClientConnection | None = None

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, data: Any) -> None:
        for piece in data:
            self.written += piece

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


ENTRY = CachedResponse(200, "OK", (("Content-Type", "text/plain"),), b"hit", 0.0, 3600.0)


class ScriptedDriver:
    """The handler's seam, scripted: /hit is in memory; /slow waits for `release`; /upload
    reads its body a piece at a time, as `reads` allows; anything else is answered "<path>"."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.release = asyncio.Event()
        self.reads = asyncio.Queue[int]()
        self.body = bytearray()

    def answer_now(self, view: RequestView, outcome: Outcome) -> tuple[Any, Any, int, Any]:
        decision = Pass(PassReason.METHOD)  # any decision: `handle` here ignores it
        if view.path != "/hit":
            return decision, None, 0, ()
        outcome.status, outcome.cache = 200, CacheResult.HIT
        return decision, ENTRY, 5, ()

    def trace(self, view: RequestView) -> tuple[tuple[str, str], ...]:
        return ()

    async def handle(self, client: ClientSide, decision: Any = None) -> Outcome:
        path = client.view.path
        self.handled.append(path)
        if path == "/slow":
            await self.release.wait()
        body = client.body()
        if path == "/upload" and body is not None:
            async for chunk in body:
                self.body += chunk
                await self.reads.get()
        await client.respond(200, "OK", (("Date", "today"),), path.encode())
        client.outcome.status = 200
        return client.outcome


def connect(driver: ScriptedDriver) -> tuple[ClientConnection, MockTransport, list[int]]:
    """A connection as a listener makes it, on a mock transport; and the logged statuses."""
    logged: list[int] = []
    server = Http1Server(
        driver, lambda view, outcome, seconds: logged.append(outcome.status), Trust(), Limits()
    )
    connection = server()
    transport = MockTransport()
    transport.protocol = connection
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport, logged


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: a\r\n%b\r\n" % (path.encode(), extra)


def test_a_hit_is_answered_within_data_received() -> None:
    async def scenario() -> None:
        driver = ScriptedDriver()
        connection, transport, logged = connect(driver)
        connection.data_received(get("/hit"))
        written = transport.take()  # before any task ran: no worker was involved
        assert written.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Age: 5\r\nContent-Length: 3\r\n" in written
        assert written.endswith(b"\r\n\r\nhit")
        assert driver.handled == [] and logged == [200]
        assert not transport.closing  # HTTP/1.1 persists (RFC 9112 §9.3)

    run(scenario)


def test_pipelined_requests_are_answered_in_order() -> None:
    async def scenario() -> None:
        driver = ScriptedDriver()
        connection, transport, _ = connect(driver)
        connection.data_received(get("/hit") + get("/slow") + get("/hit") + get("/b"))
        await settle()
        first = transport.take()
        assert first.count(b"HTTP/1.1 200") == 1  # the second hit waits behind /slow
        driver.release.set()
        await settle()
        rest = transport.take()
        answers = [part[-5:] for part in rest.split(b"HTTP/1.1 200 OK")[1:]]
        assert [a.split(b"\n")[-1] for a in answers] == [b"/slow", b"/hit", b"/b"]
        # The first hit was answered at once; the second, queued behind /slow, by the worker.
        assert driver.handled == ["/slow", "/hit", "/b"]

    run(scenario)


def test_a_malformed_request_is_answered_400_and_closed() -> None:
    async def scenario() -> None:
        connection, transport, logged = connect(ScriptedDriver())
        connection.data_received(b"GET / HTTP/1.1\r\nHost a\r\n\r\n")
        await settle()
        written = transport.take()
        assert written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"Connection: close\r\n" in written
        assert transport.closing and connection.closed
        assert logged == [400]

    run(scenario)


def test_reading_pauses_when_the_queue_is_deep_and_resumes_when_it_drains() -> None:
    async def scenario() -> None:
        driver = ScriptedDriver()
        connection, transport, _ = connect(driver)
        requests = get("/slow") + get("/n") * (QUEUE_HIGH + 1)
        connection.data_received(requests)
        await settle()
        assert not transport.reading  # more than QUEUE_HIGH parsed requests wait
        driver.release.set()
        await settle()
        assert transport.reading  # the queue went down to QUEUE_LOW (and then empty)
        assert driver.handled.count("/n") == QUEUE_HIGH + 1
        assert QUEUE_LOW < QUEUE_HIGH

    run(scenario)


def test_a_request_body_is_read_with_flow_control() -> None:
    async def scenario() -> None:
        driver = ScriptedDriver()
        connection, transport, _ = connect(driver)
        size = BODY_HIGH_WATER + 64 * 1024
        head = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size
        piece = b"x" * (64 * 1024)
        connection.data_received(head)
        for _ in range(size // len(piece)):
            connection.data_received(piece)
        await settle()
        assert not transport.reading  # more than BODY_HIGH_WATER bytes wait for the upstream
        queued = size - len(driver.body)
        while queued > BODY_LOW_WATER:
            assert not transport.reading
            driver.reads.put_nowait(1)
            await settle()
            queued = size - len(driver.body)
        assert transport.reading  # resumed once at most BODY_LOW_WATER bytes wait
        while len(driver.body) < size:
            driver.reads.put_nowait(1)
            await settle()
        driver.reads.put_nowait(1)
        await settle()
        assert bytes(driver.body) == b"x" * size
        assert transport.take().endswith(b"/upload")

    run(scenario)


def test_a_body_being_read_does_not_resume_reading_paused_for_the_pipeline() -> None:
    async def scenario() -> None:
        connection, transport, _ = connect(ScriptedDriver())
        connection._pause_pipeline()
        connection.pause_for_body()
        connection.resume_for_body()  # the body's reason ends; the pipeline's holds
        assert not transport.reading
        connection._refill()  # and now the pipeline's: nothing else holds it
        assert transport.reading

    run(scenario)


@pytest.mark.parametrize("hold_body", [True, False])
def test_the_pipeline_draining_does_not_resume_reading_paused_for_a_body(
    hold_body: bool,
) -> None:
    async def scenario() -> None:
        connection, transport, _ = connect(ScriptedDriver())
        connection._pause_pipeline()
        if hold_body:
            connection.pause_for_body()
        connection._refill()
        assert transport.reading is not hold_body

    run(scenario)
