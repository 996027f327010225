"""Pin proxy.metrics: a snapshot rendered by prometheus_client, read back by its parsers."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from proxy.counters import Counters, Snapshot, counts_only, merge
from proxy.exchange import CacheResult, Outcome
from proxy.metrics import render
from proxy.store import StoreStats
from proxy.view import RequestView

VIEW = RequestView("GET", "/", ())
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot() -> Snapshot:
    counters = Counters()
    outcomes = [
        (CacheResult.HIT, "pages", ""),
        (CacheResult.HIT, "pages", ""),
        (CacheResult.HIT, "pages", "coalesced"),
        (CacheResult.MISS, "pages", "stored"),
        (CacheResult.MISS, "pages", "set-cookie"),
        (CacheResult.PASS, "-", "no-rule"),
        (CacheResult.STALE, "pages", "stale-while-revalidate"),
        (CacheResult.ERROR, "pages", "upstream-timeout"),
        (CacheResult.HIT, 'odd "rule"\\', ""),
    ]
    for cache, rule, detail in outcomes:
        counters.count(VIEW, Outcome(200, cache, detail, rule), 0.0)
    for seconds in (0.003, 0.02, 0.02, 45.0):
        counters.upstream.answered(seconds)
    counters.upstream.failed("upstream-timeout")
    stats = StoreStats(2, 4096, 100, 1 << 20, 0, 0, 0, 7)
    return counters.snapshot({"default": stats}, 4)


def samples(text: str, parse: object = text_string_to_metric_families) -> Samples:
    assert callable(parse)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in parse(text)
        for s in family.samples
    }


def test_every_family_renders_and_parses_back() -> None:
    body, content_type = render(snapshot())
    got = samples(body.decode())
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    expected = {
        ("sidecache_requests_total", (("cache", "HIT"), ("rule", "pages"))): 3,
        ("sidecache_requests_total", (("cache", "MISS"), ("rule", "pages"))): 2,
        ("sidecache_requests_total", (("cache", "PASS"), ("rule", "-"))): 1,
        ("sidecache_requests_total", (("cache", "STALE"), ("rule", "pages"))): 1,
        ("sidecache_requests_total", (("cache", "ERROR"), ("rule", "pages"))): 1,
        ("sidecache_requests_total", (("cache", "HIT"), ("rule", 'odd "rule"\\'))): 1,
        ("sidecache_not_cached_total", (("cache", "MISS"), ("reason", "set-cookie"))): 1,
        ("sidecache_not_cached_total", (("cache", "PASS"), ("reason", "no-rule"))): 1,
        ("sidecache_coalesced_total", ()): 1,
        ("sidecache_stale_served_total", (("reason", "stale-while-revalidate"),)): 1,
        ("sidecache_store_bytes", (("cache", "default"),)): 4096,
        ("sidecache_store_items", (("cache", "default"),)): 2,
        ("sidecache_store_max_bytes", (("cache", "default"),)): 1 << 20,
        ("sidecache_store_max_items", (("cache", "default"),)): 100,
        ("sidecache_evictions_total", (("cache", "default"),)): 7,
        ("sidecache_upstream_errors_total", (("kind", "upstream-timeout"),)): 1,
        ("sidecache_client_connections", ()): 4,
    }
    assert {key: got.get(key) for key in expected} == expected
    assert len([k for k in got if k[0] == "sidecache_requests_total"]) == 6


def test_the_histogram_buckets_are_cumulative_with_count_and_sum() -> None:
    # the format's histogram: bucket `le` holds every value up to it, +Inf all of them
    got = samples(render(snapshot())[0].decode())
    name = "sidecache_upstream_request_duration_seconds"

    def bucket(le: str) -> float:
        return got[(f"{name}_bucket", (("le", le),))]

    les = ("0.005", "0.01", "0.025", "30.0", "60.0", "+Inf")
    assert [bucket(le) for le in les] == [1, 1, 3, 3, 4, 4]
    assert got[(f"{name}_count", ())] == 4
    assert got[(f"{name}_sum", ())] == 45.043


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    body, content_type = render(snapshot(), "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    got = samples(body.decode(), openmetrics_families)
    assert got[("sidecache_requests_total", (("cache", "HIT"), ("rule", "pages")))] == 3


def test_an_empty_snapshot_renders_the_unlabelled_families_at_zero() -> None:
    got = samples(render(Counters().snapshot({}, 0))[0].decode())
    assert got[("sidecache_coalesced_total", ())] == 0
    assert got[("sidecache_client_connections", ())] == 0
    assert got[("sidecache_upstream_request_duration_seconds_count", ())] == 0


def test_the_redis_tier_is_shown_only_with_one_and_summed_over_workers() -> None:
    """Each worker's tier counts are added up; `up` counts the workers whose tier is up, and
    a gone worker's counts stay while its `up` does not (counts_only)."""
    tier = {"hits": 3, "misses": 1, "errors": 2, "writes": 5, "purges_received": 1, "up": 1}
    one = Counters().snapshot({}, 0, tier)
    other = Counters().snapshot({}, 0, {**tier, "up": 0})
    got = samples(render(merge([one, counts_only(other), one]))[0].decode())
    none = samples(render(Counters().snapshot({}, 0))[0].decode())

    assert got[("sidecache_redis_up", ())] == 2
    assert got[("sidecache_redis_hits_total", ())] == 9
    assert got[("sidecache_redis_errors_total", ())] == 6
    assert got[("sidecache_redis_purges_received_total", ())] == 3
    assert got[("sidecache_redis_skipped_total", ())] == 0  # a count not in the snapshot
    assert not [name for name, _ in none if name.startswith("sidecache_redis")]
