"""One visitor's page is never served to another.

Product rules from issue 2: logged-in visitors (remember cookie, Flask session with a user,
Authorization) always reach the upstream and never read or fill the cache; fills carry no
cookies; a fill's Set-Cookie is never replayed; a forged Host or forwarding header cannot poison
the entry other visitors get.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import StartProxy
from .support import Client, FakeUpstream, flask_session

USER = {"_user_id": "42", "_fresh": False, "csrf_token": "c" * 40}
LOGGED_IN = {
    "remember_token": {"Cookie": "remember_token=42|a1b2c3"},
    "empty remember_token": {"Cookie": "theme=dark; remember_token="},
    "flask session with a user": {"Cookie": f"session={flask_session(USER)}"},
    "compressed flask session": {"Cookie": f"session={flask_session(USER, compress=True)}"},
    "unreadable session": {"Cookie": "session=%%%not-a-session"},
    "authorization": {"Authorization": "Basic dXNlcjpwYXNz"},
}
# The default anonymous rule does not match a logged-in visitor, who is passed as authenticated
# (issue 12 point 7: it said no-rule); a rule that forgot the anonymous condition, or tests only
# remember_token as uWSGI did, still passes them.
RULES: dict[str, tuple[dict[str, Any], str]] = {
    "anonymous rule": ({"anonymous": True}, "authenticated"),
    "rule without identity conditions": ({"path": "^/"}, "authenticated"),
    "uWSGI-style remember_token absent": (
        {"path": "^/", "cookie": {"remember_token": "absent"}},
        "authenticated",
    ),
}


def pass_detail(rule_name: str, identity: str) -> str:
    """The Cache-Status detail of a logged-in request: which check turned it away."""
    rule_detail = RULES[rule_name][1]
    if rule_name.startswith("uWSGI") and "remember_token" in identity:
        return "no-rule"  # the rule's own condition already failed
    if identity == "authorization" and rule_detail == "authenticated":
        return "authorization"
    return rule_detail


def assert_credentials_reached_upstream(
    upstream: FakeUpstream, indices: list[int], headers: dict[str, str]
) -> None:
    for index in indices:
        seen = upstream.seen[index]
        for name, value in headers.items():
            assert seen.values(name) == [value], (index, name)


def assert_anonymous_fill(upstream: FakeUpstream, index: int) -> None:
    assert {"cookie", "authorization"}.isdisjoint(upstream.seen[index].names)


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("identity", LOGGED_IN)
async def test_a_logged_in_request_first_does_not_fill_the_cache(
    sidecache: StartProxy, upstream: FakeUpstream, rule_name: str, identity: str
) -> None:
    rule, _ = RULES[rule_name]
    client = await sidecache(rules=[rule | {"action": "cache"}])
    credentials = LOGGED_IN[identity]

    personal = await client.get("/home", credentials)
    anonymous = [await client.get("/home") for _ in range(2)]
    personal_again = await client.get("/home", credentials)

    expected = f'sidecache; fwd=bypass; detail="{pass_detail(rule_name, identity)}"'
    assert (personal.x_cache, personal.cache_status, personal.body) == (
        "PASS",
        expected,
        b"GET /home #1",
    )
    assert [a.x_cache for a in anonymous] == ["MISS", "HIT"]
    assert [a.body for a in anonymous] == [b"GET /home #2"] * 2
    assert (personal_again.x_cache, personal_again.body) == ("PASS", b"GET /home #3")
    assert_credentials_reached_upstream(upstream, [0, 2], credentials)
    assert_anonymous_fill(upstream, 1)
    assert len(upstream.seen) == 3


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("identity", LOGGED_IN)
async def test_a_logged_in_request_never_gets_the_anonymous_entry(
    sidecache: StartProxy, upstream: FakeUpstream, rule_name: str, identity: str
) -> None:
    rule, _ = RULES[rule_name]
    client = await sidecache(rules=[rule | {"action": "cache"}])
    credentials = LOGGED_IN[identity]

    anonymous = [await client.get("/home") for _ in range(2)]
    personal = await client.get("/home", credentials)
    head = await client.head("/home", credentials)
    anonymous_after = await client.get("/home")

    assert [a.x_cache for a in anonymous] == ["MISS", "HIT"]
    assert (personal.x_cache, personal.body) == ("PASS", b"GET /home #2")
    assert (head.x_cache, head.body) == ("PASS", b"")
    assert (anonymous_after.x_cache, anonymous_after.body) == ("HIT", b"GET /home #1")
    assert [s.method for s in upstream.seen] == ["GET", "GET", "HEAD"]
    assert_credentials_reached_upstream(upstream, [1, 2], credentials)


ANONYMOUS_COOKIES = [
    "theme=dark",
    "_ga=GA1.2.3.4; theme=dark",
    f"session={flask_session({'csrf_token': 'abc'})}",
    f"session={flask_session({'_user_id': None, '_fresh': False})}",
    f"session={flask_session({'csrf_token': 'x' * 300}, compress=True)}",
    "session=",
]


@pytest.mark.parametrize("cookie", ANONYMOUS_COOKIES)
async def test_anonymous_cookies_are_cached_and_never_sent_on_fills(
    client: Client, upstream: FakeUpstream, cookie: str
) -> None:
    first = await client.get("/about", {"Cookie": cookie})
    second = await client.get("/about", {"Cookie": cookie})
    cookieless = await client.get("/about")

    assert [a.x_cache for a in (first, second, cookieless)] == ["MISS", "HIT", "HIT"]
    assert len(upstream.seen) == 1
    assert_anonymous_fill(upstream, 0)


async def test_kept_cookies_ride_on_fills_and_key_the_entry(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    rule = {
        "anonymous": True,
        "keep_cookies": ["lang"],
        "key": "{scheme}://{host}{uri}|{cookie[lang]}",
    }
    client = await sidecache(rules=[rule])

    french = await client.get("/", {"Cookie": "theme=dark; lang=fr; _ga=1"})
    german = await client.get("/", {"Cookie": "lang=de"})
    french_again = await client.get("/", {"Cookie": "lang=fr"})

    assert [a.x_cache for a in (french, german, french_again)] == ["MISS", "MISS", "HIT"]
    assert french_again.body == french.body == b"GET / #1"
    assert [s.values("Cookie") for s in upstream.seen] == [["lang=fr"], ["lang=de"]]


async def test_set_cookie_skip_does_not_store_and_never_hands_it_to_another_session(
    client: Client, upstream: FakeUpstream
) -> None:
    # The cookie-less fill's Set-Cookie was made for nobody: the visitor, who has cookies, is
    # answered by its own request (hit-for-pass), and so is the next one.
    upstream.on("/welcome", headers=[("Set-Cookie", "sid=fresh; Path=/; HttpOnly")])

    with_cookies = [await client.get("/welcome", {"Cookie": "theme=dark"}) for _ in range(2)]

    assert [a.x_cache for a in with_cookies] == ["PASS", "PASS"]
    assert [a.cache_status for a in with_cookies] == [
        'sidecache; fwd=bypass; detail="hit-for-pass"'
    ] * 2
    assert [a.body for a in with_cookies] == [b"GET /welcome #2", b"GET /welcome #3"]
    assert len(upstream.seen) == 3
    assert_anonymous_fill(upstream, 0)
    assert [s.values("Cookie") for s in upstream.seen[1:]] == [["theme=dark"]] * 2
    # What the app set in answer to the visitor's own request is theirs.
    assert all(
        a.headers.getall("Set-Cookie") == ["sid=fresh; Path=/; HttpOnly"] for a in with_cookies
    )


async def test_set_cookie_skip_gives_a_cookieless_visitor_its_own_fresh_session(
    client: Client, upstream: FakeUpstream
) -> None:
    # Relayed when not stored and the client sent no Cookie at all, i.e. the fill was exactly
    # the client's own request; the next request is a pass (hit-for-pass), its own request too.
    upstream.on("/welcome", headers=[("Set-Cookie", "sid=fresh; Path=/; HttpOnly")])

    first, second = await client.get("/welcome"), await client.get("/welcome")

    assert [a.x_cache for a in (first, second)] == ["MISS", "PASS"]
    assert first.cache_status == 'sidecache; fwd=miss; detail="set-cookie"'
    assert first.headers.getall("Set-Cookie") == ["sid=fresh; Path=/; HttpOnly"]
    assert second.headers.getall("Set-Cookie") == ["sid=fresh; Path=/; HttpOnly"]
    assert len(upstream.seen) == 2


async def test_set_cookie_strip_stores_without_it_and_never_replays_it(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(rules=[{"anonymous": True, "set_cookie": "strip"}])
    upstream.on(
        "/landing",
        headers=[
            ("Set-Cookie", "_ga=GA1.2.3; Max-Age=63072000"),
            ("X-App", "landing"),
            ("Set-Cookie", "seen=1"),
        ],
    )

    filler = await client.get("/landing")
    others = [await client.get("/landing", h) for h in (None, {"Cookie": "theme=dark"})]

    assert [a.x_cache for a in [filler, *others]] == ["MISS", "HIT", "HIT"]
    assert filler.cache_status == "sidecache; fwd=miss; stored"
    for answer in [filler, *others]:
        assert "Set-Cookie" not in answer.headers
        assert answer.headers["X-App"] == "landing"
        assert answer.body == b"GET /landing #1"
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("identity", "set_cookie"),
    [
        pytest.param({}, "session=eyJjc3JmX3Rva2VuIjoiMSJ9.a.b; HttpOnly", id="flask-session"),
        pytest.param({}, "remember_token=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", id="remember"),
        pytest.param({"preset": "django"}, "csrftoken=abc; Path=/", id="django-csrftoken"),
        pytest.param({"preset": "django"}, "messages=xyz; Path=/", id="django-messages"),
    ],
)
async def test_set_cookie_strip_never_stores_a_page_that_set_a_visitors_state(
    sidecache: StartProxy, upstream: FakeUpstream, identity: dict[str, str], set_cookie: str
) -> None:
    # A fill that started a session (a CSRF secret, a flash message) rendered a page for it:
    # stripped and stored, every visitor would get a form whose token is not theirs.
    client = await sidecache(rules=[{"anonymous": True, "set_cookie": "strip"}], identity=identity)
    upstream.on("/form", headers=[("Set-Cookie", "_ga=1"), ("Set-Cookie", set_cookie)])

    first = await client.get("/form")
    second = await client.get("/form", {"Cookie": "_ga=2"})

    assert first.cache_status == 'sidecache; fwd=miss; detail="set-cookie"'
    assert first.headers.getall("Set-Cookie") == ["_ga=1", set_cookie]  # its own session
    assert (second.x_cache, second.body) == ("PASS", b"GET /form #2")
    assert upstream.seen[1].values("Cookie") == ["_ga=2"]


async def test_set_cookie_on_a_pass_reaches_the_client(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/login", headers=[("Set-Cookie", "remember_token=42|x; HttpOnly")])

    login = await client.fetch("POST", "/login", data=b"user=a&password=b")

    assert login.x_cache == "PASS"
    assert login.headers.getall("Set-Cookie") == ["remember_token=42|x; HttpOnly"]


async def test_authorization_passes_and_stores_nothing_by_default(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/api", headers=[("Cache-Control", "public, max-age=60")])
    credentials = {"Authorization": "Bearer t0k3n"}

    authorized = [await client.get("/api", credentials) for _ in range(2)]
    anonymous = await client.get("/api")

    assert [a.x_cache for a in authorized] == ["PASS", "PASS"]
    assert (anonymous.x_cache, anonymous.body) == ("MISS", b"GET /api #3")
    assert [s.values("Authorization") for s in upstream.seen] == [["Bearer t0k3n"]] * 2 + [[]]


@pytest.mark.parametrize(
    ("cache_control", "stored"),
    [
        (None, False),
        ("max-age=60", False),
        ("public", True),
        ("s-maxage=30", True),
        ("must-revalidate", True),
    ],
)
async def test_allowed_authorization_is_stored_only_when_the_response_says_so(
    sidecache: StartProxy, upstream: FakeUpstream, cache_control: str | None, stored: bool
) -> None:
    client = await sidecache(rules=[{"anonymous": True, "allow_authorization": True}])
    upstream.on("/api", headers=[("Cache-Control", cache_control)] if cache_control else [])
    credentials = {"Authorization": "Bearer t0k3n"}

    first = await client.get("/api", credentials)
    second = await client.get("/api", credentials)

    assert first.x_cache == "MISS"
    assert second.x_cache == ("HIT" if stored else "MISS")
    if not stored:
        assert first.cache_status == 'sidecache; fwd=miss; detail="authorization"'
    assert upstream.seen[0].values("Authorization") == ["Bearer t0k3n"]
    assert len(upstream.seen) == (1 if stored else 2)


def echoed(body: bytes) -> dict[str, Any]:
    received: dict[str, Any] = json.loads(body)
    return received


async def test_a_forged_host_cannot_poison_another_hosts_entry(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/", echo=True)

    forged = await client.get("/", {"Host": "evil.example"})
    real = await client.get("/", {"Host": "www.example.com"})
    real_again = await client.get("/", {"Host": "WWW.Example.com"})
    forged_again = await client.get("/", {"Host": "evil.example"})

    assert [a.x_cache for a in (forged, real, real_again, forged_again)] == [
        "MISS",
        "MISS",
        "HIT",
        "HIT",
    ]
    assert ["Host", "www.example.com"] in echoed(real_again.body)["headers"]
    assert ["Host", "evil.example"] in echoed(forged_again.body)["headers"]
    assert [s.values("Host") for s in upstream.seen] == [["evil.example"], ["www.example.com"]]


async def test_a_forged_forwarding_header_cannot_poison_the_entry(
    client: Client, upstream: FakeUpstream
) -> None:
    upstream.on("/", echo=True)
    forged_headers = {
        "Host": "www.example.com",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "javascript",
        "Forwarded": "host=evil.example;proto=https",
        "X-Original-URL": "/admin",
    }

    forged = await client.get("/", forged_headers)
    visitor = await client.get("/", {"Host": "www.example.com"})

    assert (forged.x_cache, visitor.x_cache) == ("MISS", "HIT")
    fill = upstream.seen[0]
    assert fill.values("X-Forwarded-Host") == ["www.example.com"]
    assert fill.values("X-Forwarded-Proto") == ["http"]
    assert {"forwarded", "x-original-url"}.isdisjoint(fill.names)
    assert "evil" not in visitor.body.decode() and "javascript" not in visitor.body.decode()


@pytest.mark.parametrize(
    ("name", "headers", "detail"),
    [
        ("range", {"Range": "bytes=0-3"}, "range"),
        ("body", {"Content-Type": "application/json"}, "request-body"),
    ],
)
async def test_partial_and_bodied_gets_pass_and_store_nothing(
    client: Client, upstream: FakeUpstream, name: str, headers: dict[str, str], detail: str
) -> None:
    data = b'{"q": 1}' if name == "body" else None

    passed = await client.fetch("GET", "/search", headers=headers, data=data)
    plain = await client.get("/search")

    assert (passed.x_cache, passed.cache_status) == (
        "PASS",
        f'sidecache; fwd=bypass; detail="{detail}"',
    )
    assert (plain.x_cache, plain.body) == ("MISS", b"GET /search #2")
    first = upstream.seen[0]
    assert (first.method, first.body) == ("GET", data or b"")
    for header, value in headers.items():
        assert first.values(header) == [value]


async def test_a_fill_asks_for_the_full_response_without_validators(
    client: Client, upstream: FakeUpstream
) -> None:
    conditional = {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT",
        "Cookie": "theme=dark",
    }

    first = await client.get("/page", conditional)
    second = await client.get("/page")

    assert (first.status, first.body, second.x_cache) == (200, b"GET /page #1", "HIT")
    fill = upstream.seen[0]
    assert {"if-none-match", "if-modified-since", "cookie"}.isdisjoint(fill.names)


async def test_a_remember_cookie_in_a_second_cookie_field_still_counts(
    client: Client, upstream: FakeUpstream
) -> None:
    split = [("Cookie", "theme=dark"), ("Cookie", "remember_token=42|abc")]

    await client.get("/home")
    personal = await client.get("/home", split)

    assert (personal.x_cache, personal.body) == ("PASS", b"GET /home #2")
    assert upstream.seen[1].values("Cookie") == ["theme=dark", "remember_token=42|abc"]


@pytest.mark.parametrize(
    ("header", "first", "second"),
    [
        ("X-Forwarded-Proto", "https", "http"),
        ("X-Forwarded-Host", "a.example", "b.example"),
    ],
)
async def test_variants_a_trusted_proxy_forwards_do_not_share_an_entry(
    sidecache: StartProxy, upstream: FakeUpstream, header: str, first: str, second: str
) -> None:
    # Behind a trusted load balancer the proxy believes these headers and forwards them, so the
    # app builds its links from them (e.g. Werkzeug's ProxyFix); a page built for one value must
    # not be served for the other, just as the Host is part of the default key.
    client = await sidecache(server={"trusted_proxies": ["127.0.0.1/32"]})
    upstream.on("/", echo=True)
    base = {"Host": "backend.internal"}

    one = await client.get("/", base | {header: first})
    other = await client.get("/", base | {header: second})

    assert [s.values(header) for s in upstream.seen][:1] == [[first]]
    assert other.x_cache == "MISS"
    assert [header, second] in echoed(other.body)["headers"]
    assert one.body != other.body


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param({"Connection": "keep-alive, Host"}, id="connection-names-host"),
        pytest.param({"X_Forwarded_Host": "evil.example"}, id="underscore-forwarding-header"),
        pytest.param({"X_Original_URL": "/admin"}, id="underscore-original-url"),
        pytest.param({"X-Api-Key": "alice-secret"}, id="unknown-credential-header"),
    ],
)
async def test_one_request_cannot_poison_the_entry_through_request_headers(
    client: Client, upstream: FakeUpstream, attack: dict[str, str]
) -> None:
    # Product rule: what gets stored is what a brand-new visitor would see. Each of these once
    # reached the fill (review of issue 2): Connection stripped the Host, WSGI servers read
    # X_Forwarded_Host as X-Forwarded-Host, and unknown headers were forwarded on fills.
    upstream.on("/", echo=True)

    attacker = await client.get("/", {"Host": "www.example.com", **attack})
    visitor = await client.get("/", {"Host": "www.example.com"})

    assert (attacker.x_cache, visitor.x_cache) == ("MISS", "HIT")
    fill = upstream.seen[0]
    assert fill.values("Host") == ["www.example.com"]
    assert {name.lower() for name in attack if name != "Connection"}.isdisjoint(fill.names)
    assert visitor.body == attacker.body
    assert len(upstream.seen) == 1
