"""HTTP caching as RFC 9111 says, through the real proxy to a real upstream (issue 4).

Each case sends real requests through the proxy to an upstream that sets the headers in
question, and checks both ends: what the client got, and what (and how many) requests the
upstream saw. Time moves on the proxy's injected clock, never by sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest

from .conftest import StartProxy
from .support import Client, FakeClock, FakeUpstream, Got, Pairs

ORIGIN_RULE = {"name": "origin", "action": "cache", "ttl": "origin"}


def http_date(offset: float = 0.0) -> str:
    return formatdate(time.time() + offset, usegmt=True)


async def origin_proxy(sidecache: StartProxy, **rule: Any) -> Client:
    """A proxy whose one rule lets the origin's headers decide (fallback: the cache's 10 s)."""
    return await sidecache(rules=[{**ORIGIN_RULE, **rule}])


def conditional(seen_headers: list[tuple[str, str]]) -> set[str]:
    names = {n.lower() for n, _ in seen_headers}
    return names & {"if-none-match", "if-modified-since"}


# --- freshness (§4.2.1, §4.2.2) -------------------------------------------------------------

# (response headers, made when the test runs; extra rule keys; seconds later; HIT expected)
FRESHNESS: dict[str, tuple[Callable[[], Pairs], dict[str, Any], float, bool]] = {
    "max-age-fresh": (lambda: [("Cache-Control", "max-age=60")], {}, 59, True),
    "max-age-stale": (lambda: [("Cache-Control", "max-age=60")], {}, 61, False),
    "s-maxage-over-max-age": (
        lambda: [("Cache-Control", "max-age=60, s-maxage=10")],
        {},
        11,
        False,
    ),
    "s-maxage-longer": (lambda: [("Cache-Control", "max-age=10, s-maxage=60")], {}, 30, True),
    "expires-fresh": (lambda: [("Expires", http_date(30)), ("Date", http_date())], {}, 25, True),
    "expires-stale": (lambda: [("Expires", http_date(30)), ("Date", http_date())], {}, 35, False),
    "expires-invalid-is-past": (lambda: [("Expires", "0")], {}, 1, False),
    "max-age-over-expires": (
        lambda: [("Cache-Control", "max-age=5"), ("Expires", http_date(600))],
        {},
        6,
        False,
    ),
    "no-freshness-falls-back-to-cache-ttl": (lambda: [], {}, 9, True),
    "fallback-runs-out": (lambda: [], {}, 11, False),
    "fallback-ttl": (lambda: [], {"fallback_ttl": "100s"}, 90, True),
    "heuristic-off-by-default": (lambda: [("Last-Modified", http_date(-100_000))], {}, 11, False),
    "heuristic-10-percent": (
        lambda: [("Last-Modified", http_date(-1000)), ("Date", http_date())],
        {"heuristic": True},
        90,
        True,
    ),
    "heuristic-runs-out": (
        lambda: [("Last-Modified", http_date(-1000)), ("Date", http_date())],
        {"heuristic": True},
        110,
        False,
    ),
    "max-ttl-caps": (lambda: [("Cache-Control", "max-age=600")], {"max_ttl": "60s"}, 61, False),
    "age-counts-against-freshness": (
        lambda: [("Cache-Control", "max-age=60"), ("Age", "50")],
        {},
        11,
        False,
    ),
    "forced-ttl-ignores-max-age": (
        lambda: [("Cache-Control", "max-age=0")],
        {"ttl": "30s"},
        20,
        True,
    ),
}


@pytest.mark.parametrize("case", FRESHNESS)
async def test_freshness_lifetime(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock, case: str
) -> None:
    headers, rule, later, hit = FRESHNESS[case]
    upstream.on("/page", headers=headers())
    client = await origin_proxy(sidecache, **rule)
    first = await client.get("/page")
    clock.advance(later)
    second = await client.get("/page")

    assert first.x_cache == "MISS"
    assert second.x_cache == ("HIT" if hit else "MISS")
    assert second.body == (b"GET /page #1" if hit else b"GET /page #2")
    assert len(upstream.to("/page")) == (1 if hit else 2)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param([("Cache-Control", "no-store")], "no-store", id="no-store"),
        pytest.param([("Cache-Control", "private")], "private", id="private"),
        pytest.param([("Cache-Control", 'private="X-User"')], "private", id="private-field"),
        pytest.param([("Cache-Control", "no-cache")], "no-cache", id="no-cache-no-validator"),
        pytest.param([("Cache-Control", "max-age=0")], "zero-ttl", id="max-age-0-no-validator"),
    ],
)
async def test_responses_that_cannot_be_reused_are_not_stored(
    sidecache: StartProxy, upstream: FakeUpstream, headers: list[tuple[str, str]], detail: str
) -> None:
    upstream.on("/page", headers=headers)
    client = await origin_proxy(sidecache)
    first, second = await client.get("/page"), await client.get("/page")
    personal = detail in ("no-store", "private")  # then hit-for-pass: the visitor's own request
    assert (first.x_cache, second.x_cache) == ("MISS", "PASS" if personal else "MISS")
    assert f'detail="{detail}"' in (first.cache_status or "")
    assert len(upstream.to("/page")) == 2


@pytest.mark.parametrize(
    ("statuses", "stored"),
    [
        pytest.param(None, False, id="404-not-stored-by-default"),
        pytest.param([200, 404], True, id="404-stored-when-the-rule-opts-in"),
    ],
)
async def test_other_statuses_are_stored_only_where_a_rule_opts_in(
    sidecache: StartProxy, upstream: FakeUpstream, statuses: list[int] | None, stored: bool
) -> None:
    upstream.on("/gone", status=404, headers=[("Cache-Control", "max-age=60")])
    rule = {} if statuses is None else {"statuses": statuses}
    client = await origin_proxy(sidecache, **rule)
    first, second = await client.get("/gone"), await client.get("/gone")
    assert (first.status, second.status) == (404, 404)
    assert second.x_cache == ("HIT" if stored else "MISS")
    assert len(upstream.to("/gone")) == (1 if stored else 2)


async def test_age_on_a_hit_includes_the_upstream_age_and_time_resident(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    # §4.2.3: corrected initial age (the upstream's Age), plus resident time; Date is kept.
    date = http_date(60)  # ahead: no apparent age, so the test does not depend on the second
    upstream.on("/page", headers=[("Cache-Control", "max-age=600"), ("Age", "30"), ("Date", date)])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(12)
    hit = await client.get("/page")
    assert hit.x_cache == "HIT"
    assert hit.headers["Age"] == "42"
    assert hit.headers["Date"] == date


async def test_apparent_age_from_an_old_date_counts(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # §4.2.3: a response whose Date is 100 s old is at least 100 s old, Age header or not.
    upstream.on("/page", headers=[("Cache-Control", "max-age=600"), ("Date", http_date(-100))])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    hit = await client.get("/page")
    assert hit.x_cache == "HIT"
    assert 100 <= int(hit.headers["Age"]) <= 102


# --- validation (§4.3) ----------------------------------------------------------------------

VALIDATORS = {
    "etag": ([("ETag", '"v1"')], "If-None-Match", '"v1"'),
    "last-modified": (
        [("Last-Modified", "Tue, 15 Nov 1994 08:12:31 GMT")],
        "If-Modified-Since",
        "Tue, 15 Nov 1994 08:12:31 GMT",
    ),
}


@pytest.mark.parametrize("validator", VALIDATORS)
async def test_a_stale_entry_is_revalidated_and_a_304_refreshes_it(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock, validator: str
) -> None:
    headers, asked_with, value = VALIDATORS[validator]
    upstream.on(
        "/page",
        headers=[("Cache-Control", "max-age=10"), ("X-Version", "1"), *headers],
        conditional=True,
    )
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(11)
    upstream.on(  # the 304 brings a header the stored response did not have
        "/page",
        headers=[("Cache-Control", "max-age=10"), ("X-Version", "2"), *headers],
        conditional=True,
    )
    revalidated = await client.get("/page")
    clock.advance(5)
    after = await client.get("/page")

    seen = upstream.to("/page")
    assert len(seen) == 2
    assert seen[0].header(asked_with) is None
    assert seen[1].header(asked_with) == value
    assert (revalidated.status, revalidated.body) == (200, b"GET /page #1")  # the stored body
    assert revalidated.x_cache == "HIT"
    assert revalidated.cache_status == "sidecache; fwd=stale; fwd-status=304"
    assert revalidated.headers["X-Version"] == "2"
    assert (after.x_cache, after.body, after.headers["X-Version"]) == ("HIT", b"GET /page #1", "2")


async def test_a_stale_entry_is_replaced_when_the_origin_answers_200(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=10"), ("ETag", '"v1"')])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(11)
    upstream.on("/page", headers=[("Cache-Control", "max-age=10"), ("ETag", '"v2"')])
    changed = await client.get("/page")
    after = await client.get("/page")

    assert [s.header("If-None-Match") for s in upstream.to("/page")] == [None, '"v1"']
    assert (changed.x_cache, changed.body) == ("MISS", b"GET /page #2")
    assert (after.x_cache, after.body, after.headers["ETag"]) == ("HIT", b"GET /page #2", '"v2"')


async def test_no_cache_is_stored_but_revalidated_on_every_use(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # §5.2.2.4: no-cache allows storing, never reuse without validation.
    upstream.on("/page", headers=[("Cache-Control", "no-cache"), ("ETag", '"a"')], conditional=True)
    client = await origin_proxy(sidecache)
    answers = [await client.get("/page") for _ in range(3)]

    assert [a.x_cache for a in answers] == ["MISS", "HIT", "HIT"]
    assert [a.body for a in answers] == [b"GET /page #1"] * 3
    assert [s.header("If-None-Match") for s in upstream.to("/page")] == [None, '"a"', '"a"']


async def test_a_304_saying_no_store_removes_the_entry_but_answers_this_client(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=10"), ("ETag", '"a"')])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(11)
    upstream.on("/page", headers=[("Cache-Control", "no-store"), ("ETag", '"a"')], conditional=True)
    checked = await client.get("/page")
    upstream.on("/page", headers=[("Cache-Control", "max-age=10"), ("ETag", '"a"')])
    after = await client.get("/page")

    assert (checked.status, checked.body) == (200, b"GET /page #1")
    assert after.x_cache == "MISS"  # nothing left to revalidate: an unconditional fill
    assert upstream.to("/page")[2].header("If-None-Match") is None


# --- conditional requests answered from the cache (RFC 9110 §13, RFC 9111 §4.3.2) ----------

ENTRY = [
    ("Cache-Control", "max-age=60"),
    ("ETag", 'W/"v1"'),
    ("Last-Modified", "Tue, 15 Nov 1994 08:12:31 GMT"),
    ("X-Other", "x"),
]
CONDITIONS = {
    "if-none-match": ({"If-None-Match": '"v1"'}, 304),  # weak comparison: W/ does not matter
    "if-none-match-list": ({"If-None-Match": '"a", W/"v1"'}, 304),
    "if-none-match-star": ({"If-None-Match": "*"}, 304),
    "if-none-match-other": ({"If-None-Match": '"v2"'}, 200),
    "if-modified-since-later": ({"If-Modified-Since": "Wed, 16 Nov 1994 08:12:31 GMT"}, 304),
    "if-modified-since-same": ({"If-Modified-Since": "Tue, 15 Nov 1994 08:12:31 GMT"}, 304),
    "if-modified-since-earlier": ({"If-Modified-Since": "Mon, 14 Nov 1994 08:12:31 GMT"}, 200),
    "none-match-decides-over-modified-since": (
        {"If-None-Match": '"v2"', "If-Modified-Since": "Wed, 16 Nov 1994 08:12:31 GMT"},
        200,
    ),
}


@pytest.mark.parametrize("case", CONDITIONS)
async def test_a_conditional_request_is_answered_from_a_fresh_entry(
    sidecache: StartProxy, upstream: FakeUpstream, case: str
) -> None:
    sent, status = CONDITIONS[case]
    upstream.on("/page", headers=ENTRY)
    client = await origin_proxy(sidecache)
    await client.get("/page")
    got = await client.get("/page", sent)

    assert (got.status, got.x_cache) == (status, "HIT")
    assert len(upstream.to("/page")) == 1
    if status == 304:
        assert got.body == b""
        assert got.headers["ETag"] == 'W/"v1"'
        assert "Age" in got.headers and "Date" in got.headers
        assert "X-Other" not in got.headers  # §15.4.5: only the fields a 304 may carry
    else:
        assert got.body == b"GET /page #1"


async def test_a_conditional_request_waiting_behind_another_gets_its_304_too(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Pipelined behind a slow request the worker serves it (the synchronous path is busy).
    upstream.on("/page", headers=ENTRY)
    upstream.on("/slow", delay=0.2)
    client = await origin_proxy(sidecache)
    await client.get("/page", {"Host": "example.com"})
    async with client.connect() as connection:
        await connection.send(
            b"GET /slow HTTP/1.1\r\nHost: example.com\r\n\r\n"
            b'GET /page HTTP/1.1\r\nHost: example.com\r\nIf-None-Match: "v1"\r\n\r\n'
        )
        slow = await connection.response()
        page = await connection.response(head=True)
    assert slow.status == 200
    assert (page.status, page.header("X-Cache"), page.header("ETag")) == (304, "HIT", 'W/"v1"')


async def test_a_conditional_request_for_a_stale_entry_gets_a_304_after_revalidation(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on(
        "/page", headers=[("Cache-Control", "max-age=10"), ("ETag", '"v1"')], conditional=True
    )
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(11)
    got = await client.get("/page", {"If-None-Match": '"v1"'})
    assert (got.status, got.body) == (304, b"")
    assert upstream.to("/page")[1].header("If-None-Match") == '"v1"'  # the proxy's own validator


# --- request Cache-Control (§5.2.1) ---------------------------------------------------------


async def ask(client: Client, directive: str) -> Got:
    return await client.get("/page", {"Cache-Control": directive})


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
async def test_reload_directives_are_ignored_by_default(
    sidecache: StartProxy, upstream: FakeUpstream, directive: str
) -> None:
    # Browsers send these on every reload: a cache in front of an app protects it.
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    got = await ask(client, directive)
    assert got.x_cache == "HIT"
    assert len(upstream.to("/page")) == 1


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
async def test_reload_directives_are_honoured_when_configured(
    sidecache: StartProxy, upstream: FakeUpstream, directive: str
) -> None:
    upstream.on(
        "/page", headers=[("Cache-Control", "max-age=60"), ("ETag", '"a"')], conditional=True
    )
    client = await sidecache(
        server={"request_cache_control": ["no-cache", "max-age"]}, rules=[ORIGIN_RULE]
    )
    await client.get("/page")
    got = await ask(client, directive)
    assert got.status == 200 and got.body == b"GET /page #1"
    assert [s.header("If-None-Match") for s in upstream.to("/page")] == [None, '"a"']


@pytest.mark.parametrize(
    ("cache_control", "later", "hit"),
    [
        pytest.param("max-age=10", 15, True, id="max-stale-accepts-stale"),
        pytest.param("max-age=10", 25, False, id="max-stale-too-stale"),
        pytest.param("max-age=10, must-revalidate", 15, False, id="must-revalidate-never-stale"),
        pytest.param("max-age=10, proxy-revalidate", 15, False, id="proxy-revalidate"),
    ],
)
async def test_max_stale(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    clock: FakeClock,
    cache_control: str,
    later: float,
    hit: bool,
) -> None:
    upstream.on("/page", headers=[("Cache-Control", cache_control)])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(later)
    got = await ask(client, "max-stale=10")
    assert got.x_cache == ("HIT" if hit else "MISS")
    assert len(upstream.to("/page")) == (1 if hit else 2)


@pytest.mark.parametrize(("later", "hit"), [(20, True), (35, False)])
async def test_min_fresh(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock, later: float, hit: bool
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    await client.get("/page")
    clock.advance(later)
    got = await ask(client, "min-fresh=30")  # at 20 s 40 remain; at 35 s only 25
    assert got.x_cache == ("HIT" if hit else "MISS")


async def test_only_if_cached_never_reaches_the_upstream(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    missing = await ask(client, "only-if-cached")
    await client.get("/page")
    present = await ask(client, "only-if-cached")
    assert missing.status == 504
    assert (present.status, present.x_cache) == (200, "HIT")
    assert len(upstream.to("/page")) == 1


async def test_request_no_store_keeps_the_response_out_of_the_cache(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    first = await ask(client, "no-store")
    second = await client.get("/page")
    assert 'detail="request-no-store"' in (first.cache_status or "")
    assert second.x_cache == "MISS"
    assert len(upstream.to("/page")) == 2


# --- Vary (§4.1) ----------------------------------------------------------------------------


async def test_a_stale_variant_is_revalidated_under_its_own_key(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on(
        "/page",
        headers=[("Cache-Control", "max-age=10"), ("Vary", "Accept-Language"), ("ETag", '"a"')],
        conditional=True,
    )
    client = await origin_proxy(sidecache)
    english = {"Accept-Language": "en"}
    french = {"Accept-Language": "fr"}
    await client.get("/page", english)
    await client.get("/page", french)
    clock.advance(11)
    revalidated = await client.get("/page", english)
    english_again = await client.get("/page", english)
    french_stale = await client.get("/page", french)

    assert (revalidated.x_cache, revalidated.body) == ("HIT", b"GET /page #1")
    assert revalidated.cache_status == "sidecache; fwd=stale; fwd-status=304"
    assert (english_again.x_cache, english_again.body) == ("HIT", b"GET /page #1")
    # the French variant went stale on its own and is revalidated on its own
    assert (french_stale.x_cache, french_stale.body) == ("HIT", b"GET /page #2")
    seen = [(s.header("Accept-Language"), s.header("If-None-Match")) for s in upstream.to("/page")]
    assert seen == [("en", None), ("fr", None), ("en", '"a"'), ("fr", '"a"')]


async def test_a_response_without_vary_replaces_the_variants(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")])
    client = await origin_proxy(sidecache)
    await client.get("/page", {"Accept-Language": "en"})
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    other = await client.get("/page", {"Accept-Language": "de"})  # a new variant: a miss
    after = await client.get("/page", {"Accept-Language": "en"})
    assert other.x_cache == "MISS"
    # the primary key now holds the plain response, which answers every language
    assert (after.x_cache, after.body) == ("HIT", b"GET /page #2")


# --- invalidation (§4.4) --------------------------------------------------------------------

LOGGED_IN = {"Cookie": "remember_token=1"}


async def stored(client: Client, target: str, **headers: str) -> Got:
    got = await client.get(target, headers or None)
    assert got.x_cache in ("MISS", "HIT")
    return got


@pytest.mark.parametrize(
    ("method", "status", "invalidated"),
    [
        pytest.param("POST", 200, True, id="post-200"),
        pytest.param("PUT", 204, True, id="put-204"),
        pytest.param("DELETE", 200, True, id="delete"),
        pytest.param("PATCH", 303, True, id="patch-303"),
        pytest.param("POST", 403, False, id="error-keeps-it"),
        pytest.param("POST", 500, False, id="server-error-keeps-it"),
    ],
)
async def test_an_unsafe_request_invalidates_its_target(
    sidecache: StartProxy, upstream: FakeUpstream, method: str, status: int, invalidated: bool
) -> None:
    upstream.on("/item", headers=[("Cache-Control", "max-age=600")])
    client = await origin_proxy(sidecache, invalidate=["target"])
    await client.get("/item")
    await client.get("/item", {"Accept-Encoding": "gzip"})  # another encoding, another entry
    upstream.on("/item", status=status)  # what the unsafe request gets
    unsafe = await client.fetch(method, "/item", LOGGED_IN, data=b"x")
    upstream.on("/item", headers=[("Cache-Control", "max-age=600")])
    plain = await client.get("/item")
    gzipped = await client.get("/item", {"Accept-Encoding": "gzip"})

    assert (unsafe.status, unsafe.x_cache) == (status, "PASS")
    expected = "MISS" if invalidated else "HIT"
    assert (plain.x_cache, gzipped.x_cache) == (expected, expected)


@pytest.mark.parametrize(
    ("invalidate", "dropped"),
    [
        pytest.param(["target", "location"], {"/item/new", "/item/7"}, id="target-and-location"),
        pytest.param(["target"], {"/item/new"}, id="target-only"),
        pytest.param(None, set(), id="rules-default-none"),
    ],
)
async def test_location_and_content_location_of_the_same_origin_are_invalidated(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    invalidate: list[str] | None,
    dropped: set[str],
) -> None:
    """Issue 12 point 18: what an unsafe request may drop is the rule's `invalidate`; rules
    drop nothing by default (any client can POST: every drop is a request for the app)."""
    paths = ("/list", "/item/7", "/elsewhere", "/item/new")
    for path in paths:
        upstream.on(path, headers=[("Cache-Control", "max-age=600")])
    client = await origin_proxy(sidecache, **({"invalidate": invalidate} if invalidate else {}))
    for path in paths:
        await client.get(path)
    for path in ("/list", "/item/7", "/elsewhere"):
        await client.get(path)
    upstream.on(
        "/item/new",
        status=201,
        headers=[
            ("Location", "/item/7"),
            ("Content-Location", "http://127.0.0.1:1/list"),  # another origin: left alone
        ],
    )
    await client.fetch("POST", "/item/new", LOGGED_IN, data=b"x")
    upstream.on("/item/new", headers=[("Cache-Control", "max-age=600")])

    after = {path: (await client.get(path)).x_cache for path in paths}
    assert after == {path: "MISS" if path in dropped else "HIT" for path in paths}


async def test_shared_mode_invalidates_target_and_location_by_default(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    for path in ("/list", "/item/7"):
        upstream.on(path, headers=[("Cache-Control", "max-age=600")])
    client = await shared_proxy(sidecache)
    for path in ("/list", "/item/7"):
        await client.get(path)
    upstream.on("/list", status=303, headers=[("Location", "/item/7")])
    await client.fetch("POST", "/list", data=b"x")
    upstream.on("/list", headers=[("Cache-Control", "max-age=600")])

    after = {path: (await client.get(path)).x_cache for path in ("/list", "/item/7")}
    assert after == {"/list": "MISS", "/item/7": "MISS"}


async def test_invalidation_reaches_every_variant(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")])
    client = await origin_proxy(sidecache, invalidate=["target"])
    for language in ("en", "fr"):
        await client.get("/page", {"Accept-Language": language})
    await client.fetch("DELETE", "/page", LOGGED_IN)
    upstream.on("/page", headers=[("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")])
    english = await client.get("/page", {"Accept-Language": "en"})  # makes a new marker
    french = await client.get("/page", {"Accept-Language": "fr"})

    assert (english.x_cache, french.x_cache) == ("MISS", "MISS")
    assert [s.method for s in upstream.to("/page")] == ["GET", "GET", "DELETE", "GET", "GET"]


# --- Range (RFC 9110 §14) -------------------------------------------------------------------

BODY = bytes(range(256)) * 4  # 1 KiB


@pytest.mark.parametrize(
    ("sent", "status", "content_range", "part"),
    [
        pytest.param({"Range": "bytes=0-9"}, 206, "bytes 0-9/1024", BODY[:10], id="first-ten"),
        pytest.param({"Range": "bytes=-4"}, 206, "bytes 1020-1023/1024", BODY[-4:], id="suffix"),
        pytest.param({"Range": "bytes=2000-"}, 416, "bytes */1024", b"", id="past-the-end"),
        pytest.param(
            {"Range": "bytes=0-9", "If-Range": '"v1"'},
            206,
            "bytes 0-9/1024",
            BODY[:10],
            id="if-range",
        ),
        pytest.param(
            {"Range": "bytes=0-9", "If-Range": '"v0"'}, 200, None, BODY, id="if-range-changed"
        ),
        pytest.param(
            {"Range": "bytes=0-9", "If-None-Match": '"v1"'}, 304, None, b"", id="current-copy"
        ),
    ],
)
async def test_a_range_is_answered_from_a_stored_complete_response(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    sent: dict[str, str],
    status: int,
    content_range: str | None,
    part: bytes,
) -> None:
    upstream.on("/file", body=BODY, headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"')])
    client = await origin_proxy(sidecache)
    await client.get("/file")
    got = await client.get("/file", sent)

    assert (got.status, got.x_cache) == (status, "HIT")
    assert got.headers.get("Content-Range") == content_range
    assert got.body == part
    assert len(upstream.to("/file")) == 1


async def test_a_range_of_a_stored_404_gets_the_whole_404(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # RFC 9110 §14.2: a server may ignore Range; ranges are of a 200's representation (nginx
    # answers them for 200 only). A 206 cut out of a stored error page would be a new answer.
    upstream.on("/gone", status=404, body=BODY, headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache, statuses=[200, 404])
    await client.get("/gone")
    got = await client.get("/gone", {"Range": "bytes=0-9"})

    assert (got.status, got.x_cache) == (404, "HIT")
    assert got.headers.get("Content-Range") is None
    assert got.body == BODY
    assert len(upstream.to("/gone")) == 1


async def test_several_ranges_go_to_the_app_even_with_a_stored_response(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # The app may answer multipart/byteranges; the cache answers single ranges only.
    upstream.on("/file", body=BODY, headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    await client.get("/file")
    got = await client.get("/file", {"Range": "bytes=0-1,4-5"})
    after = await client.get("/file")
    assert (got.x_cache, after.x_cache) == ("PASS", "HIT")
    assert upstream.to("/file")[1].header("Range") == "bytes=0-1,4-5"


async def test_a_range_without_a_usable_entry_goes_to_the_app_and_is_not_stored(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/file", body=BODY, headers=[("Cache-Control", "max-age=60")])
    client = await origin_proxy(sidecache)
    ranged = await client.get("/file", {"Range": "bytes=0-9"})
    whole = await client.get("/file")

    assert (ranged.x_cache, whole.x_cache) == ("PASS", "MISS")
    assert 'detail="range"' in (ranged.cache_status or "")
    assert upstream.to("/file")[0].header("Range") == "bytes=0-9"  # the app saw the Range


# --- shared mode: no rules, the origin's headers decide ------------------------------------


async def shared_proxy(sidecache: StartProxy, **shared: Any) -> Client:
    sections: dict[str, Any] = {"mode": "shared", "rules": []}
    if shared:
        sections["shared"] = shared
    return await sidecache(**sections)


# (status, response headers, stored)
SHARED_STORING = {
    "max-age": (200, [("Cache-Control", "max-age=60")], True),
    "s-maxage": (200, [("Cache-Control", "s-maxage=60")], True),
    # Expires and Date are made when the test runs (see test_shared_mode_stores...): made at
    # import, a suite slower than 60 s would find them already stale.
    "expires": (200, [("Expires", "+60"), ("Date", "+0")], True),
    "no-freshness": (200, [], False),
    "404-with-max-age": (404, [("Cache-Control", "max-age=60")], True),
    "500-with-max-age": (500, [("Cache-Control", "max-age=60")], True),
    "500-public-nothing-else": (500, [("Cache-Control", "public")], False),  # stale at once
    "no-store": (200, [("Cache-Control", "max-age=60, no-store")], False),
    "private": (200, [("Cache-Control", "max-age=60, private")], False),
    "set-cookie-never-shared": (
        200,
        [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1")],
        False,
    ),
}


@pytest.mark.parametrize("case", SHARED_STORING)
async def test_shared_mode_stores_what_the_origin_allows(
    sidecache: StartProxy, upstream: FakeUpstream, case: str
) -> None:
    status, headers, stored = SHARED_STORING[case]
    dated = [(n, http_date(float(v)) if v[:1] == "+" else v) for n, v in headers]
    upstream.on("/page", status=status, headers=dated)
    client = await shared_proxy(sidecache)
    first, second = await client.get("/page"), await client.get("/page")
    assert (first.status, second.status) == (status, status)
    assert second.x_cache == ("HIT" if stored else "MISS")
    assert len(upstream.to("/page")) == (1 if stored else 2)


async def test_shared_mode_heuristics_only_when_enabled(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    # Nothing without explicit freshness is stored, unless heuristics are on (§4.2.2).
    headers = [("Last-Modified", http_date(-10_000)), ("Date", http_date())]
    upstream.on("/page", headers=headers)
    plain = await shared_proxy(sidecache)
    first = await plain.get("/page")
    again = await plain.get("/page")
    heuristic = await shared_proxy(sidecache, heuristic=True)
    await heuristic.get("/page")
    clock.advance(500)  # within 10 % of 10,000 s
    reused = await heuristic.get("/page")

    assert 'detail="zero-ttl"' in (first.cache_status or "")
    assert again.x_cache == "MISS"
    assert (reused.x_cache, reused.cache_status) == ("HIT", "sidecache; hit")
    assert len(upstream.to("/page")) == 3
    assert all(s.header("If-Modified-Since") is None for s in upstream.to("/page"))


async def test_shared_mode_stores_no_cache_with_a_validator_and_revalidates_it(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "no-cache"), ("ETag", '"a"')], conditional=True)
    client = await shared_proxy(sidecache)
    await client.get("/page")
    again = await client.get("/page")
    assert again.cache_status == "sidecache; fwd=stale; fwd-status=304"
    assert upstream.to("/page")[1].header("If-None-Match") == '"a"'


async def test_shared_mode_fills_forward_the_request_as_it_came(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60")])
    client = await shared_proxy(sidecache)
    sent = {"Cookie": "theme=dark", "X-Custom": "1", "Accept-Encoding": "gzip, deflate, zstd"}
    await client.get("/page", sent)
    seen = upstream.to("/page")[0]
    assert seen.header("Cookie") == "theme=dark"
    assert seen.header("X-Custom") == "1"
    assert seen.header("Accept-Encoding") == "gzip, deflate, zstd"  # unchanged


async def test_shared_mode_varies_on_any_header_the_origin_names(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/page", headers=[("Cache-Control", "max-age=60"), ("Vary", "Cookie, X-Device")])
    client = await shared_proxy(sidecache)
    asks = [
        {"Cookie": "theme=dark", "X-Device": "phone"},
        {"Cookie": "theme=light", "X-Device": "phone"},
        {"Cookie": "theme=dark", "X-Device": "phone"},
        {"Cookie": "theme=dark", "X-Device": "tv"},
    ]
    answers = [await client.get("/page", ask) for ask in asks]
    assert [a.x_cache for a in answers] == ["MISS", "MISS", "HIT", "MISS"]
    assert answers[2].body == answers[0].body == b"GET /page #1"


@pytest.mark.parametrize(
    ("cache_control", "stored"),
    [
        pytest.param("max-age=60", False, id="not-without-a-directive"),  # RFC 9111 §3.5
        pytest.param("public, max-age=60", True, id="public"),
        pytest.param("s-maxage=60", True, id="s-maxage"),
        pytest.param("must-revalidate, max-age=60", True, id="must-revalidate"),
    ],
)
async def test_shared_mode_authorization_follows_section_3_5(
    sidecache: StartProxy, upstream: FakeUpstream, cache_control: str, stored: bool
) -> None:
    upstream.on("/doc", headers=[("Cache-Control", cache_control)])
    client = await shared_proxy(sidecache)
    first = await client.get("/doc", {"Authorization": "Bearer a"})
    second = await client.get("/doc", {"Authorization": "Bearer b"})
    assert first.x_cache == "MISS"
    assert upstream.to("/doc")[0].header("Authorization") == "Bearer a"
    assert second.x_cache == ("HIT" if stored else "MISS")


async def test_shared_mode_still_passes_logged_in_visitors(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Product rule, in every mode: a logged-in visitor is never answered from cache.
    upstream.on("/page", headers=[("Cache-Control", "public, max-age=60")])
    client = await shared_proxy(sidecache)
    await client.get("/page")
    logged_in = await client.get("/page", {"Cookie": "remember_token=1"})
    assert logged_in.x_cache == "PASS"
    assert len(upstream.to("/page")) == 2


# --- targeted cache control (RFC 9213) -------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "server", "stored"),
    [
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")],
            {},
            True,
            id="cdn-cache-control-wins",
        ),
        pytest.param(
            [("Cache-Control", "max-age=60"), ("Sidecache-Cache-Control", "no-store")],
            {},
            False,
            id="sidecache-cache-control-wins",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")],
            {"targeted_cache_control": []},
            False,
            id="turned-off",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max age")],
            {},
            False,
            id="invalid-targeted-ignored",
        ),
    ],
)
async def test_targeted_cache_control(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    headers: list[tuple[str, str]],
    server: dict[str, Any],
    stored: bool,
) -> None:
    upstream.on("/page", headers=headers)
    client = (
        await sidecache(rules=[ORIGIN_RULE], server=server)
        if server
        else await origin_proxy(sidecache)
    )
    first, second = await client.get("/page"), await client.get("/page")
    assert second.x_cache == ("HIT" if stored else "PASS")  # no-store: hit-for-pass
    assert first.headers.get("CDN-Cache-Control") == dict(headers).get("CDN-Cache-Control")
