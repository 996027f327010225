"""Pin proxy.policy: storability, header filtering and Cache-Status values."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import parse
from proxy.freshness import TtlPolicy
from proxy.policy import (
    DontStore,
    Store,
    body_storability,
    cache_control,
    cache_status,
    connection_tokens,
    end_to_end,
    personal,
    relays_interim,
    response_directives,
    storability,
    stored_headers,
    targeted_directives,
)
from proxy.reasons import NotStoredReason
from proxy.rules import Rule
from proxy.view import Headers

TTL = 30.0
POLICY = TtlPolicy(ttl=TTL, keep=0.0)  # a forced 30 s, as the default rules have


def rule(**fields: Any) -> Rule:
    return parse({"caches": {"default": {}}, "rules": [fields]}, "test.toml").rules[0]


SKIP = rule()
STRIP = rule(set_cookie="strip")
OK: Headers = (("Content-Type", "text/html"), ("Content-Length", "5"))


def verdict(
    status: int = 200,
    headers: Headers = OK,
    *,
    on: Rule = SKIP,
    keyed: frozenset[str] = frozenset(),
    authorized: bool = False,
) -> Store | DontStore:
    return storability(status, headers, on, POLICY, keyed, authorized)


def cc(value: str) -> Headers:
    return (*OK, ("Cache-Control", value))


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        pytest.param(verdict(), Store(TTL), id="plain-200-stored-for-rule-ttl"),
        # product rule: only 200 is stored
        pytest.param(verdict(404), DontStore(NotStoredReason.STATUS), id="404"),
        pytest.param(verdict(301), DontStore(NotStoredReason.STATUS), id="301"),
        pytest.param(verdict(203), DontStore(NotStoredReason.STATUS), id="203"),
        pytest.param(verdict(206), DontStore(NotStoredReason.STATUS), id="206-partial"),
        pytest.param(verdict(500), DontStore(NotStoredReason.STATUS), id="500"),
        # RFC 9111 §5.2.2.5 no-store, §5.2.2.7 private, §5.2.2.4 no-cache
        pytest.param(
            verdict(headers=cc("no-store")), DontStore(NotStoredReason.NO_STORE), id="no-store"
        ),
        pytest.param(
            verdict(headers=cc("public, No-Store")),
            DontStore(NotStoredReason.NO_STORE),
            id="no-store-case-insensitive",
        ),
        pytest.param(
            verdict(headers=cc("private")), DontStore(NotStoredReason.PRIVATE), id="private"
        ),
        pytest.param(
            verdict(headers=cc('private="Set-Cookie"')),
            DontStore(NotStoredReason.PRIVATE),
            id="qualified-private",
        ),
        pytest.param(
            verdict(headers=cc("no-cache")), DontStore(NotStoredReason.NO_CACHE), id="no-cache"
        ),
        pytest.param(
            verdict(headers=cc("max-age=60, no-store, private")),
            DontStore(NotStoredReason.NO_STORE),
            id="no-store-checked-first",
        ),
        pytest.param(
            verdict(headers=(*OK, ("Cache-Control", "max-age=60"), ("Cache-Control", "private"))),
            DontStore(NotStoredReason.PRIVATE),
            id="second-cache-control-field",
        ),
        pytest.param(verdict(headers=cc("public, max-age=60")), Store(TTL), id="public-stored"),
        # RFC 9111 §3.5: with Authorization only public, s-maxage or must-revalidate allow it
        pytest.param(
            verdict(authorized=True), DontStore(NotStoredReason.AUTHORIZATION), id="authorized"
        ),
        pytest.param(
            verdict(headers=cc("max-age=60"), authorized=True),
            DontStore(NotStoredReason.AUTHORIZATION),
            id="authorized-max-age-not-enough",
        ),
        pytest.param(verdict(headers=cc("public"), authorized=True), Store(TTL), id="auth-public"),
        pytest.param(
            # s-maxage implies proxy-revalidate (§5.2.2.10): never served stale
            verdict(headers=cc("s-maxage=60"), authorized=True),
            Store(TTL, must_revalidate=True),
            id="auth-s-maxage",
        ),
        pytest.param(
            verdict(headers=cc("must-revalidate"), authorized=True),
            Store(TTL, must_revalidate=True),
            id="auth-must-revalidate",
        ),
        # product rule: set_cookie = "skip" (default, as Varnish) or "strip"
        pytest.param(
            verdict(headers=(*OK, ("Set-Cookie", "a=1"))),
            DontStore(NotStoredReason.SET_COOKIE),
            id="set-cookie-skip",
        ),
        pytest.param(
            verdict(headers=(*OK, ("set-cookie", "a=1"))),
            DontStore(NotStoredReason.SET_COOKIE),
            id="set-cookie-name-case",
        ),
        pytest.param(
            verdict(headers=(*OK, ("Set-Cookie", "a=1")), on=STRIP), Store(TTL), id="strip"
        ),
        # RFC 9111 §4.1: Vary: * never matches
        pytest.param(
            verdict(headers=(*OK, ("Vary", "*"))), DontStore(NotStoredReason.VARY_STAR), id="vary-*"
        ),
        pytest.param(
            verdict(headers=(*OK, ("Vary", "Accept-Encoding, *"))),
            DontStore(NotStoredReason.VARY_STAR),
            id="vary-star-in-list",
        ),
        # RFC 9111 §4.1: a header the fill sends may be varied on: one variant per value
        pytest.param(
            verdict(headers=(*OK, ("Vary", "User-Agent"))),
            Store(TTL, vary=("user-agent",)),
            id="vary-on-a-forwarded-header",
        ),
        pytest.param(
            verdict(headers=(*OK, ("Vary", "Accept-Encoding"), ("Vary", "Accept-Language"))),
            Store(TTL, vary=("accept-language",)),
            id="vary-second-field",
        ),
        # product rule: a header the fill does not send cannot be what the response varies on
        pytest.param(
            verdict(headers=(*OK, ("Vary", "X-Device"))),
            DontStore(NotStoredReason.VARY),
            id="vary-unforwarded-header",
        ),
        pytest.param(
            verdict(headers=(*OK, ("Vary", "X-Device")), on=rule(keep_headers=["X-Device"])),
            Store(TTL, vary=("x-device",)),
            id="vary-kept-header",
        ),
        pytest.param(
            verdict(
                headers=(*OK, ("Vary", "Accept-Language")), keyed=frozenset({"accept-language"})
            ),
            Store(TTL),
            id="vary-keyed-header",
        ),
        pytest.param(
            verdict(headers=(*OK, ("Vary", "accept-encoding"))), Store(TTL), id="vary-ae-keyed"
        ),
        pytest.param(
            verdict(headers=(*OK, ("Vary", "Cookie, Accept-Encoding"))),
            Store(TTL),
            id="vary-cookie-by-construction",
        ),
    ],
)
def test_storability(result: Store | DontStore, expected: Store | DontStore) -> None:
    assert result == expected


def test_storability_ttl_is_the_one_given() -> None:
    policy = TtlPolicy(ttl=5.0, keep=120.0)
    assert storability(200, OK, SKIP, policy, frozenset(), False) == Store(5.0, keep=120.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # RFC 9110 §7.6.1: hop-by-hop fields are dropped, in both directions
        pytest.param(
            (
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-Sum"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "websocket"),
                ("Content-Type", "text/html"),
            ),
            (("Content-Type", "text/html"),),
            id="standard-hop-by-hop",
        ),
        # RFC 9110 §7.6.1: the fields Connection names are hop-by-hop too
        pytest.param(
            (("Connection", "X-Secret, close"), ("X-Secret", "1"), ("X-Open", "2")),
            (("X-Open", "2"),),
            id="named-in-connection",
        ),
        pytest.param(
            (
                ("connection", "x-a"),
                ("Connection", "X-B"),
                ("X-A", "1"),
                ("X-B", "2"),
                ("X-C", "3"),
            ),
            (("X-C", "3"),),
            id="several-connection-fields",
        ),
        # product rule (issue 2): Proxy-* are hop-by-hop
        pytest.param(
            (
                ("Proxy-Authorization", "Basic x"),
                ("Proxy-Authenticate", "Basic"),
                ("Proxy-Connection", "keep-alive"),
                ("proxy-anything", "1"),
                ("Accept", "*/*"),
            ),
            (("Accept", "*/*"),),
            id="proxy-star",
        ),
        # product rule: framing is the front's job
        pytest.param(
            (("Content-Length", "5"), ("ETag", '"x"')), (("ETag", '"x"'),), id="content-length"
        ),
        pytest.param(
            (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Vary", "Cookie")),
            (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Vary", "Cookie")),
            id="end-to-end-kept-in-order",
        ),
        pytest.param((), (), id="empty"),
    ],
)
def test_end_to_end(headers: Headers, expected: Headers) -> None:
    assert end_to_end(headers) == expected


def test_end_to_end_extra_drops() -> None:
    headers = (("Cookie", "a=1"), ("Accept", "*/*"))
    assert end_to_end(headers, drop=frozenset({"cookie"})) == (("Accept", "*/*"),)


@pytest.mark.parametrize(
    ("status", "version", "expected"),
    [
        pytest.param(103, (1, 1), True, id="103-early-hints"),
        pytest.param(102, (1, 1), True, id="102-processing"),
        pytest.param(199, (1, 1), True, id="unknown-1xx-still-interim"),
        pytest.param(103, (1, 0), False, id="never-to-http-1.0"),  # RFC 9110 §15.2
        pytest.param(100, (1, 1), False, id="100-is-the-front's"),  # it answers Expect itself
        pytest.param(101, (1, 1), False, id="101-nothing-upgrades"),
        pytest.param(200, (1, 1), False, id="final"),
    ],
)
def test_relays_interim(status: int, version: tuple[int, int], expected: bool) -> None:
    assert relays_interim(status, version) is expected


def test_connection_tokens() -> None:
    headers = (("Connection", "Keep-Alive, X-Foo ,"), ("connection", "Upgrade"))
    assert connection_tokens(headers) == frozenset({"keep-alive", "x-foo", "upgrade"})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # RFC 9111 §5.2: directive names are case-insensitive; arguments may be quoted
        pytest.param(
            (("Cache-Control", "Public, Max-Age=60"),),
            {"public": "", "max-age": "60"},
            id="names-lower-cased",
        ),
        pytest.param(
            (("Cache-Control", 'max-age="60", private="Set-Cookie"'),),
            {"max-age": "60", "private": "Set-Cookie"},
            id="quotes-stripped",
        ),
        pytest.param(
            (("Cache-Control", "no-cache"), ("cache-control", "s-maxage=5")),
            {"no-cache": "", "s-maxage": "5"},
            id="several-fields",
        ),
        pytest.param(
            (("Cache-Control", "max-age=1, max-age=2"),), {"max-age": "1"}, id="first-wins"
        ),
        pytest.param((("Cache-Control", " , ,"),), {}, id="empty-members"),
        pytest.param((("Content-Type", "text/html"),), {}, id="absent"),
    ],
)
def test_cache_control(headers: Headers, expected: dict[str, str]) -> None:
    assert cache_control(headers) == expected


def test_stored_headers() -> None:
    # product rule: entries never hold Set-Cookie, hop-by-hop headers or Age
    headers = (
        ("Content-Type", "text/html"),
        ("Set-Cookie", "session=abc"),
        ("Age", "12"),
        ("Connection", "X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Keep-Alive", "timeout=5"),
        ("ETag", '"v1"'),
        ("set-cookie", "b=2"),
        ("Date", "Sat, 28 Nov 2026 09:00:00 GMT"),
    )
    assert stored_headers(headers, 0.0) == (
        ("Content-Type", "text/html"),
        ("ETag", '"v1"'),
        ("Date", "Sat, 28 Nov 2026 09:00:00 GMT"),
    )


def test_stored_headers_add_the_date_of_receipt_when_the_origin_sent_none() -> None:
    # RFC 9110 §6.6.1: a cache that stores a response without Date records when it received it
    assert stored_headers((("Content-Type", "text/html"),), 1795856400.0) == (
        ("Content-Type", "text/html"),
        ("Date", "Sat, 28 Nov 2026 09:00:00 GMT"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 9211 §2: hit / fwd=miss / fwd=bypass, stored, detail
        pytest.param(cache_status(True), "sidecache; hit", id="hit"),
        pytest.param(
            cache_status(False, fwd="miss", stored=True), "sidecache; fwd=miss; stored", id="stored"
        ),
        pytest.param(
            cache_status(False, fwd="miss", detail="set-cookie"),
            'sidecache; fwd=miss; detail="set-cookie"',
            id="miss-not-stored",
        ),
        pytest.param(
            cache_status(False, fwd="bypass", detail="authenticated"),
            'sidecache; fwd=bypass; detail="authenticated"',
            id="bypass",
        ),
        pytest.param(cache_status(False, fwd="miss"), "sidecache; fwd=miss", id="bare-miss"),
        pytest.param(
            cache_status(True, fwd="miss", stored=True, detail="x"), "sidecache; hit", id="hit-only"
        ),
    ],
)
def test_cache_status(value: str, expected: str) -> None:
    assert value == expected


GZ: Headers = (("Content-Encoding", "gzip"),)
BR_GZ: Headers = (("Content-Encoding", "br"),)
NOT_STORED = DontStore(NotStoredReason.STATUS)


@pytest.mark.parametrize(
    ("verdict", "headers", "length", "framed", "encoding", "expected"),
    [
        pytest.param(Store(TTL), OK, 5, True, "identity", Store(TTL), id="fits-and-framed"),
        pytest.param(Store(TTL), OK, None, True, "identity", Store(TTL), id="chunked-unknown-size"),
        # product rule: a body larger than item_size is streamed, never recorded
        pytest.param(
            Store(TTL), OK, 101, True, "identity", DontStore(NotStoredReason.TOO_BIG), id="too-big"
        ),
        pytest.param(Store(TTL), OK, 100, True, "identity", Store(TTL), id="exactly-item-size"),
        # RFC 9112 §6.3: a close-delimited body cannot be told from a truncated one
        pytest.param(
            Store(TTL),
            OK,
            None,
            False,
            "identity",
            DontStore(NotStoredReason.UNFRAMED),
            id="close-delimited",
        ),
        # product rule: never store gzip for a key whose clients may not accept it
        pytest.param(
            Store(TTL),
            GZ,
            5,
            True,
            "identity",
            DontStore(NotStoredReason.ENCODING),
            id="gzip-for-identity-fill",
        ),
        pytest.param(Store(TTL), GZ, 5, True, "br, gzip", Store(TTL), id="gzip-asked-for"),
        pytest.param(
            Store(TTL),
            BR_GZ,
            5,
            True,
            "gzip",
            DontStore(NotStoredReason.ENCODING),
            id="br-for-gzip-fill",
        ),
        pytest.param(
            Store(TTL),
            (("Content-Encoding", "identity"),),
            5,
            True,
            "identity",
            Store(TTL),
            id="explicit-identity",
        ),
        # an earlier refusal is kept, whatever the body looks like
        pytest.param(NOT_STORED, OK, 10**9, False, "identity", NOT_STORED, id="already-refused"),
    ],
)
def test_body_storability(
    verdict: Store | DontStore,
    headers: Headers,
    length: int | None,
    framed: bool,
    encoding: str,
    expected: Store | DontStore,
) -> None:
    assert body_storability(verdict, headers, length, framed, 100, encoding) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("max-age=60", {"max-age": "60"}, id="integer"),
        pytest.param("no-store", {"no-store": ""}, id="bare-key"),
        pytest.param('max-age=60, private="x"', {"max-age": "60", "private": "x"}, id="string"),
        pytest.param("max-age=60;a=1", {"max-age": "60"}, id="parameters-ignored"),
        pytest.param("max-age=60, max-age=5", {"max-age": "60"}, id="first-wins"),
        pytest.param("Max-Age=60", None, id="upper-case-key-invalid"),  # RFC 8941 keys: lcalpha
        pytest.param("max-age=abc def", None, id="not-a-dictionary"),
        pytest.param("max-age=1.5.5", None, id="bad-number"),
    ],
)
def test_targeted_directives(value: str, expected: dict[str, str] | None) -> None:
    assert targeted_directives(value) == expected


TARGETS = ("sidecache-cache-control", "cdn-cache-control")


@pytest.mark.parametrize(
    ("headers", "directives", "kept"),
    [
        pytest.param(
            (("Cache-Control", "max-age=5"), ("Expires", "x"), ("CDN-Cache-Control", "max-age=60")),
            {"max-age": "60"},
            (("CDN-Cache-Control", "max-age=60"),),
            id="targeted-wins-cache-control-and-expires-ignored",
        ),
        pytest.param(
            (("CDN-Cache-Control", "max-age=60"), ("Sidecache-Cache-Control", "no-store")),
            {"no-store": ""},
            (("CDN-Cache-Control", "max-age=60"), ("Sidecache-Cache-Control", "no-store")),
            id="first-in-target-order",
        ),
        pytest.param(
            (("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age=a b")),
            {"max-age": "5"},
            (("Cache-Control", "max-age=5"), ("CDN-Cache-Control", "max-age=a b")),
            id="invalid-targeted-ignored",
        ),
        pytest.param(
            (("Cache-Control", "max-age=5"),),
            {"max-age": "5"},
            (("Cache-Control", "max-age=5"),),
            id="none-targeted",
        ),
    ],
)
def test_response_directives(headers: Headers, directives: dict[str, str], kept: Headers) -> None:
    assert response_directives(headers, TARGETS) == (directives, kept)


# --- personal: answers made for one visitor (issue 10, hit-for-pass) ---------------------------

DJANGO_STRIP = parse(
    {
        "identity": {"preset": "django"},
        "caches": {"default": {}},
        "rules": [{"set_cookie": "strip"}],
    },
    "test.toml",
).rules[0]
SHARED = parse({"mode": "shared"}, "test.toml").rules[0]


@pytest.mark.parametrize(
    ("headers", "on", "expected"),
    [
        pytest.param(OK, SKIP, None, id="plain-page"),
        pytest.param(cc("max-age=60"), SKIP, None, id="cacheable"),
        pytest.param(cc("no-cache"), SKIP, None, id="no-cache-is-not-personal"),
        # RFC 9111 §5.2.2.7 / §5.2.2.5: made for one user, or not to be kept
        pytest.param(cc("private"), SKIP, NotStoredReason.PRIVATE, id="private"),
        pytest.param(cc("Max-Age=0, No-Store"), SKIP, NotStoredReason.NO_STORE, id="no-store"),
        # product rule: a fill without cookies got a cookie: the app started a session for it
        pytest.param(
            (*OK, ("Set-Cookie", "session=x")), SKIP, NotStoredReason.SET_COOKIE, id="skip"
        ),
        pytest.param((*OK, ("Set-Cookie", "_ga=1")), STRIP, None, id="strip-analytics-cookie"),
        pytest.param(
            (*OK, ("Set-Cookie", "_ga=1"), ("set-cookie", "session=x; HttpOnly")),
            STRIP,
            NotStoredReason.SET_COOKIE,
            id="strip-never-a-session",
        ),
        pytest.param(
            (*OK, ("Set-Cookie", " remember_token=; Max-Age=0")),
            STRIP,
            NotStoredReason.SET_COOKIE,
            id="strip-never-remember",
        ),
        pytest.param(
            (*OK, ("Set-Cookie", "csrftoken=abc; Path=/")),
            DJANGO_STRIP,
            NotStoredReason.SET_COOKIE,
            id="strip-never-django-csrf",
        ),
        pytest.param(
            (*OK, ("Set-Cookie", "session=x")), DJANGO_STRIP, None, id="django-strips-others"
        ),
        # shared mode's fills are the visitor's own request: nothing to pass for
        pytest.param((*OK, ("Set-Cookie", "s=1"), ("Cache-Control", "private")), SHARED, None),
    ],
)
def test_personal(headers: Headers, on: Rule, expected: NotStoredReason | None) -> None:
    assert personal(headers, on) == expected


def test_personal_reads_the_targeted_field_first() -> None:
    # RFC 9213: CDN-Cache-Control speaks for this cache; Cache-Control: private is for browsers.
    headers = (*cc("private"), ("CDN-Cache-Control", "max-age=60"))
    assert personal(headers, SKIP, ("cdn-cache-control",)) is None
    assert personal(headers, SKIP) == NotStoredReason.PRIVATE


def test_strip_stores_only_when_no_state_cookie_is_set() -> None:
    assert isinstance(verdict(headers=(*OK, ("Set-Cookie", "_ga=1")), on=STRIP), Store)
    stripped = verdict(headers=(*OK, ("Set-Cookie", "session=a")), on=STRIP)
    assert stripped == DontStore(NotStoredReason.SET_COOKIE)
