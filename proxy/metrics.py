"""A `counters.Snapshot` in the Prometheus exposition format, by prometheus_client.

The library writes the format (names, label escaping, cumulative histogram buckets, the text or
OpenMetrics flavour the scraper's Accept asks for); the numbers are ours, counted as plain ints
(counters.py), so the collector below only reads a snapshot: nothing of prometheus_client runs
on a request. It is registered on a registry of its own per scrape, never the library's global
one (whose default process and platform collectors would describe the master, not the workers).

The families, and how each is read off the snapshot:

    sidecache_requests_total{cache,rule}        every request, by X-Cache value and rule
    sidecache_not_cached_total{reason,cache}    a PassReason (cache="PASS") or NotStoredReason
                                                (cache="MISS") value: why it was not cached
    sidecache_coalesced_total                   answered by another request's fill
    sidecache_stale_served_total{reason}        answered by a stale entry, and why it could be
    sidecache_store_bytes{cache}, _items{cache}, _max_bytes{cache}, _max_items{cache}
    sidecache_evictions_total{cache}            entries pushed out by the items or bytes bound
    sidecache_upstream_request_duration_seconds (histogram) until the app's status and headers
    sidecache_upstream_errors_total{kind}       upstream-refused, -timeout, -error
    sidecache_client_connections                client connections open
    sidecache_redis_up                          with [redis]: processes whose tier is up
    sidecache_redis_TOTAL_total                 with [redis]: the tier's counts (REDIS_COUNTS)
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from proxy.counters import HistogramSnapshot, Snapshot, request_totals

# The shared tier's counters (store/redis_tier.py TierCounts), as sidecache_redis_NAME_total.
REDIS_COUNTS = {
    "hits": "Entries found in Redis (a miss in memory answered from Redis).",
    "misses": "Lookups in Redis that found nothing usable.",
    "skipped": "Calls to Redis not made: the circuit was open.",
    "errors": "Calls to Redis that failed or timed out.",
    "undecodable": "Values in Redis this version cannot read (counted as misses).",
    "writes": "Entries written to Redis.",
    "writes_dropped": "Writes to Redis dropped (queue full, circuit open, failure).",
    "deletes": "Keys deleted from Redis (invalidation, purge).",
    "purges_received": "Purges other instances published, applied to this memory.",
}


class SnapshotCollector:
    """A prometheus_client collector (`collect` yields metric families) over one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._caches()
        yield from self._upstream()
        yield GaugeMetricFamily(
            "sidecache_client_connections",
            "Client connections open.",
            value=self.snapshot["connections"],
        )
        yield from self._redis()

    def _redis(self) -> Iterator[Metric]:
        redis = self.snapshot["redis"]
        if not redis:  # no [redis]
            return
        yield GaugeMetricFamily(
            "sidecache_redis_up",
            "Processes whose Redis tier is up (its circuit closed); 0: memory and the app serve.",
            value=redis.get("up", 0),
        )
        for name, text in REDIS_COUNTS.items():
            yield CounterMetricFamily(
                f"sidecache_redis_{name}_total", text, value=redis.get(name, 0)
            )

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "sidecache_requests_total",
            "Requests, by what the cache did (X-Cache) and the rule that decided.",
            labels=["cache", "rule"],
        )
        not_cached = CounterMetricFamily(
            "sidecache_not_cached_total",
            "Requests passed (cache=PASS, a PassReason) or filled and not stored "
            "(cache=MISS, a NotStoredReason), by reason.",
            labels=["reason", "cache"],
        )
        stale = CounterMetricFamily(
            "sidecache_stale_served_total",
            "Requests answered by a stale entry, by what allowed it.",
            labels=["reason"],
        )
        totals = request_totals(self.snapshot)
        for (cache, rule), n in sorted(totals.requests.items()):
            requests.add_metric([cache, rule], n)
        for (reason, cache), n in sorted(totals.not_cached.items()):
            not_cached.add_metric([reason, cache], n)
        for reason, n in sorted(totals.stale.items()):
            stale.add_metric([reason], n)
        yield requests
        yield not_cached
        yield CounterMetricFamily(
            "sidecache_coalesced_total",
            "Requests that waited for another request's fill of their key and got its answer.",
            value=totals.coalesced,
        )
        yield stale

    def _caches(self) -> Iterator[Metric]:
        caches = sorted(self.snapshot["caches"].items())
        gauges = (
            ("sidecache_store_bytes", "Bytes held by the named cache.", "bytes"),
            ("sidecache_store_items", "Entries held by the named cache.", "items"),
            ("sidecache_store_max_bytes", "The named cache's max_bytes.", "max_bytes"),
            ("sidecache_store_max_items", "The named cache's items bound.", "max_items"),
        )
        for name, text, field in gauges:
            gauge = GaugeMetricFamily(name, text, labels=["cache"])
            for cache, values in caches:
                gauge.add_metric([cache], values[field])  # type: ignore[literal-required]
            yield gauge
        evictions = CounterMetricFamily(
            "sidecache_evictions_total",
            "Entries the named cache pushed out to make room (its items or bytes bound).",
            labels=["cache"],
        )
        for cache, values in caches:
            evictions.add_metric([cache], values["evictions"])
        yield evictions

    def _upstream(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(
            "sidecache_upstream_request_duration_seconds",
            "Time from asking the upstream to its final status line and headers.",
            buckets=_buckets(self.snapshot["upstream_seconds"]),
            sum_value=self.snapshot["upstream_seconds"]["sum"],
        )
        errors = CounterMetricFamily(
            "sidecache_upstream_errors_total",
            "Upstream requests that failed (before or during the answer), by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(self.snapshot["upstream_errors"].items()):
            errors.add_metric([kind], n)
        yield errors


def _buckets(histogram: HistogramSnapshot) -> list[tuple[str, float]]:
    """Cumulative buckets as the format has them, the last one +Inf."""
    bounds = [*(repr(float(b)) for b in histogram["bounds"]), "+Inf"]
    buckets, running = [], 0
    for bound, n in zip(bounds, histogram["counts"], strict=True):
        running += n
        buckets.append((bound, float(running)))
    return buckets


def render(snapshot: Snapshot, accept: str = "") -> tuple[bytes, str]:
    """The body and Content-Type for a scraper whose Accept header is `accept`: the text
    format, or OpenMetrics when asked for (as prometheus_client's own handlers choose)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type
