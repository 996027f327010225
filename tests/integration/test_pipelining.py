"""Pipelining clients (issue 11, faults 6, 9 and 10), over raw sockets: many requests in one
write, answered in order, without unbounded memory, spurious errors or stalls."""

from __future__ import annotations

import asyncio

from .conftest import StartProxy
from .support import WAIT, Client, FakeUpstream, RawConnection


def gets(count: int, target: str = "/page", extra: bytes = b"") -> bytes:
    one = b"GET " + target.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"
    return one * count


async def test_more_than_sixteen_pipelined_hits_are_all_answered(
    client: Client, upstream: FakeUpstream
) -> None:
    # Fault 9: reading paused at 16 queued requests was resumed only by the worker, which
    # hits answered at once never wake: the connection stalled until keepalive_timeout.
    upstream.on("/page")
    async with RawConnection(client.port) as raw:
        await raw.send(gets(1))
        await raw.response()  # stored now
        await raw.send(gets(20))  # one read: 20 queued, reading paused, all answered at once
        answers = [await raw.response() for _ in range(20)]
        await raw.send(gets(5))  # read only if reading was resumed
        answers += [await raw.response() for _ in range(5)]
    assert {(a.status, a.header("X-Cache")) for a in answers} == {(200, "HIT")}
    assert len(upstream.to("/page")) == 1


async def test_one_large_read_of_pipelined_requests_queues_a_bounded_number(
    client: Client, upstream: FakeUpstream
) -> None:
    # Fault 6: one read was parsed whole before reading paused, so 128 KiB of tiny requests
    # queued thousands of parsed requests (~4 MiB) behind a slow one.
    upstream.on("/slow", delay=1.0)
    assert client.proxy._http1 is not None
    connections = client.proxy._http1.connections
    burst = gets(1, "/slow", b"Cookie: remember_token=1\r\n") + gets(4000, "/x")
    most = 0
    async with RawConnection(client.port) as raw:
        await raw.send(burst)  # ~170 KiB
        for _ in range(40):
            await asyncio.sleep(0.02)
            most = max([most, *(len(c._queue) for c in connections)])
    # QUEUE_HIGH, plus what one SLICE (4 KiB) of 37-byte requests holds: 16 + 111.
    assert 0 < most <= 16 + 4096 // 37 + 1


async def test_pipelined_requests_in_one_large_read_are_not_refused_as_too_large(
    client: Client, upstream: FakeUpstream
) -> None:
    # Fault 10: a whole read was charged to the head still arriving: valid requests of 2 KiB
    # each, 100 in one write, got 431 once a read passed MAX_HEAD (64 KiB).
    upstream.on("/page")
    padding = b"X-Pad: " + b"p" * 2000 + b"\r\n"
    async with RawConnection(client.port) as raw:
        await raw.send(gets(100, extra=padding))
        answers = [await asyncio.wait_for(raw.response(), WAIT) for _ in range(100)]
    assert [a.status for a in answers] == [200] * 100


async def test_a_pipelined_burst_split_anywhere_gets_the_same_answers(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache()
    upstream.on("/page")
    data = gets(30)
    async with RawConnection(client.port) as raw:
        for start in range(0, len(data), 7):  # odd pieces, across request boundaries
            await raw.send(data[start : start + 7])
        answers = [await raw.response() for _ in range(30)]
    assert [a.status for a in answers] == [200] * 30
    assert [a.header("X-Cache") for a in answers][1:] == ["HIT"] * 29
