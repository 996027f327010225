"""Client and upstream limits (issue 5): slowloris is cut off, idle keep-alive connections
close, request bodies can be bounded, an upstream exchange can be bounded in total. Real
sockets; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from .conftest import StartProxy
from .support import WAIT, Client, FakeUpstream, RawConnection

HEAD = b"GET /page HTTP/1.1\r\nHost: example.com\r\n"


async def closed(connection: RawConnection, within: float = WAIT) -> bool:
    assert connection.reader is not None
    try:
        rest = await asyncio.wait_for(connection.reader.read(), within)
    except ConnectionResetError:
        return True
    return rest == b"" or rest.endswith(b"")


async def test_a_slowloris_head_gets_408_while_others_are_served(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"header_timeout": "500ms"})
    started = time.monotonic()
    async with client.connect() as slow:
        await slow.send(HEAD)

        async def drip() -> None:  # a header byte every 100 ms, never the end of the head
            with contextlib.suppress(ConnectionError):
                for byte in b"X-Slow: " + b"a" * 40:
                    await slow.send(bytes([byte]))
                    await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        others = [await client.get("/other") for _ in range(3)]  # served meanwhile
        answer = await slow.response()
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dripping
        cut = await closed(slow)
    elapsed = time.monotonic() - started

    assert [o.status for o in others] == [200, 200, 200]
    assert answer.status == 408
    assert cut
    assert elapsed < 3.0  # cut after ~0.5 s, not after the 4 s the drip would take
    assert upstream.to("/page") == []


async def test_a_head_that_arrives_in_time_in_pieces_is_served(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"header_timeout": "1s"})
    async with client.connect() as connection:
        for piece in (b"GET /page HTTP/1.1\r\n", b"Host: example.com\r\n", b"\r\n"):
            await connection.send(piece)
            await asyncio.sleep(0.1)
        answer = await connection.response()
        # the next request on the connection starts its own clock
        await asyncio.sleep(0.6)
        await connection.send(HEAD + b"\r\n")
        again = await connection.response()
    assert (answer.status, again.status) == (200, 200)


async def test_an_idle_keep_alive_connection_is_closed(sidecache: StartProxy) -> None:
    client = await sidecache(server={"keepalive_timeout": "300ms"})
    async with client.connect() as connection:
        await connection.send(HEAD + b"\r\n")
        assert (await connection.response()).status == 200
        started = time.monotonic()
        assert await closed(connection)
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("body", "chunked", "status"),
    [
        pytest.param(b"x" * 512, False, 200, id="within"),
        pytest.param(b"x" * 2048, False, 413, id="content-length-over"),
    ],
)
async def test_max_body_size(
    sidecache: StartProxy, upstream: FakeUpstream, body: bytes, chunked: bool, status: int
) -> None:
    client = await sidecache(server={"max_body_size": "1KiB"})
    answer = await client.raw(
        b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n%b"
        % (len(body), body)
    )
    assert answer.status == status
    assert len(upstream.to("/form")) == (1 if status == 200 else 0)


async def test_a_chunked_body_past_max_body_size_is_cut(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"max_body_size": "1KiB"})
    async with client.connect() as connection:
        await connection.send(
            b"POST /form HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n"
            + b"400\r\n"
            + b"y" * 1024
            + b"\r\n0\r\n\r\n"
        )
        answer = await connection.response()
        cut = await closed(connection)
    assert answer.status == 413
    assert cut
    # the upstream never took the part before the limit for a whole body
    assert not any(s.complete for s in upstream.to("/form"))


async def test_total_timeout_bounds_a_slow_upstream(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/slow", delay=1.0)
    upstream.on("/dribble", chunks=[b"a" * 100] * 10, chunk_delay=0.2)
    client: Client = await sidecache(upstream={"total_timeout": "500ms"})
    slow = await client.get("/slow")
    heads = []
    for _ in range(2):
        async with client.connect() as connection:
            await connection.send(b"GET /dribble HTTP/1.1\r\nHost: example.com\r\n\r\n")
            heads.append(await connection.response(head=True))
            heads[-1].body = await asyncio.wait_for(connection.reader.read(), WAIT)  # type: ignore[union-attr]

    assert slow.status == 504
    # headers were out: the only honest signal is cutting the connection, mid-body
    assert [h.header("X-Cache") for h in heads] == ["MISS", "MISS"]  # the cut one was not stored
    assert all(len(h.body) < 1000 for h in heads)
