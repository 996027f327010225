"""Connections that take a slot and do nothing (issue 11): a deadline for the first byte, and
`[server] max_client_connections`."""

from __future__ import annotations

import asyncio

from .conftest import StartProxy
from .support import WAIT, FakeUpstream, RawConnection


async def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # nginx's client_header_timeout counts from the accept: a silent connection is closed
    # (without an answer: there is no request to answer), not kept for keepalive_timeout.
    client = await sidecache(server={"header_timeout": "300ms", "keepalive_timeout": "60s"})
    async with RawConnection(client.port) as raw:
        assert raw.reader is not None
        assert await asyncio.wait_for(raw.reader.read(), WAIT) == b""  # closed by the proxy


async def test_connections_past_max_client_connections_get_503(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(server={"max_client_connections": 2})
    upstream.on("/page")
    async with RawConnection(client.port) as one, RawConnection(client.port) as two:
        await asyncio.sleep(0.05)  # both accepted
        async with RawConnection(client.port) as three:
            await three.send(b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
            refused = await three.response()
            assert three.reader is not None
            assert await asyncio.wait_for(three.reader.read(), WAIT) == b""
        await one.send(b"GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
        served = await one.response()
        del two
    assert (refused.status, refused.header("Connection")) == (503, "close")
    assert served.status == 200
    await asyncio.sleep(0.05)  # the slots are free again
    again = await client.get("/page")
    assert again.status == 200
