"""Storability of fill responses and the headers of what we deliver, as small named checks.

Each check has one reason (a `NotStoredReason`), in the order Varnish's builtin vcl_backend_response
reads: status, Cache-Control, Set-Cookie, Vary, then size and framing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate

from proxy import fields
from proxy.freshness import (
    HEURISTIC_STATUSES,
    TtlPolicy,
    explicit_lifetime,
    has_validator,
    heuristic_lifetime,
    lifetime,
    stale_window,
)
from proxy.reasons import NotStoredReason
from proxy.rules import Rule, SetCookieMode
from proxy.view import Headers

# RFC 9110 §7.6.1 hop-by-hop fields, plus the non-standard ones proxies are known to see.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # Expect is answered by the front (100 Continue); the upstream gets the body at once.
        "expect",
    }
)
# Framing is the front's job: it sets Content-Length or chunking itself.
FRAMING = frozenset({"content-length", "transfer-encoding"})
_NOT_END_TO_END = HOP_BY_HOP | FRAMING


@dataclass(frozen=True, slots=True)
class Store:
    fresh_for: float  # the freshness lifetime (RFC 9111 §4.2.1); 0: validate before every use
    keep: float = 0.0  # kept this long once stale: to be revalidated, or for max-stale
    must_revalidate: bool = False  # never served stale (must-/proxy-revalidate, s-maxage, no-cache)
    vary: tuple[str, ...] = ()  # request headers (lower-case, sorted) that pick the variant
    stale_while_revalidate: float = 0.0  # served stale this long past freshness, refreshed behind
    stale_if_error: float = 0.0  # served stale this long past freshness when the upstream fails


@dataclass(frozen=True, slots=True)
class DontStore:
    reason: NotStoredReason


Storability = Store | DontStore


def connection_tokens(headers: Headers) -> frozenset[str]:
    """Header names listed in Connection, which are hop-by-hop too (RFC 9110 §7.6.1)."""
    return frozenset(fields.members(headers, "connection"))


def end_to_end(
    headers: Headers, *, drop: frozenset[str] = frozenset(), protect: frozenset[str] = frozenset()
) -> Headers:
    """`headers` without hop-by-hop fields, framing, and any name in `drop` (lower-case).

    Names listed in Connection are hop-by-hop too, except those in `protect`: a client must not
    be able to strip Host or a header the cache key reads from the request we send upstream.
    """
    lowered = [(n.lower(), n, v) for n, v in headers]  # on every forwarded response: one pass
    remove = _NOT_END_TO_END | drop
    if "connection" in remove and any(low == "connection" for low, _, _ in lowered):
        remove = remove | (connection_tokens(headers) - protect)
    return tuple(
        [(n, v) for low, n, v in lowered if low not in remove and not low.startswith("proxy-")]
    )


def cache_control(headers: Headers) -> dict[str, str]:
    """Cache-Control directives, lower-cased names, quotes stripped (RFC 9111 §5.2)."""
    directives: dict[str, str] = {}
    for name, value in headers:
        if name.lower() != "cache-control":
            continue
        for item in value.split(","):
            key, _, arg = item.partition("=")
            if key.strip():
                directives.setdefault(key.strip().lower(), arg.strip().strip('"'))
    return directives


# RFC 8941 dictionary member: key [ "=" ( integer | token | quoted string ) ] [ ";" params ]
_SF_MEMBER = re.compile(
    r'[a-z*][a-z0-9_\-.*]*(=(-?\d{1,15}|[A-Za-z*][!#$%&\'*+\-.^_`|~:/\w]*|"(?:[^"\\]|\\.)*"))?'
    r"(;[^,]*)?"
)


def targeted_directives(value: str) -> dict[str, str] | None:
    """An RFC 9213 targeted field (a Structured Field Dictionary, RFC 8941) as directives;
    None when it is not a valid dictionary (then the field is ignored)."""
    directives: dict[str, str] = {}
    for member in value.split(","):
        member = member.strip(" \t")
        if not _SF_MEMBER.fullmatch(member):
            return None
        key, _, rest = member.partition("=")
        argument = rest.split(";", 1)[0]
        key = key.split(";", 1)[0]
        if key in _NUMERIC_DIRECTIVES and not argument.isdigit():
            return None  # RFC 9213 §2.1: an Integer, or the field is invalid
        directives.setdefault(key, argument.strip('"'))
    return directives


_NUMERIC_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})


def response_directives(
    headers: Headers, targeted: tuple[str, ...]
) -> tuple[dict[str, str], Headers]:
    """The directives that govern storing and freshness, and the headers to read freshness
    from: the first valid targeted field (RFC 9213 §2.1), whose presence makes Cache-Control
    and Expires ignored; else Cache-Control and the headers as they are."""
    for name in targeted:
        value = fields.joined(headers, name)
        if value:
            found = targeted_directives(value)
            if found is not None:
                ignored = ("cache-control", "expires")
                return found, fields.without(headers, ignored)
    return cache_control(headers), headers


def storability(
    status: int,
    headers: Headers,
    rule: Rule,
    policy: TtlPolicy,
    keyed_headers: frozenset[str],
    authorized: bool,
    received: float | None = None,
    targeted: tuple[str, ...] = (),
) -> Storability:
    """May this fill response be stored, and for how long? (Product rules + RFC 9111 §3.)
    `received`: when it arrived (epoch seconds), standing in for a missing Date. `targeted`:
    the RFC 9213 fields meant for this cache, first found wins over Cache-Control and Expires."""
    if status not in rule.statuses:
        return DontStore(NotStoredReason.STATUS)
    directives, headers = response_directives(headers, targeted)
    for directive, reason in _REFUSING_DIRECTIVES:
        if directive in directives:
            return DontStore(reason)
    if authorized and not directives.keys() & _AUTHORIZED_OK:
        return DontStore(NotStoredReason.AUTHORIZATION)
    if _sets_kept_cookie(headers, rule):
        return DontStore(NotStoredReason.SET_COOKIE)
    vary = set(fields.members(headers, "vary"))
    if "*" in vary:
        return DontStore(NotStoredReason.VARY_STAR)
    if rule.forward_all:
        # Shared mode: the fill sent the client's headers, so any of them may be varied on;
        # and §3 must allow storing from the response alone.
        secondary = vary - _ENCODING_KEYED - keyed_headers
        if not _storable_alone(status, headers, directives):
            return DontStore(NotStoredReason.STATUS)
        if not _has_freshness(status, headers, directives, policy, received):
            return DontStore(NotStoredReason.ZERO_TTL)  # nothing says how long it may be reused
    else:
        secondary = vary - _VARY_SATISFIED - keyed_headers
        if secondary - FILL_ALLOWED - frozenset(rule.keep_headers):
            # A header the fill did not send: the response cannot depend on the client's
            # value, and storing it as every client's variant would be wrong.
            return DontStore(NotStoredReason.VARY)
    fresh_for = lifetime(status, headers, directives, policy, received)
    validator = has_validator(headers)
    if fresh_for <= 0 and not validator:  # stale at once, and nothing to revalidate it with
        no_cache = "no-cache" in directives
        return DontStore(NotStoredReason.NO_CACHE if no_cache else NotStoredReason.ZERO_TTL)
    must = not directives.keys().isdisjoint(_NEVER_STALE)
    swr = (
        0.0
        if must
        else stale_window(directives, "stale-while-revalidate", policy.stale_while_revalidate)
    )
    sie = 0.0 if must else stale_window(directives, "stale-if-error", policy.stale_if_error)
    keep = max(policy.keep, swr, sie)  # an entry stays while a window may still use it
    return Store(fresh_for, keep, must, tuple(sorted(secondary)), swr, sie)


def personal(
    headers: Headers, rule: Rule, targeted: tuple[str, ...] = ()
) -> NotStoredReason | None:
    """Why a fill response shows its page was made for one visitor, or None (product rule, and
    Varnish's hit-for-pass): it says no-store or private, or sets a cookie the rule does not
    strip. The app answered a request without cookies, so a visitor who has some must be sent
    to it with their own (a CSRF form for their session, a message for them). Shared mode's
    fills are the visitor's own request already: never."""
    if rule.forward_all:
        return None
    directives, _ = response_directives(headers, targeted)
    for directive, reason in _REFUSING_DIRECTIVES:
        if directive in directives:
            return reason
    return NotStoredReason.SET_COOKIE if _sets_kept_cookie(headers, rule) else None


def _sets_kept_cookie(headers: Headers, rule: Rule) -> bool:
    """A Set-Cookie the page cannot be stored with: any, or with set_cookie = "strip" one that
    holds a visitor's state (its page may show what was put there: a CSRF token, a message)."""
    names = [v.split("=", 1)[0].strip() for v in fields.values(headers, "set-cookie")]
    if rule.set_cookie is SetCookieMode.SKIP:
        return bool(names)
    return not rule.state_cookies.isdisjoint(names)


def _has_freshness(
    status: int,
    headers: Headers,
    directives: dict[str, str],
    policy: TtlPolicy,
    received: float | None,
) -> bool:
    """Shared mode stores nothing without explicit freshness (or a heuristic lifetime, when
    enabled), but what says no-cache: store, and revalidate every use."""
    if "no-cache" in directives or explicit_lifetime(directives, headers, received) is not None:
        return True
    return policy.heuristic and heuristic_lifetime(status, headers) is not None


def _storable_alone(status: int, headers: Headers, directives: dict[str, str]) -> bool:
    """RFC 9111 §3: public, max-age, s-maxage, Expires, or a heuristically cacheable status."""
    if status in HEURISTIC_STATUSES or directives.keys() & _EXPLICIT:
        return True
    return fields.has(headers, "expires")


_REFUSING_DIRECTIVES = (
    ("no-store", NotStoredReason.NO_STORE),
    ("private", NotStoredReason.PRIVATE),
)
# §5.2.2.2, §5.2.2.8, §5.2.2.10 (s-maxage implies proxy-revalidate), §5.2.2.4 (no-cache).
_NEVER_STALE = frozenset({"must-revalidate", "proxy-revalidate", "s-maxage", "no-cache"})
# RFC 9111 §3.5: a response to a request with Authorization is stored only with one of these.
_AUTHORIZED_OK = frozenset({"public", "s-maxage", "must-revalidate"})
# Accept-Encoding is always in the key (normalised); Cookie by construction: fills carry no
# cookies but those the rule keeps (and `check` warns when a kept cookie is not in the key).
# Any other header a fill sends may be varied on: each value gets a variant (RFC 9111 §4.1).
_VARY_SATISFIED = frozenset({"accept-encoding", "cookie"})
_ENCODING_KEYED = frozenset({"accept-encoding"})
# RFC 9111 §3: what lets a shared cache store a status that is not heuristically cacheable.
_EXPLICIT = frozenset({"public", "max-age", "s-maxage"})
# What a fill forwards from the client when nothing else asks for more (forwarding.py).
FILL_ALLOWED = frozenset({"host", "accept", "accept-language", "user-agent"})


def body_storability(
    verdict: Storability,
    headers: Headers,
    content_length: int | None,
    framed: bool,
    item_size: int,
    encoding: str,
) -> Storability:
    """What the status line and headers tell of the body before a byte of it is read.

    - larger than item_size (Content-Length) → too-big: streamed, never recorded;
    - close-delimited (no Content-Length, not chunked) → unframed: truncation is undetectable;
    - a Content-Encoding outside the fill's normalised Accept-Encoding → encoding: an origin that
      ignores Accept-Encoding must not get gzip stored for clients that cannot read it.
    """
    if not isinstance(verdict, Store):
        return verdict
    if content_length is not None and content_length > item_size:
        return DontStore(NotStoredReason.TOO_BIG)
    if not framed:
        return DontStore(NotStoredReason.UNFRAMED)
    accepted = set(encoding.split(", ")) | {"identity"}
    if not set(fields.members(headers, "content-encoding")) <= accepted:
        return DontStore(NotStoredReason.ENCODING)
    return verdict


def relays_interim(status: int, version: tuple[int, int]) -> bool:
    """Is an upstream's interim response passed on to the client whose request it answers?
    RFC 9110 §15.2: 1xx responses are forwarded, but never to an HTTP/1.0 client. Not 100
    Continue: the front answers `Expect` itself and does not forward it (a second 100 would be
    one too many); never 101: nothing is upgraded here (the exchange fails, a 502)."""
    return 102 <= status < 200 and version >= (1, 1)


_NOT_STORED = frozenset({"set-cookie", "age"})  # a visitor's own, and recomputed on hits


def stored_headers(
    headers: Headers, received: float, untold: frozenset[str] = frozenset()
) -> Headers:
    """What an entry keeps: end-to-end headers without Set-Cookie or Age (recomputed on hits)
    or the purge tag headers no visitor gets (`untold`), and a Date if the origin sent none:
    RFC 9110 §6.6.1, a cache records when it received the response (`received`, seconds since
    the epoch) so every hit can say how old it is."""
    kept = end_to_end(headers, drop=_NOT_STORED | untold)
    if fields.has(kept, "date"):
        return kept
    return (*kept, ("Date", formatdate(received, usegmt=True)))


# RFC 9111 §3.2: a 304 updates the stored headers, except those the stored body depends on.
_NOT_REFRESHED = frozenset(
    {"content-length", "content-encoding", "content-range", "set-cookie", "age"}
)


def refreshed_headers(
    stored: Headers, fresh: Headers, untold: frozenset[str] = frozenset()
) -> Headers:
    """The stored headers updated from a 304's (RFC 9111 §3.2, §4.3.4): each field the 304
    carries replaces the stored field lines of that name; hop-by-hop fields, Set-Cookie, Age and
    the fields describing the stored body (Content-Length, -Encoding, -Range) are not taken.
    The purge tag headers no visitor gets (`untold`) are kept from neither."""
    update = end_to_end(fresh, drop=_NOT_REFRESHED | untold)
    replaced = {n.lower() for n, _ in update} | untold
    return fields.without(stored, replaced) + update


def cache_status(hit: bool, *, fwd: str = "", stored: bool = False, detail: str = "") -> str:
    """An RFC 9211 Cache-Status member for this cache, named "sidecache"."""
    if hit:
        return "sidecache; hit"
    value = f"sidecache; fwd={fwd}"
    if stored:
        value += "; stored"
    if detail:
        value += f'; detail="{detail}"'
    return value
