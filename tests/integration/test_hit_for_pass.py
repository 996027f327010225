"""Session-aware passes (issue 10), through the real proxy to a recording upstream.

- A fill whose answer proves the page personal (Set-Cookie, private, no-store) marks its key
  hit-for-pass: later requests are passes of the visitor's own request (Varnish's hit-for-pass),
  and the request that found out, when it carried cookies, is answered by its own pass too.
- A visitor with a one-time message waiting (Flask `_flashes`, Django `messages`) is passed.
- Anonymous visitors who carry cookies are still answered from cache.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import StartProxy
from .support import Client, FakeClock, FakeUpstream, flask_session

HIT_FOR_PASS = 'sidecache; fwd=bypass; detail="hit-for-pass"'
FORM = [("Set-Cookie", "session=new-csrf-secret; HttpOnly; Path=/")]


async def test_the_request_that_finds_a_personal_page_gets_its_own_answer(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/login", headers=FORM)
    own = flask_session({"csrf_token": "mine"})

    answer = await client.get("/login", {"Cookie": f"session={own}; _ga=GA1.2.3"})

    # One fill (as a new visitor), discarded; then the visitor's own request, relayed.
    assert [s.values("Cookie") for s in upstream.to("/login")] == [
        [],
        [f"session={own}; _ga=GA1.2.3"],
    ]
    assert (answer.status, answer.x_cache, answer.cache_status) == (200, "PASS", HIT_FOR_PASS)
    assert answer.body == b"GET /login #2"
    assert answer.headers.getall("Set-Cookie") == ["session=new-csrf-secret; HttpOnly; Path=/"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(FORM, id="set-cookie"),
        pytest.param([("Cache-Control", "private")], id="private"),
        pytest.param([("Cache-Control", "no-store, max-age=0")], id="no-store"),
    ],
)
async def test_later_requests_for_a_personal_key_are_the_visitors_own(
    client: Client, upstream: FakeUpstream, headers: list[tuple[str, str]]
) -> None:
    upstream.on("/form", headers=headers)
    await client.get("/form")  # cookie-less: the fill was its own request

    later = [
        await client.get("/form", {"Cookie": "_ga=1", "X-Custom": "kept"}),
        await client.get("/form", {"Authorization": "Bearer t"}),  # passed anyway
        await client.get("/form"),
    ]

    assert [a.x_cache for a in later] == ["PASS"] * 3
    assert later[0].cache_status == HIT_FOR_PASS
    assert [a.body for a in later] == [b"GET /form #2", b"GET /form #3", b"GET /form #4"]
    seen = upstream.to("/form")
    assert seen[1].header("Cookie") == "_ga=1" and seen[1].header("X-Custom") == "kept"
    assert seen[3].header("Cookie") is None


async def test_a_cookieless_visitor_keeps_the_fills_answer_and_its_session(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/login", headers=FORM)
    answer = await client.get("/login")
    assert (answer.x_cache, answer.cache_status) == (
        "MISS",
        'sidecache; fwd=miss; detail="set-cookie"',
    )
    assert answer.headers.getall("Set-Cookie") == ["session=new-csrf-secret; HttpOnly; Path=/"]
    assert len(upstream.to("/login")) == 1  # no second request: the fill was its own


async def test_hit_for_pass_lasts_hit_for_pass_then_the_key_is_filled_again(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await sidecache(caches={"default": {"hit_for_pass": "30s"}})
    upstream.on("/page", headers=FORM)
    await client.get("/page")
    clock.advance(29)
    during = await client.get("/page", {"Cookie": "_ga=1"})
    clock.advance(2)
    upstream.on("/page")  # the app no longer sets a cookie: the page can be stored
    after = await client.get("/page", {"Cookie": "_ga=1"})
    again = await client.get("/page", {"Cookie": "_ga=1"})

    assert during.x_cache == "PASS"
    assert (after.x_cache, again.x_cache) == ("MISS", "HIT")
    assert upstream.to("/page")[2].header("Cookie") is None  # a fill again


async def test_without_hit_for_pass_each_cookie_visitor_still_gets_its_own_answer(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(caches={"default": {"hit_for_pass": "0s"}})
    upstream.on("/login", headers=FORM)
    answers = [await client.get("/login", {"Cookie": "_ga=1"}) for _ in range(2)]

    assert [a.x_cache for a in answers] == ["PASS", "PASS"]
    # Nothing remembered: a fill and the visitor's own request, each time.
    assert [s.header("Cookie") for s in upstream.to("/login")] == [None, "_ga=1", None, "_ga=1"]


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        pytest.param({"status": 404}, "status", id="status"),
        pytest.param({"body": b"x" * 70_000}, "too-big", id="too-big"),
        pytest.param({"headers": [("Cache-Control", "no-cache")]}, "no-cache", id="no-cache"),
    ],
)
async def test_a_page_uncacheable_for_other_reasons_is_still_filled_without_cookies(
    client: Client, upstream: FakeUpstream, reply: dict[str, Any], detail: str
) -> None:
    upstream.on("/page", **reply)
    answers = [await client.get("/page", {"Cookie": "_ga=1"}) for _ in range(2)]
    assert [a.x_cache for a in answers] == ["MISS", "MISS"]
    assert all(f'detail="{detail}"' in (a.cache_status or "") for a in answers)
    assert [s.header("Cookie") for s in upstream.to("/page")] == [None, None]


async def test_a_stored_page_is_still_a_hit_for_visitors_with_cookies(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/about")
    await client.get("/about")
    csrf_only = flask_session({"csrf_token": "abc", "_fresh": False})
    for cookie in ("_ga=GA1.2.3; theme=dark", f"session={csrf_only}"):
        answer = await client.get("/about", {"Cookie": cookie})
        assert (answer.x_cache, answer.body) == ("HIT", b"GET /about #1")
    assert len(upstream.to("/about")) == 1


@pytest.mark.parametrize(
    ("identity", "cookie", "detail"),
    [
        pytest.param(
            {},
            "session=" + flask_session({"_flashes": [{" t": ["message", "Bye"]}]}),
            "flashes",
            id="flask-flashes",
        ),
        pytest.param(
            {},
            "session=" + flask_session({"_flashes": [{" t": ["message", "Bye"]}]}, compress=True),
            "flashes",
            id="flask-flashes-compressed",
        ),
        pytest.param(
            {"session_message_keys": ["notice"]},
            "session=" + flask_session({"notice": "Saved"}),
            "flashes",
            id="configured-message-key",
        ),
        pytest.param({"preset": "django"}, "messages=abc:1", "flashes", id="django-messages"),
        pytest.param({"preset": "django"}, "sessionid=x1y2", "authenticated", id="django-session"),
    ],
)
async def test_a_visitor_with_a_message_waiting_is_passed(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    identity: dict[str, Any],
    cookie: str,
    detail: str,
) -> None:
    # The embedded default's rule (no `anonymous` condition: decide says why it passes).
    client = await sidecache(identity=identity, rules=[{"name": "anonymous-reads"}])
    upstream.on("/")
    await client.get("/")  # stored for anonymous visitors
    answer = await client.get("/", {"Cookie": cookie})
    assert (answer.x_cache, answer.body) == ("PASS", b"GET / #2")
    assert answer.cache_status == f'sidecache; fwd=bypass; detail="{detail}"'
    assert upstream.to("/")[1].header("Cookie") == cookie


@pytest.mark.parametrize(
    ("identity", "cookie"),
    [
        pytest.param({}, "session=" + flask_session({"_flashes": []}), id="no-flashes-left"),
        pytest.param({}, "session=" + flask_session({"csrf_token": "abc"}), id="csrf-only"),
        pytest.param({"preset": "django"}, "csrftoken=abc; _ga=1", id="django-csrftoken"),
        pytest.param({"preset": "django"}, "messages=", id="django-empty-messages"),
    ],
)
async def test_anonymous_visitors_with_cookies_are_answered_from_cache(
    sidecache: StartProxy, upstream: FakeUpstream, identity: dict[str, Any], cookie: str
) -> None:
    client = await sidecache(identity=identity)
    upstream.on("/")
    await client.get("/")
    answer = await client.get("/", {"Cookie": cookie})
    assert (answer.x_cache, answer.body) == ("HIT", b"GET / #1")


async def test_shared_mode_relays_the_set_cookie_of_the_visitors_own_fill(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # Shared mode's fills forward the request as it came: no second request, no hit-for-pass
    # pass; the Set-Cookie answers the visitor's own cookies.
    client = await sidecache(mode="shared", rules=[])
    upstream.on("/page", headers=[("Set-Cookie", "sid=2"), ("Cache-Control", "max-age=60")])
    answers = [await client.get("/page", {"Cookie": "sid=1"}) for _ in range(2)]
    assert [a.x_cache for a in answers] == ["MISS", "MISS"]
    assert [a.headers.getall("Set-Cookie") for a in answers] == [["sid=2"], ["sid=2"]]
    assert [s.header("Cookie") for s in upstream.to("/page")] == ["sid=1", "sid=1"]
