"""Request bodies that stop arriving (issue 11, fault 4): `[server] body_timeout` (nginx's
client_body_timeout) bounds each wait for more of a body; the client gets 408 when nothing was
sent yet, and the upstream connection (a pool slot) is let go at once."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import StartProxy
from .support import WAIT, FakeUpstream, RawConnection

STALLED = {
    "chunked": b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n",
    "content-length": b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    "large-content-length": b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
    + b"x" * 70_000,
}


@pytest.mark.parametrize("framing", STALLED)
async def test_a_body_that_stops_arriving_gets_408_and_frees_the_upstream(
    sidecache: StartProxy, upstream: FakeUpstream, framing: str
) -> None:
    client = await sidecache(server={"body_timeout": "300ms"}, upstream={"max_connections": 1})
    upstream.on("/upload")
    upstream.on("/other")
    async with RawConnection(client.port) as raw:
        await raw.send(STALLED[framing])  # and nothing more
        answer = await asyncio.wait_for(raw.response(), WAIT)
        # The one upstream connection is free for everyone else.
        other = await client.fetch("POST", "/other", data=b"x")
    assert answer.status == 408
    assert answer.header("Connection") == "close"
    assert other.status == 200


async def test_a_slow_but_steady_body_is_not_cut(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"body_timeout": "300ms"})
    upstream.on("/upload", echo=True)
    async with RawConnection(client.port) as raw:
        await raw.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):  # 1 s in all, each wait well under body_timeout
            await asyncio.sleep(0.2)
            await raw.send(b"2\r\nab\r\n")
        await raw.send(b"0\r\n\r\n")
        answer = await raw.response()
    assert answer.status == 200
    assert b'"body": "ababababab"' in answer.body
