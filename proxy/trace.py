"""The decision trace: why `decide` did what it did, for `sidecache explain` and for a live
request's `Sidecache-Debug: 1`. Pure.

The trace is made of the real decision code, never a second copy of it: each rule's verdict is
`Rule.mismatch` (what `first_match` reads), the decision is `decide` itself, the visitor is
`RequestView.visitor`. What is added is the explanation: which condition failed and with what
value, and which cookie made the visitor logged in. `tests/unit/test_trace.py` pins that the
explanation agrees with the verdicts over generated requests and rules.

The live header (`header_value`) carries no cookie value and no key: a response with it may be
stored by a cache downstream. The key's hash lets an operator match it to `sidecache explain`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from proxy import fields
from proxy.decide import Decision, Lookup, Pass, decide
from proxy.identity import (
    IdentityPolicy,
    Visitor,
    conflicting_cookies,
    session_payload,
    session_state,
)
from proxy.reasons import PassReason
from proxy.rules import Condition, Mismatch, Rule, Test
from proxy.view import RequestView

TRACE_HEADER = "Sidecache-Trace"
_Reader = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Step:
    """One rule looked at, in order: `mismatch` None is the rule that matched (the last)."""

    rule: Rule
    mismatch: Mismatch | None
    why: str


@dataclass(frozen=True, slots=True)
class Identity:
    """The identity verdict: `visitor` is `RequestView.visitor`'s (cookies only), `why` the
    cookie (or its absence) that decided it; Authorization counts apart (a rule may allow it)."""

    visitor: Visitor
    authorization: bool
    why: str


@dataclass(frozen=True, slots=True)
class Trace:
    decision: Decision
    steps: tuple[Step, ...]
    identity: Identity

    @property
    def rule(self) -> Rule | None:
        return self.decision.rule


def traced_decide(view: RequestView, rules: tuple[Rule, ...], identity: IdentityPolicy) -> Trace:
    """`decide(view, rules, identity)` and the steps that led to it: every rule up to the first
    that matched, each with why it did not."""
    steps: list[Step] = []
    for rule in rules:
        mismatch = rule.mismatch(view, identity)
        steps.append(Step(rule, mismatch, mismatch_reason(rule, mismatch, view, identity)))
        if mismatch is None:
            break
    return Trace(decide(view, rules, identity), tuple(steps), identify(view, identity))


def mismatch_reason(
    rule: Rule, mismatch: Mismatch | None, view: RequestView, identity: IdentityPolicy
) -> str:
    """`mismatch` in words, with the request's value that failed it."""
    if mismatch is None:
        return "matched"
    if mismatch is Mismatch.METHOD:
        return f"method {view.method} is not one of {', '.join(sorted(rule.methods or ()))}"
    if mismatch is Mismatch.PATH:
        pattern = rule.path.pattern if rule.path is not None else ""
        return f"path {view.decoded_path!r} does not match {pattern!r}"
    if mismatch is Mismatch.COOKIE:
        return _failed("cookie", rule.cookies, view.cookies.get)
    if mismatch is Mismatch.HEADER:
        return _failed("header", rule.headers, view.header)
    return _not_who(rule, view, identity)


def _failed(kind: str, conditions: tuple[Condition, ...], read: _Reader) -> str:
    """The first of `conditions` that does not hold, in words."""
    for condition in conditions:
        actual = read(condition.name)
        if not condition.holds(actual):
            return f"{kind} {condition.name} {_condition_text(condition, actual)}"
    return f"{kind}: no condition failed"  # unreachable while mismatch agrees with holds


def _condition_text(condition: Condition, actual: str | None) -> str:
    if condition.test is Test.PRESENT:
        return "is absent (the rule wants it present)"
    if condition.test is Test.ABSENT:
        return "is present (the rule wants it absent)"
    wanted = (
        f"equal to {condition.value!r}"
        if condition.test is Test.EQUALS
        else f"matching {condition.pattern.pattern if condition.pattern else ''!r}"
    )
    if actual is None:
        return f"is absent (the rule wants it {wanted})"
    return f"is {actual!r}, not {wanted}"


def _not_who(rule: Rule, view: RequestView, identity: IdentityPolicy) -> str:
    """Why the visitor is not who an `anonymous = true/false` rule is for."""
    if not rule.anonymous:
        return "anonymous = false: the rule is for logged-in visitors, and this one is anonymous"
    if "authorization" in view.header_map and not rule.allow_authorization:
        why = "it sends Authorization"
    else:
        why = identify(view, identity).why
    return f"anonymous = true: the visitor is not anonymous: {why}"


def identify(view: RequestView, policy: IdentityPolicy) -> Identity:
    """The identity verdict of `view`, with the cookie that decided it."""
    found = view.visitor(policy)
    return Identity(found, "authorization" in view.header_map, evidence(view, policy)[1])


def evidence(view: RequestView, policy: IdentityPolicy) -> tuple[Visitor, str]:
    """What the cookies say of the visitor, in `identity.visitor`'s order, and the deciding
    fact. (Its verdict is the test's check that the words agree with `view.visitor`.)"""
    read = ", ".join(policy.remember_cookies + policy.session_cookies + policy.message_cookies)
    if "cookie" not in view.header_map:
        return Visitor.ANONYMOUS, "no Cookie header"
    cookies = view.cookies
    for name in policy.remember_cookies:
        if name in cookies:
            return Visitor.LOGGED_IN, (
                f"cookie {name} is present ([identity] remember_cookies: any value, even empty, "
                "means logged in)"
            )
    conflicts = conflicting_cookies(fields.values(view.headers, "cookie"))
    for name in policy.session_cookies:
        if name in conflicts:
            return Visitor.LOGGED_IN, (
                f"session cookie {name} is sent twice with different values (the app may "
                "read either: counted as logged in)"
            )
    found, why = Visitor.ANONYMOUS, f"no cookie it reads ({read or 'none'}) says otherwise"
    for name in policy.message_cookies:
        if cookies.get(name):
            found, why = Visitor.MESSAGES, f"cookie {name} holds a message waiting to be shown"
    for name in policy.session_cookies:
        if name in cookies:
            state, said = _session(name, cookies[name], policy)
            if state is Visitor.LOGGED_IN:
                return state, said
            if state is Visitor.MESSAGES:
                found, why = state, said
            elif found is Visitor.ANONYMOUS:
                why = said
    return found, why


def _session(name: str, value: str, policy: IdentityPolicy) -> tuple[Visitor, str]:
    """A Flask session cookie read as `identity.session_state` reads it, and what it holds."""
    state = session_state(value, policy.session_user_keys, policy.session_message_keys)
    if not value:
        return state, f"session cookie {name} is empty (no session)"
    payload = session_payload(value)
    if not isinstance(payload, dict):
        return state, (
            f"session cookie {name} cannot be read (not a session this proxy understands: "
            "counted as logged in)"
        )
    keys = ", ".join(sorted(str(key) for key in payload)) or "none"
    if state is Visitor.LOGGED_IN:
        users = ", ".join(key for key in policy.session_user_keys if key in payload)
        return state, f"session cookie {name} names a user ({users}; its keys: {keys})"
    if state is Visitor.MESSAGES:
        return state, f"session cookie {name} has a message waiting (its keys: {keys})"
    return state, f"session cookie {name} names no user (its keys: {keys})"


def key_hash(key: str) -> str:
    """The first 16 hex digits of the key's SHA-256: the key itself may hold a cookie's value
    (`{cookie[NAME]}`), so a header shows this instead."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def header_value(trace: Trace) -> str:
    """The Sidecache-Trace value: `rule="…"; decision=lookup|pass; reason=…; cache="…";
    key-hash=…; visitor=…; skipped="N:why …"`. No cookie value, no key."""
    decision = trace.decision
    rule = trace.rule
    parts = [f"rule={_quoted(rule.label) if rule is not None else '-'}"]
    if isinstance(decision, Lookup):
        parts += ["decision=lookup", f"cache={_quoted(decision.rule.cache)}"]
        parts.append(f"key-hash={key_hash(decision.key)}")
    else:
        parts += ["decision=pass", f"reason={decision.reason.value}"]
    parts.append(f"visitor={trace.identity.visitor.value}")
    skipped = " ".join(f"{s.rule.number}:{s.mismatch}" for s in trace.steps if s.mismatch)
    if skipped:
        parts.append(f'skipped="{skipped}"')
    return "; ".join(parts)


def _quoted(text: str) -> str:
    """A quoted string for a header: printable ASCII as itself, anything else %-encoded (a
    rule name is TOML text and may hold a line break or a non-ASCII letter)."""
    return '"' + quote(text, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~") + '"'


PASS_REASONS = {
    PassReason.NO_RULE: "no rule matched: what no rule caches goes to the app",
    PassReason.RULE: 'the first rule that matched says action = "pass"',
    PassReason.METHOD: "only GET and HEAD are ever answered from a cache",
    PassReason.AUTHORIZATION: (
        "the request carries Authorization and the rule does not allow it (RFC 9111 §3.5)"
    ),
    PassReason.AUTHENTICATED: (
        "a logged-in visitor is never answered from a cache, and their page is never stored"
    ),
    PassReason.FLASHES: "a one-time message waits for this visitor: their next page is personal",
    PassReason.REQUEST_BODY: "a GET or HEAD with a body is not a plain read",
    PassReason.UPGRADE: "a protocol switch (Upgrade) is never a cacheable read",
    PassReason.HIT_FOR_PASS: "the page proved personal: each visitor's own request goes",
    PassReason.RANGE: "a Range request with no usable entry: partial answers are not stored",
}


def pass_reason(decision: Pass) -> str:
    """The pass's reason in words (every `PassReason` has some)."""
    return PASS_REASONS[decision.reason]
