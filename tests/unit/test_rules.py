"""Pin proxy.rules: conditions are ANDed, first match wins, no match is None (pass)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from proxy.config import parse
from proxy.identity import IdentityPolicy
from proxy.rules import Action, Rule, first_match
from proxy.settings import Settings
from proxy.view import RequestView

IDENTITY = IdentityPolicy()


def settings(*rules: dict[str, Any], identity: dict[str, Any] | None = None) -> Settings:
    data: dict[str, Any] = {"caches": {"default": {}}, "rules": list(rules)}
    if identity is not None:
        data["identity"] = identity
    return parse(data, "test.toml")


def compile_rule(**fields: Any) -> Rule:
    return settings(fields).rules[0]


def request(
    target: str = "/", *, method: str = "GET", cookie: str = "", **headers: str
) -> RequestView:
    pairs = [("Host", "example.com")]
    if cookie:
        pairs.append(("Cookie", cookie))
    pairs += [(name.replace("_", "-"), value) for name, value in headers.items()]
    return RequestView(method, target, tuple(pairs), peer="127.0.0.1")


def logged_in_session() -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"_user_id": "1"}).encode()).rstrip(b"=")
    return payload.decode() + ".ts.sig"


CASES = [
    # --- path: a regex searched in the %-decoded path, never in the query (product rule) ---
    ({"path": "^/about$"}, request("/about"), True, "path-anchored-match"),
    ({"path": "^/about$"}, request("/about/team"), False, "path-anchored-no-match"),
    ({"path": "^/about$"}, request("/about?x=1"), True, "path-ignores-query"),
    ({"path": "page=1"}, request("/list?page=1"), False, "path-regex-not-applied-to-query"),
    ({"path": "/static/"}, request("/a/static/x.css"), True, "path-is-searched-not-anchored"),
    # review of issue 2: rules match the %-decoded path, as the app sees it
    ({"path": "^/café$"}, request("/caf%C3%A9"), True, "path-decoded"),
    ({"path": "^/caf%C3%A9$"}, request("/caf%C3%A9"), False, "path-not-raw"),
    ({"path": "^/account"}, request("/%61ccount"), True, "encoding-cannot-dodge-a-rule"),
    # --- methods (product rule: cache rules default to GET and HEAD) ---
    ({}, request(method="GET"), True, "cache-rule-default-get"),
    ({}, request(method="HEAD"), True, "cache-rule-default-head"),
    ({}, request(method="POST"), False, "cache-rule-default-not-post"),
    ({"methods": ["get"]}, request(method="HEAD"), False, "methods-listed-only"),
    ({"action": "pass"}, request(method="DELETE"), True, "pass-rule-any-method"),
    ({"action": "pass", "methods": ["POST"]}, request(method="POST"), True, "pass-rule-post"),
    ({"action": "pass", "methods": ["POST"]}, request(method="GET"), False, "pass-rule-not-get"),
    # --- cookie conditions ---
    ({"cookie": {"lang": "present"}}, request(cookie="lang=fr"), True, "cookie-present"),
    ({"cookie": {"lang": "present"}}, request(cookie="lang="), True, "cookie-present-empty"),
    ({"cookie": {"lang": "present"}}, request(), False, "cookie-present-but-absent"),
    ({"cookie": {"lang": "present"}}, request(cookie="Lang=fr"), False, "cookie-name-case"),
    ({"cookie": {"remember_token": "absent"}}, request(), True, "cookie-absent"),
    ({"cookie": {"remember_token": "absent"}}, request(cookie="a=1"), True, "cookie-absent-other"),
    (
        {"cookie": {"remember_token": "absent"}},
        request(cookie="a=1; remember_token=x"),
        False,
        "cookie-absent-but-present",
    ),
    ({"cookie": {"lang": {"equals": "fr"}}}, request(cookie="lang=fr"), True, "cookie-equals"),
    ({"cookie": {"lang": {"equals": "fr"}}}, request(cookie="lang=de"), False, "cookie-differs"),
    ({"cookie": {"lang": {"equals": "fr"}}}, request(cookie="lang=fr-CA"), False, "equals-exact"),
    ({"cookie": {"lang": {"equals": "fr"}}}, request(), False, "cookie-equals-absent"),
    ({"cookie": {"lang": {"matches": "^f"}}}, request(cookie="lang=fr"), True, "cookie-matches"),
    ({"cookie": {"lang": {"matches": "^f"}}}, request(cookie="lang=de"), False, "cookie-no-match"),
    ({"cookie": {"lang": {"matches": ".*"}}}, request(), False, "cookie-matches-absent"),
    # --- header conditions (names case-insensitive, RFC 9110 §5.1) ---
    ({"header": {"X-Debug": "present"}}, request(x_debug="1"), True, "header-present"),
    ({"header": {"x-debug": "present"}}, request(X_DEBUG="1"), True, "header-name-case"),
    ({"header": {"X-Debug": "present"}}, request(), False, "header-present-but-absent"),
    ({"header": {"X-Debug": "absent"}}, request(), True, "header-absent"),
    ({"header": {"X-Debug": "absent"}}, request(x_debug="1"), False, "header-absent-but-present"),
    (
        {"header": {"User-Agent": {"matches": "(?i)bot"}}},
        request(user_agent="GoogleBot/2.1"),
        True,
        "header-matches",
    ),
    (
        {"header": {"User-Agent": {"matches": "bot"}}},
        request(user_agent="Firefox"),
        False,
        "header-no-match",
    ),
    ({"header": {"X-A": {"equals": "1"}}}, request(x_a="1"), True, "header-equals"),
    ({"header": {"X-A": {"matches": "."}}}, request(), False, "header-matches-absent"),
    # --- anonymous (product rule: no remember cookie, no Authorization, no logged-in session) ---
    ({"anonymous": True}, request(), True, "anonymous-true-plain"),
    ({"anonymous": True}, request(cookie="theme=dark"), True, "anonymous-true-other-cookie"),
    ({"anonymous": True}, request(cookie="remember_token=1|x"), False, "anonymous-remember"),
    ({"anonymous": True}, request(authorization="Basic eDp5"), False, "anonymous-authorization"),
    (
        {"anonymous": True},
        request(cookie=f"session={logged_in_session()}"),
        False,
        "anonymous-logged-in-session",
    ),
    ({"anonymous": False}, request(cookie="remember_token=1"), True, "anonymous-false-remember"),
    ({"anonymous": False}, request(), False, "anonymous-false-plain"),
    (
        {"anonymous": True, "allow_authorization": True},
        request(authorization="Bearer t"),
        True,
        "anonymous-with-allowed-authorization",
    ),
    # --- conditions are ANDed ---
    (
        {"path": "^/a", "cookie": {"x": "present"}, "header": {"X-Y": "absent"}},
        request("/a", cookie="x=1"),
        True,
        "all-conditions-hold",
    ),
    (
        {"path": "^/a", "cookie": {"x": "present"}, "header": {"X-Y": "absent"}},
        request("/a", cookie="x=1", x_y="1"),
        False,
        "one-condition-fails",
    ),
    ({}, request("/anything"), True, "no-conditions-match-everything"),
]


@pytest.mark.parametrize(
    ("rule", "view", "expected"), [pytest.param(*c[:3], id=c[3]) for c in CASES]
)
def test_rule_matches(rule: dict[str, Any], view: RequestView, expected: bool) -> None:
    assert compile_rule(**rule).matches(view, IDENTITY) is expected


def test_anonymous_uses_configured_identity() -> None:
    # product rule: the remember cookie names are configurable
    compiled = settings({"anonymous": True}, identity={"remember_cookies": ["keep_me"]})
    rule = compiled.rules[0]
    assert rule.matches(request(cookie="keep_me=1"), compiled.identity) is False
    assert rule.matches(request(cookie="remember_token=1"), compiled.identity) is True


FIRST_MATCH_RULES = (
    {"name": "admin", "path": "^/admin", "action": "pass"},
    {"name": "static", "path": "^/static/"},
    {"name": "about", "path": "^/about$", "cookie": {"remember_token": "absent"}},
    {"name": "api", "path": "^/api/", "action": "pass"},
    {"name": "everything", "path": "^/(admin|about)"},
)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        # product rule: an ordered list; first match wins
        pytest.param(request("/admin/users"), "admin", id="first-rule-wins-over-later"),
        pytest.param(request("/static/a.css"), "static", id="second-rule"),
        pytest.param(request("/about"), "about", id="third-rule"),
        pytest.param(
            request("/about", cookie="remember_token=1"), "everything", id="falls-through"
        ),
        pytest.param(request("/api/x", method="POST"), "api", id="pass-rule-for-post"),
        # product rule: no match means pass
        pytest.param(request("/contact"), None, id="no-match"),
        pytest.param(request("/static/a.css", method="POST"), None, id="method-excludes"),
    ],
)
def test_first_match(view: RequestView, expected: str | None) -> None:
    rules = settings(*FIRST_MATCH_RULES).rules
    rule = first_match(rules, view, IDENTITY)
    assert (rule.name if rule else None) == expected


def test_first_match_of_no_rules_is_none() -> None:
    assert first_match((), request(), IDENTITY) is None


@pytest.mark.parametrize(
    ("fields", "label"),
    [
        pytest.param({"name": "about"}, "about", id="named"),
        pytest.param({}, "rules[1]", id="unnamed-uses-position"),
    ],
)
def test_label(fields: dict[str, Any], label: str) -> None:
    # product rule: logs and messages name a rule by name, else by its 1-based position
    assert compile_rule(**fields).label == label


def test_compiled_defaults() -> None:
    # product rule: cache rules default to GET/HEAD, cache "default", set_cookie "skip"
    rule = compile_rule()
    assert rule.action is Action.CACHE
    assert rule.methods == frozenset({"GET", "HEAD"})
    assert rule.cache == "default"
    assert rule.set_cookie == "skip"
    assert rule.anonymous is None
    assert rule.allow_authorization is False
    assert rule.ttl is None
    assert rule.keep_cookies == ()
    assert rule.key is not None and rule.key.source == "{scheme}://{host}{uri}"
