"""Pin proxy.trace: the decision trace says what `decide` decided and why, from the same code.

Table cases for what an operator asks (`sidecache explain`, `Sidecache-Debug`), then the
properties, over generated rules and requests: the traced decision is `decide`'s, the steps
are `first_match`'s walk (every rule before the match fails, by `Rule.matches`' own verdict),
each failure's words name a condition that really fails, and the identity's words agree with
`RequestView.visitor`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.config import ConfigError, load, parse
from proxy.decide import Lookup, Pass, decide
from proxy.identity import Visitor
from proxy.reasons import PassReason
from proxy.rules import Mismatch, first_match
from proxy.settings import Settings
from proxy.trace import (
    PASS_REASONS,
    Trace,
    evidence,
    header_value,
    key_hash,
    traced_decide,
)
from proxy.view import RequestView


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flask_session(payload: dict[str, Any]) -> str:
    return b64url(json.dumps(payload).encode()) + ".ts.sig"


LOGGED_IN = flask_session({"_user_id": "1"})
ANONYMOUS_SESSION = flask_session({"csrf_token": "abc"})
FLASHES = flask_session({"_flashes": [["message", "Hi"]]})

DEFAULT = load(None)
UWSGI = load(str(Path(__file__).resolve().parents[2] / "config" / "uwsgi-flask.toml"))
SHARED = parse({"mode": "shared"}, "shared.toml")
RULES = parse(
    {
        "caches": {"pages": {"ttl": "30s"}},
        "rules": [
            {"name": "admin", "path": "^/admin", "action": "pass"},
            {"name": "reads", "methods": ["GET"], "path": "^/$", "cache": "pages"},
            {"name": "no-remember", "cookie": {"remember_token": "absent"}, "cache": "pages"},
        ],
    },
    "rules.toml",
)


def request(
    target: str = "/", *, method: str = "GET", peer: str = "127.0.0.1", **headers: str
) -> RequestView:
    pairs = [("Host", "example.com")] + [(n.replace("_", "-"), v) for n, v in headers.items()]
    return RequestView(method, target, tuple(pairs), peer=peer)


def trace(view: RequestView, config: Settings) -> Trace:
    return traced_decide(view, config.rules, config.identity)


def steps(traced: Trace) -> list[tuple[str, Mismatch | None]]:
    return [(step.rule.label, step.mismatch) for step in traced.steps]


# --- what an operator asks ------------------------------------------------------------------


def test_an_anonymous_read_is_a_lookup_and_says_its_key_hash() -> None:
    traced = trace(request("/", accept_encoding="gzip"), RULES)

    assert isinstance(traced.decision, Lookup)
    assert steps(traced) == [("admin", Mismatch.PATH), ("reads", None)]
    assert traced.steps[0].why == "path '/' does not match '^/admin'"
    assert traced.identity.visitor is Visitor.ANONYMOUS
    assert traced.identity.why == "no Cookie header"
    expected = f"key-hash={key_hash(traced.decision.key)}"
    assert header_value(traced) == (
        f'rule="reads"; decision=lookup; cache="pages"; {expected}; visitor=anonymous; '
        'skipped="1:path"'
    )


def test_a_remember_token_is_a_pass_for_a_logged_in_visitor() -> None:
    """Product rule: every cache rule passes a logged-in visitor (decide.py, step 5)."""
    traced = trace(request("/", cookie="remember_token=s3cret; theme=dark"), DEFAULT)

    assert traced.decision == Pass(PassReason.AUTHENTICATED, DEFAULT.rules[0])
    assert steps(traced) == [("anonymous-reads", None)]
    assert traced.identity.visitor is Visitor.LOGGED_IN
    assert traced.identity.why.startswith("cookie remember_token is present")
    value = header_value(traced)
    assert value == 'rule="anonymous-reads"; decision=pass; reason=authenticated; visitor=logged-in'
    assert "s3cret" not in value  # never a cookie value in a response header


def test_a_flask_session_naming_a_user_is_the_reason_given() -> None:
    traced = trace(request(cookie=f"session={LOGGED_IN}"), DEFAULT)

    assert isinstance(traced.decision, Pass)
    assert traced.decision.reason is PassReason.AUTHENTICATED
    assert (
        traced.identity.why == "session cookie session names a user (_user_id; its keys: _user_id)"
    )


def test_authorization_is_a_pass_unless_the_rule_allows_it() -> None:
    """RFC 9111 §3.5."""
    traced = trace(request(authorization="Bearer t0ken"), DEFAULT)

    assert traced.decision == Pass(PassReason.AUTHORIZATION, DEFAULT.rules[0])
    assert traced.identity.authorization
    assert "t0ken" not in header_value(traced)
    assert "reason=authorization" in header_value(traced)


def test_no_rule_matched_lists_every_rule_and_why() -> None:
    traced = trace(request("/x", method="GET", cookie="remember_token=1"), RULES)

    assert traced.decision == Pass(PassReason.NO_RULE)
    assert steps(traced) == [
        ("admin", Mismatch.PATH),
        ("reads", Mismatch.PATH),
        ("no-remember", Mismatch.COOKIE),
    ]
    assert traced.steps[2].why == ("cookie remember_token is present (the rule wants it absent)")
    assert header_value(traced) == (
        'rule=-; decision=pass; reason=no-rule; visitor=logged-in; skipped="1:path 2:path 3:cookie"'
    )


def test_a_method_the_rule_does_not_list_is_its_mismatch() -> None:
    traced = trace(request("/", method="HEAD"), RULES)

    assert steps(traced)[:2] == [("admin", Mismatch.PATH), ("reads", Mismatch.METHOD)]
    assert traced.steps[1].why == "method HEAD is not one of GET"
    assert isinstance(traced.decision, Lookup)  # the third rule takes it
    assert traced.decision.rule.label == "no-remember"


def test_post_matching_no_cache_rule_is_no_rule() -> None:
    traced = trace(request("/", method="POST"), DEFAULT)

    assert traced.decision == Pass(PassReason.NO_RULE)
    assert traced.steps[0].why == "method POST is not one of GET, HEAD"


def test_the_uwsgi_config_rule_wants_remember_token_absent() -> None:
    cached = trace(request("/about"), UWSGI)
    passed = trace(request("/about", cookie="remember_token=1"), UWSGI)

    assert isinstance(cached.decision, Lookup)
    assert cached.decision.key == "example.com/about\x00identity"
    assert passed.decision == Pass(PassReason.NO_RULE)
    assert passed.steps[0].mismatch is Mismatch.COOKIE


def test_an_anonymous_rule_refuses_a_logged_in_visitor_with_the_reason() -> None:
    """decide's refused visitor: no rule matched, but an `anonymous = true` cache rule would
    have for an anonymous visitor, so the pass says who the visitor is."""
    config = parse({"rules": [{"name": "home", "path": "^/$", "anonymous": True}]}, "t.toml")
    traced = trace(request("/", cookie=f"session={LOGGED_IN}"), config)

    assert traced.decision == Pass(PassReason.AUTHENTICATED, config.rules[0])
    assert steps(traced) == [("home", Mismatch.ANONYMOUS)]
    assert traced.steps[0].why.startswith("anonymous = true: the visitor is not anonymous: ")


def test_shared_mode_is_its_one_rule() -> None:
    traced = trace(request("/", accept_encoding="br"), SHARED)

    assert isinstance(traced.decision, Lookup)
    assert traced.decision.rule.forward_all
    assert steps(traced) == [("shared", None)]
    logged_in = trace(request("/", cookie="remember_token=1"), SHARED).decision
    assert isinstance(logged_in, Pass)
    assert logged_in.reason is PassReason.AUTHENTICATED


@pytest.mark.parametrize(
    ("cookie", "visitor", "why"),
    [
        ("theme=dark", Visitor.ANONYMOUS, "no cookie it reads (remember_token, session) says"),
        (f"session={ANONYMOUS_SESSION}", Visitor.ANONYMOUS, "names no user (its keys: csrf"),
        (f"session={FLASHES}", Visitor.MESSAGES, "has a message waiting (its keys: _flashes)"),
        ("session=", Visitor.ANONYMOUS, "session cookie session is empty"),
        ("session=%%%", Visitor.LOGGED_IN, "cannot be read"),
        (f"session={ANONYMOUS_SESSION}; session=other", Visitor.LOGGED_IN, "sent twice"),
    ],
)
def test_identity_words(cookie: str, visitor: Visitor, why: str) -> None:
    traced = trace(request(cookie=cookie), DEFAULT)

    assert traced.identity.visitor is visitor
    assert why in traced.identity.why


def test_every_pass_reason_has_words() -> None:
    assert set(PASS_REASONS) == set(PassReason)


def test_a_rule_name_is_quoted_and_cannot_break_the_header() -> None:
    config = parse({"rules": [{"name": 'a "b"\r\nX-Evil: 1 é'}]}, "t.toml")
    value = header_value(trace(request(), config))

    assert value.startswith('rule="a %22b%22%0D%0AX-Evil: 1 %C3%A9"; ')
    assert all(" " <= c <= "~" for c in value)


# --- properties -----------------------------------------------------------------------------

FUZZ = settings(
    max_examples=int(os.environ.get("SIDECACHE_FUZZ_EXAMPLES", 300)),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
COOKIE_NAMES = ["remember_token", "session", "sessionid", "messages", "lang", "theme"]
SESSIONS = [LOGGED_IN, ANONYMOUS_SESSION, FLASHES, "garbage", "", flask_session({"user_id": 0})]
CONDITION = st.one_of(
    st.sampled_from(["present", "absent"]),
    st.sampled_from(["en", "1", ""]).map(lambda v: {"equals": v}),
    st.sampled_from(["^e", "x", "."]).map(lambda p: {"matches": p}),
)


@st.composite
def rule_tables(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["cache", "cache", "pass"]))
    rule: dict[str, Any] = {"action": action}
    if draw(st.booleans()):
        rule["path"] = draw(st.sampled_from(["^/$", "^/about", "^/a", "b", "^/%"]))
    if draw(st.booleans()):
        choices = ["GET", "HEAD"] if action == "cache" else ["GET", "HEAD", "POST", "PUT"]
        rule["methods"] = draw(st.lists(st.sampled_from(choices), min_size=1, unique=True))
    if draw(st.booleans()):
        rule["anonymous"] = draw(st.booleans())
    if draw(st.booleans()):
        rule["allow_authorization"] = True
    for kind, names in (("cookie", COOKIE_NAMES), ("header", ["X-Lang", "Accept"])):
        if draw(st.booleans()):
            rule[kind] = draw(st.dictionaries(st.sampled_from(names), CONDITION, max_size=2))
    return rule


@st.composite
def configs(draw: st.DrawFn) -> Settings:
    if draw(st.integers(0, 9)) == 0:
        return SHARED
    data: dict[str, Any] = {
        "rules": draw(st.lists(rule_tables(), max_size=4)),
        "identity": {"preset": draw(st.sampled_from(["flask", "django"]))},
    }
    return parse(data, "fuzz.toml")


@st.composite
def requests(draw: st.DrawFn) -> RequestView:
    pairs: list[tuple[str, str]] = [("Host", draw(st.sampled_from(["example.com", "a.test"])))]
    names = st.sampled_from(COOKIE_NAMES)
    values = st.one_of(st.sampled_from(SESSIONS), st.sampled_from(["en", "1", "x"]))
    for _ in range(draw(st.integers(0, 2))):
        cookies = draw(st.lists(st.tuples(names, values), max_size=4))
        pairs.append(("Cookie", "; ".join(f"{n}={v}" for n, v in cookies)))
    optional = [
        ("Authorization", "Basic eDp5"),
        ("Accept-Encoding", "gzip, br"),
        ("X-Lang", "en"),
        ("Upgrade", "websocket"),
        ("Range", "bytes=0-1"),
    ]
    pairs += [pair for pair in optional if draw(st.booleans())]
    method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST", "PUT"]))
    target = draw(st.sampled_from(["/", "/about", "/a/b?x=1", "/%61bout", "/b"]))
    return RequestView(method, target, tuple(pairs), peer="127.0.0.1", has_body=draw(st.booleans()))


@FUZZ
@given(configs(), requests())
def test_the_traced_decision_is_the_fast_one(config: Settings, view: RequestView) -> None:
    """Over generated rules and requests: the same decision as `decide` (on a fresh view, so
    nothing the trace read first can change it), the steps are `first_match`'s walk with
    `Rule.matches`' verdict on each, and the words of each failure name a failing condition."""
    traced = trace(view, config)
    fresh = RequestView(view.method, view.target, view.headers, peer=view.peer)
    fresh.has_body = view.has_body
    fast = decide(fresh, config.rules, config.identity)
    event(f"{type(fast).__name__} {getattr(fast, 'reason', '')}")

    assert traced.decision == fast
    matched = first_match(config.rules, fresh, config.identity)
    walked = config.rules[: len(traced.steps)]
    assert [step.rule for step in traced.steps] == list(walked)
    for step in traced.steps:
        assert (step.mismatch is None) is step.rule.matches(fresh, config.identity)
        assert "no condition failed" not in step.why
    if matched is None:
        assert len(traced.steps) == len(config.rules)
        assert all(step.mismatch is not None for step in traced.steps)
    else:
        assert traced.steps[-1].rule is matched
        assert traced.steps[-1].mismatch is None
    if isinstance(fast, Lookup) or (isinstance(fast, Pass) and matched is not None):
        assert fast.rule is matched


@FUZZ
@given(
    st.sampled_from([DEFAULT.identity, parse({"identity": {"preset": "django"}}, "d").identity]),
    requests(),
)
def test_the_identity_words_agree_with_the_verdict(policy: Any, view: RequestView) -> None:
    """`evidence` explains `RequestView.visitor` in its own order: their verdicts agree."""
    assert evidence(view, policy)[0] is view.visitor(policy)


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({"header": {"Sidecache-Debug": "present"}}, "rules[1].header.Sidecache-Debug"),
        ({"key": "{uri}{header[Sidecache-Debug]}"}, "rules[1].key"),
        ({"keep_headers": ["sidecache-debug"]}, "rules[1].keep_headers"),
    ],
)
def test_a_rule_on_the_debug_header_is_refused(rule: dict[str, Any], key: str) -> None:
    """Product rule: the debug header asks for a trace and never changes what is cached."""
    with pytest.raises(ConfigError, match=f"^t.toml: {re.escape(key)}: .*debug header"):
        parse({"rules": [rule]}, "t.toml")
