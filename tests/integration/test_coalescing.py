"""Request coalescing and hit-for-pass (issue 5), through the real proxy to a real upstream.

Concurrent misses for one key send one request upstream; the others wait (a bounded wait) and
are answered from what it stored. A response that cannot be stored releases them to go
upstream on their own, and the key is remembered as uncacheable for a while (hit-for-pass), so
the next burst does not queue behind a fill that will not be stored either.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest

from .conftest import StartProxy
from .support import WAIT, Client, FakeUpstream, Got

BURST = 500


async def burst(client: Client, count: int, target: str = "/page") -> list[Got]:
    """`count` concurrent GETs, each on its own connection."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("Accept-Encoding",)
    ) as session:

        async def one() -> Got:
            async with session.get(client.url(target)) as response:
                return Got(response.status, response.headers, await response.read())

        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 6 * WAIT)


async def test_a_burst_of_misses_sends_one_request_upstream(
    client: Client, upstream: FakeUpstream
) -> None:
    # The measure: 500 concurrent anonymous requests for one cold cacheable URL whose
    # upstream takes 250 ms: one upstream request (two at most), 500 correct bodies.
    upstream.on("/page", delay=0.25)
    answers = await burst(client, BURST)

    assert len(upstream.to("/page")) == 1
    assert [a.status for a in answers] == [200] * BURST
    assert {a.body for a in answers} == {b"GET /page #1"}
    caches = [a.x_cache for a in answers]
    assert caches.count("MISS") == 1 and caches.count("HIT") == BURST - 1


async def test_waiters_give_up_after_coalesce_wait_and_go_upstream(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", delay=1.0)
    client = await sidecache(caches={"default": {"coalesce_wait": "100ms"}})
    answers = await burst(client, 5)
    assert len(upstream.to("/page")) == 5
    assert {a.x_cache for a in answers} == {"MISS"}


async def test_coalescing_can_be_turned_off(sidecache: StartProxy, upstream: FakeUpstream) -> None:
    upstream.on("/page", delay=0.2)
    client = await sidecache(caches={"default": {"coalesce_wait": "0s"}})
    await burst(client, 5)
    assert len(upstream.to("/page")) == 5
    assert upstream.most_active == 5


async def hit_for_pass_proxy(sidecache: StartProxy, **cache: Any) -> Client:
    return await sidecache(caches={"default": {"hit_for_pass": "10s", **cache}})


@pytest.mark.parametrize(
    ("reply", "later"),
    [
        # Not personal (only 200 is stored): later requests are still cookie-less fills.
        pytest.param({"status": 404}, "MISS", id="uncacheable"),
        # Personal: later requests are passes of the visitors' own requests.
        pytest.param({"headers": [("Cache-Control", "no-store")]}, "PASS", id="personal"),
    ],
)
async def test_an_uncacheable_fill_releases_its_waiters_and_the_key_is_passed(
    sidecache: StartProxy, upstream: FakeUpstream, reply: dict[str, Any], later: str
) -> None:
    upstream.on("/page", delay=0.25, **reply)
    client = await hit_for_pass_proxy(sidecache)

    first = await burst(client, 10)
    # Released: each waiter went upstream on its own once the leader's fill was not stored.
    assert len(upstream.to("/page")) == 10
    assert upstream.most_active < 10  # the first went alone, the others after it
    assert sorted(a.x_cache or "" for a in first) == sorted(["MISS"] + [later] * 9)

    upstream.most_active = 0
    second = await burst(client, 10)
    # Hit-for-pass: nobody waits for a fill that will not be stored; all go at once.
    assert len(upstream.to("/page")) == 20
    assert upstream.most_active == 10
    assert {a.x_cache for a in second} == {later}


async def test_hit_for_pass_expires_on_the_clock(
    sidecache: StartProxy, upstream: FakeUpstream, clock: Any
) -> None:
    upstream.on("/page", delay=0.2, headers=[("Cache-Control", "no-store")])
    client = await hit_for_pass_proxy(sidecache)
    await burst(client, 3)
    clock.advance(11)  # past hit_for_pass: the next burst coalesces again
    upstream.on("/page", delay=0.2)  # and now the page is cacheable
    answers = await burst(client, 10)
    assert len(upstream.to("/page")) == 3 + 1
    assert sorted(a.x_cache or "" for a in answers) == ["HIT"] * 9 + ["MISS"]


async def test_a_stale_entry_is_revalidated_once_for_a_burst(
    sidecache: StartProxy, upstream: FakeUpstream, clock: Any
) -> None:
    upstream.on(
        "/page",
        delay=0.25,
        headers=[("Cache-Control", "max-age=10"), ("ETag", '"a"')],
        conditional=True,
    )
    client = await sidecache(rules=[{"name": "origin", "action": "cache", "ttl": "origin"}])
    await client.get("/page")
    clock.advance(11)
    answers = await burst(client, 50)
    assert len(upstream.to("/page")) == 2
    assert upstream.to("/page")[1].header("If-None-Match") == '"a"'
    assert {a.body for a in answers} == {b"GET /page #1"}


async def test_a_client_that_does_not_read_never_holds_up_the_fill_for_others(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Issue 11, fault 5: a fill completes into the store at the upstream's pace; the requests
    # waiting for it get the entry the moment it is stored, whatever its first client does.
    size = 16 * 1024 * 1024  # far more than the kernel buffers between us and the client
    client = await sidecache(
        caches={"default": {"item_size": "32MiB", "max_bytes": "64MiB", "coalesce_wait": "3s"}}
    )
    upstream.on("/big", body=b"x" * size, delay=0.2)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", client.port)), WAIT)
    try:
        request = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n"
        await loop.sock_sendall(sock, request)  # and never read
        await asyncio.sleep(0.05)  # it leads the fill
        other = await client.get("/big", {"Host": "127.0.0.1", "Accept-Encoding": "identity"})
    finally:
        sock.close()
    assert (other.status, other.x_cache, len(other.body)) == (200, "HIT", size), other.cache_status
    assert len(upstream.to("/big")) == 1
