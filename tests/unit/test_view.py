"""RequestView and request_problem: what the front rejects with 400 before anything else."""

from __future__ import annotations

import pytest

from proxy.config import parse
from proxy.decide import Lookup, decide
from proxy.identity import IdentityPolicy
from proxy.view import RequestView, header_text, origin_form, request_problem


def view(target: str, *hosts: str, version: tuple[int, int] = (1, 1)) -> RequestView:
    return RequestView("GET", target, tuple(("Host", h) for h in hosts), version=version)


@pytest.mark.parametrize(
    ("request_view", "problem"),
    [
        pytest.param(view("/", "example.com"), None, id="plain-host"),
        pytest.param(view("/", "example.com:8080"), None, id="host-with-port"),
        pytest.param(view("/", "[::1]:8080"), None, id="ipv6-literal"),
        pytest.param(view("/", "127.0.0.1"), None, id="ipv4"),
        pytest.param(view("/", version=(1, 0)), None, id="http10-may-omit-host"),
        # RFC 9112 §3.2: HTTP/1.1 without Host, several Hosts, or an invalid Host → 400
        pytest.param(view("/"), (400, "missing Host header"), id="http11-needs-host"),
        pytest.param(
            view("/", "a.com", "b.com"), (400, "more than one Host header"), id="two-hosts"
        ),
        # product rule: a Host holding "/" or "?" could imitate another page's cache key
        pytest.param(
            view("/", "example.com/evil"), (400, "invalid Host header"), id="slash-in-host"
        ),
        pytest.param(view("/", "example.com?x"), (400, "invalid Host header"), id="query-in-host"),
        pytest.param(view("/", "a b"), (400, "invalid Host header"), id="space-in-host"),
        pytest.param(view("/", "user@example.com"), (400, "invalid Host header"), id="userinfo"),
        # RFC 9112 §3.2.1: a reverse proxy serves origin-form targets only
        pytest.param(
            view("*", "example.com"),
            (400, "the request target must be a path (origin-form)"),
            id="asterisk-form",
        ),
    ],
)
def test_request_problem(request_view: RequestView, problem: tuple[int, str] | None) -> None:
    assert request_problem(request_view) == problem


def test_view_splits_raw_target_without_decoding() -> None:
    # DESIGN: keep the raw path and query as received, so nothing is re-quoted
    v = RequestView("get", "/a%2Fb?x=%41&y", (("HOST", "Example.COM"),))
    assert (v.method, v.path, v.query, v.host) == ("GET", "/a%2Fb", "x=%41&y", "example.com")


def test_repeated_headers_are_joined_and_case_insensitive() -> None:
    # RFC 9110 §5.3: field lines of one name combine with ", "
    v = RequestView("GET", "/", (("Accept", "a"), ("accept", "b"), ("Cookie", "x=1")))
    assert v.header("ACCEPT") == "a, b"
    assert v.header("missing") is None
    assert dict(v.cookies) == {"x": "1"}


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        pytest.param(b"plain", "plain", id="ascii"),
        # aiohttp writes header text as UTF-8: valid UTF-8 must round-trip byte for byte
        pytest.param("café".encode(), "café", id="utf-8"),
        pytest.param(b"caf\xe9", "caf\udce9", id="obs-text-escaped"),
    ],
)
def test_header_text(raw: bytes, text: str) -> None:
    assert header_text(raw) == text
    assert text.encode("utf-8", "surrogateescape") == raw  # and back, octet for octet


FORWARDED = (
    ("Host", "internal:8080"),
    ("X-Forwarded-Proto", "https, http"),
    ("X-Forwarded-Host", "Shop.Example, lb"),
    ("X-Forwarded-Prefix", "/shop"),
    ("X-Forwarded-For", "198.51.100.7"),
)


@pytest.mark.parametrize(
    ("trusted", "scheme", "host", "variant"),
    [
        # product rule: forwarding headers are believed only from trusted proxies
        pytest.param(False, "http", "internal:8080", "", id="untrusted"),
        # trusted: the visitor's scheme and host are the nearest hop's X-Forwarded-Proto/-Host;
        # the client address (-For) stays out of the key, or every client gets its own entry
        pytest.param(
            True,
            "https",
            "shop.example",
            "x-forwarded-proto=https, http\x00x-forwarded-host=Shop.Example, lb"
            "\x00x-forwarded-prefix=/shop",
            id="trusted",
        ),
    ],
)
def test_trusted_forwarding_headers(trusted: bool, scheme: str, host: str, variant: str) -> None:
    v = RequestView("GET", "/", FORWARDED, trusted=trusted)
    assert (v.scheme, v.host, v.forwarded_variant) == (scheme, host, variant)


def test_trusted_prefix_changes_the_key() -> None:
    # two pages a trusted proxy mounts under different prefixes must not share an entry
    rules = parse({"caches": {"default": {}}, "rules": [{}]}, "t.toml").rules
    a, b = (
        decide(
            RequestView("GET", "/", (("Host", "h"), ("X-Forwarded-Prefix", p)), trusted=True),
            rules,
            IdentityPolicy(),
        )
        for p in ("/a", "/b")
    )
    assert isinstance(a, Lookup) and isinstance(b, Lookup)
    assert a.key != b.key


@pytest.mark.parametrize(
    ("coding", "problem"),
    [
        pytest.param("chunked", None, id="chunked"),
        pytest.param(" Chunked ", None, id="chunked-any-case"),
        # RFC 9112 §6.1: a coding the server does not understand → 501; forwarding the dechunked
        # body without its gzip coding would corrupt it
        pytest.param(
            "gzip, chunked",
            (501, "only the chunked transfer coding is implemented"),
            id="gzip-chunked",
        ),
    ],
)
def test_transfer_codings(coding: str, problem: tuple[int, str] | None) -> None:
    request = RequestView("POST", "/", (("Host", "a"), ("Transfer-Encoding", coding)))
    assert request_problem(request) == problem


@pytest.mark.parametrize(
    ("target", "expected_target", "expected_host"),
    [
        pytest.param("/x?y", "/x?y", "example.com", id="origin-form-unchanged"),
        # RFC 9112 §3.2.2: accept absolute-form; its authority replaces Host
        pytest.param("http://other.example/x?y", "/x?y", "other.example", id="absolute-form"),
        pytest.param("HTTP://other.example", "/", "other.example", id="no-path"),
        pytest.param("http://other.example?q", "/?q", "other.example", id="query-only"),
        pytest.param("http://a@b/x", "/x", "a@b", id="userinfo-kept-for-the-host-check"),
    ],
)
def test_origin_form(target: str, expected_target: str, expected_host: str) -> None:
    new_target, headers = origin_form(target, (("Host", "example.com"), ("Accept", "*/*")))
    request = RequestView("GET", new_target, headers)
    assert (request.target, request.host) == (expected_target, expected_host.lower())
    assert [n for n, _ in headers].count("Host") == 1
    assert ("Accept", "*/*") in headers


def test_absolute_form_with_userinfo_is_rejected() -> None:
    target, headers = origin_form("http://user@evil/x", (("Host", "a"),))
    assert request_problem(RequestView("GET", target, headers)) == (400, "invalid Host header")


@pytest.mark.parametrize(
    ("path", "decoded"),
    [
        pytest.param("/about", "/about", id="plain"),
        # review of issue 2: rules see what the app sees, so %-encoding cannot dodge a pass rule
        pytest.param("/%61ccount", "/account", id="encoded-letter"),
        pytest.param("/a%2Fb", "/a/b", id="encoded-slash"),
    ],
)
def test_rules_match_the_decoded_path(path: str, decoded: str) -> None:
    assert RequestView("GET", path, ()).decoded_path == decoded
