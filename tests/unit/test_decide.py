"""Pin proxy.decide: recv → Lookup(key) or Pass(reason), one reason per check."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from proxy.config import load, parse
from proxy.decide import Decision, Lookup, Pass, decide, recoded
from proxy.keys import DEFAULT_KEY, compile_key
from proxy.reasons import PassReason
from proxy.rules import Action, Rule
from proxy.settings import Settings
from proxy.view import RequestView


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# A Flask session cookie as Flask-Login leaves it after a login without "remember me".
LOGGED_IN = b64url(json.dumps({"_user_id": "1"}).encode()) + ".ts.sig"
ANONYMOUS_SESSION = b64url(json.dumps({"csrf_token": "abc"}).encode()) + ".ts.sig"

FLASHES_SESSION = b64url(json.dumps({"_flashes": [{" t": ["message", "Hi"]}]}).encode()) + ".t.s"

# A cache rule with no conditions at all, so every refusal below is decide's own check.
PLAIN = {"caches": {"default": {}}, "rules": [{"name": "all"}]}
# The default config: anonymous GET/HEAD are cached.
DEFAULT = load(None)


def settings_of(data: dict[str, Any]) -> Settings:
    return parse(data, "test.toml")


def request(
    target: str = "/",
    *,
    method: str = "GET",
    host: str = "example.com",
    has_body: bool = False,
    **headers: str,
) -> RequestView:
    pairs = [("Host", host)] + [(n.replace("_", "-"), v) for n, v in headers.items()]
    return RequestView(method, target, tuple(pairs), peer="127.0.0.1", has_body=has_body)


def run(view: RequestView, settings: Settings = DEFAULT) -> Decision:
    return decide(view, settings.rules, settings.identity)


def reason(view: RequestView, settings: Settings) -> PassReason | None:
    decision = run(view, settings)
    return decision.reason if isinstance(decision, Pass) else None


PLAIN_SETTINGS = settings_of(PLAIN)
PASS_SETTINGS = settings_of({"rules": [{"name": "nothing", "action": "pass"}]})
NO_RULES = settings_of({})
DJANGO = settings_of({**PLAIN, "identity": {"preset": "django"}})
ALLOW_AUTH = settings_of({"caches": {"default": {}}, "rules": [{"allow_authorization": True}]})


@pytest.mark.parametrize(
    ("view", "settings", "expected"),
    [
        # product rule: no match means pass
        pytest.param(request(), NO_RULES, PassReason.NO_RULE, id="no-rule"),
        pytest.param(request(), PASS_SETTINGS, PassReason.RULE, id="rule-says-pass"),
        # product rule: POST, PUT, PATCH and DELETE are never answered from cache (config
        # rules cannot even list them; the default rule does not match them)
        pytest.param(request(method="POST"), DEFAULT, PassReason.NO_RULE, id="post-default"),
        pytest.param(request(method="POST"), PLAIN_SETTINGS, PassReason.NO_RULE, id="post-plain"),
        # RFC 9110 §9.3.1: a GET/HEAD body has no defined semantics; not a plain read
        pytest.param(
            request(has_body=True), PLAIN_SETTINGS, PassReason.REQUEST_BODY, id="get-body"
        ),
        pytest.param(
            request(method="HEAD", has_body=True),
            PLAIN_SETTINGS,
            PassReason.REQUEST_BODY,
            id="head-body",
        ),
        # RFC 9111 §3.5: a request with Authorization is not answered from a shared cache
        pytest.param(
            request(authorization="Basic eDp5"),
            PLAIN_SETTINGS,
            PassReason.AUTHORIZATION,
            id="authorization",
        ),
        pytest.param(
            request(authorization=""), PLAIN_SETTINGS, PassReason.AUTHORIZATION, id="empty-auth"
        ),
        pytest.param(
            request(authorization="Bearer t"), ALLOW_AUTH, None, id="authorization-allowed"
        ),
        # product rule: a logged-in visitor is never answered from cache, whatever the rule says
        pytest.param(
            request(cookie="remember_token=1|abc"),
            PLAIN_SETTINGS,
            PassReason.AUTHENTICATED,
            id="remember-token",
        ),
        pytest.param(
            request(cookie="remember_token="),
            PLAIN_SETTINGS,
            PassReason.AUTHENTICATED,
            id="remember-token-empty",
        ),
        pytest.param(
            request(cookie=f"session={LOGGED_IN}"),
            PLAIN_SETTINGS,
            PassReason.AUTHENTICATED,
            id="flask-session-logged-in",
        ),
        pytest.param(
            request(cookie=f"session={LOGGED_IN}"),
            ALLOW_AUTH,
            PassReason.AUTHENTICATED,
            id="flask-session-even-with-allow-authorization",
        ),
        pytest.param(
            request(cookie=f"session={ANONYMOUS_SESSION}"),
            PLAIN_SETTINGS,
            None,
            id="flask-session-anonymous-is-cached",
        ),
        pytest.param(request(cookie="theme=dark"), PLAIN_SETTINGS, None, id="other-cookie"),
        # product rule: a one-time message waits for this visitor, so their page is personal
        pytest.param(
            request(cookie=f"_ga=1; session={FLASHES_SESSION}"),
            DEFAULT,
            PassReason.FLASHES,
            id="flask-flashes",
        ),
        pytest.param(
            request(cookie="messages=abc; csrftoken=x"), DJANGO, PassReason.FLASHES, id="django-msg"
        ),
        pytest.param(
            request(cookie="sessionid=abc"), DJANGO, PassReason.AUTHENTICATED, id="django-session"
        ),
        pytest.param(request(cookie="csrftoken=abc"), DJANGO, None, id="django-csrftoken-cached"),
        # a Range request is a lookup: a stored complete response can answer it (206)
        pytest.param(request(range="bytes=0-9"), PLAIN_SETTINGS, None, id="range"),
        # product rule: a WebSocket handshake is a protocol switch, never a cacheable read
        pytest.param(
            request(upgrade="websocket", connection="Upgrade"),
            PLAIN_SETTINGS,
            PassReason.UPGRADE,
            id="upgrade",
        ),
        # product rule: every cache rule (the default's too) passes logged-in visitors, saying why
        pytest.param(
            request(cookie="remember_token=1"),
            DEFAULT,
            PassReason.AUTHENTICATED,
            id="default-remember",
        ),
        pytest.param(
            request(authorization="Basic eDp5"),
            DEFAULT,
            PassReason.AUTHORIZATION,
            id="default-auth",
        ),
        pytest.param(request(), DEFAULT, None, id="default-anonymous-get-is-cached"),
        pytest.param(request(method="HEAD"), DEFAULT, None, id="default-anonymous-head-cached"),
    ],
)
def test_decide_reason(view: RequestView, settings: Settings, expected: PassReason | None) -> None:
    assert reason(view, settings) == expected


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_unsafe_method_never_cached_even_if_a_cache_rule_matches(method: str) -> None:
    # product rule: "POST, PUT, PATCH and DELETE are never answered from cache, whatever the
    # rules say" - a hand-built cache rule that matches any method still cannot cache them
    rule = Rule(
        number=1,
        name="any",
        action=Action.CACHE,
        methods=None,
        cache="default",
        key=compile_key(DEFAULT_KEY),
    )
    assert rule.matches(request(method=method), DEFAULT.identity)
    decision = decide(request(method=method), (rule,), DEFAULT.identity)
    assert decision == Pass(PassReason.METHOD, rule)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        # the order of checks (decide.py docstring): method, body, Authorization, identity, Range
        pytest.param(
            request(method="POST", has_body=True, authorization="x"),
            PassReason.METHOD,
            id="method-before-body",
        ),
        pytest.param(
            request(has_body=True, authorization="x"),
            PassReason.REQUEST_BODY,
            id="body-before-authorization",
        ),
        pytest.param(
            request(authorization="x", cookie="remember_token=1"),
            PassReason.AUTHORIZATION,
            id="authorization-before-identity",
        ),
        pytest.param(
            request(cookie="remember_token=1", range="bytes=0-1"),
            PassReason.AUTHENTICATED,
            id="identity-before-range",
        ),
    ],
)
def test_check_order(view: RequestView, expected: PassReason) -> None:
    any_method = Rule(1, "any", Action.CACHE, cache="default", key=compile_key(DEFAULT_KEY))
    decision = decide(view, (any_method,), DEFAULT.identity)
    assert isinstance(decision, Pass)
    assert decision.reason is expected


def test_pass_carries_the_rule() -> None:
    # product rule: logs name the rule that decided
    decision = run(request(), PASS_SETTINGS)
    assert decision == Pass(PassReason.RULE, PASS_SETTINGS.rules[0])
    assert run(request(), NO_RULES) == Pass(PassReason.NO_RULE, None)


def test_refusal_carries_the_rule() -> None:
    decision = run(request(upgrade="websocket", connection="Upgrade"), PLAIN_SETTINGS)
    assert isinstance(decision, Pass)
    assert decision.rule is PLAIN_SETTINGS.rules[0]


def test_lookup_key_and_encoding() -> None:
    # product rule: key = template + NUL + normalised Accept-Encoding
    decision = run(request("/a?b=1", accept_encoding="gzip, deflate, br"), PLAIN_SETTINGS)
    assert decision == Lookup(
        "http://example.com/a?b=1\x00br, gzip", PLAIN_SETTINGS.rules[0], "br, gzip"
    )


def test_lookup_without_accept_encoding_is_identity() -> None:
    decision = run(request("/a"), PLAIN_SETTINGS)
    assert isinstance(decision, Lookup)
    assert decision.key == "http://example.com/a\x00identity"
    assert decision.encoding == "identity"


def key(view: RequestView, settings: Settings = DEFAULT) -> str:
    decision = run(view, settings)
    assert isinstance(decision, Lookup), decision
    return decision.key


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # product rule: ?page=1 and ?page=2 are different pages
        pytest.param(request("/list?page=1"), request("/list?page=2"), id="query-differs"),
        pytest.param(request("/list"), request("/list?page=1"), id="query-vs-none"),
        # product rule: the default key includes the Host (no cross-host poisoning)
        pytest.param(request(host="example.com"), request(host="evil.example"), id="host"),
        pytest.param(request(host="example.com"), request(host="example.com:81"), id="port"),
        # product rule: a forged Host must not imitate another page's key on the real host
        pytest.param(
            request("/", host="example.com/evil"),
            request("/evil/", host="example.com"),
            id="forged-host-with-path",
        ),
        # product rule: compressed bodies pass untouched, so Accept-Encoding is in the key
        pytest.param(request(), request(accept_encoding="gzip"), id="identity-vs-gzip"),
        pytest.param(
            request(accept_encoding="gzip"), request(accept_encoding="br"), id="gzip-vs-br"
        ),
        pytest.param(
            request(accept_encoding="br"), request(accept_encoding="br, gzip"), id="br-vs-both"
        ),
    ],
)
def test_keys_differ(first: RequestView, second: RequestView) -> None:
    assert key(first) != key(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # product rule: HEAD is answered from the GET entry
        pytest.param(request("/a"), request("/a", method="HEAD"), id="head-equals-get"),
        # RFC 9110 §4.2.3: host names are case-insensitive
        pytest.param(request(host="Example.COM"), request(host="example.com"), id="host-case"),
        # normalisation: equivalent Accept-Encoding values share an entry
        pytest.param(
            request(accept_encoding="gzip, deflate"),
            request(accept_encoding="gzip"),
            id="deflate-ignored",
        ),
        pytest.param(
            request(accept_encoding="gzip, br"),
            request(accept_encoding="br;q=0.5, gzip"),
            id="order-and-weights-ignored",
        ),
        # product rule: cookies not in the key do not split entries
        pytest.param(request(), request(cookie="theme=dark"), id="unkeyed-cookie"),
    ],
)
def test_keys_equal(first: RequestView, second: RequestView) -> None:
    assert key(first) == key(second)


def test_custom_key_template() -> None:
    settings = settings_of({"caches": {"default": {}}, "rules": [{"key": "{path}|{cookie[lang]}"}]})
    assert key(request("/a?x=1", cookie="lang=fr"), settings) == "/a|fr\x00identity"
    assert key(request("/a?x=2"), settings) == "/a|\x00identity"


# The original uWSGI setup: "for requests without a remember_token cookie, cache ^/about$ in
# cache mycache" (route-if = empty:${cookie[remember_token]} cache:key=...,name=mycache).
UWSGI = settings_of(
    {
        "caches": {"mycache": {"items": 100, "item_size": "64KiB"}},
        "rules": [
            {
                "name": "about",
                "path": "^/about$",
                "cookie": {"remember_token": "absent"},
                "action": "cache",
                "cache": "mycache",
                "set_cookie": "strip",
            }
        ],
    }
)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        pytest.param(request("/about"), None, id="anonymous-about-cached"),
        pytest.param(request("/about", method="HEAD"), None, id="head-about-cached"),
        pytest.param(request("/about?ref=x"), None, id="about-with-query-cached"),
        pytest.param(request("/about/team"), PassReason.NO_RULE, id="other-path"),
        pytest.param(request("/"), PassReason.NO_RULE, id="home-not-cached"),
        pytest.param(
            request("/about", cookie="remember_token=1|x"),
            PassReason.NO_RULE,
            id="remember-token-skips-rule",
        ),
        # product rule: safer than one cookie - a Flask-Login session without "remember me"
        pytest.param(
            request("/about", cookie=f"session={LOGGED_IN}"),
            PassReason.AUTHENTICATED,
            id="logged-in-session-passes",
        ),
        pytest.param(request("/about", method="POST"), PassReason.NO_RULE, id="post"),
    ],
)
def test_uwsgi_example(view: RequestView, expected: PassReason | None) -> None:
    decision = run(view, UWSGI)
    if expected is None:
        assert isinstance(decision, Lookup)
        assert decision.rule.cache == "mycache"
        assert decision.key == f"http://example.com{view.target}\x00identity"
    else:
        assert isinstance(decision, Pass)
        assert decision.reason is expected


ANONYMOUS_RULES = settings_of(
    {
        "rules": [
            {"name": "pages", "path": "^/(about)?$", "anonymous": True},
            {"name": "api", "path": "^/api/", "anonymous": True, "allow_authorization": True},
        ]
    }
)


@pytest.mark.parametrize(
    ("view", "reason", "rule"),
    [
        pytest.param(request("/about"), None, "pages", id="anonymous-cached"),
        pytest.param(
            request("/about", cookie=f"session={LOGGED_IN}"),
            PassReason.AUTHENTICATED,
            "pages",
            id="logged-in-is-authenticated-not-no-rule",
        ),
        pytest.param(
            request("/", cookie="remember_token=1|x"),
            PassReason.AUTHENTICATED,
            "pages",
            id="remember-token",
        ),
        pytest.param(
            request("/about", authorization="Basic eDp5"),
            PassReason.AUTHORIZATION,
            "pages",
            id="authorization",
        ),
        pytest.param(
            request("/api/x", cookie=f"session={LOGGED_IN}", authorization="Basic eDp5"),
            PassReason.AUTHENTICATED,
            "api",
            id="authorization-allowed-session-not",
        ),
        pytest.param(
            request("/contact", cookie=f"session={LOGGED_IN}"),
            PassReason.NO_RULE,
            None,
            id="no-rule-would-match-anyway",
        ),
        pytest.param(
            request("/about", method="POST", cookie=f"session={LOGGED_IN}"),
            PassReason.NO_RULE,
            None,
            id="post-matches-no-cache-rule",
        ),
    ],
)
def test_anonymous_rules_say_who_was_passed(
    view: RequestView, reason: PassReason | None, rule: str | None
) -> None:
    """Issue 12 point 7: with `anonymous = true` on the rule, a logged-in visitor was labelled
    "no-rule"; the pass is about who they are, and names the rule that refused them."""
    decision = run(view, ANONYMOUS_RULES)
    if reason is None:
        assert isinstance(decision, Lookup) and decision.rule.name == rule
    else:
        assert isinstance(decision, Pass)
        assert decision.reason is reason
        assert (decision.rule.name if decision.rule else None) == rule


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("coding", ["br, gzip", "gzip", "br"])
def test_recoded_is_the_key_a_client_accepting_that_coding_gets(trusted: bool, coding: str) -> None:
    """decide.recoded: the key of the same request with another Accept-Encoding, the rendered
    key and a trusted proxy's forwarded variant untouched."""
    forwarded = [("X-Forwarded-Proto", "https")] if trusted else []

    def lookup(accept: str | None) -> Lookup:
        pairs = [("Host", "example.com"), *forwarded]
        pairs += [("Accept-Encoding", accept)] if accept else []
        view = RequestView("GET", "/p?q=1", tuple(pairs), peer="127.0.0.1", trusted=trusted)
        found = decide(view, settings_of(PLAIN).rules, DEFAULT.identity)
        assert isinstance(found, Lookup)
        return found

    plain = lookup(None)
    assert plain.encoding == "identity"
    assert recoded(plain, coding) == lookup(coding).key
    assert recoded(lookup(coding), "identity") == plain.key
