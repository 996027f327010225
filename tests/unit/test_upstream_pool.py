"""The upstream pool and its connections without a socket (as httpcore scripts a mock backend
and uvicorn drives a mock transport): the pool dials scripted transports, the test feeds the
upstream's bytes to `data_received` and ends connections with `connection_lost`, and a clock
loop moves time on instead of waiting. Rules: RFC 9112 §9.3 (reuse), §6.3 (message length),
and our product rules in `proxy/upstream_connection.py` and `proxy/upstream_pool.py`."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from scripted import ScriptedTransport

from proxy.flow import HIGH_WATER
from proxy.upstream_connection import State, UpstreamConnection
from proxy.upstream_exchange import UpstreamError
from proxy.upstream_pool import Factory, UpstreamPool

T = TypeVar("T")
READ_TIMEOUT, IDLE_SECONDS = 30.0, 15.0
GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class NeverWaits(selectors.SelectSelector):
    """The loop's selector: a scenario has no socket to wait for, and its clock moves only when
    the test says, so a wait would be for ever: fail it instead."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and (timeout is None or timeout > 0):
            raise AssertionError("the scenario waits for something that never comes")
        return ready


class ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test says (timers fire on its time)."""

    def __init__(self) -> None:
        super().__init__(NeverWaits())
        self.now = 1000.0

    def time(self) -> float:
        return self.now


async def advance(seconds: float) -> None:
    """Move the clock on, and let what became due run."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ClockLoop)
    loop.now += seconds
    for _ in range(4):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    with asyncio.Runner(loop_factory=ClockLoop) as runner:
        return runner.run(main())


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard: nothing here may reach the network."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test opened a connection")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_unix_connection", refuse)


class ScriptedUpstream:
    """The pool's dial: each connection gets a scripted transport; the test plays the upstream."""

    def __init__(self) -> None:
        self.transports: list[ScriptedTransport] = []

    async def dial(self, factory: Factory) -> UpstreamConnection:
        connection = factory()
        transport = ScriptedTransport(connection)
        connection.connection_made(transport)  # type: ignore[arg-type]
        self.transports.append(transport)
        return connection

    def send(self, data: bytes, index: int = -1) -> None:
        self.transports[index].protocol.data_received(data)

    def close(self, index: int = -1, exc: Exception | None = None) -> None:
        self.transports[index].protocol.connection_lost(exc)


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    yield ScriptedUpstream()


def pool_for(upstream: ScriptedUpstream, limit: int = 4) -> UpstreamPool:
    return UpstreamPool(
        ("upstream", 80), limit, 5.0, READ_TIMEOUT, IDLE_SECONDS, dial=upstream.dial
    )


async def start(connection: UpstreamConnection, request: bytes = GET, **options: Any) -> Any:
    """The exchange as a task (it returns at the response head); one loop turn to send."""
    head_only = request.startswith(b"HEAD")
    task = asyncio.ensure_future(connection.exchange(request, None, False, head_only, **options))
    await asyncio.sleep(0)
    return task


async def body_of(connection: UpstreamConnection) -> bytes:
    parts = []
    while chunk := await connection.read():
        parts.append(chunk)
    return b"".join(parts)


# --- keep-alive and reuse ---------------------------------------------------------------------
def test_a_clean_exchange_keeps_the_connection_for_the_next(upstream: ScriptedUpstream) -> None:
    async def scenario() -> list[object]:
        pool = pool_for(upstream)
        seen: list[object] = []
        for _ in range(2):
            connection = await pool.acquire()
            exchange = await start(connection)
            upstream.send(OK)
            seen.append((connection.state, (await exchange).head.status))
            seen.append(await body_of(connection))
            pool.finish(connection)
        seen += [connection.state, repr(pool), bytes(upstream.transports[0].written)]
        return seen

    assert run(scenario) == [
        (State.ACTIVE, 200),
        b"ok",
        (State.ACTIVE, 200),
        b"ok",
        State.IDLE,
        "<UpstreamPool upstream:80: 1/4 slots taken, 1 open, 1 idle, 0 waiting>",
        GET + GET,  # both on the one connection
    ]


HEAD = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
EMPTY = b"Content-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_", "response"),
    [
        pytest.param(GET, b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + EMPTY, id="says-close"),
        pytest.param(GET, b"HTTP/1.0 200 OK\r\n" + EMPTY, id="http10-without-keep-alive"),
        pytest.param(HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", id="head-retires"),
        pytest.param(GET, OK + b"HTTP/1.1 200 OK\r\n", id="bytes-after-the-response"),
    ],
)
def test_a_connection_that_is_not_clean_is_closed(
    upstream: ScriptedUpstream, request_: bytes, response: bytes
) -> None:
    async def scenario() -> tuple[State, bool, str]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection, request_)
        upstream.send(response)
        await exchange
        await body_of(connection)
        pool.finish(connection)
        await asyncio.sleep(0)
        return connection.state, upstream.transports[0].aborted, repr(pool)

    state, aborted, pool = run(scenario)
    assert (state, aborted) == (State.CLOSED, True)
    assert "0/4 slots taken, 0 open, 0 idle" in pool


def test_a_request_saying_close_is_not_reused(upstream: ScriptedUpstream) -> None:
    async def scenario() -> State:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection, closing=True)
        upstream.send(OK)
        await exchange
        await body_of(connection)
        pool.finish(connection)
        return connection.state

    assert run(scenario) is State.CLOSED


def test_bytes_from_an_idle_connection_close_it(upstream: ScriptedUpstream) -> None:
    async def scenario() -> tuple[State, str]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(OK)
        await exchange
        await body_of(connection)
        pool.finish(connection)
        upstream.send(b"HTTP/1.1 200 OK\r\n")  # nothing was asked: out of step
        return connection.state, repr(pool)

    state, pool = run(scenario)
    assert state is State.CLOSED
    assert "0 open, 0 idle" in pool


def test_a_waiter_gets_the_connection_a_finished_exchange_frees(upstream: ScriptedUpstream) -> None:
    async def scenario() -> tuple[bool, str, int]:
        pool = pool_for(upstream, limit=1)
        first = await pool.acquire()
        exchange = await start(first)
        waiting = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        queued = repr(pool)
        upstream.send(OK)
        await exchange
        await body_of(first)
        pool.finish(first)
        return (await waiting) is first, queued, len(upstream.transports)

    same, queued, dialled = run(scenario)
    assert (same, dialled) == (True, 1)
    assert queued == "<UpstreamPool upstream:80: 1/1 slots taken, 1 open, 0 idle, 1 waiting>"


# --- a response in pieces, and lost ones ------------------------------------------------------
def test_a_response_arriving_in_pieces(upstream: ScriptedUpstream) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = head + b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"

    async def scenario() -> tuple[bool, bytes, bool]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        for i in range(0, 30, 3):  # the head, three bytes at a time
            upstream.send(response[i : i + 3])
        await asyncio.sleep(0)
        early = exchange.done()
        upstream.send(response[30:47])
        head = (await exchange).head
        for i in range(47, len(response), 2):
            upstream.send(response[i : i + 2])
        body = await body_of(connection)
        return early, body, head.chunked and connection.reusable()

    assert run(scenario) == (False, b"abcdefg", True)


def test_a_connection_lost_mid_body_fails_the_read(upstream: ScriptedUpstream) -> None:
    async def scenario() -> tuple[bytes, str, str]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await exchange
        first = await connection.read()
        upstream.close()
        with pytest.raises(UpstreamError) as failure:
            await connection.read()
        return first, failure.value.message, repr(pool)

    first, message, pool = run(scenario)
    assert first == b"hello"
    assert message == "upstream failed: connection closed before the response was complete"
    assert "0/4 slots taken, 0 open" in pool  # the slot is free at once


def test_a_close_delimited_body_ends_with_the_connection(upstream: ScriptedUpstream) -> None:
    async def scenario() -> tuple[bytes, bool]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(b"HTTP/1.1 200 OK\r\n\r\nall of ")
        await exchange
        upstream.send(b"it")
        upstream.close()
        return await body_of(connection), connection.reusable()

    assert run(scenario) == (b"all of it", False)


def test_lost_before_any_response_byte_is_stale(upstream: ScriptedUpstream) -> None:
    """What UpstreamClient retries once, on a new connection, for an idempotent request."""

    async def scenario() -> tuple[bool, bool, str]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(OK)
        await exchange
        await body_of(connection)
        pool.finish(connection)
        again = await pool.acquire()
        exchange = await start(again)
        upstream.close()
        with pytest.raises(UpstreamError) as failure:
            await exchange
        current = again.current
        assert current is not None
        return current.reused, current.stale, failure.value.message

    assert run(scenario) == (True, True, "upstream failed: connection closed before any response")


# --- time -------------------------------------------------------------------------------------
def test_an_idle_connection_closes_after_the_idle_timeout(upstream: ScriptedUpstream) -> None:
    async def scenario() -> list[object]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(OK)
        await exchange
        await body_of(connection)
        pool.finish(connection)
        await advance(IDLE_SECONDS - 1)
        seen: list[object] = [connection.state]
        await advance(1)
        seen += [connection.state, repr(pool)]
        return seen

    assert run(scenario) == [
        State.IDLE,
        State.CLOSED,
        "<UpstreamPool upstream:80: 0/4 slots taken, 0 open, 0 idle, 0 waiting>",
    ]


def test_idle_time_counts_from_the_last_exchange(upstream: ScriptedUpstream) -> None:
    async def scenario() -> list[State]:
        pool = pool_for(upstream)
        states = []
        for _ in range(2):
            connection = await pool.acquire()
            exchange = await start(connection)
            upstream.send(OK)
            await exchange
            await body_of(connection)
            pool.finish(connection)
            await advance(IDLE_SECONDS - 5)
        states.append(connection.state)  # 20 s since the first, 10 since the second
        await advance(5)
        states.append(connection.state)
        return states

    assert run(scenario) == [State.IDLE, State.CLOSED]


def test_no_head_within_the_read_timeout_is_a_504(upstream: ScriptedUpstream) -> None:
    async def scenario() -> tuple[int, str, bool]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        await advance(READ_TIMEOUT)
        with pytest.raises(UpstreamError) as failure:
            await exchange
        return failure.value.status, failure.value.kind, upstream.transports[0].aborted

    assert run(scenario) == (504, "upstream-timeout", True)


# --- flow control and retiring ----------------------------------------------------------------
def test_reading_pauses_while_a_large_body_waits(upstream: ScriptedUpstream) -> None:
    size = 3 * HIGH_WATER

    async def scenario() -> tuple[bool, bool, int]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        exchange = await start(connection)
        upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        await exchange
        piece = b"x" * 16384
        while upstream.transports[0].reading:  # the upstream sends until we pause
            upstream.send(piece)
        paused_at = connection.current.body.size if connection.current else 0
        await connection.read()
        still_paused = not upstream.transports[0].reading
        while not upstream.transports[0].reading:
            await connection.read()
        return still_paused, paused_at > HIGH_WATER, paused_at

    still_paused, above, paused_at = run(scenario)
    assert (still_paused, above) == (True, True)
    assert paused_at <= HIGH_WATER + 16384


def test_retire_closes_idle_connections_now_and_busy_ones_as_they_end(
    upstream: ScriptedUpstream,
) -> None:
    async def scenario() -> list[object]:
        pool = pool_for(upstream)
        idle, busy = await pool.acquire(), await pool.acquire()
        for connection, index in ((idle, 0), (busy, 1)):
            exchange = await start(connection)
            upstream.send(OK, index)
            await exchange
        await body_of(idle)
        pool.finish(idle)
        retiring = asyncio.ensure_future(pool.retire())
        await asyncio.sleep(0)
        seen: list[object] = [idle.state, busy.state, retiring.done(), repr(pool)]
        await body_of(busy)
        pool.finish(busy)  # a clean exchange, but the pool is retiring
        await asyncio.sleep(0)
        seen += [busy.state, retiring.done()]
        return seen

    assert run(scenario) == [
        State.CLOSED,
        State.ACTIVE,
        False,
        "<UpstreamPool upstream:80 retiring: 1/4 slots taken, 1 open, 0 idle, 0 waiting>",
        State.CLOSED,
        True,
    ]


def test_a_connection_repr_says_its_state_and_exchange(upstream: ScriptedUpstream) -> None:
    async def scenario() -> list[str]:
        pool = pool_for(upstream)
        connection = await pool.acquire()
        seen = [repr(connection)]
        exchange = await start(connection)
        upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await exchange
        seen.append(repr(connection))
        return seen

    assert run(scenario) == [
        "<UpstreamConnection NEW, 0 exchanges>",
        "<UpstreamConnection ACTIVE, 1 exchanges, <Exchange BODY 200, 2 bytes queued>>",
    ]
