"""Freshness (RFC 9111 §4.2): how long a stored response may be reused without asking the
origin, how old it is, and whether a request accepts it as it is.

Pure functions over headers and numbers; times are seconds. Wall-clock values (Date, Expires,
when a response arrived) are seconds since the epoch; a store keeps its own monotonic clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from proxy import fields
from proxy.view import Headers

# RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31; §5.1: so is an Age that is.
MAX_DELTA = 2**31
# RFC 9110 §15.1: statuses a cache may give a heuristic freshness lifetime.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
HEURISTIC_FRACTION = 0.1  # §4.2.2: "10% of the time since Last-Modified" is typical
HEURISTIC_MAX = 24 * 3600.0  # and a day at most, as Squid and Traffic Server cap it


class TtlMode(StrEnum):
    FORCE = "force"  # the rule's ttl, whatever the origin says (no-store, private still refuse)
    ORIGIN = "origin"  # the origin's headers; the rule's ttl when they say nothing


@dataclass(frozen=True, slots=True)
class TtlPolicy:
    """How a rule turns a response into a freshness lifetime."""

    mode: TtlMode = TtlMode.FORCE
    ttl: float = 10.0  # FORCE: the lifetime; ORIGIN: used when the origin gives none
    max_ttl: float | None = None  # a cap on whatever lifetime was found
    heuristic: bool = False  # ORIGIN: Last-Modified heuristics (§4.2.2) before the fallback
    keep: float = 600.0  # how long a stale entry is kept: to be revalidated, or for max-stale
    # RFC 5861 windows past freshness; None: the origin's Cache-Control directive decides.
    stale_while_revalidate: float | None = None
    stale_if_error: float | None = None


def delta_seconds(value: str | None) -> int | None:
    """A delta-seconds value (§1.2.2): digits only; None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        return None
    return min(int(value), MAX_DELTA)


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(\d\d):(\d\d):(\d\d)"
# RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms, exactly.
_IMF_FIXDATE = re.compile(rf"{_DAY}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} GMT", re.IGNORECASE)
_RFC850 = re.compile(rf"{_LONG_DAY}, (\d\d)-{_MONTH}-(\d\d) {_TIME} GMT", re.IGNORECASE)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ([ \d]\d) {_TIME} (\d{{4}})", re.IGNORECASE)


def http_date(value: str | None) -> float | None:
    """An HTTP-date as epoch seconds (RFC 9110 §5.6.7: UTC, in one of its three forms, nothing
    looser but the letter case); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if match := _IMF_FIXDATE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
    elif match := _RFC850.fullmatch(value):
        day, month, short_year, hour, minute, second = match.groups()
        # §5.6.7: a two-digit year more than 50 years in the future is in the past century
        year = str(2000 + int(short_year))
        if int(year) > datetime.now(UTC).year + 50:
            year = str(int(year) - 100)
    elif match := _ASCTIME.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
    else:
        return None
    try:
        moment = datetime(
            int(year),
            _MONTHS[month.title()],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, hour 25 ...
        return None
    return moment.timestamp()


def explicit_lifetime(
    directives: Mapping[str, str], headers: Headers, received: float | None = None
) -> float | None:
    """§4.2.1, for a shared cache: s-maxage, then max-age, then Expires minus Date (`received`
    standing in for a missing Date, RFC 9110 §6.6.1). An invalid value makes the response stale
    (lifetime 0); None when the origin says nothing."""
    for name in ("s-maxage", "max-age"):
        if name in directives:
            seconds = delta_seconds(directives[name])
            return 0.0 if seconds is None else float(seconds)
    expires_lines = fields.values(headers, "expires")
    if not expires_lines:
        return None
    if len(expires_lines) > 1:  # §4.2.1: several Expires: stale
        return 0.0
    expires = expires_lines[0]
    expires_at = http_date(expires)
    date = http_date(fields.first(headers, "date"))
    if date is None:
        date = received
    if expires_at is None or date is None:  # §5.3: an invalid Expires ("0") is in the past
        return 0.0
    return max(0.0, expires_at - date)


def heuristic_lifetime(status: int, headers: Headers) -> float | None:
    """§4.2.2: a fraction of the time since Last-Modified, for statuses that allow it."""
    if status not in HEURISTIC_STATUSES:
        return None
    modified = http_date(fields.first(headers, "last-modified"))
    date = http_date(fields.first(headers, "date"))
    if modified is None or date is None or modified >= date:
        return None
    return min(HEURISTIC_MAX, (date - modified) * HEURISTIC_FRACTION)


def lifetime(
    status: int,
    headers: Headers,
    directives: Mapping[str, str],
    policy: TtlPolicy,
    received: float | None = None,
) -> float:
    """The freshness lifetime a rule gives a response (0: stale at once); `received` (epoch
    seconds) stands in for a missing Date."""
    found: float | None = None
    if policy.mode is TtlMode.ORIGIN:
        found = explicit_lifetime(directives, headers, received)
        if found is None and policy.heuristic:
            found = heuristic_lifetime(status, headers)
    if found is None:
        found = policy.ttl
    if "no-cache" in directives:  # §5.2.2.4: may be stored, never reused without validation
        found = 0.0
    if policy.max_ttl is not None:
        found = min(found, policy.max_ttl)
    return max(0.0, found)


def initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """§4.2.3 corrected_initial_age: the larger of what Date implies and what the upstream's
    Age says plus the time the request took."""
    date = http_date(fields.first(headers, "date"))
    # Date has whole seconds: compared at that resolution, a response of this very second is
    # not up to a second old already.
    apparent = max(0.0, int(response_time) - date) if date is not None else 0.0
    age = age_value(fields.first(headers, "age"))
    corrected = age + max(0.0, response_time - request_time)
    return max(apparent, corrected)


def age_value(value: str | None) -> int:
    """The Age a response arrived with (§5.1): its first member if a list came, 0 if invalid."""
    if value is None:
        return 0
    return delta_seconds(value.split(",", 1)[0]) or 0


def has_validator(headers: Headers) -> bool:
    return fields.has(headers, "etag", "last-modified")


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """The request's Cache-Control directives the proxy honours (the rest are ignored)."""

    no_cache: bool = False
    no_store: bool = False
    only_if_cached: bool = False
    max_age: int | None = None
    min_fresh: int | None = None
    max_stale: int | None = None  # MAX_DELTA for a bare max-stale (any staleness)


NO_DIRECTIVES = RequestDirectives()
REQUEST_DIRECTIVES = frozenset(
    {"no-cache", "no-store", "max-age", "min-fresh", "max-stale", "only-if-cached"}
)


def request_directives(
    directives: Mapping[str, str], honoured: frozenset[str]
) -> RequestDirectives:
    """§5.2.1, keeping only the directives the configuration honours."""
    if not directives.keys() & honoured:
        return NO_DIRECTIVES

    def seconds(name: str, bare: int | None = None) -> int | None:
        if name not in honoured or name not in directives:
            return None
        value = directives[name]
        return bare if value == "" and bare is not None else delta_seconds(value)

    return RequestDirectives(
        no_cache="no-cache" in honoured and "no-cache" in directives,
        no_store="no-store" in honoured and "no-store" in directives,
        only_if_cached="only-if-cached" in honoured and "only-if-cached" in directives,
        max_age=seconds("max-age"),
        min_fresh=seconds("min-fresh"),
        max_stale=seconds("max-stale", bare=MAX_DELTA),
    )


def acceptable(
    age: float, fresh_for: float, request: RequestDirectives, must_revalidate: bool
) -> bool:
    """May an entry of this `age` (current_age) with lifetime `fresh_for` answer the request
    without validation? (§4.2, §5.2.1, §5.2.2.2)"""
    if request.no_cache:
        return False
    if request.max_age is not None and age > request.max_age:
        return False
    remaining = fresh_for - age
    if request.min_fresh is not None and remaining < request.min_fresh:
        return False
    if remaining > 0:
        return True
    # Stale: only a request that accepts staleness, for an entry that allows it.
    return request.max_stale is not None and not must_revalidate and -remaining <= request.max_stale


def stale_window(directives: Mapping[str, str], name: str, configured: float | None) -> float:
    """A stale-serving window (RFC 5861): the rule's, else the origin's directive, else 0."""
    if configured is not None:
        return configured
    return float(delta_seconds(directives.get(name)) or 0)
