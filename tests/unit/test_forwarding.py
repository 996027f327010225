"""Pin proxy.forwarding: the headers sent upstream on a pass and on a fill."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import parse
from proxy.forwarding import fill_headers, pass_headers, unconditional
from proxy.settings import Trust, Upstream
from proxy.view import Headers, RequestView

UNTRUSTED = parse({}, "test.toml").trust
TRUSTED = parse({"server": {"trusted_proxies": ["10.0.0.0/8"]}}, "test.toml").trust
KEEP_HOST = Upstream()
REWRITE_HOST = parse({"upstream": {"host": "app.internal"}}, "test.toml").upstream

CLIENT_FORWARDING: Headers = (
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil.example"),
    ("Forwarded", "for=6.6.6.6;host=evil.example"),
    ("X-Real-IP", "6.6.6.6"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
)


def view(*headers: tuple[str, str], peer: str = "203.0.113.7", **kw: Any) -> RequestView:
    return RequestView("GET", "/page?x=1", (("Host", "Example.com"), *headers), peer=peer, **kw)


def named(headers: Headers, name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


def fill(
    request: RequestView,
    *,
    trust: Trust = UNTRUSTED,
    upstream: Upstream = KEEP_HOST,
    encoding: str = "identity",
    keep_cookies: tuple[str, ...] = (),
    keep_authorization: bool = False,
    keep_headers: frozenset[str] = frozenset(),
) -> Headers:
    return fill_headers(
        request,
        trust,
        upstream,
        encoding=encoding,
        keep_cookies=keep_cookies,
        keep_authorization=keep_authorization,
        keep_headers=keep_headers,
    )


# --- pass: untrusted peer (product rule: client forwarding headers are never believed) --------


def test_pass_untrusted_replaces_forwarding_headers() -> None:
    headers = pass_headers(view(*CLIENT_FORWARDING, ("Accept", "*/*")), UNTRUSTED, KEEP_HOST)
    assert headers == (
        ("Host", "Example.com"),
        ("Accept", "*/*"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "example.com"),
        ("X-Real-IP", "203.0.113.7"),
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # product rule: replaced by the proxy's own values ...
        pytest.param("X-Forwarded-For", ["203.0.113.7"], id="xff-replaced"),
        pytest.param("X-Forwarded-Proto", ["http"], id="xfp-replaced"),
        pytest.param("X-Forwarded-Host", ["example.com"], id="xfh-replaced"),
        pytest.param("X-Real-IP", ["203.0.113.7"], id="real-ip-replaced"),
        # ... or dropped
        pytest.param("Forwarded", [], id="forwarded-dropped"),
        pytest.param("X-Original-URL", [], id="original-url-dropped"),
        pytest.param("X-Rewrite-URL", [], id="rewrite-url-dropped"),
    ],
)
def test_pass_untrusted_each_forwarding_header(name: str, expected: list[str]) -> None:
    headers = pass_headers(view(*CLIENT_FORWARDING), UNTRUSTED, KEEP_HOST)
    assert named(headers, name) == expected


@pytest.mark.parametrize(
    "name",
    [
        # product rule (issue 2): "X-Forwarded-*" from a client is replaced or dropped; apps
        # build links from these (werkzeug's ProxyFix reads X-Forwarded-Port and -Prefix)
        pytest.param("X-Forwarded-Port", id="x-forwarded-port"),
        pytest.param("X-Forwarded-Prefix", id="x-forwarded-prefix"),
        pytest.param("X-Forwarded-Server", id="x-forwarded-server"),
        pytest.param("X-Forwarded-Ssl", id="x-forwarded-ssl"),
    ],
)
def test_untrusted_other_x_forwarded_headers_dropped(name: str) -> None:
    request = view((name, "evil"))
    assert named(pass_headers(request, UNTRUSTED, KEEP_HOST), name) == []
    assert named(fill(request), name) == []


def test_pass_untrusted_drops_lower_case_forwarding_headers() -> None:
    headers = pass_headers(
        view(("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=1.1.1.1")), UNTRUSTED, KEEP_HOST
    )
    assert named(headers, "x-forwarded-for") == ["203.0.113.7"]
    assert named(headers, "forwarded") == []


def test_pass_https_scheme_is_vouched() -> None:
    headers = pass_headers(view(scheme="https"), UNTRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-Proto") == ["https"]


def test_pass_unix_socket_peer() -> None:
    # a unix-socket peer has no address: the proxy vouches for none (an address header holding
    # anything but an IP breaks apps that parse it)
    headers = pass_headers(view(peer=""), UNTRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-For") == []
    assert named(headers, "X-Real-IP") == []
    assert named(headers, "X-Forwarded-Proto") == ["http"]


# --- pass: trusted peer (a fronting load balancer) ------------------------------------------


def test_pass_trusted_appends_to_x_forwarded_for() -> None:
    request = view(*CLIENT_FORWARDING, peer="10.1.2.3")
    headers = pass_headers(request, TRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-For") == ["6.6.6.6, 10.1.2.3"]
    assert named(headers, "X-Forwarded-Proto") == ["https"]
    assert named(headers, "X-Forwarded-Host") == ["evil.example"]
    assert named(headers, "X-Real-IP") == ["6.6.6.6"]
    # believed, so passed on as sent
    assert named(headers, "Forwarded") == ["for=6.6.6.6;host=evil.example"]
    assert named(headers, "X-Original-URL") == ["/admin"]


def test_pass_trusted_keeps_other_x_forwarded_headers() -> None:
    request = view(("X-Forwarded-Port", "443"), ("X-Forwarded-Prefix", "/app"), peer="10.1.2.3")
    headers = pass_headers(request, TRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-Port") == ["443"]
    assert named(headers, "X-Forwarded-Prefix") == ["/app"]


def test_pass_trusted_joins_repeated_x_forwarded_for() -> None:
    request = view(("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2"), peer="10.0.0.1")
    headers = pass_headers(request, TRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-For") == ["1.1.1.1, 2.2.2.2, 10.0.0.1"]


def test_pass_trusted_without_chain_starts_one() -> None:
    headers = pass_headers(view(peer="10.9.9.9"), TRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-For") == ["10.9.9.9"]
    assert named(headers, "X-Forwarded-Proto") == ["http"]
    assert named(headers, "X-Forwarded-Host") == ["example.com"]
    assert named(headers, "X-Real-IP") == ["10.9.9.9"]


def test_pass_peer_outside_trusted_network_is_not_believed() -> None:
    headers = pass_headers(view(*CLIENT_FORWARDING, peer="11.0.0.1"), TRUSTED, KEEP_HOST)
    assert named(headers, "X-Forwarded-For") == ["11.0.0.1"]
    assert named(headers, "Forwarded") == []


# --- pass: Host and hop-by-hop --------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        # product rule: Host is preserved by default (configurable rewrite)
        pytest.param(KEEP_HOST, ["Example.com"], id="host-kept"),
        pytest.param(REWRITE_HOST, ["app.internal"], id="host-rewritten"),
    ],
)
def test_pass_host(upstream: Upstream, expected: list[str]) -> None:
    headers = pass_headers(view(), UNTRUSTED, upstream)
    assert named(headers, "Host") == expected
    # X-Forwarded-Host still tells the app what the client asked for
    assert named(headers, "X-Forwarded-Host") == ["example.com"]


def test_pass_drops_hop_by_hop_and_keeps_the_rest() -> None:
    # RFC 9110 §7.6.1 + product rule: Connection and what it names, Keep-Alive, Proxy-*, TE,
    # Trailer, Transfer-Encoding, Upgrade are dropped; Cookie, Authorization pass unchanged
    request = view(
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Foo", "1"),
        ("TE", "trailers"),
        ("Trailer", "X-Sum"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Cookie", "remember_token=1"),
        ("Authorization", "Bearer t"),
        ("If-None-Match", '"v1"'),
        ("Range", "bytes=0-1"),
        ("Accept-Encoding", "gzip, deflate"),
    )
    headers = pass_headers(request, UNTRUSTED, KEEP_HOST)
    assert headers[:6] == (
        ("Host", "Example.com"),
        ("Cookie", "remember_token=1"),
        ("Authorization", "Bearer t"),
        ("If-None-Match", '"v1"'),
        ("Range", "bytes=0-1"),
        ("Accept-Encoding", "gzip, deflate"),
    )
    assert [n for n, _ in headers[6:]] == [
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Real-IP",
    ]


# --- fill: what a brand-new visitor would send ------------------------------------------------


def test_fill_untrusted_full() -> None:
    request = view(
        *CLIENT_FORWARDING,
        ("Cookie", "session=abc; lang=fr"),
        ("Authorization", "Bearer t"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("If-None-Match", '"v1"'),
        ("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("If-Match", '"v1"'),
        ("If-Unmodified-Since", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("If-Range", '"v1"'),
        ("Range", "bytes=0-9"),
        ("Accept", "text/html"),
        ("Connection", "close"),
    )
    assert fill(request, encoding="br, gzip") == (
        ("Host", "Example.com"),
        ("Accept", "text/html"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "example.com"),
        ("X-Real-IP", "203.0.113.7"),
        ("Accept-Encoding", "br, gzip"),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # product rule: a fill carries no Cookie (no visitor's session reaches the stored page)
        pytest.param("Cookie", "session=abc", id="cookie"),
        # product rule: no credentials unless the rule allows them
        pytest.param("Authorization", "Basic eDp5", id="authorization"),
        # product rule: a fill asks for the full response (RFC 9110 §13.1 conditionals, §14.2)
        pytest.param("If-None-Match", '"v1"', id="if-none-match"),
        pytest.param("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT", id="if-modified-since"),
        pytest.param("If-Match", '"v1"', id="if-match"),
        pytest.param("If-Unmodified-Since", "Mon, 01 Jan 2024 00:00:00 GMT", id="if-unmodified"),
        pytest.param("If-Range", '"v1"', id="if-range"),
        pytest.param("Range", "bytes=0-9", id="range"),
        pytest.param("range", "bytes=0-9", id="lower-case-name"),
    ],
)
def test_fill_drops(name: str, value: str) -> None:
    assert named(fill(view((name, value))), name) == []


@pytest.mark.parametrize(
    ("cookie", "keep", "expected"),
    [
        # product rule: a rule may keep some cookies on fills (e.g. a language cookie)
        pytest.param("session=abc; lang=fr", ("lang",), ["lang=fr"], id="keeps-listed"),
        pytest.param(
            "theme=dark; session=abc; lang=fr",
            ("lang", "theme"),
            ["lang=fr; theme=dark"],
            id="keeps-several-in-rule-order",
        ),
        pytest.param("session=abc", ("lang",), [], id="kept-but-absent"),
        pytest.param("session=abc; lang=fr", (), [], id="keeps-none-by-default"),
        pytest.param("Lang=fr", ("lang",), [], id="cookie-names-case-sensitive"),
    ],
)
def test_fill_keep_cookies(cookie: str, keep: tuple[str, ...], expected: list[str]) -> None:
    headers = fill(view(("Cookie", cookie)), keep_cookies=keep)
    assert named(headers, "Cookie") == expected


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        pytest.param(False, [], id="dropped-by-default"),
        # RFC 9111 §3.5 + product rule: a rule may explicitly allow Authorization
        pytest.param(True, ["Bearer t"], id="kept-when-allowed"),
    ],
)
def test_fill_authorization(keep: bool, expected: list[str]) -> None:
    headers = fill(view(("Authorization", "Bearer t")), keep_authorization=keep)
    assert named(headers, "Authorization") == expected


def test_fill_keep_authorization_without_header_adds_none() -> None:
    assert named(fill(view(), keep_authorization=True), "Authorization") == []


@pytest.mark.parametrize("encoding", ["identity", "gzip", "br", "br, gzip"])
def test_fill_sends_the_normalised_accept_encoding(encoding: str) -> None:
    # product rule: every client sharing the key can decode what the fill asks for
    headers = fill(view(("Accept-Encoding", "gzip, deflate, br, zstd")), encoding=encoding)
    assert named(headers, "Accept-Encoding") == [encoding]


def test_fill_trusted_appends_to_x_forwarded_for() -> None:
    headers = fill(view(*CLIENT_FORWARDING, peer="10.1.2.3"), trust=TRUSTED)
    assert named(headers, "X-Forwarded-For") == ["6.6.6.6, 10.1.2.3"]
    assert named(headers, "Forwarded") == ["for=6.6.6.6;host=evil.example"]


def test_fill_host_rewritten() -> None:
    headers = fill(view(), upstream=REWRITE_HOST)
    assert named(headers, "Host") == ["app.internal"]


# --- review fixes: Connection, underscores, the fill allowlist, client address --------------


@pytest.mark.parametrize("build", ["pass", "fill"])
def test_connection_cannot_strip_host(build: str) -> None:
    # product rule: the key carries the Host; a `Connection: Host` must not make the upstream
    # render the page for another host while it is stored under this one
    request = view(("Connection", "keep-alive, Host, X-Hop"), ("X-Hop", "1"))
    headers = pass_headers(request, UNTRUSTED, KEEP_HOST) if build == "pass" else fill(request)
    assert named(headers, "Host") == ["Example.com"]
    assert named(headers, "X-Hop") == []  # a real hop-by-hop name is still dropped


def test_connection_cannot_strip_a_keyed_header_from_a_fill() -> None:
    request = view(("Connection", "X-Lang"), ("X-Lang", "fr"))
    assert named(fill(request, keep_headers=frozenset({"x-lang"})), "X-Lang") == ["fr"]


@pytest.mark.parametrize(
    "name", ["X_Forwarded_Prefix", "X_Original_URL", "x_forwarded_host", "X_Custom"]
)
@pytest.mark.parametrize("trust", [UNTRUSTED, TRUSTED], ids=["untrusted", "trusted"])
def test_header_names_with_underscores_are_dropped(name: str, trust: Trust) -> None:
    # nginx's underscores_in_headers off: WSGI maps "_" and "-" to one CGI variable
    request = view((name, "/evil"), peer="10.1.2.3")
    assert named(pass_headers(request, trust, KEEP_HOST), name) == []
    assert named(fill(request, trust=trust), name) == []


def test_fill_forwards_the_allowlist_only() -> None:
    # product rule: what gets stored is what a brand-new visitor would see; a credential in a
    # header the proxy does not know (X-Api-Key) must not personalise a stored page
    request = view(
        ("Accept", "text/html"),
        ("Accept-Language", "fr"),
        ("User-Agent", "ua/1"),
        ("X-Api-Key", "alice-secret"),
        ("X-Requested-With", "XMLHttpRequest"),
    )
    headers = fill(request)
    assert named(headers, "Accept") == ["text/html"]
    assert named(headers, "Accept-Language") == ["fr"]
    assert named(headers, "User-Agent") == ["ua/1"]
    assert named(headers, "X-Api-Key") == []
    assert named(headers, "X-Requested-With") == []
    kept = fill(request, keep_headers=frozenset({"x-requested-with"}))
    assert named(kept, "X-Requested-With") == ["XMLHttpRequest"]


def test_trusted_fill_carries_the_forwarding_headers_the_key_carries() -> None:
    request = view(("Forwarded", "host=shop"), ("X-Forwarded-Prefix", "/p"), peer="10.1.2.3")
    headers = fill(request, trust=TRUSTED)
    assert named(headers, "Forwarded") == ["host=shop"]
    assert named(headers, "X-Forwarded-Prefix") == ["/p"]


@pytest.mark.parametrize(
    ("extra", "peer", "real_ip"),
    [
        pytest.param((), "203.0.113.7", "203.0.113.7", id="untrusted-peer"),
        # behind trusted proxies: the nearest untrusted hop of the chain is the visitor
        pytest.param(
            (("X-Forwarded-For", "6.6.6.6, 10.0.0.5"),), "10.1.2.3", "6.6.6.6", id="chain"
        ),
        pytest.param(
            (("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "7.7.7.7")),
            "10.1.2.3",
            "7.7.7.7",
            id="trusted-real-ip",
        ),
        pytest.param((), "10.1.2.3", "10.1.2.3", id="trusted-no-chain"),
    ],
)
def test_x_real_ip_is_the_visitor(extra: Headers, peer: str, real_ip: str) -> None:
    headers = pass_headers(view(*extra, peer=peer), TRUSTED, KEEP_HOST)
    assert named(headers, "X-Real-IP") == [real_ip]


# --- what a client may not strip or add (issue 11) ------------------------------------------


@pytest.mark.parametrize("name", ["Accept-Language", "Accept", "User-Agent", "X-Theme"])
def test_connection_cannot_strip_a_header_a_fill_sends(name: str) -> None:
    # Product rule: a stored response may vary on any header the fill sends, so the fill must
    # carry the client's value of each (RFC 9110 §7.6.1 lets Connection name hop-by-hop ones).
    request = view((name, "v"), ("Connection", name))
    assert named(fill(request, keep_headers=frozenset({"x-theme"})), name) == ["v"]


def test_connection_still_strips_what_a_fill_does_not_send() -> None:
    request = view(("X-Other", "v"), ("Connection", "X-Other"))
    assert named(pass_headers(request, UNTRUSTED, KEEP_HOST), "X-Other") == []


def test_connection_cannot_strip_anything_from_a_shared_mode_fill() -> None:
    request = view(("X-Device", "phone"), ("Connection", "X-Device, Keep-Alive"))
    sent = fill_headers(
        request,
        UNTRUSTED,
        KEEP_HOST,
        encoding="identity",
        keep_cookies=(),
        keep_authorization=False,
        forward_all=True,
    )
    assert named(sent, "X-Device") == ["phone"]
    assert named(sent, "Connection") == []


def test_unconditional_drops_every_client_precondition() -> None:
    # RFC 9111 §4.3.1: a revalidation carries the stored response's validators only.
    headers: Headers = (
        ("Accept", "*/*"),
        ("If-None-Match", "*"),
        ("if-modified-since", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ("If-Match", '"a"'),
        ("If-Unmodified-Since", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ("If-Range", '"a"'),
    )
    assert unconditional(headers) == (("Accept", "*/*"),)
