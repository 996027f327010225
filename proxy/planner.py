"""The lookup planner: what a cache lookup does with what the store holds. Pure.

`plan` turns (the stored entry, the request's Cache-Control, the time, whether it asks for a
range, whether its key is marked personal) into one state, as hishel's specification does; the
handler turns each state into I/O with a `match` that ends in `assert_never`. The freshness
tests the synchronous hit path uses (`usable`) are the same functions, so the two paths cannot
disagree about what may be served.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.freshness import NO_DIRECTIVES, RequestDirectives, acceptable
from proxy.rules import Rule
from proxy.store import CachedResponse


@dataclass(frozen=True, slots=True)
class Hit:
    """A usable entry answers (a 304 when the client's copy is current)."""

    entry: CachedResponse


@dataclass(frozen=True, slots=True)
class Partial:
    """A usable entry answers a Range request (RFC 9110 §14)."""

    entry: CachedResponse
    wanted: str


@dataclass(frozen=True, slots=True)
class RangeToApp:
    """A Range request with nothing usable stored: partial answers are never stored."""


@dataclass(frozen=True, slots=True)
class NotCached:
    """only-if-cached and nothing usable: 504 without asking the app (RFC 9111 §5.2.1.7)."""


@dataclass(frozen=True, slots=True)
class ServeStale:
    """Stale within stale-while-revalidate: it answers, one refresh runs behind (RFC 5861)."""

    entry: CachedResponse


@dataclass(frozen=True, slots=True)
class PassPersonal:
    """The key is marked personal (hit-for-pass): the visitor's own request goes."""


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Stale with a validator: ask the app whether it changed (RFC 9111 §4.3)."""

    entry: CachedResponse


@dataclass(frozen=True, slots=True)
class Fill:
    """Nothing usable: fetch as a brand-new visitor would; `stale` may stand in on failure."""

    stale: CachedResponse | None


Plan = Hit | Partial | RangeToApp | NotCached | ServeStale | PassPersonal | Revalidate | Fill


def plan(
    entry: CachedResponse | None,
    asked: RequestDirectives,
    now: float,
    *,
    ranged: str | None,
    personal: bool,
) -> Plan:
    """The state of one lookup, in order: a usable entry answers (a range of it, for a Range
    request, when it is a 200: ranges are of a 200's representation, and a server may ignore
    Range, RFC 9110 §14.2, as nginx does for other statuses); a Range request goes to the app
    otherwise; only-if-cached gets a 504; a stale
    entry within stale-while-revalidate answers while it is refreshed; a personal key is a
    pass; a stale entry with a validator is revalidated; anything else is filled."""
    if entry is not None and usable(entry, asked, now):
        return Hit(entry) if ranged is None or entry.status != 200 else Partial(entry, ranged)
    if ranged is not None:
        return RangeToApp()
    if asked.only_if_cached:
        return NotCached()
    if (
        entry is not None
        and not asked.no_cache
        and within(entry, entry.stale_while_revalidate, now)
    ):
        return ServeStale(entry)
    if personal:
        return PassPersonal()
    if entry is not None and (entry.etag or entry.last_modified):
        return Revalidate(entry)
    return Fill(entry)


def usable(entry: CachedResponse, asked: RequestDirectives, now: float) -> bool:
    """Fresh, or acceptable to what the request's Cache-Control asks (RFC 9111 §4.2)."""
    if asked is NO_DIRECTIVES:
        return now < entry.fresh_until
    age = entry.initial_age + max(0.0, now - entry.stored_at)
    fresh_for = age + entry.fresh_until - now
    return acceptable(age, fresh_for, asked, entry.must_revalidate)


def servable(entry: CachedResponse | None, asked: RequestDirectives, now: float) -> bool:
    """Usable, or stale within its stale-while-revalidate window: answerable at once."""
    if entry is None:
        return False
    if usable(entry, asked, now):
        return True
    return not asked.no_cache and within(entry, entry.stale_while_revalidate, now)


def within(entry: CachedResponse, window: float, now: float) -> bool:
    """Stale by less than `window` seconds, and allowed to be served stale at all."""
    return window > 0 and not entry.must_revalidate and now < entry.fresh_until + window


def stand_in(
    entry: CachedResponse | None, rule: Rule, now: float, *, unreachable: bool
) -> str | None:
    """Why `entry` may answer instead of a failed upstream exchange, or None. Within its
    stale-if-error window (RFC 5861), for a 5xx or no answer at all; and, with the rule's
    `stale_if_unreachable` (shared mode's default), for as long as it is kept when the upstream
    gave no answer (refused, closed, timed out: RFC 9111 §4.2.4 lets a disconnected cache serve
    stale). Never what must be revalidated (must-/proxy-revalidate, s-maxage, no-cache)."""
    if entry is None or entry.must_revalidate:
        return None
    if within(entry, entry.stale_if_error, now):
        return "stale-if-error"
    return "stale-if-unreachable" if unreachable and rule.stale_if_unreachable else None
