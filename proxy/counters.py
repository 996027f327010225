"""What /metrics reports, counted as plain ints where things happen, read at scrape time.

Varnish's rule: a counter moves exactly at the transition. A request is counted once, when it
ends, from the `Outcome` the access log gets (`Counters.count` is the front's `log_access`, or
runs just before it): its cache result, rule and detail say hit, miss, pass, stale, error, why
not cached and whether it was coalesced, so every number of the request side is read off one
table at scrape time. The upstream client counts its own answers (a duration histogram) and
failures. Nothing here calls prometheus_client: one of its `Counter.labels().inc()` costs a lock
and a few µs, and the hit path is the product (a hit costs one dict update here, ~0.1 µs).

A process's counts leave it as a `Snapshot`, plain JSON-able values, so that a master can ask
each of its workers for theirs and `merge` them; `metrics.py` renders one for Prometheus.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict, TypeVar

from proxy.exchange import CacheResult, Outcome
from proxy.reasons import NotStoredReason, PassReason
from proxy.store import StoreStats
from proxy.view import RequestView

T = TypeVar("T")
HIT, MISS, PASS, STALE = CacheResult.HIT, CacheResult.MISS, CacheResult.PASS, CacheResult.STALE
COALESCED = "coalesced"  # the detail of a request answered by another one's fill (handler.py)
# The details that say why a request was not cached: decide's (a pass) and a fill's (not stored).
WHY_NOT = {
    PASS.value: frozenset(r.value for r in PassReason),
    MISS.value: frozenset(r.value for r in NotStoredReason),
}

# Upstream answer times in seconds (to the status line and headers): from a few ms (an app
# answering from its own cache) to the default read_timeout's 30 s and past it (a larger one).
UPSTREAM_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HistogramSnapshot(TypedDict):
    bounds: list[float]  # upper bounds ("le"), ascending; +Inf is implied
    counts: list[int]  # per bucket, not cumulative: len(bounds) + 1, the last one past them all
    sum: float


class CacheSnapshot(TypedDict):
    items: int
    bytes: int
    max_items: int
    max_bytes: int
    evictions: int


class Snapshot(TypedDict):
    requests: dict[str, dict[str, dict[str, int]]]  # cache result → rule → detail → requests
    upstream_errors: dict[str, int]  # UpstreamError.kind → failures
    upstream_seconds: HistogramSnapshot
    caches: dict[str, CacheSnapshot]  # by the named cache
    connections: int  # client connections open
    # The shared tier's (store/redis_tier.py TierCounts, and "up": 1 while its circuit is up);
    # {} without [redis].
    redis: dict[str, int]


class Histogram:
    """Fixed buckets, counted per bucket (cumulated when rendered): one bisect per value."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = UPSTREAM_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is at least `value` (Prometheus's
        `le`: a value equal to a bound is in that bound's bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> HistogramSnapshot:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}


class UpstreamCounts:
    """The upstream client's own: how long answers took, and failures by kind."""

    __slots__ = ("errors", "seconds")

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.seconds = Histogram()

    def answered(self, seconds: float) -> None:
        self.seconds.observe(seconds)

    def failed(self, kind: str) -> None:
        _bump(self.errors, kind, 1)


class Counters:
    """One process's counts. Requests are keyed by what their `Outcome` says; a plain hit (no
    detail), the request the product is for, is counted by rule alone: one dict update, no
    tuple made, no enum hashed (an enum's hash is a Python call)."""

    __slots__ = ("evicted", "hits", "requests", "then", "upstream")

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}  # plain hits by rule
        self.requests: dict[tuple[CacheResult, str, str], int] = {}  # (result, rule, detail)
        self.upstream = UpstreamCounts()
        # Evictions of stores a reload replaced, by cache: their own counts are gone with them.
        self.evicted: dict[str, int] = {}
        # The access log's writer, called after the count (None: the log is off): one call
        # fewer per request than a function calling both.
        self.then: Callable[[RequestView, Outcome, float], None] | None = None

    def count(self, view: RequestView, outcome: Outcome, seconds: float) -> None:
        """A request ended (the access log's signature: it stands in for it)."""
        if outcome.cache is HIT and not outcome.detail:
            hits, rule = self.hits, outcome.rule
            hits[rule] = hits.get(rule, 0) + 1
        else:
            requests = self.requests
            key = (outcome.cache, outcome.rule, outcome.detail)
            requests[key] = requests.get(key, 0) + 1
        then = self.then
        if then is not None:
            then(view, outcome, seconds)

    def retire(self, cache: str, stats: StoreStats) -> None:
        """A reload dropped this cache's store: keep its evictions (a counter never goes down)."""
        _bump(self.evicted, cache, stats.evictions)

    def snapshot(
        self,
        stores: Mapping[str, StoreStats],
        connections: int,
        redis: Mapping[str, int] | None = None,
    ) -> Snapshot:
        """The counts now, with the stores' sizes, the open connections and the shared tier's
        counts (when there is one), as plain values."""
        requests: dict[str, dict[str, dict[str, int]]] = {}
        for rule, n in self.hits.items():
            _add(requests, HIT.value, rule, "", n)
        for (cache, rule, detail), n in self.requests.items():
            _add(requests, cache.value, rule, detail, n)
        caches = {name: _cache(stats, self.evicted.get(name, 0)) for name, stats in stores.items()}
        return {
            "requests": requests,
            "upstream_errors": dict(self.upstream.errors),
            "upstream_seconds": self.upstream.seconds.snapshot(),
            "caches": caches,
            "connections": connections,
            "redis": dict(redis or {}),
        }


def _add(
    requests: dict[str, dict[str, dict[str, int]]], cache: str, rule: str, detail: str, n: int
) -> None:
    _bump(requests.setdefault(cache, {}).setdefault(rule, {}), detail, n)


def _cache(stats: StoreStats, evicted: int) -> CacheSnapshot:
    return {
        "items": stats.items,
        "bytes": stats.bytes,
        "max_items": stats.max_items,
        "max_bytes": stats.max_bytes,
        "evictions": stats.evictions + evicted,
    }


def empty() -> Snapshot:
    return Counters().snapshot({}, 0)


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots (a master's workers): every count, size and
    connection added up by its labels. Upstream histograms are added bucket by bucket; one
    with other bounds than the first (a worker started on newer code) is left out of it."""
    total = empty()
    requests, caches = total["requests"], total["caches"]
    histogram: HistogramSnapshot | None = None
    for one in snapshots:
        for cache, rules in one["requests"].items():
            for rule, details in rules.items():
                for detail, n in details.items():
                    _add(requests, cache, rule, detail, n)
        _sum_into(total["upstream_errors"], one["upstream_errors"])
        histogram = _add_histogram(histogram, one["upstream_seconds"])
        for name, cache_snapshot in one["caches"].items():
            _add_cache(caches, name, cache_snapshot)
        total["connections"] += one["connections"]
        _sum_into(total["redis"], one["redis"])
    if histogram is not None:
        total["upstream_seconds"] = histogram
    return total


class WorkerTotals:
    """A master's sum of its workers' snapshots, which must never go down while it runs.

    Summing only the workers that answer a scrape would make every total drop when one is
    late or has been started again, and Prometheus reads any drop as a reset of the whole
    series (rate() would then count the other workers' totals again). So each worker's last
    snapshot is kept by pid and summed even when it did not answer this time; a worker that
    is gone (its pid no longer serving) leaves its counters in `retired`, without its sizes
    and connections. What a worker counted after its last scrape and before it died is lost;
    nothing is counted twice."""

    def __init__(self) -> None:
        self.last: dict[int, Snapshot] = {}
        self.retired = empty()

    def update(self, answers: Mapping[int, Snapshot], alive: Iterable[int]) -> Snapshot:
        """Take the snapshots that came (by pid), retire the workers not `alive`, and return
        the total."""
        self.last.update(answers)
        living = set(alive)
        for pid in [pid for pid in self.last if pid not in living]:
            self.retired = merge([self.retired, counts_only(self.last.pop(pid))])
        return merge([self.retired, *self.last.values()])


def as_snapshot(answer: object) -> Snapshot | None:
    """A worker's answer to "metrics" when it is a snapshot (it has every field); None for
    anything else (`{"error": ...}` from a worker that failed to answer)."""
    if isinstance(answer, dict) and set(Snapshot.__annotations__) <= set(answer):
        return answer  # type: ignore[return-value]  # our own worker's snapshot
    return None


def counts_only(snapshot: Snapshot) -> Snapshot:
    """`snapshot` without what a gone process no longer holds: its stores' sizes and bounds
    and its connections (gauges), keeping every counter."""
    caches: dict[str, CacheSnapshot] = {
        name: {"items": 0, "bytes": 0, "max_items": 0, "max_bytes": 0, "evictions": c["evictions"]}
        for name, c in snapshot["caches"].items()
    }
    redis = {name: n for name, n in snapshot["redis"].items() if name != "up"}
    return {**snapshot, "caches": caches, "connections": 0, "redis": redis}


def _sum_into(total: dict[str, int], one: Mapping[str, int]) -> None:
    for name, n in one.items():
        _bump(total, name, n)


def _add_histogram(total: HistogramSnapshot | None, one: HistogramSnapshot) -> HistogramSnapshot:
    if total is None:
        return {"bounds": list(one["bounds"]), "counts": list(one["counts"]), "sum": one["sum"]}
    if total["bounds"] != one["bounds"] or len(total["counts"]) != len(one["counts"]):
        return total
    total["counts"] = [a + b for a, b in zip(total["counts"], one["counts"], strict=True)]
    total["sum"] += one["sum"]
    return total


def _add_cache(caches: dict[str, CacheSnapshot], name: str, one: CacheSnapshot) -> None:
    kept = caches.get(name)
    caches[name] = (
        one
        if kept is None
        else {
            "items": kept["items"] + one["items"],
            "bytes": kept["bytes"] + one["bytes"],
            "max_items": kept["max_items"] + one["max_items"],
            "max_bytes": kept["max_bytes"] + one["max_bytes"],
            "evictions": kept["evictions"] + one["evictions"],
        }
    )


@dataclass
class RequestTotals:
    """The request side of a snapshot as the metrics show it."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (cache, rule)
    not_cached: dict[tuple[str, str], int] = field(default_factory=dict)  # (reason, cache)
    stale: dict[str, int] = field(default_factory=dict)  # the stale answer's detail
    coalesced: int = 0


def request_totals(snapshot: Snapshot) -> RequestTotals:
    """Each request once in `requests`; in `not_cached` when it was a pass (its detail a
    PassReason) or a fill not stored (a NotStoredReason); in `stale` when a stale entry
    answered; in `coalesced` when another request's fill answered it."""
    totals = RequestTotals()
    for cache, rules in snapshot["requests"].items():
        why_not = WHY_NOT.get(cache, frozenset())
        for rule, details in rules.items():
            totals.requests[(cache, rule)] = sum(details.values())
            for detail, n in details.items():
                if detail in why_not:
                    _bump(totals.not_cached, (detail, cache), n)
                elif cache == STALE:
                    _bump(totals.stale, detail, n)
                if detail == COALESCED:
                    totals.coalesced += n
    return totals


def _bump(counts: dict[T, int], key: T, n: int) -> None:
    counts[key] = counts.get(key, 0) + n
