"""A client must never choose what a stored page contains (issue 11, faults 1, 2, 3 and 7).

Each case sends, through the real proxy, a request a hostile (or merely odd) client could send,
then checks what the origin saw and what a later, ordinary visitor gets.
"""

from __future__ import annotations

from .conftest import StartProxy
from .support import FakeClock, FakeUpstream


async def test_a_clients_validators_never_ride_on_a_revalidation(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    # RFC 9111 §4.3.1/§4.3.4: a revalidation asks about the stored response only; a 304 that
    # answered the client's own If-None-Match says nothing about the stored body.
    client = await sidecache(mode="shared", rules=[])
    old = [("Cache-Control", "max-age=1"), ("ETag", '"v1"')]
    upstream.on("/page", headers=old, body=b"old", conditional=True)
    await client.get("/page")
    clock.advance(2)  # stale
    new = [("Cache-Control", "max-age=1"), ("ETag", '"v2"')]
    upstream.on("/page", headers=new, body=b"new", conditional=True)

    await client.get("/page", {"If-None-Match": '"v2"'})  # an ETag learned elsewhere
    later = await client.get("/page")

    revalidation = upstream.to("/page")[1]
    assert revalidation.values("If-None-Match") == ['"v1"']
    assert (later.body, later.headers.get("ETag")) == (b"new", '"v2"')


async def test_a_wildcard_if_none_match_cannot_pin_an_old_page(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await sidecache(mode="shared", rules=[])
    upstream.on("/page", headers=[("Cache-Control", "max-age=1"), ("ETag", '"v1"')], body=b"old")
    await client.get("/page")
    clock.advance(2)
    upstream.on(
        "/page",
        headers=[("Cache-Control", "max-age=60"), ("ETag", '"v2"')],
        body=b"new",
        conditional=True,
    )
    await client.get("/page", {"If-None-Match": "*"})
    later = await client.get("/page")
    assert upstream.to("/page")[1].values("If-None-Match") == ['"v1"']
    assert later.body == b"new"


async def test_connection_cannot_strip_a_header_the_stored_page_varies_on(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # RFC 9110 §7.6.1 lets Connection name hop-by-hop fields, but a fill without the client's
    # Accept-Language renders the default language: stored under the French variant, it
    # would be every French visitor's page.
    client = await sidecache()
    upstream.on("/page", headers=[("Vary", "Accept-Language")], echo=True)
    poisoning = await client.get(
        "/page", {"Accept-Language": "fr", "Connection": "Accept-Language"}
    )
    french = await client.get("/page", {"Accept-Language": "fr"})

    assert upstream.seen[0].header("Accept-Language") == "fr"
    assert french.body == poisoning.body  # the stored French page is one made for French


async def test_connection_cannot_strip_any_header_from_a_shared_mode_fill(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(mode="shared", rules=[])
    upstream.on("/page", headers=[("Vary", "X-Device"), ("Cache-Control", "max-age=60")])
    await client.get("/page", {"X-Device": "phone", "Connection": "X-Device"})
    assert upstream.seen[0].header("X-Device") == "phone"


async def test_only_http_whitespace_is_ignored_in_a_varied_header(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    # RFC 9110 §5.6.3: whitespace is SP and HTAB; an NBSP is part of the value the app sees.
    client = await sidecache()
    upstream.on("/page", headers=[("Vary", "Accept-Language")])
    french = await client.get("/page", {"Accept-Language": "fr"})
    odd = await client.get("/page", {"Accept-Language": "\u00a0fr\u00a0"})
    spaced = await client.get("/page", {"Accept-Language": " \tfr "})
    assert french.x_cache == "MISS" and odd.x_cache == "MISS"
    assert spaced.x_cache == "HIT" and spaced.body == french.body
