"""Purge on the admin listener (issue 15), over real sockets: `POST /purge?url=|prefix=|tag=`
removes what it names from the real `Proxy`'s caches (every variant and encoding of a URL),
the next request is a MISS the app answers; tags come from the app's Cache-Tag, Surrogate-Key
or xkey and no visitor sees them; a token, when set, is required."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from .conftest import StartProxy
from .support import Client, FakeUpstream

TOKEN = "0123456789abcdef-token"
ADMIN = {"listen": "127.0.0.1:0"}


async def purge(
    client: Client, headers: dict[str, str] | None = None, **args: str
) -> tuple[int, dict[str, Any]]:
    address = client.proxy.admin.addresses[0]
    async with (
        aiohttp.ClientSession() as session,
        session.post(address + "/purge", params=args, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


async def caches(client: Client, *targets: str, host: str = "example.com") -> list[str | None]:
    """X-Cache of a GET of each target, in order."""
    return [(await client.get(t, {"Host": host})).x_cache for t in targets]


async def test_a_purge_by_url_makes_the_next_request_a_miss(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin=ADMIN)
    assert await caches(client, "/about", "/about", "/other") == ["MISS", "HIT", "MISS"]
    answer = await purge(client, url="/about")
    after = await client.get("/about", {"Host": "example.com"})

    assert answer == (200, {"purged": 1})
    assert (after.x_cache, after.body) == ("MISS", b"GET /about #2")
    assert await caches(client, "/other") == ["HIT"]  # the others stay


async def test_a_purge_by_url_with_a_host_leaves_other_hosts(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin=ADMIN)
    await caches(client, "/about", host="a.example")
    await caches(client, "/about", host="b.example")
    answer = await purge(client, url="http://A.example/about")

    assert answer == (200, {"purged": 1})
    assert await caches(client, "/about", host="a.example") == ["MISS"]
    assert await caches(client, "/about", host="b.example") == ["HIT"]


async def test_a_purge_by_url_removes_every_variant_and_encoding(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/i18n", headers=[("Vary", "Accept-Language, Accept-Encoding")])
    client = await sidecache(admin=ADMIN)
    asks = [
        {"Accept-Language": "en", "Accept-Encoding": "gzip"},
        {"Accept-Language": "fr", "Accept-Encoding": "gzip"},
        {"Accept-Language": "en", "Accept-Encoding": "br"},
    ]
    for headers in asks:
        await client.get("/i18n", headers)
    before = [(await client.get("/i18n", h)).x_cache for h in asks]
    status, body = await purge(client, url="/i18n")
    after = [await client.get("/i18n", h) for h in asks]

    assert before == ["HIT", "HIT", "HIT"]
    assert (status, body) == (200, {"purged": 5})  # 3 variants, the markers of 2 encodings
    assert [got.x_cache for got in after] == ["MISS", "MISS", "MISS"]
    assert [got.body for got in after] == [b"GET /i18n #4", b"GET /i18n #5", b"GET /i18n #6"]


@pytest.mark.parametrize(
    ("key", "purges"),
    [
        # no query in the key: the page filled from /about?utm=x answers /about and every query
        ("{scheme}://{host}{path}", [{"url": "/about"}, {"url": "http://example.com/about?b"}]),
        ("{scheme}://{host}{path}", [{"prefix": "/ab"}, {"prefix": "/about?z"}]),
        # no host in the key: the page answers every Host, so a purge naming any host reaches it
        ("{scheme}://{uri}", [{"url": "http://other.example/about"}]),
        # no target at all: one page for every request the rule matches
        ("{host}|{cookie[lang]}", [{"url": "/anything"}, {"prefix": "/x"}]),
    ],
)
async def test_a_purge_reaches_an_entry_by_any_url_its_key_answers(
    sidecache: StartProxy, upstream: FakeUpstream, key: str, purges: list[dict[str, str]]
) -> None:
    rules = [{"name": "r", "anonymous": True, "action": "cache", "key": key}]
    client = await sidecache(admin=ADMIN, rules=rules)
    filled = "/about" if "{uri}" in key else "/about?utm=x"
    for args in purges:
        await caches(client, filled)
        assert await caches(client, "/about") == ["HIT"]  # the key makes it the same page
        answer = await purge(client, **args)
        assert (args, answer) == (args, (200, {"purged": 1}))
        assert await caches(client, "/about") == ["MISS"]


async def test_a_purge_does_not_reach_a_page_its_key_tells_apart(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    rules = [{"name": "r", "anonymous": True, "action": "cache", "key": "{host}{path}"}]
    client = await sidecache(admin=ADMIN, rules=rules)
    await caches(client, "/about?utm=x", "/contact")
    answers = [await purge(client, **args) for args in ({"url": "/abou"}, {"prefix": "/b"})]
    answers.append(await purge(client, url="http://other.example/about"))

    assert answers == [(200, {"purged": 0})] * 3
    assert await caches(client, "/about", "/contact") == ["HIT", "HIT"]


async def test_a_purge_by_prefix(sidecache: StartProxy, upstream: FakeUpstream) -> None:
    client = await sidecache(admin=ADMIN)
    targets = ("/blog/1", "/blog/2?page=2", "/blogroll", "/about")
    await caches(client, *targets)
    answer = await purge(client, prefix="/blog/")

    assert answer == (200, {"purged": 2})
    assert await caches(client, *targets) == ["MISS", "MISS", "HIT", "HIT"]


async def test_a_purge_by_tag_and_no_visitor_sees_the_tags(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/product/42", headers=[("Cache-Tag", "product-42, catalog")])
    upstream.on("/catalog", headers=[("Surrogate-Key", "catalog front")])
    upstream.on("/news", headers=[("xkey", "news")])
    client = await sidecache(admin=ADMIN)
    miss = await client.get("/product/42")
    hit = await client.get("/product/42")
    await caches(client, "/catalog", "/news")
    answer = await purge(client, tag="catalog")

    assert answer == (200, {"purged": 2})
    assert await caches(client, "/product/42", "/catalog", "/news") == ["MISS", "MISS", "HIT"]
    for got in (miss, hit):
        assert "Cache-Tag" not in got.headers  # stripped from the miss and from the hit


async def test_tags_are_stripped_from_a_pass_and_from_a_miss_not_stored(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/account", headers=[("Cache-Tag", "user-7")])
    upstream.on("/form", headers=[("Cache-Tag", "forms"), ("Cache-Control", "private")])
    client = await sidecache(admin=ADMIN)
    passed = await client.get("/account", {"Cookie": "remember_token=7|x"})
    private = await client.get("/form")

    assert passed.x_cache == "PASS" and "Cache-Tag" not in passed.headers
    assert private.x_cache == "MISS" and "Cache-Tag" not in private.headers


async def test_delivered_tags_are_on_hits_when_deliver_tags_is_set(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    upstream.on("/news", headers=[("xkey", "news sport")])
    client = await sidecache(purge={"deliver_tags": True}, admin=ADMIN)
    miss, hit = await client.get("/news"), await client.get("/news")
    answer = await purge(client, tag="sport")

    assert (miss.headers.get("xkey"), hit.headers.get("xkey")) == ("news sport", "news sport")
    assert hit.x_cache == "HIT" and answer == (200, {"purged": 1})


async def test_configured_tag_headers(sidecache: StartProxy, upstream: FakeUpstream) -> None:
    upstream.on("/a", headers=[("X-Tags", "t1"), ("Cache-Tag", "t2")])
    client = await sidecache(purge={"tag_headers": ["X-Tags"]}, admin=ADMIN)
    got = await client.get("/a")

    assert "X-Tags" not in got.headers and got.headers.get("Cache-Tag") == "t2"
    assert await purge(client, tag="t2") == (200, {"purged": 0})  # not a tag header here
    assert await purge(client, tag="t1") == (200, {"purged": 1})


async def test_a_304_revalidation_keeps_the_entrys_tags(
    sidecache: StartProxy, upstream: FakeUpstream, clock: Any
) -> None:
    upstream.on(
        "/r",
        headers=[("ETag", '"v1"'), ("Cache-Control", "max-age=1"), ("Cache-Tag", "r")],
        conditional=True,
    )
    client = await sidecache(admin=ADMIN, caches={"default": {"ttl": "1s", "keep": "60s"}})
    await client.get("/r")
    upstream.on(  # the 304 names no tags: it updates the entry, it does not untag it
        "/r", headers=[("ETag", '"v1"'), ("Cache-Control", "max-age=1")], conditional=True
    )
    clock.advance(5)
    revalidated = await client.get("/r")
    answer = await purge(client, tag="r")

    assert len(upstream.to("/r")) == 2 and revalidated.x_cache != "MISS"
    assert answer == (200, {"purged": 1})
    assert (await client.get("/r")).x_cache == "MISS"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("", "exactly one"),
        ("?url=/a&tag=x", "exactly one"),
        ("?tag=a&tag=b", "repeated"),
        ("?url=about", "must be /path"),
        ("?what=/a", "unknown parameter"),
    ],
)
async def test_a_purge_that_names_nothing_or_too_much_is_400(
    sidecache: StartProxy, query: str, problem: str
) -> None:
    client = await sidecache(admin=ADMIN)
    address = client.proxy.admin.addresses[0]
    async with (
        aiohttp.ClientSession() as session,
        session.post(address + "/purge" + query) as response,
    ):
        status, body = response.status, json.loads(await response.text())
    assert status == 400 and problem in body["error"]


async def test_purge_is_a_post(sidecache: StartProxy) -> None:
    client = await sidecache(admin=ADMIN)
    address = client.proxy.admin.addresses[0]
    async with aiohttp.ClientSession() as session, session.get(address + "/purge?url=/") as got:
        assert got.status == 405


async def test_a_token_is_required_when_set(sidecache: StartProxy, upstream: FakeUpstream) -> None:
    client = await sidecache(admin={**ADMIN, "token": TOKEN})
    await caches(client, "/a")
    without = await purge(client, url="/a")
    wrong = await purge(client, {"Authorization": "Bearer nope"}, url="/a")
    still = await caches(client, "/a")
    right = await purge(client, {"Authorization": f"Bearer {TOKEN}"}, url="/a")

    assert without[0] == wrong[0] == 401 and "Bearer" in without[1]["error"]
    assert still == ["HIT"]  # a refused purge removed nothing
    assert right == (200, {"purged": 1})


async def test_the_public_listener_has_no_purge(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin=ADMIN)
    await caches(client, "/a")
    got = await client.fetch("POST", "/purge?url=/a")

    assert got.body == b"POST /purge?url=/a #1"  # the app's: the proxy has no such path
    assert await caches(client, "/a") == ["HIT"]
