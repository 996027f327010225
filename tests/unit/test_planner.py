"""planner.plan: the state of one lookup, driven directly (issue 13)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxy.freshness import NO_DIRECTIVES, RequestDirectives
from proxy.planner import (
    Fill,
    Hit,
    NotCached,
    Partial,
    PassPersonal,
    Plan,
    RangeToApp,
    Revalidate,
    ServeStale,
    plan,
    servable,
    usable,
)
from proxy.store import CachedResponse

NOW = 100.0


def entry(
    fresh_until: float, *, etag: bool = False, swr: float = 0.0, must: bool = False
) -> CachedResponse:
    headers = (("ETag", '"v1"'),) if etag else ()
    return CachedResponse(
        200, "OK", headers, b"body", 50.0, 10_000.0, fresh_until=fresh_until,
        must_revalidate=must, stale_while_revalidate=swr,
    )  # fmt: skip


FRESH = entry(NOW + 10)
FRESH_404 = replace(FRESH, status=404, reason="Not Found")
STALE = entry(NOW - 10)
STALE_ETAG = entry(NOW - 10, etag=True)
STALE_SWR = entry(NOW - 10, swr=60, etag=True)
ONLY_IF_CACHED = RequestDirectives(only_if_cached=True)
NO_CACHE = RequestDirectives(no_cache=True)
MAX_STALE = RequestDirectives(max_stale=60)
ANY = NO_DIRECTIVES  # a request without Cache-Control


@pytest.mark.parametrize(
    ("stored", "asked", "ranged", "personal", "expected"),
    [
        pytest.param(FRESH, ANY, None, False, Hit(FRESH), id="fresh-hit"),
        pytest.param(FRESH, ANY, None, True, Hit(FRESH), id="stored-beats-personal"),
        pytest.param(FRESH, ANY, "bytes=0-1", False, Partial(FRESH, "bytes=0-1"), id="range"),
        # RFC 9110 §14.2: ranges are of a 200's representation; a stored 404 answers whole
        pytest.param(FRESH_404, ANY, "bytes=0-1", False, Hit(FRESH_404), id="range-of-a-404"),
        pytest.param(STALE, ANY, "bytes=0-1", False, RangeToApp(), id="range-stale"),
        pytest.param(None, ANY, "bytes=0-1", False, RangeToApp(), id="range-none"),
        pytest.param(None, ONLY_IF_CACHED, None, False, NotCached(), id="only-if-cached"),
        pytest.param(STALE_SWR, ANY, None, False, ServeStale(STALE_SWR), id="swr"),
        pytest.param(STALE_SWR, NO_CACHE, None, False, Revalidate(STALE_SWR), id="swr-no-cache"),
        pytest.param(STALE_SWR, ANY, None, True, ServeStale(STALE_SWR), id="swr-personal"),
        pytest.param(STALE_ETAG, ANY, None, True, PassPersonal(), id="personal"),
        pytest.param(STALE_ETAG, ANY, None, False, Revalidate(STALE_ETAG), id="revalidate"),
        pytest.param(STALE, ANY, None, False, Fill(STALE), id="fill-stale"),
        pytest.param(None, ANY, None, False, Fill(None), id="fill"),
        pytest.param(STALE, MAX_STALE, None, False, Hit(STALE), id="max-stale-accepts"),
        pytest.param(FRESH, NO_CACHE, None, False, Fill(FRESH), id="no-cache-refetches"),
    ],
)
def test_plan(
    stored: CachedResponse | None,
    asked: RequestDirectives,
    ranged: str | None,
    personal: bool,
    expected: Plan,
) -> None:
    assert plan(stored, asked, NOW, ranged=ranged, personal=personal) == expected


def test_usable_and_servable() -> None:
    assert usable(FRESH, NO_DIRECTIVES, NOW) and not usable(STALE, NO_DIRECTIVES, NOW)
    assert servable(STALE_SWR, NO_DIRECTIVES, NOW) and not servable(STALE, NO_DIRECTIVES, NOW)
    assert not servable(entry(NOW - 10, swr=60, must=True), NO_DIRECTIVES, NOW)
    assert not servable(None, NO_DIRECTIVES, NOW)
