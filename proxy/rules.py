"""Ordered rules: conditions (ANDed) and an action. First match wins; no match means pass.

Rules are compiled by config.py (regexes once, at load) and matched here with plain calls, so
`decide` stays a pure function of the request and the settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from proxy.freshness import TtlMode, TtlPolicy
from proxy.identity import IdentityPolicy
from proxy.keys import KeyTemplate
from proxy.view import RequestView


class Action(StrEnum):
    CACHE = "cache"  # answer from the named cache; on a miss fetch, deliver and maybe store
    PASS = "pass"  # forward, never touch a cache


class SetCookieMode(StrEnum):
    SKIP = "skip"  # a fill response with Set-Cookie is not stored (Varnish's builtin default)
    # Store it without Set-Cookie, unless it sets a cookie that holds a visitor's state (a
    # session, remember-me, messages or CSRF cookie: Rule.state_cookies): for an app that sets
    # an analytics or preference cookie on every response.
    STRIP = "strip"


class Mismatch(StrEnum):
    """Which of a rule's conditions a request failed (the first one tested, see
    `Rule.mismatch`); `sidecache explain` and the Sidecache-Trace header name it."""

    METHOD = "method"
    PATH = "path"
    COOKIE = "cookie"
    HEADER = "header"
    ANONYMOUS = "anonymous"


_METHOD, _PATH, _COOKIE = Mismatch.METHOD, Mismatch.PATH, Mismatch.COOKIE
_HEADER, _ANONYMOUS = Mismatch.HEADER, Mismatch.ANONYMOUS


class Test(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    EQUALS = "equals"
    MATCHES = "matches"


@dataclass(frozen=True, slots=True)
class Condition:
    """One cookie or header test. `value` is the text for EQUALS; `pattern` for MATCHES."""

    name: str
    test: Test
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def holds(self, actual: str | None) -> bool:
        if self.test is Test.PRESENT:
            return actual is not None
        if self.test is Test.ABSENT:
            return actual is None
        if actual is None:
            return False
        if self.test is Test.EQUALS:
            return actual == self.value
        assert self.pattern is not None
        return self.pattern.search(actual) is not None


_NO_POLICY = TtlPolicy()  # a pass rule's (config gives every cache rule its own)


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule. `number` is its 1-based position, used in messages and logs."""

    number: int
    name: str
    action: Action
    path: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None  # None: any method
    anonymous: bool | None = None  # None: not tested
    cookies: tuple[Condition, ...] = ()
    headers: tuple[Condition, ...] = ()
    cache: str = ""
    ttl_mode: TtlMode = TtlMode.FORCE
    ttl: float | None = None  # None: the cache's ttl (FORCE: the lifetime; ORIGIN: the fallback)
    max_ttl: float | None = None
    heuristic: bool = False
    keep: float | None = None  # None: the cache's keep
    statuses: frozenset[int] = frozenset({200})
    stale_while_revalidate: float | None = None  # None: the origin's directive, else 0
    stale_if_error: float | None = None
    stale_if_unreachable: bool = False  # a kept stale entry answers when the upstream gives none
    set_cookie: SetCookieMode = SetCookieMode.SKIP
    # [identity]'s state cookies: a fill response that sets one is personal even with "strip".
    state_cookies: frozenset[str] = IdentityPolicy().state_cookies
    keep_cookies: tuple[str, ...] = ()
    keep_headers: tuple[str, ...] = ()  # lower-case; sent on fills beyond the allowlist
    allow_authorization: bool = False
    # What an unsafe request's non-error answer may invalidate of this rule's entries
    # (invalidate.TARGET, .LOCATION): none by default, shared mode both (RFC 9111 §4.4).
    invalidate: frozenset[str] = frozenset()
    key: KeyTemplate | None = None
    # How a response becomes a lifetime: the rule's settings over its cache's, built once by
    # config (a cache rule always has one).
    policy: TtlPolicy = _NO_POLICY
    # Shared mode's rule: fills send every end-to-end request header, cookies included, so the
    # response may vary on any of them (RFC 9111 §4.1) and must be storable by §3 on its own.
    forward_all: bool = False

    @property
    def fill_headers(self) -> frozenset[str]:
        """Client headers a fill carries beyond the allowlist: kept ones and those keyed on."""
        return frozenset(self.keep_headers) | (self.key.headers if self.key else frozenset())

    @property
    def label(self) -> str:
        return self.name or f"rules[{self.number}]"

    def matches(self, view: RequestView, identity: IdentityPolicy, anonymity: bool = True) -> bool:
        """True when every condition the rule states holds for `view` (`anonymity=False`: all
        but `anonymous`)."""
        return self.mismatch(view, identity, anonymity) is None

    def mismatch(
        self, view: RequestView, identity: IdentityPolicy, anonymity: bool = True
    ) -> Mismatch | None:
        """The first condition that does not hold for `view`, in the order they are tested,
        or None when the rule matches. The one matching code: `first_match` reads only
        whether it is None, `trace.py` shows which it was."""
        if self.methods is not None and view.method not in self.methods:
            return _METHOD
        if self.path is not None and self.path.search(view.decoded_path) is None:
            return _PATH
        if self.cookies and not all(c.holds(view.cookies.get(c.name)) for c in self.cookies):
            return _COOKIE
        if self.headers and not all(c.holds(view.header(c.name)) for c in self.headers):
            return _HEADER
        if self.anonymous is not None and anonymity:
            anonymous = view.is_anonymous(
                identity, count_authorization=not self.allow_authorization
            )
            return None if anonymous is self.anonymous else _ANONYMOUS
        return None


def first_match(
    rules: tuple[Rule, ...], view: RequestView, identity: IdentityPolicy
) -> Rule | None:
    """The first rule whose conditions all hold, or None."""
    for rule in rules:
        if rule.mismatch(view, identity) is None:
            return rule
    return None


def refused_visitor(
    rules: tuple[Rule, ...], view: RequestView, identity: IdentityPolicy
) -> Rule | None:
    """When no rule matched: the first `anonymous = true` cache rule that would have matched
    but for the visitor being logged in (or sending Authorization), or None. That visitor's
    pass is about who they are, not about a missing rule."""
    for rule in rules:
        if (
            rule.anonymous
            and rule.action is Action.CACHE
            and rule.mismatch(view, identity, False) is None
        ):
            return rule
    return None
