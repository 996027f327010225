"""recv → decide: a request becomes a cache `Lookup` or a `Pass`, as a pure function.

Order of checks, each with one reason (the way Varnish's builtin vcl_recv reads):
1. the first matching rule; none → pass (no-rule); action "pass" → pass (rule)
2. only GET and HEAD are ever answered from a cache, whatever the rules say (method)
3. a GET/HEAD carrying a body is not a plain read (request-body)
4. Authorization → pass unless the rule allows it (RFC 9111 §3.5)
5. remember cookie or logged-in session → pass, for every cache rule (product rule: a logged-in
   user is never answered from cache and their response is never stored); a one-time message
   waiting (Flask's `_flashes`, Django's `messages` cookie) → pass: that page is personal
6. Upgrade → pass (a WebSocket handshake is not a read; it is not relayed yet either)
A Range request is a lookup: a usable entry answers it (206), else it is forwarded (handler).
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.encoding import normalise_accept_encoding
from proxy.identity import IdentityPolicy, Visitor
from proxy.reasons import PassReason
from proxy.rules import Action, Rule, first_match, refused_visitor
from proxy.view import RequestView

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Lookup:
    key: str
    rule: Rule
    encoding: str  # the normalised Accept-Encoding the fill sends (and the key carries)


@dataclass(frozen=True, slots=True)
class Pass:
    reason: PassReason
    rule: Rule | None = None


Decision = Lookup | Pass


def decide(view: RequestView, rules: tuple[Rule, ...], identity: IdentityPolicy) -> Decision:
    """Return what to do with `view`: look it up in a cache, or pass it upstream."""
    rule = first_match(rules, view, identity)
    if rule is None:
        refused = refused_visitor(rules, view, identity)
        if refused is None:
            return Pass(PassReason.NO_RULE)
        authorization = "authorization" in view.header_map and not refused.allow_authorization
        who = PassReason.AUTHORIZATION if authorization else PassReason.AUTHENTICATED
        return Pass(who, refused)
    if rule.action is Action.PASS:
        return Pass(PassReason.RULE, rule)
    reason = _refusal(view, rule, identity)
    if reason is not None:
        return Pass(reason, rule)
    assert rule.key is not None, "config.py gives every cache rule a key"
    encoding = normalise_accept_encoding(view.header("accept-encoding"))
    key = f"{rule.key.render(view)}\x00{encoding}"
    if view.trusted:
        key += f"\x00{view.forwarded_variant}"
    return Lookup(key, rule, encoding)


def recoded(lookup: Lookup, coding: str) -> str:
    """`lookup`'s key for clients that accept `coding` instead (see `decide` for its format:
    the rendered key has no NUL, as no request line or field value may hold one)."""
    rendered, _, rest = lookup.key.partition("\x00")
    return f"{rendered}\x00{coding}{rest[len(lookup.encoding) :]}"


def _refusal(view: RequestView, rule: Rule, identity: IdentityPolicy) -> PassReason | None:
    """The first safety check that forbids answering `view` from cache, or None. (On the hit
    path: presence tests on the header map, and the cookies read only when there are some.)"""
    if view.method not in CACHEABLE_METHODS:
        return PassReason.METHOD
    if view.has_body:
        return PassReason.REQUEST_BODY
    fields = view.header_map
    if "authorization" in fields and not rule.allow_authorization:
        return PassReason.AUTHORIZATION
    if "cookie" in fields:
        who = view.visitor(identity)
        if who is _LOGGED_IN:
            return PassReason.AUTHENTICATED
        if who is _MESSAGES:
            return PassReason.FLASHES
    if "upgrade" in fields:
        return PassReason.UPGRADE
    return None


_LOGGED_IN, _MESSAGES = Visitor.LOGGED_IN, Visitor.MESSAGES
