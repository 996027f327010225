"""Pin proxy.counters: requests counted once from their Outcome, the histogram's buckets, a
snapshot's plain values, the sum of workers' snapshots, and what the metrics read off them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.counters import (
    Counters,
    Histogram,
    Snapshot,
    UpstreamCounts,
    WorkerTotals,
    as_snapshot,
    counts_only,
    empty,
    merge,
    request_totals,
)
from proxy.exchange import CacheResult, Outcome
from proxy.store import StoreStats
from proxy.view import RequestView

HIT, MISS, PASS, STALE, ERROR = (
    CacheResult.HIT,
    CacheResult.MISS,
    CacheResult.PASS,
    CacheResult.STALE,
    CacheResult.ERROR,
)
VIEW = RequestView("GET", "/", ())


def counted(*outcomes: tuple[CacheResult, str, str]) -> Snapshot:
    counters = Counters()
    for cache, rule, detail in outcomes:
        counters.count(VIEW, Outcome(200, cache, detail, rule), 0.001)
    return counters.snapshot({}, 0)


def stats(items: int = 0, size: int = 0, evictions: int = 0) -> StoreStats:
    return StoreStats(items, size, 100, 1000, 0, 0, 0, evictions)


@pytest.mark.parametrize(
    ("outcomes", "requests"),
    [
        pytest.param([], {}, id="nothing"),
        pytest.param(
            [(HIT, "r", "")] * 3,
            {"HIT": {"r": {"": 3}}},
            id="plain-hits-by-rule",
        ),
        pytest.param(
            [(HIT, "r", ""), (HIT, "r", "coalesced"), (HIT, "r", "revalidated")],
            {"HIT": {"r": {"": 1, "coalesced": 1, "revalidated": 1}}},
            id="hits-with-a-detail-kept-apart",
        ),
        pytest.param(
            [(MISS, "r", "stored"), (MISS, "r", "no-store"), (PASS, "-", "no-rule")],
            {"MISS": {"r": {"stored": 1, "no-store": 1}}, "PASS": {"-": {"no-rule": 1}}},
            id="miss-and-pass-by-detail",
        ),
        pytest.param(
            [(HIT, "a", ""), (HIT, "b", ""), (ERROR, "a", "upstream-refused")],
            {"HIT": {"a": {"": 1}, "b": {"": 1}}, "ERROR": {"a": {"upstream-refused": 1}}},
            id="rules-apart",
        ),
    ],
)
def test_each_request_is_counted_once_by_its_outcome(
    outcomes: list[tuple[CacheResult, str, str]], requests: dict[str, object]
) -> None:
    # product rule (Varnish's): a counter moves exactly when a request ends, once
    assert counted(*outcomes)["requests"] == requests


@pytest.mark.parametrize(
    ("values", "counts"),
    [
        pytest.param([], [0, 0, 0, 0], id="empty"),
        pytest.param([0.0, 0.1], [2, 0, 0, 0], id="at-or-below-the-first-bound"),
        pytest.param([0.10001, 0.5], [0, 2, 0, 0], id="the-second-bucket"),
        pytest.param([1.0], [0, 0, 1, 0], id="equal-to-a-bound-is-in-it"),
        pytest.param([1.5, 99.0], [0, 0, 0, 2], id="past-every-bound"),
    ],
)
def test_histogram_buckets_hold_values_up_to_their_bound(
    values: list[float], counts: list[int]
) -> None:
    # Prometheus's histogram: bucket `le` counts values less than or equal to its bound
    histogram = Histogram((0.1, 0.5, 1.0))
    for value in values:
        histogram.observe(value)
    assert histogram.snapshot() == {
        "bounds": [0.1, 0.5, 1.0],
        "counts": counts,
        "sum": pytest.approx(sum(values)),
    }


def test_upstream_counts_answers_and_failures_by_kind() -> None:
    upstream = UpstreamCounts()
    upstream.answered(0.002)
    upstream.failed("upstream-timeout")
    upstream.failed("upstream-timeout")
    upstream.failed("upstream-refused")
    assert upstream.errors == {"upstream-timeout": 2, "upstream-refused": 1}
    assert sum(upstream.seconds.counts) == 1


def test_a_snapshot_is_plain_json_with_stores_and_connections() -> None:
    # the master asks workers for theirs over a pipe: it must survive JSON unchanged
    counters = Counters()
    counters.count(VIEW, Outcome(200, MISS, "stored", "r"), 0.01)
    counters.upstream.answered(0.02)
    counters.upstream.failed("upstream-error")
    snapshot = counters.snapshot({"default": stats(2, 900, 1)}, 3)
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["caches"] == {
        "default": {"items": 2, "bytes": 900, "max_items": 100, "max_bytes": 1000, "evictions": 1}
    }
    assert snapshot["connections"] == 3
    assert snapshot["upstream_errors"] == {"upstream-error": 1}


def test_a_retired_store_keeps_its_evictions_in_the_total() -> None:
    # a counter never goes down: a reload that replaces a cache's store keeps what it evicted
    counters = Counters()
    counters.retire("default", stats(evictions=4))
    snapshot = counters.snapshot({"default": stats(evictions=1), "other": stats()}, 0)
    assert snapshot["caches"]["default"]["evictions"] == 5
    assert snapshot["caches"]["other"]["evictions"] == 0


def worker(hits: int, stored: int, seconds: list[float], items: int, connections: int) -> Snapshot:
    counters = Counters()
    for _ in range(hits):
        counters.count(VIEW, Outcome(200, HIT, "", "r"), 0.0)
    for _ in range(stored):
        counters.count(VIEW, Outcome(200, MISS, "stored", "r"), 0.0)
    for value in seconds:
        counters.upstream.answered(value)
    counters.upstream.failed("upstream-refused")
    snapshot = counters.snapshot({"default": stats(items, items * 10, 1)}, connections)
    return json.loads(json.dumps(snapshot))  # type: ignore[no-any-return]


def test_merge_adds_every_count_size_and_connection_by_its_labels() -> None:
    total = merge([worker(3, 1, [0.001], 1, 2), worker(5, 2, [0.2, 99.0], 2, 1)])
    assert total["requests"] == {"HIT": {"r": {"": 8}}, "MISS": {"r": {"stored": 3}}}
    assert total["upstream_errors"] == {"upstream-refused": 2}
    assert total["caches"]["default"] == {
        "items": 3,
        "bytes": 30,
        "max_items": 200,
        "max_bytes": 2000,
        "evictions": 2,
    }
    assert total["connections"] == 3
    histogram = total["upstream_seconds"]
    assert sum(histogram["counts"]) == 3
    assert histogram["counts"][0] == 1 and histogram["counts"][-1] == 1
    assert histogram["sum"] == pytest.approx(99.201)


def test_merge_of_nothing_is_empty_and_of_one_is_itself() -> None:
    one = worker(2, 1, [0.01], 1, 1)
    assert merge([]) == empty()
    assert merge([one]) == one


def test_merge_leaves_out_a_histogram_with_other_bounds() -> None:
    # a worker started again on newer code could count with other buckets: not mixed in
    first, other = worker(0, 0, [0.01], 0, 0), worker(0, 0, [0.01], 0, 0)
    bounds = [bound * 10 for bound in first["upstream_seconds"]["bounds"]]
    other["upstream_seconds"] = {"bounds": bounds, "counts": [5] * (len(bounds) + 1), "sum": 5.0}
    assert merge([first, other])["upstream_seconds"] == first["upstream_seconds"]


def test_merge_does_not_change_its_inputs() -> None:
    one, two = worker(1, 1, [0.01], 1, 1), worker(1, 1, [0.01], 1, 1)
    before = json.dumps([one, two])
    merge([one, two])
    assert json.dumps([one, two]) == before


@pytest.mark.parametrize(
    ("outcome", "not_cached", "stale", "coalesced"),
    [
        pytest.param((HIT, "r", ""), {}, {}, 0, id="hit"),
        pytest.param((HIT, "r", "coalesced"), {}, {}, 1, id="coalesced-hit"),
        pytest.param((MISS, "r", "stored"), {}, {}, 0, id="stored-fill"),
        pytest.param((MISS, "r", "no-store"), {("no-store", "MISS"): 1}, {}, 0, id="not-stored"),
        pytest.param((MISS, "r", "incomplete"), {("incomplete", "MISS"): 1}, {}, 0, id="broke"),
        pytest.param((PASS, "-", "no-rule"), {("no-rule", "PASS"): 1}, {}, 0, id="pass"),
        pytest.param(
            (PASS, "r", "hit-for-pass"), {("hit-for-pass", "PASS"): 1}, {}, 0, id="hit-for-pass"
        ),
        # "authorization" is both a PassReason and a NotStoredReason: cache tells them apart
        pytest.param(
            (PASS, "r", "authorization"), {("authorization", "PASS"): 1}, {}, 0, id="auth-pass"
        ),
        pytest.param(
            (MISS, "r", "authorization"), {("authorization", "MISS"): 1}, {}, 0, id="auth-fill"
        ),
        pytest.param((MISS, "r", "only-if-cached"), {}, {}, 0, id="not-a-reason"),
        pytest.param((PASS, "r", "stored"), {}, {}, 0, id="a-fill-detail-on-a-pass"),
        pytest.param(
            (STALE, "r", "stale-if-error"), {}, {"stale-if-error": 1}, 0, id="stale-if-error"
        ),
        pytest.param((ERROR, "r", "upstream-timeout"), {}, {}, 0, id="error"),
    ],
)
def test_request_totals_read_why_not_cached_stale_and_coalesced(
    outcome: tuple[CacheResult, str, str],
    not_cached: dict[tuple[str, str], int],
    stale: dict[str, int],
    coalesced: int,
) -> None:
    # DESIGN.md: every "why not cached" answer is a PassReason or NotStoredReason value
    totals = request_totals(counted(outcome, (HIT, "r", "")))
    cache, rule, _ = outcome
    assert totals.requests[(cache.value, rule)] == 1 + (cache == HIT and rule == "r")
    assert totals.not_cached == not_cached
    assert totals.stale == stale
    assert totals.coalesced == coalesced


def hits_of(snapshot: Snapshot) -> int:
    return sum(sum(d.values()) for d in snapshot["requests"].get("HIT", {}).values())


# What a worker reports in the tables below: (hits, evictions, items, connections), two
# counters and two gauges; a scrape's total is read back as the same four numbers.
Report = tuple[int, int, int, int]


def report(hits: int, evictions: int, items: int, connections: int) -> Snapshot:
    counters = Counters()
    for _ in range(hits):
        counters.count(VIEW, Outcome(200, HIT, "", "r"), 0.0)
    snapshot = counters.snapshot({"default": stats(items, items * 10, evictions)}, connections)
    return json.loads(json.dumps(snapshot))  # type: ignore[no-any-return]  # as over the pipe


def read(total: Snapshot) -> Report:
    cache = total["caches"].get("default", {"evictions": 0, "items": 0})
    return hits_of(total), cache["evictions"], cache["items"], total["connections"]


# One scrape: the answers that came (pid → report), the pids serving, the total it must show.
Scrape = tuple[dict[int, Report], list[int], Report]

WORKER_TOTALS: dict[str, list[Scrape]] = {
    "both-answer: the sum": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
    ],
    "a late worker counts with its last report, gauges too": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
        ({1: (5, 1, 2, 2)}, [1, 2], (9, 3, 7, 3)),
        ({}, [1, 2], (9, 3, 7, 3)),  # nobody answered: the last total, not a drop
    ],
    "a serving worker that never answered adds nothing yet": [
        ({1: (3, 1, 1, 2)}, [1, 2], (3, 1, 1, 2)),
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
    ],
    "replaced by a new pid: its counters stay, its gauges go": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
        ({1: (3, 1, 1, 2), 3: (1, 0, 1, 1)}, [1, 3], (8, 3, 2, 3)),
    ],
    "replaced, its successor not answering yet": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
        ({1: (3, 1, 1, 2)}, [1, 3], (7, 3, 1, 2)),
        ({1: (3, 1, 1, 2), 3: (1, 0, 1, 1)}, [1, 3], (8, 3, 2, 3)),
    ],
    "answered, then died before the master listed who serves": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1], (7, 3, 1, 2)),
        ({1: (3, 1, 1, 2)}, [1], (7, 3, 1, 2)),  # retired once, never counted twice
    ],
    "died before it ever answered: nothing of it to keep": [
        ({1: (3, 1, 1, 2)}, [1, 2], (3, 1, 1, 2)),
        ({1: (3, 1, 1, 2)}, [1, 3], (3, 1, 1, 2)),
    ],
    "every worker gone: the counters only": [
        ({1: (3, 1, 1, 2), 2: (4, 2, 5, 1)}, [1, 2], (7, 3, 6, 3)),
        ({}, [], (7, 3, 0, 0)),
    ],
    "one slot started again twice": [
        ({1: (2, 1, 1, 1)}, [1], (2, 1, 1, 1)),
        ({2: (2, 1, 1, 1)}, [2], (4, 2, 1, 1)),
        ({3: (2, 1, 1, 1)}, [3], (6, 3, 1, 1)),
    ],
}


@pytest.mark.parametrize("scrapes", WORKER_TOTALS.values(), ids=WORKER_TOTALS.keys())
def test_worker_totals_across_scrapes(scrapes: list[Scrape]) -> None:
    # product rule: the master's /metrics is the sum over its workers and a counter of it never
    # goes down (Prometheus reads a drop as a reset); a gauge is of the processes alive only
    totals = WorkerTotals()
    for answers, serving, wanted in scrapes:
        got = totals.update({pid: report(*r) for pid, r in answers.items()}, serving)
        assert read(got) == wanted
        assert set(totals.last) <= set(serving)  # only the living are kept by pid


def test_worker_totals_add_every_counter_of_a_gone_worker() -> None:
    # the families WORKER_TOTALS does not read: misses, upstream errors and durations
    totals = WorkerTotals()
    totals.update({11: worker(3, 1, [0.01], 1, 2), 12: worker(4, 1, [0.01], 5, 1)}, [11, 12])
    total = totals.update({11: worker(3, 1, [0.01], 1, 2)}, [11, 13])
    assert total["requests"]["MISS"]["r"]["stored"] == 2
    assert total["upstream_errors"] == {"upstream-refused": 2}
    assert sum(total["upstream_seconds"]["counts"]) == 2


def full() -> Snapshot:
    """A worker's snapshot with every field set, the shared tier's included."""
    counters = Counters()
    counters.count(VIEW, Outcome(200, HIT, "", "r"), 0.0)
    counters.count(VIEW, Outcome(200, MISS, "stored", "r"), 0.0)
    counters.upstream.answered(0.02)
    counters.upstream.failed("upstream-timeout")
    stores = {"default": stats(4, 40, 2), "other": stats(1, 10, 0)}
    return counters.snapshot(stores, 3, {"hits": 5, "writes": 2, "up": 1})


@pytest.mark.parametrize(
    ("part", "kept"),
    [
        pytest.param(lambda s: s["requests"], True, id="requests"),
        pytest.param(lambda s: s["upstream_errors"], True, id="upstream-errors"),
        pytest.param(lambda s: s["upstream_seconds"], True, id="upstream-histogram"),
        pytest.param(
            lambda s: {n: c["evictions"] for n, c in s["caches"].items()}, True, id="evictions"
        ),
        pytest.param(
            lambda s: {k: v for k, v in s["redis"].items() if k != "up"}, True, id="redis-counts"
        ),
        pytest.param(lambda s: s["caches"]["default"]["items"], False, id="items"),
        pytest.param(lambda s: s["caches"]["default"]["bytes"], False, id="bytes"),
        pytest.param(lambda s: s["caches"]["default"]["max_items"], False, id="max-items"),
        pytest.param(lambda s: s["caches"]["default"]["max_bytes"], False, id="max-bytes"),
        pytest.param(lambda s: s["caches"]["other"]["items"], False, id="another-caches-items"),
        pytest.param(lambda s: s["connections"], False, id="connections"),
        pytest.param(lambda s: s["redis"].get("up", 0), False, id="redis-up"),
    ],
)
def test_counts_only_keeps_the_counters_and_zeroes_the_gauges(
    part: Callable[[Snapshot], object], kept: bool
) -> None:
    # what a gone process leaves: what it counted (a counter never goes down), not what it held
    one = full()
    before = json.dumps(one)
    assert part(one)  # the table reads a field that is set
    assert (part(counts_only(one)) == part(one)) is kept
    if not kept:
        assert not part(counts_only(one))
    assert json.dumps(one) == before  # the worker's last snapshot is not changed


def test_counts_only_of_counts_only_is_itself() -> None:
    once = counts_only(full())
    assert counts_only(once) == once


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from([1, 2])),  # the slots that answer this scrape
            st.sets(st.sampled_from([1, 2])),  # the slots whose worker died since the last
            st.integers(0, 5),  # hits each live worker served since the last scrape
            st.integers(0, 3),  # connections each live worker has open now
        ),
        max_size=12,
    )
)
def test_worker_totals_never_go_down_whatever_answers_and_dies(
    scrapes: list[tuple[set[int], set[int], int, int]],
) -> None:
    """Two worker slots; between scrapes each live worker serves more, some answer, some die
    and are started again under a new pid: the total of hits never decreases, and it is the
    hits every pid had reported by its last answer; the connections are those the living
    reported last."""
    totals, pids, hits, reported = WorkerTotals(), {1: 101, 2: 201}, {101: 0, 201: 0}, {}
    open_now: dict[int, int] = {}
    last = 0
    for answering, dying, served, connections in scrapes:
        for slot in dying:
            pids[slot] += 1  # a new pid for the slot
            hits[pids[slot]] = 0
        for slot in (1, 2):
            hits[pids[slot]] += served
        answers = {pids[s]: report(hits[pids[s]], 0, 0, connections) for s in answering}
        reported.update({pid: hits[pid] for pid in answers})
        open_now.update({pid: connections for pid in answers})
        total = totals.update(answers, list(pids.values()))
        assert hits_of(total) >= last
        assert hits_of(total) == sum(reported.values())
        living = set(pids.values())
        assert total["connections"] == sum(n for pid, n in open_now.items() if pid in living)
        last = hits_of(total)


@pytest.mark.parametrize(
    ("answer", "taken"),
    [
        ({"error": "worker 2 is not serving yet"}, False),
        ("odd", False),
        ({"requests": {}}, False),  # a part of one
    ],
)
def test_only_a_whole_snapshot_is_taken_from_a_worker(answer: object, taken: bool) -> None:
    assert (as_snapshot(answer) is not None) is taken


def test_a_workers_snapshot_is_taken_as_it_came() -> None:
    one = worker(1, 0, [], 1, 1)
    assert as_snapshot(one) is one
