"""Pin proxy.keys: key templates compiled once, rendered per request."""

from __future__ import annotations

import pytest

from proxy.keys import DEFAULT_KEY, compile_key
from proxy.view import RequestView

VIEW = RequestView(
    "GET",
    "/blog/post?page=2&sort=new",
    (
        ("Host", "Example.COM:8080"),
        ("Cookie", "lang=fr; theme=dark"),
        ("Accept-Language", "fr-FR"),
        ("X-Variant", "a"),
        ("X-Variant", "b"),
    ),
    peer="127.0.0.1",
    scheme="https",
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # product rule: each documented variable renders from the request as received
        pytest.param("{uri}", "/blog/post?page=2&sort=new", id="uri-is-path-and-query"),
        pytest.param("{path}", "/blog/post", id="path-only"),
        pytest.param("{query}", "page=2&sort=new", id="query-without-question-mark"),
        # RFC 9110 §4.2.3: host names are case-insensitive, so the key lower-cases them
        pytest.param("{host}", "example.com:8080", id="host-lower-cased-with-port"),
        pytest.param("{scheme}", "https", id="scheme"),
        pytest.param("{method}", "GET", id="method"),
        pytest.param("{cookie[lang]}", "fr", id="cookie"),
        pytest.param("{header[Accept-Language]}", "fr-FR", id="header"),
        pytest.param("{header[accept-language]}", "fr-FR", id="header-name-case-insensitive"),
        # RFC 9110 §5.3: repeated fields are joined with ", "
        pytest.param("{header[X-Variant]}", "a, b", id="repeated-header-joined"),
        # product rule: a missing cookie or header renders as ""
        pytest.param("[{cookie[missing]}]", "[]", id="missing-cookie-is-empty"),
        pytest.param("[{header[X-Missing]}]", "[]", id="missing-header-is-empty"),
        pytest.param("static", "static", id="literal-only"),
        pytest.param("", "", id="empty-template"),
        pytest.param(
            DEFAULT_KEY, "https://example.com:8080/blog/post?page=2&sort=new", id="default-key"
        ),
        pytest.param(
            "{method} {host}{path}|{cookie[lang]}|{cookie[theme]}",
            "GET example.com:8080/blog/post|fr|dark",
            id="mixed",
        ),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert compile_key(template).render(VIEW) == expected


def test_head_renders_the_same_key_as_get() -> None:
    # product rule: HEAD is answered from the GET entry, so {method} says GET for both
    key = compile_key("{method} {uri}")
    head = RequestView("HEAD", "/a", (("Host", "example.com"),))
    get = RequestView("GET", "/a", (("Host", "example.com"),))
    assert key.render(head) == key.render(get) == "GET /a"


def test_other_methods_render_as_themselves() -> None:
    # product rule: only HEAD is folded into GET
    view = RequestView("post", "/a", ())
    assert compile_key("{method}").render(view) == "POST"


def test_no_query_renders_empty() -> None:
    view = RequestView("GET", "/a", (("Host", "example.com"),))
    assert compile_key("{path}|{query}|{uri}").render(view) == "/a||/a"


def test_missing_host_renders_empty() -> None:
    # product rule: no Host header gives an entry of its own, never another host's
    view = RequestView("GET", "/a", ())
    assert compile_key(DEFAULT_KEY).render(view) == "http:///a"


def test_default_key_carries_the_host() -> None:
    # product rule: a forged Host only reaches an entry of its own
    key = compile_key(DEFAULT_KEY)
    real = RequestView("GET", "/", (("Host", "example.com"),))
    forged = RequestView("GET", "/", (("Host", "evil.example"),))
    assert key.render(real) != key.render(forged)


@pytest.mark.parametrize(
    ("forged", "real"),
    [
        # product rule: "a forged Host header can never poison the entry other visitors get";
        # the Host is client text, so it must not be able to imitate another path's key
        pytest.param(("example.com/evil", "/"), ("example.com", "/evil/"), id="slash-in-host"),
        pytest.param(
            ("example.com/a?b=", "/c"), ("example.com", "/a?b=/c"), id="slash-and-query-in-host"
        ),
    ],
)
def test_forged_host_cannot_share_another_pages_key(
    forged: tuple[str, str], real: tuple[str, str]
) -> None:
    key = compile_key(DEFAULT_KEY)
    forged_view = RequestView("GET", forged[1], (("Host", forged[0]),))
    real_view = RequestView("GET", real[1], (("Host", real[0]),))
    assert key.render(forged_view) != key.render(real_view)


@pytest.mark.parametrize(
    ("template", "cookies", "headers"),
    [
        # product rule: `check` warns on kept cookies outside the key; Vary checks use headers
        pytest.param(DEFAULT_KEY, frozenset(), frozenset(), id="default-key-none"),
        pytest.param("{cookie[lang]}", frozenset({"lang"}), frozenset(), id="one-cookie"),
        pytest.param(
            "{cookie[a]}{cookie[b]}{cookie[a]}", frozenset({"a", "b"}), frozenset(), id="set"
        ),
        pytest.param(
            "{header[Accept-Language]}{header[X-Device]}",
            frozenset(),
            frozenset({"accept-language", "x-device"}),
            id="headers-lower-cased",
        ),
        pytest.param(
            "{cookie[Lang]}{header[X-A]}", frozenset({"Lang"}), frozenset({"x-a"}), id="both"
        ),
    ],
)
def test_cookies_and_headers_sets(
    template: str, cookies: frozenset[str], headers: frozenset[str]
) -> None:
    compiled = compile_key(template)
    assert compiled.cookies == cookies
    assert compiled.headers == headers
    assert compiled.source == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        # product rule: a template that cannot be rendered is a load-time error
        pytest.param("{url}", "unknown key variable {url}", id="unknown-variable"),
        pytest.param("{}", "unknown key variable {}", id="empty-variable"),
        pytest.param("{Host}", "unknown key variable {Host}", id="variables-case-sensitive"),
        pytest.param("{cookie}", "unknown key variable {cookie}", id="cookie-without-name"),
        pytest.param("{cookie[]}", "unknown key variable {cookie[]}", id="cookie-empty-name"),
        pytest.param("{query[a]}", "unknown key variable {query[a]}", id="unindexable"),
        pytest.param("{host", "unbalanced brace", id="unclosed-brace"),
        pytest.param("host}", "unbalanced brace", id="stray-closing-brace"),
        pytest.param("{{host}}", "unbalanced brace", id="doubled-braces"),
        pytest.param("{uri}{", "unbalanced brace", id="trailing-brace"),
    ],
)
def test_compile_rejects(template: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        compile_key(template)
    assert message in str(caught.value)


def test_unknown_variable_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        compile_key("{url}")
    assert "cookie[NAME], header[NAME]" in str(caught.value)
    assert "uri" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "place"),
    [
        (DEFAULT_KEY, ("example.com", "/a/b?x=1&y=2")),
        ("{host}{path}?{query}", ("example.com", "/a/b?x=1&y=2")),
        ("{scheme}://{host}{path}", ("example.com", "/a/b?*")),  # every query of the path
        ("{path}|{header[accept]}", ("*", "/a/b?*")),  # every Host too
        ("{uri}", ("*", "/a/b?x=1&y=2")),
        ("{host}{query}", ("example.com", "*")),  # tells paths apart no more than none
        ("front-page", ("*", "*")),
    ],
)
def test_the_place_a_purge_finds_an_entry_by(template: str, place: tuple[str, str]) -> None:
    view = RequestView("GET", "/a/b?x=1&y=2", (("Host", "Example.com"),))
    assert compile_key(template).place(view) == place
