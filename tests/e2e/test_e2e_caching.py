"""What gets cached and for whom, through the real `sidecache` process and a recording upstream.

Each test asserts both what the client got and what the upstream saw.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import zlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sidecache_e2e import Route, Seen, Upstream, fetch, parse_response, raw_exchange

REMEMBERED = {"Cookie": "remember_token=alice|signature"}
KIB = 1024


def personal_page(upstream: Upstream) -> None:
    """/page greets a remembered user by name; anonymous visitors get the public page."""

    async def page(request: web.Request, seen: Seen) -> web.StreamResponse:
        token = request.cookies.get("remember_token")
        who = f"hello {token.split('|')[0]}" if token else "public"
        return web.Response(text=f"{who} #{upstream.count('/page')}")

    upstream.route("/page", page)


async def test_anonymous_miss_then_hit(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url)

    first = await fetch(client, "GET", proxy.base_url + "/")
    second = await fetch(client, "GET", proxy.base_url + "/")

    assert (first.status, first.x_cache, first.body) == (200, "MISS", b"/ #1")
    assert first.cache_status == "sidecache; fwd=miss; stored"
    assert (second.status, second.x_cache, second.body) == (200, "HIT", b"/ #1")
    assert second.cache_status == "sidecache; hit"
    assert second.headers["Age"] == "0"
    assert "Age" not in first.headers
    assert upstream.count() == 1
    assert "Cookie" not in upstream.seen[0].headers
    await proxy.wait_for_line('"GET / HTTP/1.1" 200 HIT')
    logged = [line.split('"')[2].split()[:3] for line in proxy.access_lines('"GET / HTTP/1.1"')]
    assert logged == [["200", "MISS", "4"], ["200", "HIT", "4"]]


async def test_remember_token_always_reaches_upstream(upstream, client, start_sidecache):
    personal_page(upstream)
    proxy = await start_sidecache(upstream=upstream.url)
    url = proxy.base_url + "/page"

    logged_in = await fetch(client, "GET", url, headers=REMEMBERED)
    assert (logged_in.x_cache, logged_in.body) == ("PASS", b"hello alice #1")
    # The default rule matches; every cache rule passes logged-in visitors, and says why.
    assert logged_in.cache_status == 'sidecache; fwd=bypass; detail="authenticated"'

    # The logged-in response was not stored: the first anonymous visitor is a miss.
    anonymous = await fetch(client, "GET", url)
    assert (anonymous.x_cache, anonymous.body) == ("MISS", b"public #2")
    cached = await fetch(client, "GET", url)
    assert (cached.x_cache, cached.body) == ("HIT", b"public #2")

    # With the anonymous entry in the cache, the remembered user still reaches the upstream.
    again = await fetch(client, "GET", url, headers=REMEMBERED)
    assert (again.status, again.x_cache, again.body) == (200, "PASS", b"hello alice #3")
    head = await fetch(client, "HEAD", url, headers=REMEMBERED)
    assert (head.x_cache, head.body) == ("PASS", b"")

    assert [s.method for s in upstream.requests("/page")] == ["GET", "GET", "GET", "HEAD"]
    cookies = [s.headers.get("Cookie") for s in upstream.requests("/page")]
    assert cookies == [REMEMBERED["Cookie"], None, REMEMBERED["Cookie"], REMEMBERED["Cookie"]]
    # ... and its response never replaced the anonymous entry.
    last = await fetch(client, "GET", url)
    assert (last.x_cache, last.body) == ("HIT", b"public #2")
    assert upstream.count("/page") == 4


def session_page(upstream: Upstream, cookie: str = "session") -> None:
    """/login-page sets a new cookie on every response: Set-Cookie session=sN."""

    async def login_page(request: web.Request, seen: Seen) -> web.StreamResponse:
        n = upstream.count(seen.target)
        response = web.Response(text=f"login form #{n}")
        response.headers.add("Set-Cookie", f"{cookie}=s{n}; Path=/; HttpOnly")
        return response

    upstream.route("/login-page", login_page)


async def test_set_cookie_is_never_replayed_to_another_client(upstream, client, start_sidecache):
    session_page(upstream)
    proxy = await start_sidecache(upstream=upstream.url)
    url = proxy.base_url + "/login-page"

    alice = await fetch(client, "GET", url)
    bob = await fetch(client, "GET", url)
    carol = await fetch(client, "GET", url, headers={"Cookie": "lang=fr"})

    detail = 'sidecache; fwd=miss; detail="set-cookie"'
    assert (alice.x_cache, alice.cache_status, alice.body) == ("MISS", detail, b"login form #1")
    # Alice made exactly the fill's request: the session is her own.
    assert alice.set_cookies == ["session=s1; Path=/; HttpOnly"]
    # The key is now hit-for-pass: Bob and Carol reach the app with their own requests, and
    # what it sets in answer is theirs; nobody gets anyone else's session.
    assert (bob.x_cache, bob.body) == ("PASS", b"login form #2")
    assert bob.set_cookies == ["session=s2; Path=/; HttpOnly"]
    assert (carol.x_cache, carol.body) == ("PASS", b"login form #3")
    assert carol.set_cookies == ["session=s3; Path=/; HttpOnly"]
    assert upstream.count("/login-page") == 3
    cookies = [s.headers.get("Cookie") for s in upstream.requests("/login-page")]
    assert cookies == [None, None, "lang=fr"]


STRIP_CONFIG = """
[caches.default]
ttl = "60s"

[[rules]]
name = "strip-session"
anonymous = true
set_cookie = "strip"
"""


async def test_set_cookie_stripped_from_stored_entry(upstream, client, start_sidecache):
    session_page(upstream, cookie="visitor_id")  # says nothing of the page: strip may drop it
    proxy = await start_sidecache(upstream=upstream.url, config=STRIP_CONFIG)
    url = proxy.base_url + "/login-page"

    alice = await fetch(client, "GET", url)
    bob = await fetch(client, "GET", url)
    carol = await fetch(client, "HEAD", url)

    assert (alice.x_cache, alice.cache_status) == ("MISS", "sidecache; fwd=miss; stored")
    assert (bob.x_cache, bob.body) == ("HIT", b"login form #1")
    assert carol.x_cache == "HIT"
    assert alice.set_cookies == bob.set_cookies == carol.set_cookies == []
    assert upstream.count("/login-page") == 1


@pytest.mark.parametrize("status", [301, 404, 500, 503])
async def test_non_200_is_not_stored(upstream, client, start_sidecache, status):
    async def failing(request: web.Request, seen: Seen) -> web.StreamResponse:
        headers = {"Location": "/elsewhere"} if status == 301 else {}
        n = upstream.count(seen.target)
        return web.Response(status=status, text=f"status {status} #{n}", headers=headers)

    upstream.route("/odd", failing)
    proxy = await start_sidecache(upstream=upstream.url)

    first = await fetch(client, "GET", proxy.base_url + "/odd")
    second = await fetch(client, "GET", proxy.base_url + "/odd")

    assert (first.status, first.x_cache, first.body) == (
        status,
        "MISS",
        f"status {status} #1".encode(),
    )
    assert first.cache_status == 'sidecache; fwd=miss; detail="status"'
    assert (second.status, second.x_cache, second.body) == (
        status,
        "MISS",
        f"status {status} #2".encode(),
    )
    assert upstream.count("/odd") == 2


BIG = hashlib.sha256(b"seed").digest() * (1024 * KIB // 32)  # 1 MiB, over the 64 KiB item_size


def _big_route(framing: str) -> Route:
    async def big(request: web.Request, seen: Seen) -> web.StreamResponse:
        if framing == "content-length":
            return web.Response(body=BIG, content_type="application/octet-stream")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(BIG), 64 * KIB):
            await response.write(BIG[start : start + 64 * KIB])
        await response.write_eof()
        return response

    return big


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_oversized_body_is_streamed_whole_and_not_stored(
    upstream, client, start_sidecache, framing
):
    upstream.route("/big", _big_route(framing))
    proxy = await start_sidecache(upstream=upstream.url)

    replies = [await fetch(client, "GET", proxy.base_url + "/big") for _ in range(2)]

    for reply in replies:
        assert reply.status == 200
        assert len(reply.body) == len(BIG)
        assert hashlib.sha256(reply.body).digest() == hashlib.sha256(BIG).digest()
        assert reply.x_cache == "MISS"
    assert upstream.count("/big") == 2
    logged = await proxy.wait_for_lines('"GET /big HTTP/1.1" 200 MISS 1048576 ', 2, within=2)
    assert [line.split()[-1] for line in logged] == ["detail=too-big", "detail=too-big"]
    assert [line.split('"')[2].split()[:3] for line in logged] == [["200", "MISS", "1048576"]] * 2


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_cache_status_of_an_oversized_body_does_not_claim_stored(
    upstream, client, start_sidecache, framing
):
    """RFC 9211 §2.6: `stored` says the response was stored. An oversized body never is."""
    upstream.route("/big", _big_route(framing))
    proxy = await start_sidecache(upstream=upstream.url)

    reply = await fetch(client, "GET", proxy.base_url + "/big")

    assert len(reply.body) == len(BIG)
    assert reply.cache_status is not None
    assert "stored" not in reply.cache_status.split("; ")


async def test_body_just_under_item_size_is_stored(upstream, client, start_sidecache):
    """The counterpart of the oversized case: item_size is a limit, not a ban on bodies."""

    async def fits(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(body=BIG[: 64 * KIB - 1024])

    upstream.route("/fits", fits)
    proxy = await start_sidecache(upstream=upstream.url)

    first = await fetch(client, "GET", proxy.base_url + "/fits")
    second = await fetch(client, "GET", proxy.base_url + "/fits")

    assert (first.x_cache, second.x_cache) == ("MISS", "HIT")
    assert first.body == second.body == BIG[: 64 * KIB - 1024]
    assert upstream.count("/fits") == 1


async def test_query_strings_are_kept_apart(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url)
    base = proxy.base_url + "/list"

    one = await fetch(client, "GET", base + "?page=1")
    two = await fetch(client, "GET", base + "?page=2")
    one_again = await fetch(client, "GET", base + "?page=1")
    two_again = await fetch(client, "GET", base + "?page=2")
    bare = await fetch(client, "GET", base)

    assert (one.x_cache, one.body) == ("MISS", b"/list?page=1 #1")
    assert (two.x_cache, two.body) == ("MISS", b"/list?page=2 #1")
    assert (one_again.x_cache, one_again.body) == ("HIT", b"/list?page=1 #1")
    assert (two_again.x_cache, two_again.body) == ("HIT", b"/list?page=2 #1")
    assert (bare.x_cache, bare.body) == ("MISS", b"/list #1")
    assert [s.target for s in upstream.seen] == ["/list?page=1", "/list?page=2", "/list"]


async def test_head_is_served_from_the_get_entry(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url)

    got = await fetch(client, "GET", proxy.base_url + "/h")
    head = await fetch(client, "HEAD", proxy.base_url + "/h")

    assert (got.x_cache, got.body) == ("MISS", b"/h #1")
    assert (head.status, head.x_cache, head.body) == (200, "HIT", b"")
    assert head.headers["Content-Length"] == str(len(b"/h #1"))
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/h")]


async def test_head_miss_fills_with_get_and_stores(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url)

    head = await fetch(client, "HEAD", proxy.base_url + "/h2")
    got = await fetch(client, "GET", proxy.base_url + "/h2")

    assert (head.status, head.x_cache, head.body) == (200, "MISS", b"")
    assert (got.x_cache, got.body) == ("HIT", b"/h2 #1")
    assert [(s.method, s.target) for s in upstream.seen] == [("GET", "/h2")]


async def test_cache_flag_caches_only_matching_paths(upstream, client, start_sidecache):
    proxy = await start_sidecache(
        upstream=upstream.url, args=["--cache", "^/static/", "--cache", "^/about$"]
    )

    replies = {
        target: [(await fetch(client, "GET", proxy.base_url + target)).x_cache for _ in range(2)]
        for target in ("/static/app.css", "/about", "/about/team", "/")
    }

    assert replies == {
        "/static/app.css": ["MISS", "HIT"],
        "/about": ["MISS", "HIT"],
        "/about/team": ["PASS", "PASS"],
        "/": ["PASS", "PASS"],
    }
    counts = {t: upstream.count(t) for t in replies}
    assert counts == {"/static/app.css": 1, "/about": 1, "/about/team": 2, "/": 2}
    passed = await fetch(client, "GET", proxy.base_url + "/")
    assert passed.cache_status == 'sidecache; fwd=bypass; detail="no-rule"'
    # --cache rules are for anonymous visitors only.
    remembered = await fetch(client, "GET", proxy.base_url + "/about", headers=REMEMBERED)
    assert (remembered.x_cache, remembered.body) == ("PASS", b"/about #2")


async def test_ttl_flag_expires_entries(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url, args=["--cache", "^/t$", "--ttl", "1s"])
    url = proxy.base_url + "/t"

    first = await fetch(client, "GET", url)
    second = await fetch(client, "GET", url)
    await asyncio.sleep(1.3)  # real time: the child process has its own clock
    third = await fetch(client, "GET", url)
    fourth = await fetch(client, "GET", url)

    assert [r.x_cache for r in (first, second, third, fourth)] == ["MISS", "HIT", "MISS", "HIT"]
    assert [r.body for r in (first, second, third, fourth)] == [
        b"/t #1",
        b"/t #1",
        b"/t #2",
        b"/t #2",
    ]
    assert upstream.count("/t") == 2


# The example config that mirrors the original uWSGI setup, as shipped in the repository.
UWSGI_CONFIG = (Path(__file__).resolve().parents[2] / "config" / "uwsgi-flask.toml").read_text()


async def test_uwsgi_setup_as_config_file(upstream, client, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url, config=UWSGI_CONFIG)

    about = [await fetch(client, "GET", proxy.base_url + "/about") for _ in range(2)]
    home = [await fetch(client, "GET", proxy.base_url + "/") for _ in range(2)]
    remembered = await fetch(client, "GET", proxy.base_url + "/about", headers=REMEMBERED)

    assert [(r.x_cache, r.body) for r in about] == [("MISS", b"/about #1"), ("HIT", b"/about #1")]
    assert [(r.x_cache, r.body) for r in home] == [("PASS", b"/ #1"), ("PASS", b"/ #2")]
    assert home[0].cache_status == 'sidecache; fwd=bypass; detail="no-rule"'
    assert (remembered.x_cache, remembered.body) == ("PASS", b"/about #2")
    assert upstream.count("/about") == 2
    assert upstream.count("/") == 2
    await proxy.wait_for_line('"GET /about HTTP/1.1" 200 HIT')
    assert "rule=about-for-anonymous" in proxy.access_lines('"GET /about HTTP/1.1" 200 HIT')[0]


async def test_upstream_dying_mid_body_aborts_the_client_and_stores_nothing(
    upstream, client, start_sidecache
):
    async def dies(request: web.Request, seen: Seen) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 50_000  # under item_size: would be stored if it were whole
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    upstream.route("/dies", dies)
    proxy = await start_sidecache(upstream=upstream.url)

    for _ in range(2):
        with pytest.raises(aiohttp.ClientPayloadError):
            await fetch(client, "GET", proxy.base_url + "/dies")

    # Both reached the upstream: the first, cut short, was not stored.
    assert upstream.count("/dies") == 2


def flask_session(payload: dict[str, object], *, compressed: bool = False) -> str:
    """A Flask session cookie value as itsdangerous writes it (the signature is not checked)."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    if compressed:
        data = zlib.compress(data)
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return f"{'.' if compressed else ''}{text}.ZxYwVg.c2lnbmF0dXJl"


CREDENTIALS = {
    "remember-token": {"Cookie": "remember_token=alice|signature"},
    "authorization": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "flask-session": {"Cookie": "session=" + flask_session({"_user_id": "alice", "_fresh": True})},
    "flask-session-zlib": {
        "Cookie": "session=" + flask_session({"_user_id": "alice", "x": "y" * 200}, compressed=True)
    },
}


@pytest.mark.parametrize("credential", CREDENTIALS, ids=list(CREDENTIALS))
async def test_logged_in_visitors_never_get_or_store_cached_pages(
    upstream, client, start_sidecache, credential
):
    """Whatever marks a visitor as logged in, the anonymous entry is never theirs to see."""
    personal = CREDENTIALS[credential]

    async def account(request: web.Request, seen: Seen) -> web.StreamResponse:
        logged_in = "Authorization" in request.headers or "session" in request.cookies
        logged_in = logged_in or "remember_token" in request.cookies
        who = "alice's page" if logged_in else "public page"
        return web.Response(text=f"{who} #{upstream.count('/account')}")

    upstream.route("/account", account)
    proxy = await start_sidecache(upstream=upstream.url)
    url = proxy.base_url + "/account"

    public = [await fetch(client, "GET", url) for _ in range(2)]
    mine = [await fetch(client, "GET", url, headers=personal) for _ in range(2)]
    public_after = await fetch(client, "GET", url)

    assert [(r.x_cache, r.body) for r in public] == [
        ("MISS", b"public page #1"),
        ("HIT", b"public page #1"),
    ]
    assert [(r.x_cache, r.body) for r in mine] == [
        ("PASS", b"alice's page #2"),
        ("PASS", b"alice's page #3"),
    ]
    assert (public_after.x_cache, public_after.body) == ("HIT", b"public page #1")
    assert upstream.count("/account") == 3
    name, value = next(iter(personal.items()))
    assert [s.headers.get(name) for s in upstream.requests("/account")] == [None, value, value]


async def test_anonymous_flask_session_is_still_served_from_cache(
    upstream, client, start_sidecache
):
    cookie = {"Cookie": "session=" + flask_session({"csrf_token": "abc123"})}
    proxy = await start_sidecache(upstream=upstream.url)

    first = await fetch(client, "GET", proxy.base_url + "/news", headers=cookie)
    second = await fetch(client, "GET", proxy.base_url + "/news", headers=cookie)

    assert [(r.x_cache, r.body) for r in (first, second)] == [
        ("MISS", b"/news #1"),
        ("HIT", b"/news #1"),
    ]
    # The fill was made as a brand-new visitor: without the visitor's session.
    assert [s.headers.get("Cookie") for s in upstream.seen] == [None]


async def test_a_forged_host_only_reaches_its_own_entry(upstream, start_sidecache):
    proxy = await start_sidecache(upstream=upstream.url)
    port = int(proxy.base_url.rsplit(":", 1)[1])

    async def get(host: bytes) -> tuple[str, bytes]:
        raw = b"GET /home HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        status, headers, body = parse_response(await raw_exchange("127.0.0.1", port, raw))
        assert status == 200
        return headers["x-cache"][0], body

    forged = await get(b"evil.example")
    real = await get(b"www.example")
    real_again = await get(b"www.example")

    assert forged == ("MISS", b"/home #1")
    assert real == ("MISS", b"/home #2")
    assert real_again == ("HIT", b"/home #2")
    assert [s.headers["Host"] for s in upstream.seen] == ["evil.example", "www.example"]


def gzip_aware(upstream: Upstream, *, honours_accept_encoding: bool) -> None:
    """/text compresses for clients that accept gzip (or always, like a misconfigured app)."""

    async def text(request: web.Request, seen: Seen) -> web.StreamResponse:
        body = f"text #{upstream.count('/text')} ".encode() * 50
        accepts = "gzip" in request.headers.get("Accept-Encoding", "")
        if accepts or not honours_accept_encoding:
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
            return web.Response(body=gzip.compress(body), headers=headers)
        return web.Response(body=body, headers={"Vary": "Accept-Encoding"})

    upstream.route("/text", text)


async def test_compressed_and_plain_variants_are_kept_apart(upstream, client, start_sidecache):
    gzip_aware(upstream, honours_accept_encoding=True)
    proxy = await start_sidecache(upstream=upstream.url)
    url = proxy.base_url + "/text"
    zipped, plain = {"Accept-Encoding": "gzip, deflate"}, {"Accept-Encoding": "identity"}

    replies = [await fetch(client, "GET", url, headers=h) for h in (zipped, plain, zipped, plain)]

    assert [(r.x_cache, r.headers.get("Content-Encoding")) for r in replies] == [
        ("MISS", "gzip"),
        ("MISS", None),
        ("HIT", "gzip"),
        ("HIT", None),
    ]
    assert gzip.decompress(replies[2].body) == b"text #1 " * 50  # passed through untouched
    assert replies[3].body == b"text #2 " * 50
    assert [s.headers.get("Accept-Encoding") for s in upstream.seen] == ["gzip", "identity"]


async def test_a_stored_gzip_body_is_never_served_to_a_client_that_did_not_accept_it(
    upstream, client, start_sidecache
):
    """Issue: "A gzip body is never served to a client that did not accept it." The fill asks
    for identity; an app that compresses anyway must not get its gzip body stored for (and then
    served from cache to) every identity-only visitor."""
    gzip_aware(upstream, honours_accept_encoding=False)
    proxy = await start_sidecache(upstream=upstream.url)
    plain = {"Accept-Encoding": "identity"}

    await fetch(client, "GET", proxy.base_url + "/text", headers=plain)
    second = await fetch(client, "GET", proxy.base_url + "/text", headers=plain)

    assert upstream.seen[0].headers["Accept-Encoding"] == "identity"
    assert (second.x_cache, second.headers.get("Content-Encoding")) != ("HIT", "gzip")


async def test_client_leaving_mid_body_stores_nothing(upstream, client, start_sidecache):
    release = asyncio.Event()

    async def slow(request: web.Request, seen: Seen) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"a" * 1000)
        if upstream.count("/slow") == 1:
            await asyncio.wait_for(release.wait(), 5)
        await response.write(b"b" * 1000)
        await response.write_eof()
        return response

    upstream.route("/slow", slow)
    proxy = await start_sidecache(upstream=upstream.url)

    try:
        async with client.get(proxy.base_url + "/slow") as response:
            assert (response.status, response.headers["X-Cache"]) == (200, "MISS")
            assert await response.content.readexactly(1000) == b"a" * 1000
            response.close()  # the visitor goes away with half the page
        await asyncio.sleep(0.3)  # let the proxy see the connection close before more body comes
    finally:
        release.set()
    await proxy.wait_for_line('"GET /slow HTTP/1.1" 200 MISS 1000 ', within=5)
    whole = await fetch(client, "GET", proxy.base_url + "/slow")
    again = await fetch(client, "GET", proxy.base_url + "/slow")

    assert proxy.access_lines('"GET /slow HTTP/1.1" 200 MISS 1000 ')[0].endswith(
        "detail=incomplete\n"
    )
    assert (whole.x_cache, whole.body) == ("MISS", b"a" * 1000 + b"b" * 1000)
    assert (again.x_cache, again.body) == ("HIT", b"a" * 1000 + b"b" * 1000)
    assert upstream.count("/slow") == 2


async def test_shared_mode_from_the_command_line(upstream, client, start_sidecache):
    # `sidecache --shared --upstream URL`: no rules, the origin's Cache-Control decides.
    async def page(request: web.Request, seen: Seen) -> web.StreamResponse:
        cache_control = "max-age=60" if request.path == "/cached" else "no-store"
        return web.Response(
            text=f"{request.path} #{upstream.count(request.path)}",
            headers={"Cache-Control": cache_control},
        )

    upstream.route("/cached", page)
    upstream.route("/fresh", page)
    proxy = await start_sidecache(upstream=upstream.url, args=["--shared"])

    cached = [await fetch(client, "GET", proxy.base_url + "/cached") for _ in range(2)]
    fresh = [await fetch(client, "GET", proxy.base_url + "/fresh") for _ in range(2)]

    assert [(r.x_cache, r.body) for r in cached] == [
        ("MISS", b"/cached #1"),
        ("HIT", b"/cached #1"),
    ]
    assert [(r.x_cache, r.body) for r in fresh] == [("MISS", b"/fresh #1"), ("MISS", b"/fresh #2")]
    assert 'detail="no-store"' in fresh[0].cache_status
