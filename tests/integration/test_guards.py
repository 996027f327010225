"""Guards for promises no other test pinned (found by mutating the code; each of these mutations
passed the whole suite before): the upstream session's cookie jar and auto headers, the
connection pool and its cap, the key never leaving the proxy, the access log's time unit.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from .conftest import StartProxy
from .support import Client, FakeUpstream, Reply


async def test_cookies_an_upstream_sets_never_ride_on_later_fills(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # DESIGN trap: a shared cookie jar carries one visitor's cookies on another's request.
    # aiohttp's jar ignores cookies from IP hosts, so the upstream is addressed by name here.
    client = await sidecache(upstream_url=upstream.url.replace("127.0.0.1", "localhost"))
    upstream.on(
        "/login",
        Reply(headers=[("Set-Cookie", "remember_token=alice|sig; Path=/")], body=b"hi alice"),
    )

    logged_in = await client.raw(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    fill = await client.get("/home", {"Host": "localhost"})

    assert logged_in.header("Set-Cookie") == "remember_token=alice|sig; Path=/"
    assert fill.x_cache == "MISS"
    assert upstream.to("/home")[0].values("Cookie") == []


async def test_a_pass_adds_no_headers_the_client_did_not_send(
    client: Client, upstream: FakeUpstream
) -> None:
    # Issue 2: headers are forwarded unchanged. aiohttp's client adds Accept, Accept-Encoding
    # ("gzip, deflate": compressed answers for a client that never asked) and User-Agent.
    await client.raw(b"POST /bare HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    seen = upstream.to("/bare")[0]
    assert {"accept", "accept-encoding", "user-agent", "content-type"}.isdisjoint(seen.names)


async def test_requests_reuse_one_pooled_upstream_connection(
    client: Client, upstream: FakeUpstream
) -> None:
    # Issue 2: a pooled keep-alive client session.
    for index in range(10):
        await client.raw(
            b"POST /pool HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n" + bytes([48 + index])
        )
    assert len(upstream.to("/pool")) == 10
    assert len({seen.peer for seen in upstream.to("/pool")}) == 1


async def test_max_connections_caps_concurrent_upstream_requests(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Issue 2 / [upstream] max_connections: six slow requests at once share two connections
    # (without the cap each would open its own).
    client = await sidecache(upstream={"max_connections": 2})
    upstream.on("/slow", Reply(delay=0.2))

    answers = await asyncio.gather(
        *(
            client.raw(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
            for _ in range(6)
        )
    )

    assert [a.status for a in answers] == [200] * 6
    assert len(upstream.to("/slow")) == 6
    assert len({s.peer for s in upstream.to("/slow")}) == 2


async def test_the_cache_key_never_leaves_the_proxy(
    sidecache: StartProxy, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 2: "The cache key itself is never exposed" (a key can carry cookie values).
    caplog.set_level(logging.INFO, logger="sidecache.access")
    rule = {
        "name": "by-lang",
        "keep_cookies": ["lang"],
        "key": "{host}{uri}|{cookie[lang]}|secret-marker",
    }
    client = await sidecache(rules=[rule])
    answers = [await client.get("/k", {"Cookie": "lang=xx-secret"}) for _ in range(2)]

    assert [a.x_cache for a in answers] == ["MISS", "HIT"]
    for answer in answers:
        shown = " ".join(f"{n}: {v}" for n, v in answer.headers.items())
        assert "secret-marker" not in shown and "xx-secret" not in shown
        assert b"secret-marker" not in answer.body
    assert not any("secret-marker" in r.getMessage() for r in caplog.records)


async def test_the_access_log_time_is_in_microseconds(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 2: "response time in microseconds"; a 200 ms upstream must log ≥ 200000us.
    caplog.set_level(logging.INFO, logger="sidecache.access")
    upstream.on("/took", Reply(delay=0.2))
    await client.raw(b"POST /took HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    line = next(r.getMessage() for r in caplog.records if "/took" in r.getMessage())
    micros = int(next(f for f in line.split() if f.endswith("us"))[:-2])
    assert 200_000 <= micros < 5_000_000
