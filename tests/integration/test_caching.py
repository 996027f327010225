"""Hit, miss and store: what gets stored, for how long, under which key, and what a hit carries.

Product rules from issue 2 ("Caches"); RFC 9111 for Age (§5.1) and RFC 9211 for Cache-Status.
"""

from __future__ import annotations

import gzip
import time
from email.utils import formatdate

import pytest

from .conftest import StartProxy
from .support import Client, FakeClock, FakeUpstream

STORED = "sidecache; fwd=miss; stored"
HIT = "sidecache; hit"


def not_stored(detail: str) -> str:
    return f'sidecache; fwd=miss; detail="{detail}"'


HIT_FOR_PASS = 'sidecache; fwd=bypass; detail="hit-for-pass"'


async def test_second_anonymous_get_is_a_hit(client: Client, upstream: FakeUpstream) -> None:
    first = await client.get("/page")
    second = await client.get("/page")

    assert (first.status, first.body, first.x_cache) == (200, b"GET /page #1", "MISS")
    assert first.cache_status == STORED
    assert "Age" not in first.headers
    assert (second.status, second.body, second.x_cache) == (200, b"GET /page #1", "HIT")
    assert second.cache_status == HIT
    assert second.headers["Age"] == "0"
    assert second.headers["Content-Type"] == "text/plain"
    assert second.headers["Content-Length"] == str(len(b"GET /page #1"))
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/page")]


async def test_a_hit_never_reaches_upstream(client: Client, upstream: FakeUpstream) -> None:
    await client.get("/stable")
    upstream.on("/stable", status=500, body=b"upstream changed its mind")

    hits = [await client.get("/stable") for _ in range(5)]

    assert {(h.status, h.body, h.x_cache) for h in hits} == {(200, b"GET /stable #1", "HIT")}
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("upstream_age", "elapsed", "age"),
    [
        (None, 0.0, "0"),
        (None, 7.4, "7"),
        ("5", 0.0, "5"),  # RFC 9111 §4.2.3: the age the upstream reported is carried on
        ("5", 3.0, "8"),
        ("junk", 2.0, "2"),  # an invalid Age counts as 0
    ],
)
async def test_age_on_hits_counts_on_the_injected_clock(
    client: Client,
    upstream: FakeUpstream,
    clock: FakeClock,
    upstream_age: str | None,
    elapsed: float,
    age: str,
) -> None:
    # A Date a minute ahead: no apparent age (§4.2.3), so only Age and the clock count here.
    ahead = [("Date", formatdate(time.time() + 60, usegmt=True))]
    upstream.on("/aged", headers=ahead + ([("Age", upstream_age)] if upstream_age else []))
    await client.get("/aged")
    clock.advance(elapsed)

    hit = await client.get("/aged")

    assert hit.x_cache == "HIT"
    assert hit.headers.getall("Age") == [age]


@pytest.mark.parametrize(
    ("cache_ttl", "rule_ttl", "elapsed", "expected"),
    [
        ("10s", None, 9.9, "HIT"),
        ("10s", None, 10.1, "MISS"),
        ("1m", None, 59.0, "HIT"),
        ("1m", None, 61.0, "MISS"),
        ("10s", "2s", 1.9, "HIT"),  # a rule's ttl overrides its cache's
        ("10s", "2s", 2.1, "MISS"),
        ("1s", "30s", 29.0, "HIT"),
    ],
)
async def test_entries_expire_after_their_ttl(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    clock: FakeClock,
    cache_ttl: str,
    rule_ttl: str | None,
    elapsed: float,
    expected: str,
) -> None:
    rule = {"anonymous": True, "action": "cache"} | ({"ttl": rule_ttl} if rule_ttl else {})
    client = await sidecache(caches={"default": {"ttl": cache_ttl}}, rules=[rule])
    await client.get("/ttl")
    clock.advance(elapsed)

    again = await client.get("/ttl")

    fresh = expected == "MISS"
    assert again.x_cache == expected
    assert again.body == (b"GET /ttl #2" if fresh else b"GET /ttl #1")
    assert len(upstream.to("/ttl")) == (2 if fresh else 1)


async def test_an_expired_entry_is_replaced_by_the_refill(
    client: Client, upstream: FakeUpstream, clock: FakeClock
) -> None:
    await client.get("/news")
    clock.advance(11)
    refill = await client.get("/news")
    clock.advance(3)
    hit = await client.get("/news")

    assert (refill.x_cache, refill.body) == ("MISS", b"GET /news #2")
    assert (hit.x_cache, hit.body, hit.headers["Age"]) == ("HIT", b"GET /news #2", "3")
    assert len(upstream.to("/news")) == 2


async def test_item_count_evicts_the_least_recently_used(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(caches={"default": {"items": 2}})
    await client.get("/one")
    await client.get("/two")
    assert (await client.get("/one")).x_cache == "HIT"  # /two is now the least recently used

    await client.get("/three")  # evicts /two

    assert (await client.get("/one")).x_cache == "HIT"
    assert (await client.get("/three")).x_cache == "HIT"
    assert (await client.get("/two")).x_cache == "MISS"
    assert [len(upstream.to(p)) for p in ("/one", "/two", "/three")] == [1, 2, 1]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("/list?page=1", "/list?page=2"),
        ("/list", "/list?page=1"),
        ("/list?a=1&b=2", "/list?b=2&a=1"),  # the raw query is the key: no reordering
        ("/Case", "/case"),
        ("/x?q=%41", "/x?q=A"),  # no decoding either
    ],
)
async def test_distinct_targets_get_distinct_entries(
    client: Client, upstream: FakeUpstream, first: str, second: str
) -> None:
    misses = [await client.get(first), await client.get(second)]
    hits = [await client.get(first), await client.get(second)]

    assert [m.x_cache for m in misses] == ["MISS", "MISS"]
    assert [h.x_cache for h in hits] == ["HIT", "HIT"]
    assert [h.body for h in hits] == [m.body for m in misses]
    assert misses[0].body != misses[1].body
    assert [s.target for s in upstream.seen] == [first, second]


@pytest.mark.parametrize("status", [203, 206, 301, 404, 410, 500, 503])
async def test_only_200_is_stored(client: Client, upstream: FakeUpstream, status: int) -> None:
    upstream.on("/status", status=status, headers=[("Location", "/elsewhere")])

    answers = [await client.get("/status") for _ in range(2)]

    assert [a.status for a in answers] == [status, status]
    assert [a.x_cache for a in answers] == ["MISS", "MISS"]
    assert answers[1].cache_status == not_stored("status")
    assert answers[1].body == b"GET /status #2"
    assert len(upstream.to("/status")) == 2


@pytest.mark.parametrize(
    ("cache_control", "detail"),
    [
        (["no-store"], "no-store"),
        (["private"], "private"),
        (["no-cache"], "no-cache"),
        (["max-age=600, private"], "private"),
        (["Public, No-Store"], "no-store"),  # directive names are case-insensitive
        (['private="Set-Cookie"'], "private"),
        (["public", "no-store"], "no-store"),  # a second Cache-Control field counts too
    ],
)
async def test_refusing_cache_control_is_not_stored(
    client: Client, upstream: FakeUpstream, cache_control: list[str], detail: str
) -> None:
    upstream.on("/cc", headers=[("Cache-Control", value) for value in cache_control])

    answers = [await client.get("/cc") for _ in range(2)]

    assert answers[0].x_cache == "MISS"
    assert answers[0].cache_status == not_stored(detail)
    if detail == "no-cache":  # not personal: filled again (no waiting for each other's fills)
        assert (answers[1].x_cache, answers[1].cache_status) == ("MISS", not_stored(detail))
    else:  # private and no-store say the page is personal: hit-for-pass
        assert (answers[1].x_cache, answers[1].cache_status) == ("PASS", HIT_FOR_PASS)
    assert answers[1].headers.getall("Cache-Control") == cache_control
    assert len(upstream.to("/cc")) == 2


@pytest.mark.parametrize(
    ("vary", "detail"),
    [
        ("*", "vary-star"),
        ("X-Device", "vary"),  # the fill does not send it: the origin never saw the value
        ("Accept-Encoding, X-Device", "vary"),
        ("Accept-Encoding", None),
        ("Cookie", None),
        ("accept-encoding, cookie", None),
    ],
)
async def test_vary_naming_headers_a_fill_does_not_send_is_not_stored(
    client: Client, upstream: FakeUpstream, vary: str, detail: str | None
) -> None:
    upstream.on("/vary", headers=[("Vary", vary)])

    first = await client.get("/vary", {"X-Device": "phone"})
    second = await client.get("/vary", {"X-Device": "tv"})

    if detail is None:
        assert (first.cache_status, second.x_cache) == (STORED, "HIT")
        assert len(upstream.to("/vary")) == 1
    else:
        assert (first.cache_status, second.x_cache) == (not_stored(detail), "MISS")
        assert second.body == b"GET /vary #2"
        assert len(upstream.to("/vary")) == 2
    assert second.headers["Vary"] == vary


@pytest.mark.parametrize("vary", ["User-Agent", "Accept-Encoding, user-agent"])
async def test_vary_on_a_header_a_fill_sends_stores_one_variant_per_value(
    client: Client, upstream: FakeUpstream, vary: str
) -> None:
    # RFC 9111 §4.1: each value of the varying header selects its own stored response.
    upstream.on("/vary", headers=[("Vary", vary)])
    agents = ["curl/8", "Firefox/140", "curl/8", " Firefox/140 ", "Firefox/140"]
    answers = [await client.get("/vary", {"User-Agent": agent}) for agent in agents]

    assert [a.x_cache for a in answers] == ["MISS", "MISS", "HIT", "HIT", "HIT"]
    assert [a.body for a in answers] == [
        b"GET /vary #1",
        b"GET /vary #2",
        b"GET /vary #1",
        b"GET /vary #2",
        b"GET /vary #2",
    ]
    assert [s.header("User-Agent") for s in upstream.to("/vary")] == ["curl/8", "Firefox/140"]


async def test_vary_on_a_header_the_key_carries_is_stored_per_value(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    rule = {"anonymous": True, "key": "{scheme}://{host}{uri}|{header[User-Agent]}"}
    client = await sidecache(rules=[rule])
    upstream.on("/ua", headers=[("Vary", "User-Agent")])

    curl = [await client.get("/ua", {"User-Agent": "curl/8"}) for _ in range(2)]
    firefox = [await client.get("/ua", {"User-Agent": "Firefox/140"}) for _ in range(2)]

    assert [a.x_cache for a in curl + firefox] == ["MISS", "HIT", "MISS", "HIT"]
    assert [a.body for a in curl + firefox] == [b"GET /ua #1"] * 2 + [b"GET /ua #2"] * 2
    assert [s.header("User-Agent") for s in upstream.seen] == ["curl/8", "Firefox/140"]


async def test_head_is_answered_from_the_get_entry(client: Client, upstream: FakeUpstream) -> None:
    get = await client.get("/doc")
    head = await client.head("/doc")

    assert (head.status, head.x_cache, head.cache_status, head.body) == (200, "HIT", HIT, b"")
    assert head.headers["Content-Length"] == str(len(get.body))
    assert head.headers["Content-Type"] == "text/plain"
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/doc")]


async def test_a_head_miss_fills_the_entry_a_get_then_hits(
    client: Client, upstream: FakeUpstream
) -> None:
    head = await client.head("/doc")
    get = await client.get("/doc")

    assert (head.status, head.x_cache, head.body) == (200, "MISS", b"")
    assert head.headers["Content-Length"] == str(len(b"GET /doc #1"))
    assert (get.status, get.x_cache, get.body) == (200, "HIT", b"GET /doc #1")
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/doc")]


PLAIN = b"<p>" + b"compressible text " * 200 + b"</p>"
GZIPPED = gzip.compress(PLAIN, mtime=0)


async def test_a_gzip_body_passes_untouched_and_only_to_clients_that_accept_it(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/zipped", body=PLAIN, gzip=True)

    zipped = await client.get("/zipped", {"Accept-Encoding": "gzip, deflate"})
    plain = await client.get("/zipped")
    plain_hit = await client.get("/zipped", {"Accept-Encoding": "identity"})
    zipped_hit = await client.get("/zipped", {"Accept-Encoding": "gzip"})

    for answer, cache in [(zipped, "MISS"), (zipped_hit, "HIT")]:
        assert (answer.x_cache, answer.body) == (cache, GZIPPED)  # byte-identical, not inflated
        assert answer.headers["Content-Encoding"] == "gzip"
        assert answer.headers["Content-Length"] == str(len(GZIPPED))
    for answer, cache in [(plain, "MISS"), (plain_hit, "HIT")]:
        assert (answer.x_cache, answer.body) == (cache, PLAIN)
        assert "Content-Encoding" not in answer.headers
    assert [s.header("Accept-Encoding") for s in upstream.seen] == ["gzip", "identity"]


async def test_a_gzip_body_sent_to_an_identity_fill_is_not_stored_for_identity_clients(
    client: Client, upstream: FakeUpstream
) -> None:
    # An origin that compresses whatever was asked (pre-gzipped assets, a misconfigured
    # middleware): the fill asked for identity, so storing this answer under the identity key
    # would serve gzip to every client that did not accept it.
    upstream.on("/asset.css", body=GZIPPED, headers=[("Content-Encoding", "gzip")])

    await client.get("/asset.css")
    second = await client.get("/asset.css")

    assert upstream.seen[0].header("Accept-Encoding") == "identity"
    assert second.x_cache != "HIT"
    assert len(upstream.seen) == 2


@pytest.mark.parametrize("after", ["identity", None])
async def test_a_client_accepting_no_coding_takes_an_uncoded_page_a_browser_filled(
    client: Client, upstream: FakeUpstream, after: str | None
) -> None:
    """An app that does not compress: the page a browser's fill stored (under "br, gzip") is
    readable by anyone, so curl (no Accept-Encoding) and fetch's Range requests (which send
    Accept-Encoding: identity) are answered from it instead of filling their own."""
    browser = await client.get("/plain", {"Accept-Encoding": "gzip, deflate, br"})
    curl = await client.get("/plain", {"Accept-Encoding": after} if after else None)
    ranged = await client.get("/plain", {"Accept-Encoding": "identity", "Range": "bytes=0-3"})

    assert (browser.x_cache, curl.x_cache, curl.body) == ("MISS", "HIT", b"GET /plain #1")
    assert (ranged.status, ranged.x_cache, ranged.body) == (206, "HIT", b"GET ")
    assert [s.header("Accept-Encoding") for s in upstream.seen] == ["br, gzip"]


async def test_a_client_accepting_no_coding_never_takes_a_coded_page(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/zipped", body=PLAIN, gzip=True)
    await client.get("/zipped", {"Accept-Encoding": "gzip"})
    plain = await client.get("/zipped")
    ranged = await client.get("/zipped", {"Accept-Encoding": "identity", "Range": "bytes=0-2"})

    assert (plain.x_cache, plain.body) == ("MISS", PLAIN)
    assert "Content-Encoding" not in plain.headers
    assert (ranged.status, ranged.body) == (206, PLAIN[:3])
    assert [s.header("Accept-Encoding") for s in upstream.seen] == ["gzip", "identity"]


@pytest.mark.parametrize(
    ("spellings", "sent"),
    [
        (["gzip", "gzip, deflate", "deflate, gzip;q=0.5", "x-gzip", "*"], "gzip"),
        (["br, gzip", "gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8"], "br, gzip"),
        ([None, "identity", "deflate", "gzip;q=0", "compress, *;q=0"], "identity"),
    ],
)
async def test_accept_encoding_spellings_share_one_normalised_entry(
    client: Client, upstream: FakeUpstream, spellings: list[str | None], sent: str
) -> None:
    answers = [
        await client.get("/ae", {"Accept-Encoding": s} if s is not None else None)
        for s in spellings
    ]

    assert [a.x_cache for a in answers] == ["MISS"] + ["HIT"] * (len(spellings) - 1)
    assert [s.header("Accept-Encoding") for s in upstream.seen] == [sent]


@pytest.mark.parametrize(
    ("x_cache", "cache_status"), [(True, True), (False, True), (True, False), (False, False)]
)
async def test_cache_headers_can_be_turned_off(
    sidecache: StartProxy, x_cache: bool, cache_status: bool
) -> None:
    client = await sidecache(server={"x_cache": x_cache, "cache_status": cache_status})

    miss, hit = await client.get("/tags"), await client.get("/tags")

    for answer, tag, status in [(miss, "MISS", STORED), (hit, "HIT", HIT)]:
        assert answer.headers.get("X-Cache") == (tag if x_cache else None)
        assert answer.headers.get("Cache-Status") == (status if cache_status else None)
    assert hit.headers["Age"] == "0"
    assert hit.body == miss.body == b"GET /tags #1"


async def test_stored_entries_keep_repeated_headers_in_order(
    client: Client, upstream: FakeUpstream
) -> None:
    links = ["</a.css>; rel=preload", "</b.js>; rel=preload", "</c.woff2>; rel=preload"]
    upstream.on("/links", headers=[("Link", link) for link in links] + [("X-App", "demo")])

    miss, hit = await client.get("/links"), await client.get("/links")

    assert hit.x_cache == "HIT"
    assert miss.headers.getall("Link") == hit.headers.getall("Link") == links
    assert miss.headers["X-App"] == hit.headers["X-App"] == "demo"


async def test_a_head_miss_on_an_unstorable_response_answers_headers_only(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/cookie", headers=[("Set-Cookie", "sid=1")], body=b"x" * 5000)

    head = await client.head("/cookie")
    get = await client.get("/cookie", {"Cookie": "theme=dark"})

    assert (head.status, head.x_cache, head.body) == (200, "MISS", b"")
    assert head.headers["Content-Length"] == "5000"
    # The fill's Set-Cookie made the key hit-for-pass: the GET is the visitor's own request.
    assert (get.status, get.x_cache, get.body) == (200, "PASS", b"x" * 5000)
    assert [s.method for s in upstream.seen] == ["GET", "GET"]
    assert upstream.seen[1].header("Cookie") == "theme=dark"


async def test_max_bytes_bounds_the_total_and_evicts_the_least_recently_used(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Each entry is 900 body bytes plus headers and bookkeeping (~1.3 KiB): three fit in 4 KiB.
    client = await sidecache(
        caches={"default": {"items": 100, "item_size": "1KiB", "max_bytes": "4KiB"}}
    )
    for index in range(1, 6):
        upstream.on(f"/{index}", body=bytes([48 + index]) * 900)
        await client.get(f"/{index}")

    recent = [await client.get(f"/{index}") for index in (5, 4, 3)]
    oldest = await client.get("/1")

    assert [a.x_cache for a in recent] == ["HIT", "HIT", "HIT"]
    assert (oldest.x_cache, oldest.body) == ("MISS", b"1" * 900)
    assert len(upstream.to("/1")) == 2
