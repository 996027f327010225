"""`Sidecache-Debug: 1` over real sockets: the decision trace on the response, for the peers
`[admin] debug_from` lists (loopback by default), and never a change to what is cached or sent
upstream (product rule: the trace is added on delivery only; the header is never forwarded).
"""

from __future__ import annotations

import re

from proxy.trace import key_hash

from .conftest import StartProxy
from .support import FakeUpstream

DEBUG = {"Sidecache-Debug": "1"}
KEY = "http://127.0.0.1:{port}/page\x00identity"  # the default key template and no coding


async def test_a_trusted_peer_gets_the_trace_on_miss_and_hit_and_the_entry_is_unchanged(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache()  # debug_from: loopback, the default
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])

    miss = await client.get("/page", DEBUG)
    hit = await client.get("/page", DEBUG)
    plain = await client.get("/page")

    key = KEY.format(port=client.port)
    trace = (
        f'rule="anonymous-reads"; decision=lookup; cache="default"; key-hash={key_hash(key)}; '
        "visitor=anonymous"
    )
    assert (miss.x_cache, miss.headers.get("Sidecache-Trace")) == ("MISS", trace)
    assert (hit.x_cache, hit.headers.get("Sidecache-Trace")) == ("HIT", trace)
    assert hit.body == miss.body == b"GET /page #1"
    # The stored entry is the upstream's answer: the next request is a plain hit, no trace.
    assert (plain.x_cache, plain.body) == ("HIT", b"GET /page #1")
    assert "Sidecache-Trace" not in plain.headers
    assert len(upstream.to("/page")) == 1
    assert "sidecache-debug" not in upstream.to("/page")[0].names


async def test_a_stored_page_asked_with_the_header_first_is_served_without_it(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    """The hit path's order too: stored by a plain miss, a debug hit, then a plain hit."""
    client = await sidecache()
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])

    await client.get("/page")
    debugged = await client.get("/page", DEBUG)
    again = await client.get("/page")

    assert debugged.x_cache == "HIT" and "decision=lookup" in debugged.headers["Sidecache-Trace"]
    assert again.x_cache == "HIT" and "Sidecache-Trace" not in again.headers
    assert len(upstream.seen) == 1


async def test_a_pass_gets_the_trace_and_the_upstream_never_sees_the_header(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache()

    got = await client.get("/page", {**DEBUG, "Cookie": "remember_token=s3cret"})
    posted = await client.fetch("POST", "/form", DEBUG, data=b"x=1")

    assert got.x_cache == "PASS"
    # The test config's rule says `anonymous = true`: it did not match, and is named as the
    # rule that would have cached the page for an anonymous visitor.
    assert got.headers["Sidecache-Trace"] == (
        'rule="anonymous-reads"; decision=pass; reason=authenticated; visitor=logged-in; '
        'skipped="1:anonymous"'
    )
    assert "s3cret" not in got.headers["Sidecache-Trace"]
    assert posted.headers["Sidecache-Trace"] == (
        'rule=-; decision=pass; reason=no-rule; visitor=anonymous; skipped="1:method"'
    )
    assert [seen.names & {"sidecache-debug"} for seen in upstream.seen] == [set(), set()]
    assert upstream.to("/page")[0].header("Cookie") == "remember_token=s3cret"


async def test_an_untrusted_peer_gets_no_trace_and_the_header_is_not_forwarded(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin={"debug_from": ["10.0.0.0/8"]})  # 127.0.0.1 is not listed
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])

    miss = await client.get("/page", DEBUG)
    hit = await client.get("/page", DEBUG)
    passed = await client.get("/other", {**DEBUG, "Authorization": "Basic eDp5"})

    assert (miss.x_cache, hit.x_cache, passed.x_cache) == ("MISS", "HIT", "PASS")
    assert all("Sidecache-Trace" not in got.headers for got in (miss, hit, passed))
    assert len(upstream.seen) == 2
    assert all("sidecache-debug" not in seen.names for seen in upstream.seen)


async def test_shared_mode_fills_forward_everything_but_the_debug_header(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    """Shared mode's fills forward the request as it came (forward_all): not this header."""
    client = await sidecache(mode="shared", rules=[], admin={"debug_from": []})
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])

    got = await client.get("/page", {**DEBUG, "X-Other": "kept"})

    assert got.x_cache == "MISS" and "Sidecache-Trace" not in got.headers
    seen = upstream.to("/page")[0]
    assert seen.header("X-Other") == "kept"
    assert "sidecache-debug" not in seen.names


async def test_the_trace_rides_on_a_raw_hit_and_holds_no_line_break(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache()
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    await client.get("/page")

    raw = await client.raw(
        f"GET /page HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nSidecache-Debug: 1\r\n"
        "Connection: close\r\n\r\n".encode()
    )

    assert raw.header("X-Cache") == "HIT"
    trace = raw.header("Sidecache-Trace") or ""
    assert re.fullmatch(
        r'rule="anonymous-reads"; decision=lookup; .*key-hash=[0-9a-f]{16}.*', trace
    )
