"""Pin proxy.freshness: RFC 9111 §4.2 lifetimes, §4.2.3 age, and the request directives honoured.

Each case is named after the rule it checks and cites the section it comes from. Dates are
written relative to T0 (Sun, 06 Nov 1994 08:49:37 GMT, the RFCs' own example date).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from proxy.freshness import (
    MAX_DELTA,
    NO_DIRECTIVES,
    REQUEST_DIRECTIVES,
    RequestDirectives,
    TtlMode,
    TtlPolicy,
    acceptable,
    delta_seconds,
    explicit_lifetime,
    has_validator,
    heuristic_lifetime,
    http_date,
    initial_age,
    lifetime,
    request_directives,
)
from proxy.policy import cache_control
from proxy.view import Headers

T0 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
DAY = 24 * 3600.0


def at(offset: float) -> str:
    """The IMF-fixdate `offset` seconds after T0."""
    return formatdate(T0 + offset, usegmt=True)


def date(offset: float = 0) -> tuple[str, str]:
    return ("Date", at(offset))


def cc(value: str) -> tuple[str, str]:
    return ("Cache-Control", value)


# --- delta-seconds (RFC 9111 §1.2.2) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("60", 60, id="digits"),
        pytest.param("0", 0, id="zero"),
        pytest.param(" 60 ", 60, id="surrounding-whitespace-trimmed"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty-is-invalid"),
        # §1.2.2: delta-seconds = 1*DIGIT; anything else is invalid
        pytest.param("-1", None, id="negative-invalid"),
        pytest.param("+5", None, id="sign-invalid"),
        pytest.param("1.5", None, id="fraction-invalid"),
        pytest.param("6e1", None, id="exponent-invalid"),
        pytest.param("5 6", None, id="two-numbers-invalid"),
        pytest.param("\u0663", None, id="non-ascii-digit-invalid"),  # ARABIC-INDIC DIGIT THREE
        pytest.param("\u00b2", None, id="superscript-digit-invalid"),
        # §1.2.2: a value too large to represent is taken as 2^31
        pytest.param("2147483648", MAX_DELTA, id="two-to-the-31"),
        pytest.param("99999999999999999999", MAX_DELTA, id="overflow-capped-at-2^31"),
    ],
)
def test_delta_seconds(value: str | None, expected: int | None) -> None:
    assert delta_seconds(value) == expected


def test_max_delta_is_two_to_the_31() -> None:
    assert MAX_DELTA == 2147483648  # RFC 9111 §1.2.2


# --- HTTP-date (RFC 9110 §5.6.7) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", T0, id="imf-fixdate"),
        # §5.6.7: a recipient MUST accept the obsolete RFC 850 format too
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", T0, id="rfc850-date"),
        pytest.param(at(3600), T0 + 3600, id="an-hour-later"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        # RFC 9111 §5.3: "0" and other invalid dates are not dates
        pytest.param("0", None, id="zero-is-invalid"),
        pytest.param("-1", None, id="minus-one-is-invalid"),
        pytest.param("tomorrow", None, id="text-is-invalid"),
        pytest.param("Sun, 06 Nov 1994 25:49:37 GMT", None, id="hour-25-is-invalid"),
    ],
)
def test_http_date(value: str | None, expected: float | None) -> None:
    assert http_date(value) == expected


@pytest.fixture
def local_zone_five_hours_west() -> Iterator[None]:
    """The process's local zone set to UTC-5 (POSIX TZ, no tzdata needed), restored after."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST+05"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("local_zone_five_hours_west")
def test_http_date_asctime_is_utc_whatever_the_local_zone() -> None:
    # RFC 9110 §5.6.7: asctime-date is the third format a recipient MUST accept, in UTC
    assert http_date("Sun Nov  6 08:49:37 1994") == T0


# --- explicit lifetime (RFC 9111 §4.2.1, shared cache) ------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # §4.2.1: no s-maxage, max-age or Expires: no explicit lifetime (None, not 0)
        pytest.param((), None, id="nothing-said"),
        pytest.param((date(),), None, id="date-alone-says-nothing"),
        pytest.param((date(), cc("public")), None, id="other-directives-say-nothing"),
        # §4.2.1: s-maxage over max-age over Expires, for a shared cache
        pytest.param((cc("max-age=60"),), 60.0, id="max-age"),
        pytest.param((cc("max-age=0"),), 0.0, id="max-age-zero"),
        pytest.param((cc("s-maxage=5, max-age=60"),), 5.0, id="s-maxage-over-max-age"),
        pytest.param((cc("max-age=60, s-maxage=600"),), 600.0, id="s-maxage-over-max-age-longer"),
        pytest.param((cc("s-maxage=5"),), 5.0, id="s-maxage-alone"),
        pytest.param(
            (date(), ("Expires", at(3600)), cc("max-age=60")), 60.0, id="max-age-over-expires"
        ),
        pytest.param(
            (date(), ("Expires", at(3600)), cc("s-maxage=5")), 5.0, id="s-maxage-over-expires"
        ),
        # §4.2.1: Expires minus Date
        pytest.param((date(), ("Expires", at(3600))), 3600.0, id="expires-minus-date"),
        pytest.param((date(100), ("Expires", at(160))), 60.0, id="expires-minus-later-date"),
        pytest.param((date(), ("Expires", at(0))), 0.0, id="expires-equal-date"),
        pytest.param((date(), ("Expires", at(-60))), 0.0, id="expires-before-date-is-zero"),
        pytest.param(
            (date(), ("Expires", at(3600)), cc("public")), 3600.0, id="expires-with-public"
        ),
        # §5.3: an invalid Expires, "0" in particular, means already expired
        pytest.param((date(), ("Expires", "0")), 0.0, id="expires-zero-is-stale"),
        pytest.param((date(), ("Expires", "-1")), 0.0, id="expires-minus-one-is-stale"),
        pytest.param((date(), ("Expires", "soon")), 0.0, id="expires-invalid-is-stale"),
        # product rule: Expires cannot be measured without a (valid) Date: stale
        pytest.param((("Expires", at(3600)),), 0.0, id="expires-without-date-is-stale"),
        pytest.param(
            (("Date", "yesterday"), ("Expires", at(3600))), 0.0, id="expires-invalid-date-stale"
        ),
        # §4.2.1: invalid freshness information (e.g. a non-integer max-age): stale
        pytest.param((cc("max-age=abc"),), 0.0, id="invalid-max-age-is-stale"),
        pytest.param((cc("max-age"),), 0.0, id="max-age-without-value-is-stale"),
        pytest.param((cc("max-age=-1"),), 0.0, id="negative-max-age-is-stale"),
        pytest.param((cc("max-age=1.5"),), 0.0, id="fractional-max-age-is-stale"),
        pytest.param(
            (date(), ("Expires", at(3600)), cc("max-age=abc")),
            0.0,
            id="invalid-max-age-does-not-fall-back-to-expires",
        ),
        pytest.param(
            (cc("s-maxage=abc, max-age=60"),),
            0.0,
            id="invalid-s-maxage-does-not-fall-back-to-max-age",
        ),
        pytest.param(
            (date(), ("Expires", "0"), cc("max-age=60")), 60.0, id="invalid-expires-under-max-age"
        ),
        # §4.2.1: several values for one directive or field: the first occurrence is used
        pytest.param((cc("max-age=60, max-age=5"),), 60.0, id="repeated-max-age-first-wins"),
        pytest.param(
            (cc("max-age=60"), cc("max-age=5")), 60.0, id="max-age-in-two-fields-first-wins"
        ),
        pytest.param(
            # §4.2.1: with more than one Expires a cache may treat the response as stale
            (date(), ("Expires", at(60)), ("Expires", at(3600))),
            0.0,
            id="two-expires-stale",
        ),
        # §5.2: directive names are case-insensitive; either argument form is accepted
        pytest.param((cc("MAX-AGE=60"),), 60.0, id="directive-case-insensitive"),
        pytest.param((cc('max-age="60"'),), 60.0, id="quoted-argument"),
        pytest.param(
            (("DATE", at(0)), ("expires", at(60))), 60.0, id="field-names-case-insensitive"
        ),
        # §1.2.2: a lifetime too large to represent is 2^31
        pytest.param((cc("max-age=99999999999"),), float(MAX_DELTA), id="huge-max-age-capped"),
    ],
)
def test_explicit_lifetime(headers: Headers, expected: float | None) -> None:
    assert explicit_lifetime(cache_control(headers), headers) == expected


# --- heuristic lifetime (RFC 9111 §4.2.2) -------------------------------------------------------


def modified(before_date: float) -> Headers:
    """A Date at T0 and a Last-Modified `before_date` seconds earlier."""
    return (date(), ("Last-Modified", at(-before_date)))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # §4.2.2: a fraction of the time since Last-Modified; 10% is typical
        pytest.param(modified(1000), 100.0, id="ten-percent-of-age-since-modified"),
        pytest.param(modified(10), 1.0, id="ten-percent-of-ten-seconds"),
        # product rule: capped at a day, as Squid and Traffic Server do
        pytest.param(modified(10 * DAY), DAY, id="capped-at-a-day"),
        pytest.param(modified(365 * DAY), DAY, id="a-year-capped-at-a-day"),
        # only when Last-Modified is before Date
        pytest.param(modified(0), None, id="modified-at-date-none"),
        pytest.param(modified(-60), None, id="modified-after-date-none"),
        pytest.param((date(),), None, id="no-last-modified-none"),
        pytest.param((("Last-Modified", at(-1000)),), None, id="no-date-none"),
        pytest.param((date(), ("Last-Modified", "long ago")), None, id="invalid-last-modified"),
        pytest.param((("Date", "now"), ("Last-Modified", at(-1000))), None, id="invalid-date"),
    ],
)
def test_heuristic_lifetime(headers: Headers, expected: float | None) -> None:
    assert heuristic_lifetime(200, headers) == expected


# RFC 9110 §15.1: the statuses that are heuristically cacheable.
HEURISTIC_OK = (200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        *(pytest.param(s, 100.0, id=f"{s}-heuristically-cacheable") for s in HEURISTIC_OK),
        # RFC 9110 §15.1: any other status needs explicit freshness
        *(
            pytest.param(s, None, id=f"{s}-not-heuristically-cacheable")
            for s in (201, 302, 303, 304, 307, 400, 403, 500, 502, 503)
        ),
    ],
)
def test_heuristic_only_for_rfc9110_15_1_statuses(status: int, expected: float | None) -> None:
    assert heuristic_lifetime(status, modified(1000)) == expected


# --- the lifetime a rule gives (TtlPolicy) -----------------------------------------------------

FORCE = TtlPolicy(mode=TtlMode.FORCE, ttl=10.0)
ORIGIN = TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0)
ORIGIN_HEURISTIC = TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0, heuristic=True)


@pytest.mark.parametrize(
    ("status", "headers", "policy", "expected"),
    [
        # product rule: FORCE gives the rule's ttl, whatever the origin says ...
        pytest.param(200, (), FORCE, 10.0, id="force-ttl"),
        pytest.param(200, (cc("max-age=60"),), FORCE, 10.0, id="force-ignores-max-age"),
        pytest.param(200, (cc("max-age=0"),), FORCE, 10.0, id="force-ignores-max-age-zero"),
        pytest.param(200, (cc("s-maxage=600"),), FORCE, 10.0, id="force-ignores-s-maxage"),
        pytest.param(
            200, (date(), ("Expires", "0")), FORCE, 10.0, id="force-ignores-invalid-expires"
        ),
        pytest.param(200, (date(), ("Expires", at(3600))), FORCE, 10.0, id="force-ignores-expires"),
        pytest.param(200, modified(1000), FORCE, 10.0, id="force-ignores-last-modified"),
        # ... except no-cache: stored, never reused without validation (RFC 9111 §5.2.2.4)
        pytest.param(200, (cc("no-cache"),), FORCE, 0.0, id="force-no-cache-is-zero"),
        pytest.param(
            200, (cc("max-age=60, no-cache"),), FORCE, 0.0, id="force-no-cache-with-max-age"
        ),
        pytest.param(
            200,
            (cc('no-cache="Set-Cookie"'),),
            FORCE,
            0.0,
            id="force-qualified-no-cache-is-zero",
        ),
        # product rule: max_ttl caps whatever lifetime was found
        pytest.param(200, (), TtlPolicy(ttl=10.0, max_ttl=4.0), 4.0, id="force-max-ttl-caps-ttl"),
        pytest.param(
            200, (), TtlPolicy(ttl=10.0, max_ttl=60.0), 10.0, id="force-max-ttl-above-ttl"
        ),
        pytest.param(200, (), TtlPolicy(ttl=10.0, max_ttl=0.0), 0.0, id="force-max-ttl-zero"),
        pytest.param(200, (), TtlPolicy(ttl=-5.0), 0.0, id="never-negative"),
        # ORIGIN: the origin's explicit lifetime (RFC 9111 §4.2.1)
        pytest.param(200, (cc("max-age=60"),), ORIGIN, 60.0, id="origin-max-age"),
        pytest.param(200, (cc("s-maxage=5, max-age=60"),), ORIGIN, 5.0, id="origin-s-maxage"),
        pytest.param(
            200, (date(), ("Expires", at(3600))), ORIGIN, 3600.0, id="origin-expires-minus-date"
        ),
        # an explicit zero or invalid value is stale, not "nothing said": no fallback to ttl
        pytest.param(200, (cc("max-age=0"),), ORIGIN, 0.0, id="origin-max-age-zero-no-fallback"),
        pytest.param(200, (cc("max-age=x"),), ORIGIN, 0.0, id="origin-invalid-max-age-stale"),
        pytest.param(200, (date(), ("Expires", "0")), ORIGIN, 0.0, id="origin-expires-zero"),
        pytest.param(200, (("Expires", at(3600)),), ORIGIN, 0.0, id="origin-expires-without-date"),
        # RFC 9111 §5.2.2.4 no-cache wins over any lifetime (§4.2.1: the most restrictive)
        pytest.param(
            200, (cc("max-age=60, no-cache"),), ORIGIN, 0.0, id="origin-no-cache-over-max-age"
        ),
        pytest.param(200, (cc("no-cache"),), ORIGIN, 0.0, id="origin-no-cache-not-fallback"),
        # product rule: ORIGIN falls back to the rule's ttl when the origin says nothing
        pytest.param(200, (), ORIGIN, 10.0, id="origin-nothing-said-falls-back-to-ttl"),
        pytest.param(200, (cc("public"),), ORIGIN, 10.0, id="origin-public-falls-back"),
        pytest.param(200, modified(1000), ORIGIN, 10.0, id="origin-heuristic-off-falls-back"),
        # RFC 9111 §4.2.2: heuristics (when enabled) before the fallback ...
        pytest.param(200, modified(1000), ORIGIN_HEURISTIC, 100.0, id="origin-heuristic"),
        pytest.param(
            200, modified(10 * DAY), ORIGIN_HEURISTIC, DAY, id="origin-heuristic-capped-at-a-day"
        ),
        # ... only when no explicit expiration is given
        pytest.param(
            200,
            (*modified(1000), cc("max-age=60")),
            ORIGIN_HEURISTIC,
            60.0,
            id="origin-explicit-over-heuristic",
        ),
        pytest.param(
            200,
            (*modified(1000), ("Expires", "0")),
            ORIGIN_HEURISTIC,
            0.0,
            id="origin-invalid-expires-over-heuristic",
        ),
        # ... only for RFC 9110 §15.1 statuses; otherwise the fallback
        pytest.param(302, modified(1000), ORIGIN_HEURISTIC, 10.0, id="origin-no-heuristic-for-302"),
        pytest.param(
            200, (date(),), ORIGIN_HEURISTIC, 10.0, id="origin-heuristic-without-last-modified"
        ),
        pytest.param(
            200,
            modified(1000),
            TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0, heuristic=True, max_ttl=30.0),
            30.0,
            id="origin-max-ttl-caps-heuristic",
        ),
        pytest.param(
            200,
            (cc("max-age=60"),),
            TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0, max_ttl=30.0),
            30.0,
            id="origin-max-ttl-caps-max-age",
        ),
        pytest.param(
            200,
            (cc("max-age=20"),),
            TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0, max_ttl=30.0),
            20.0,
            id="origin-max-ttl-above-max-age",
        ),
        pytest.param(
            200,
            (),
            TtlPolicy(mode=TtlMode.ORIGIN, ttl=10.0, max_ttl=4.0),
            4.0,
            id="origin-max-ttl-caps-fallback",
        ),
    ],
)
def test_lifetime(status: int, headers: Headers, policy: TtlPolicy, expected: float) -> None:
    assert lifetime(status, headers, cache_control(headers), policy) == expected


def test_default_policy_is_force_ten_seconds() -> None:
    headers = (cc("max-age=60"),)
    assert lifetime(200, headers, cache_control(headers), TtlPolicy()) == 10.0


# --- initial age (RFC 9111 §4.2.3 corrected_initial_age) ---------------------------------------


@pytest.mark.parametrize(
    ("headers", "request_time", "response_time", "expected"),
    [
        pytest.param((), T0, T0, 0.0, id="nothing-instant-is-zero"),
        # §4.2.3: response_delay = response_time - request_time is counted
        pytest.param((), T0, T0 + 2.5, 2.5, id="response-delay-counted"),
        pytest.param((), T0 + 2.5, T0, 0.0, id="negative-delay-is-zero"),
        # §4.2.3: corrected_age_value = age_value + response_delay
        pytest.param((("Age", "30"),), T0, T0, 30.0, id="age-header"),
        pytest.param((("Age", "30"),), T0, T0 + 2.5, 32.5, id="age-plus-response-delay"),
        pytest.param((("age", "30"),), T0, T0, 30.0, id="age-name-case-insensitive"),
        # §5.1: an invalid Age is ignored (counts 0)
        pytest.param((("Age", "abc"),), T0, T0 + 2.0, 2.0, id="invalid-age-counts-zero"),
        pytest.param((("Age", "-5"),), T0, T0, 0.0, id="negative-age-counts-zero"),
        pytest.param((("Age", "1.5"),), T0, T0, 0.0, id="fractional-age-counts-zero"),
        # an Age that arrives as a list: its first member (what cache-tests' age-parse expects)
        pytest.param((("Age", "5, 6"),), T0, T0, 5.0, id="age-list-first-member"),
        pytest.param((("Age", ""),), T0, T0, 0.0, id="empty-age-counts-zero"),
        # §1.2.2 / §5.1: an Age too large to represent is 2^31
        pytest.param((("Age", "99999999999"),), T0, T0, float(MAX_DELTA), id="huge-age-capped"),
        # §4.2.3: apparent_age = max(0, response_time - date_value)
        pytest.param((date(-100),), T0, T0, 100.0, id="apparent-age-from-date"),
        pytest.param((date(100),), T0, T0, 0.0, id="date-in-future-is-zero"),
        pytest.param((date(100),), T0, T0 + 1.5, 1.5, id="date-in-future-delay-still-counted"),
        pytest.param((("Date", "garbage"),), T0, T0, 0.0, id="invalid-date-ignored"),
        # §4.2.3: corrected_initial_age = max(apparent_age, corrected_age_value)
        pytest.param((date(-100), ("Age", "30")), T0, T0, 100.0, id="apparent-over-corrected-age"),
        pytest.param(
            (date(-10), ("Age", "30")), T0, T0 + 2.0, 32.0, id="corrected-over-apparent-age"
        ),
        # Date has whole seconds: a response of this very second is not up to a second old
        pytest.param((date(),), T0 + 0.75, T0 + 0.75, 0.0, id="date-whole-second-resolution"),
        pytest.param((date(),), T0 + 1.75, T0 + 1.75, 1.0, id="date-one-whole-second-old"),
        pytest.param((date(),), T0, T0 + 0.75, 0.75, id="sub-second-delay-still-counted"),
    ],
)
def test_initial_age(
    headers: Headers, request_time: float, response_time: float, expected: float
) -> None:
    assert initial_age(headers, request_time, response_time) == expected


# --- validators (RFC 9110 §8.8) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param((("ETag", '"x"'),), True, id="etag"),
        pytest.param((("Last-Modified", at(0)),), True, id="last-modified"),
        pytest.param((("etag", '"x"'),), True, id="name-case-insensitive"),
        pytest.param((("LAST-MODIFIED", at(0)),), True, id="last-modified-upper-case"),
        pytest.param((), False, id="no-headers"),
        pytest.param((date(), cc("max-age=60")), False, id="no-validator"),
        pytest.param((("X-ETag", '"x"'),), False, id="lookalike-name-is-not-a-validator"),
    ],
)
def test_has_validator(headers: Headers, expected: bool) -> None:
    assert has_validator(headers) is expected


# --- request directives (RFC 9111 §5.2.1), honoured subset ---------------------------------------


@pytest.mark.parametrize(
    ("value", "honoured", "expected"),
    [
        pytest.param("", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="none"),
        # §5.2.1.4 no-cache, §5.2.1.5 no-store, §5.2.1.7 only-if-cached
        pytest.param(
            "no-cache", REQUEST_DIRECTIVES, RequestDirectives(no_cache=True), id="no-cache"
        ),
        pytest.param("No-Cache", REQUEST_DIRECTIVES, RequestDirectives(no_cache=True), id="case"),
        pytest.param(
            "no-store", REQUEST_DIRECTIVES, RequestDirectives(no_store=True), id="no-store"
        ),
        pytest.param(
            "only-if-cached",
            REQUEST_DIRECTIVES,
            RequestDirectives(only_if_cached=True),
            id="only-if-cached",
        ),
        # §5.2.1.1 max-age
        pytest.param("max-age=0", REQUEST_DIRECTIVES, RequestDirectives(max_age=0), id="max-age-0"),
        pytest.param(
            "max-age=60", REQUEST_DIRECTIVES, RequestDirectives(max_age=60), id="max-age-60"
        ),
        pytest.param("max-age", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="max-age-bare-ignored"),
        pytest.param("max-age=x", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="max-age-invalid-ignored"),
        # §5.2.1.3 min-fresh
        pytest.param(
            "min-fresh=10", REQUEST_DIRECTIVES, RequestDirectives(min_fresh=10), id="min-fresh"
        ),
        pytest.param("min-fresh", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="min-fresh-bare-ignored"),
        # §5.2.1.2 max-stale: bare means any staleness; with a value, at most that
        pytest.param(
            "max-stale", REQUEST_DIRECTIVES, RequestDirectives(max_stale=MAX_DELTA), id="max-stale"
        ),
        pytest.param(
            "max-stale=30", REQUEST_DIRECTIVES, RequestDirectives(max_stale=30), id="max-stale-30"
        ),
        pytest.param(
            'max-stale="30"', REQUEST_DIRECTIVES, RequestDirectives(max_stale=30), id="quoted"
        ),
        pytest.param(
            "max-stale=soon", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="max-stale-invalid-ignored"
        ),
        # several directives at once
        pytest.param(
            "no-cache, max-age=5, min-fresh=1, max-stale=2, no-store, only-if-cached",
            REQUEST_DIRECTIVES,
            RequestDirectives(True, True, True, 5, 1, 2),
            id="all-six",
        ),
        # §5.2.3: unrecognised directives are ignored; so are those not honoured by configuration
        pytest.param("no-transform", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="no-transform-ignored"),
        pytest.param("stale-if-error=60", REQUEST_DIRECTIVES, NO_DIRECTIVES, id="unknown-ignored"),
        pytest.param("no-cache", frozenset(), NO_DIRECTIVES, id="nothing-honoured"),
        pytest.param(
            "no-cache, max-age=5",
            frozenset({"max-age"}),
            RequestDirectives(max_age=5),
            id="only-max-age-honoured",
        ),
        pytest.param(
            "max-stale, min-fresh=3, no-store",
            frozenset({"no-cache", "max-age", "only-if-cached"}),
            NO_DIRECTIVES,
            id="none-of-these-honoured",
        ),
        pytest.param(
            "max-stale, no-cache",
            frozenset({"no-cache"}),
            RequestDirectives(no_cache=True),
            id="max-stale-not-honoured",
        ),
    ],
)
def test_request_directives(
    value: str, honoured: frozenset[str], expected: RequestDirectives
) -> None:
    headers: Headers = (cc(value),) if value else ()
    assert request_directives(cache_control(headers), honoured) == expected


def test_all_six_request_directives_are_known() -> None:
    assert (
        frozenset({"no-cache", "no-store", "max-age", "min-fresh", "max-stale", "only-if-cached"})
        == REQUEST_DIRECTIVES
    )


# --- may a stored response answer this request? (RFC 9111 §4.2, §5.2.1, §5.2.2.2) --------------

ANY = NO_DIRECTIVES


@pytest.mark.parametrize(
    ("age", "fresh_for", "asked", "must_revalidate", "expected"),
    [
        # §4.2: fresh while freshness_lifetime > current_age
        pytest.param(5.0, 10.0, ANY, False, True, id="fresh"),
        pytest.param(9.5, 10.0, ANY, False, True, id="fresh-just-before-lifetime"),
        pytest.param(10.0, 10.0, ANY, False, False, id="stale-at-lifetime"),
        pytest.param(11.0, 10.0, ANY, False, False, id="stale"),
        pytest.param(0.0, 0.0, ANY, False, False, id="zero-lifetime-always-stale"),
        # §5.2.2.2 must-revalidate only forbids stale reuse
        pytest.param(5.0, 10.0, ANY, True, True, id="must-revalidate-fresh-ok"),
        # §5.2.1.2 max-stale: bare accepts any staleness
        pytest.param(
            1e9, 10.0, RequestDirectives(max_stale=MAX_DELTA), False, True, id="max-stale-bare"
        ),
        pytest.param(
            10.0, 10.0, RequestDirectives(max_stale=0), False, True, id="max-stale-0-at-lifetime"
        ),
        pytest.param(
            15.0, 10.0, RequestDirectives(max_stale=5), False, True, id="max-stale-5-by-5"
        ),
        pytest.param(
            15.5, 10.0, RequestDirectives(max_stale=5), False, False, id="max-stale-5-by-5.5"
        ),
        # §5.2.2.2 must-revalidate: never stale, whatever the request accepts
        pytest.param(
            11.0,
            10.0,
            RequestDirectives(max_stale=MAX_DELTA),
            True,
            False,
            id="must-revalidate-forbids-stale",
        ),
        # §5.2.1.3 min-fresh: still fresh for at least that long
        pytest.param(5.0, 10.0, RequestDirectives(min_fresh=5), False, True, id="min-fresh-met"),
        pytest.param(
            5.5, 10.0, RequestDirectives(min_fresh=5), False, False, id="min-fresh-not-met"
        ),
        pytest.param(5.0, 10.0, RequestDirectives(min_fresh=0), False, True, id="min-fresh-0"),
        # §5.2.1.1 max-age: age less than or equal to it
        pytest.param(5.0, 10.0, RequestDirectives(max_age=5), False, True, id="max-age-equal"),
        pytest.param(
            5.5, 10.0, RequestDirectives(max_age=5), False, False, id="max-age-exceeded-fresh"
        ),
        pytest.param(0.5, 10.0, RequestDirectives(max_age=0), False, False, id="max-age-0"),
        pytest.param(
            12.0,
            10.0,
            RequestDirectives(max_age=20, max_stale=5),
            False,
            True,
            id="max-age-with-max-stale-accepts-stale",
        ),
        pytest.param(
            12.0, 10.0, RequestDirectives(max_age=20), False, False, id="max-age-not-max-stale"
        ),
        pytest.param(
            30.0,
            10.0,
            RequestDirectives(max_age=20, max_stale=MAX_DELTA),
            False,
            False,
            id="max-age-limits-max-stale",
        ),
        # §5.2.1.4 no-cache: never reused without validation, even fresh
        pytest.param(0.0, 10.0, RequestDirectives(no_cache=True), False, False, id="no-cache"),
        pytest.param(
            0.0,
            10.0,
            RequestDirectives(no_cache=True, max_stale=MAX_DELTA),
            False,
            False,
            id="no-cache-over-max-stale",
        ),
        # no-store and only-if-cached say nothing about freshness
        pytest.param(5.0, 10.0, RequestDirectives(no_store=True), False, True, id="no-store-fresh"),
        pytest.param(
            11.0, 10.0, RequestDirectives(only_if_cached=True), False, False, id="only-if-cached"
        ),
    ],
)
def test_acceptable(
    age: float,
    fresh_for: float,
    asked: RequestDirectives,
    must_revalidate: bool,
    expected: bool,
) -> None:
    assert acceptable(age, fresh_for, asked, must_revalidate) is expected


def test_expires_without_date_counts_from_when_the_response_arrived() -> None:
    # RFC 9110 §6.6.1: a response without Date is dated when it is received; Expires is then
    # measured from that moment rather than read as already past.
    received = time.time()
    headers = (("Expires", formatdate(received + 3600, usegmt=True)),)
    found = explicit_lifetime({}, headers, received)
    assert found is not None and 3599 <= found <= 3601


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Thu, 01 Jan 2050 00:00:00 UTC", id="utc-not-gmt"),
        pytest.param("Thu, 01 Jan 2050 00:00:00 +1000", id="numeric-zone"),
        pytest.param("Thu, 01 Jan 50 00:00:00 GMT", id="two-digit-year-in-imf"),
        pytest.param("Thu 01 Jan 2050 00:00:00 GMT", id="no-comma"),
        pytest.param("Thu, 01  Jan 2050 00:00:00 GMT", id="two-spaces"),
        pytest.param("Thu, 01-Jan-2050 00:00:00 GMT", id="dashes-with-four-digit-year"),
        pytest.param("Thu, 01 Jan 2050 00.00.00 GMT", id="time-periods"),
        pytest.param("Thu, 01 Jan 2050 0:00:00 GMT", id="one-digit-hour"),
        pytest.param("Thu, 31 Feb 2050 00:00:00 GMT", id="no-such-day"),
    ],
)
def test_http_date_accepts_nothing_looser_than_rfc_9110(value: str) -> None:
    # RFC 9110 §5.6.7 forms only (cache-tests' freshness-expires-invalid-* cases); RFC 9111 §5.3
    # then makes such an Expires mean "already expired".
    assert http_date(value) is None


@pytest.mark.parametrize(
    ("value", "year"),
    [
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", 1994, id="rfc850-last-century"),
        pytest.param("Sunday, 06-Nov-44 08:49:37 GMT", 2044, id="rfc850-this-century"),
    ],
)
def test_rfc850_two_digit_years(value: str, year: int) -> None:
    # §5.6.7: a two-digit year more than 50 years in the future is in the past century
    found = http_date(value)
    assert found is not None
    assert time.gmtime(found).tm_year == year


def test_http_date_letter_case_is_forgiven() -> None:
    # RFC 9110 makes the names case-sensitive; cache-tests' expires-parse rates reading them
    # anyway as optimal, and nothing is lost: the value is unambiguous.
    assert http_date("thu, 01 JAN 2050 00:00:00 gmt") == http_date("Thu, 01 Jan 2050 00:00:00 GMT")
