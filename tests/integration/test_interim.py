"""Interim (1xx) responses from the app (RFC 9110 §15.2), over raw sockets at both ends.

The client whose request went upstream (a pass, the lead request of a fill, a revalidation made
for it) gets each `102`/`103` before the final response, without hop-by-hop fields, when it
speaks HTTP/1.1. Nobody else does: not an HTTP/1.0 client, not a request that waited for the
fill or a later hit, not a background refresh's. Interim responses are never stored and never
lend a field to the final response. `100` is the front's own business (it answers `Expect`);
the upstream's is dropped. An upstream that sends too many, or too large, is a 502.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import StartProxy
from .support import WAIT, FakeClock, LoopbackServer, RawConnection, RawResponse, eventually

HOST = b"Host: example.com\r\n"
LINK = "</style.css>; rel=preload; as=style"
HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: " + LINK.encode() + b"\r\nX-Hint: yes\r\n\r\n"
PAGE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=60\r\n\r\npage"
Part = bytes | asyncio.Event  # bytes are sent; an event is waited for before what follows


@dataclass
class ScriptedOrigin(LoopbackServer):
    """An origin on 127.0.0.1 answering each path's requests with the next of its scripted
    replies (the last one repeats); it records the request targets and heads."""

    replies: dict[str, list[list[Part]]]
    targets: list[str] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    url: str = ""
    _served: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                if length:
                    await reader.readexactly(length)
                target = head.split(b" ", 2)[1].decode("latin-1")
                path = target.partition("?")[0]
                self.targets.append(target)
                self.heads.append(head)
                replies = self.replies[path]
                reply = replies[min(self._served.get(path, 0), len(replies) - 1)]
                self._served[path] = self._served.get(path, 0) + 1
                for part in reply:
                    if isinstance(part, asyncio.Event):
                        await asyncio.wait_for(part.wait(), WAIT)
                    else:
                        writer.write(part)
                        await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return int(value)
    return 0


def get(path: str, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/" + version + b"\r\n" + HOST + extra + b"\r\n"


async def rest_of_stream(connection: RawConnection, within: float = 0.3) -> bytes:
    """Whatever else arrives on the connection within `within` seconds (or until it closes)."""
    assert connection.reader is not None
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := await asyncio.wait_for(connection.reader.read(65536), within):
            received += chunk
    return received


def names(response: RawResponse) -> set[str]:
    return {name.lower() for name, _ in response.headers}


async def start(sidecache: StartProxy, origin: ScriptedOrigin, **sections: Any) -> int:
    """A proxy in shared mode in front of `origin` (the origin's Cache-Control decides)."""
    client = await sidecache(mode="shared", rules=[], upstream_url=origin.url, **sections)
    return client.port


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(HINTS, id="103-early-hints"),
        pytest.param(b"HTTP/1.1 102 Processing\r\n\r\n", id="102-processing"),
    ],
)
async def test_a_miss_relays_the_interim_response_and_a_hit_never_sees_it(
    sidecache: StartProxy, interim: bytes
) -> None:
    """RFC 9110 §15.2: the interim response goes to the client of the fill as it arrives
    (before the app has sent its final response), then the 200. RFC 9111 §3: only the final
    response is stored; the hit that follows on the same connection is the 200 alone, with
    none of the interim response's fields."""
    sent_hints = asyncio.Event()
    async with ScriptedOrigin({"/page": [[interim, sent_hints, PAGE]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            first = await connection.response()
            sent_hints.set()  # the app sends its 200 only now
            miss = await connection.response()
            await connection.send(get("/page"))
            hit = await connection.response()
            after = await rest_of_stream(connection)

    expected = (int(interim[9:12]), interim[13:].split(b"\r\n", 1)[0].decode())
    assert (first.status, first.reason) == expected
    assert first.body == b""
    if expected[0] == 103:
        assert first.headers == [("Link", LINK), ("X-Hint", "yes")]
    assert (miss.status, miss.header("X-Cache"), miss.body) == (200, "MISS", b"page")
    assert (hit.status, hit.header("X-Cache"), hit.body) == (200, "HIT", b"page")
    for final in (miss, hit):
        assert not names(final) & {"link", "x-hint"}, final.headers
    assert after == b""
    assert origin.targets == ["/page"]


async def test_an_http10_client_gets_no_interim_response(sidecache: StartProxy) -> None:
    """RFC 9110 §15.2: a server must not send a 1xx response to an HTTP/1.0 client."""
    async with ScriptedOrigin({"/page": [[HINTS, PAGE]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page", b"1.0"))
            answer = await connection.response()
            after = await rest_of_stream(connection)

    assert (answer.status, answer.body) == (200, b"page")
    assert "link" not in names(answer)
    assert after == b""


async def test_a_pass_relays_the_interim_response_without_hop_by_hop_fields(
    sidecache: StartProxy,
) -> None:
    """A POST (a pass) gets the 103 too. RFC 9110 §7.6.1: Connection, the fields it names,
    Keep-Alive and the framing fields are the upstream hop's, not the client's."""
    hop = (
        b"HTTP/1.1 103 Early Hints\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
        b"Proxy-Connection: keep-alive\r\nContent-Length: 0\r\nLink: </a.js>; rel=preload\r\n\r\n"
    )
    done = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    async with ScriptedOrigin({"/form": [[hop, done]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(
                b"POST /form HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\na=1"
            )
            first = await connection.response()
            answer = await connection.response()

    assert (first.status, first.headers) == (103, [("Link", "</a.js>; rel=preload")])
    assert (answer.status, answer.header("X-Cache"), answer.body) == (201, "PASS", b"ok")
    assert "link" not in names(answer)


@pytest.mark.parametrize("expect", [False, True], ids=["no-expect", "expect-100-continue"])
async def test_an_upstream_100_continue_is_never_relayed(
    sidecache: StartProxy, expect: bool
) -> None:
    """The front answers `Expect: 100-continue` itself and does not forward it, so the
    upstream's own 100 is dropped: the client sees one 100 at most (the front's), then the
    103, then the final response."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + HINTS + ok
    async with ScriptedOrigin({"/upload": [[reply]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            head = b"PUT /upload HTTP/1.1\r\n" + HOST + b"Content-Length: 4\r\n"
            got = []
            if expect:
                await connection.send(head + b"Expect: 100-continue\r\n\r\n")
                got.append(await connection.response())
                await connection.send(b"data")
            else:
                await connection.send(head + b"\r\ndata")
            got.append(await connection.response())
            got.append(await connection.response())
            after = await rest_of_stream(connection)

    assert [r.status for r in got] == ([100] if expect else []) + [103, 200]
    assert got[-1].body == b"ok"
    assert after == b""
    assert b"expect" not in origin.heads[0].lower()


async def test_a_request_waiting_for_the_fill_gets_no_interim_response(
    sidecache: StartProxy,
) -> None:
    """The lead request's client gets the 103; a request coalesced onto its fill is answered
    from the stored 200 alone."""
    release = asyncio.Event()
    async with ScriptedOrigin({"/page": [[HINTS, release, PAGE]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as lead, RawConnection(port) as waiter:
            await lead.send(get("/page"))
            hints = await lead.response()
            await waiter.send(get("/page"))
            await asyncio.sleep(0.1)  # the waiter is queued behind the fill
            release.set()
            lead_answer = await lead.response()
            waited = await waiter.response()
            after = await rest_of_stream(waiter)

    assert hints.status == 103
    assert (lead_answer.status, lead_answer.header("X-Cache")) == (200, "MISS")
    assert (waited.status, waited.header("X-Cache"), waited.body) == (200, "HIT", b"page")
    assert "link" not in names(waited)
    assert after == b""
    assert origin.targets == ["/page"]


async def test_a_revalidation_relays_the_interim_response_to_its_client(
    sidecache: StartProxy, clock: FakeClock
) -> None:
    """A stale entry revalidated for a client: the 103 that precedes the 304 is that client's;
    the refreshed entry answers without the 103's fields."""
    fields = b'Cache-Control: max-age=10\r\nETag: "v1"\r\n'
    stored = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n" + fields + b"\r\npage"
    current = HINTS + b"HTTP/1.1 304 Not Modified\r\n" + fields + b"\r\n"
    async with ScriptedOrigin({"/page": [[stored], [current]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            first = await connection.response()
            clock.advance(20)  # stale: revalidated
            await connection.send(get("/page"))
            hints = await connection.response()
            revalidated = await connection.response()

    assert (first.status, first.header("X-Cache")) == (200, "MISS")
    assert hints.status == 103
    assert (revalidated.status, revalidated.body) == (200, b"page")
    assert revalidated.header("X-Cache") == "HIT"
    assert "link" not in names(revalidated)
    assert b'if-none-match: "v1"' in origin.heads[1].lower()


async def test_a_background_refresh_drops_interim_responses(
    sidecache: StartProxy, clock: FakeClock
) -> None:
    """stale-while-revalidate: the client is answered from the stale entry at once; the
    refresh behind it has no client, so its 103 goes nowhere, and the entry it stores has
    none of the 103's fields."""
    cache_control = b"Cache-Control: max-age=10, stale-while-revalidate=60\r\n"
    first = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + cache_control + b"\r\nv1"
    second = HINTS + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + cache_control + b"\r\nv2"
    async with ScriptedOrigin({"/page": [[first], [second]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            miss = await connection.response()
            clock.advance(20)  # stale, within the window
            await connection.send(get("/page"))
            stale = await connection.response()
            await eventually(lambda: len(origin.targets) == 2)
            await asyncio.sleep(0.1)  # the refresh reads its answer and stores it
            await connection.send(get("/page"))
            refreshed = await connection.response()
            after = await rest_of_stream(connection)

    assert (miss.status, miss.body) == (200, b"v1")
    assert (stale.status, stale.header("X-Cache"), stale.body) == (200, "STALE", b"v1")
    assert (refreshed.status, refreshed.header("X-Cache"), refreshed.body) == (200, "HIT", b"v2")
    assert "link" not in names(refreshed)
    assert after == b""


def interims(count: int, status: bytes = b"103 Early Hints", fields: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\n" + fields + b"\r\n") * count


FAULTS = {
    "16-interim-responses": (interims(16), 16, 200),
    "17-interim-responses": (interims(17), 16, 502),
    "128-fields": (interims(1, fields=b"X-A: 1\r\n" * 128), 1, 200),
    "129-fields": (interims(1, fields=b"X-A: 1\r\n" * 129), 0, 502),
    "64-KiB-of-fields": (interims(8, fields=b"X-A: " + b"a" * 8185 + b"\r\n"), 8, 200),
    "over-64-KiB-of-fields": (interims(9, fields=b"X-A: " + b"a" * 8185 + b"\r\n"), 8, 502),
    "content-length-0": (interims(1, fields=b"Content-Length: 0\r\n"), 1, 200),
    "content-length": (interims(1, b"150 Odd", b"Content-Length: 5\r\n") + b"hello", 0, 502),
    "transfer-encoding": (interims(1, fields=b"Transfer-Encoding: chunked\r\n"), 0, 502),
}


@pytest.mark.parametrize("case", FAULTS)
async def test_interim_responses_are_bounded(sidecache: StartProxy, case: str) -> None:
    """At most 16 interim responses per exchange, each of at most 128 fields and 64 KiB of
    fields in all (the front's request-head limits); none with Transfer-Encoding or a non-zero
    Content-Length (RFC 9110 §8.6, RFC 9112 §6.1). Beyond that the upstream is broken: a 502
    after the interim responses already relayed, and nothing stored."""
    sent, relayed, status = FAULTS[case]
    async with ScriptedOrigin({"/page": [[sent + PAGE], [PAGE]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            got = [await connection.response() for _ in range(relayed + 1)]
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            again = await connection.response()

    assert [r.status for r in got[:-1]] == [int(sent[9:12])] * relayed
    assert got[-1].status == status
    assert again.status == 200
    assert again.header("X-Cache") == ("HIT" if status == 200 else "MISS")
    assert len(origin.targets) == (1 if status == 200 else 2)


async def test_an_upstream_101_is_still_a_502(sidecache: StartProxy) -> None:
    """Nothing is upgraded through sidecache: an upstream's 101 is never relayed, and the
    exchange fails as before."""
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    switch += b"\r\n"
    async with ScriptedOrigin({"/page": [[switch]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            answer = await connection.response()

    assert answer.status == 502
    assert origin.targets == ["/page"]


async def test_a_client_that_left_after_its_interim_response_cancels_the_fill(
    sidecache: StartProxy,
) -> None:
    """A client that leaves after its 103 cancels its fill as any other does (nothing is
    stored, nothing is written to it); the next client's fill gets its own 103."""
    release = asyncio.Event()
    async with ScriptedOrigin({"/page": [[HINTS, release, PAGE], [HINTS, PAGE]]}) as origin:
        port = await start(sidecache, origin)
        async with RawConnection(port) as leaving:
            await leaving.send(get("/page"))
            assert (await leaving.response()).status == 103
        await asyncio.sleep(0.1)
        release.set()
        async with RawConnection(port) as connection:
            await connection.send(get("/page"))
            statuses = [(await connection.response()).status for _ in range(2)]

    assert statuses == [103, 200]
    assert origin.targets == ["/page", "/page"]
