"""Pin the hit-for-pass marks (proxy/hitforpass.py): which fills mark a key, how, for how long."""

from __future__ import annotations

import pytest

from proxy.hitforpass import MAX_KEYS, HitForPass, mark_for
from proxy.reasons import NotStoredReason


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        # Product rule (Varnish's hit-for-pass): an answer made for one visitor.
        (NotStoredReason.SET_COOKIE, True),
        (NotStoredReason.PRIVATE, True),
        (NotStoredReason.NO_STORE, True),
        # Uncacheable for everyone alike: filled again, but nobody waits for the fills.
        (NotStoredReason.STATUS, False),
        (NotStoredReason.TOO_BIG, False),
        (NotStoredReason.NO_CACHE, False),
        (NotStoredReason.ZERO_TTL, False),
        # About one request, not the page: nothing to remember.
        (NotStoredReason.INCOMPLETE, None),
        (NotStoredReason.REQUEST_NO_STORE, None),
        ("stored", None),
        ("revalidated", None),
        ("hit-for-pass", None),
    ],
)
def test_mark_for(detail: str, expected: bool | None) -> None:
    assert mark_for(detail) is expected


def test_a_mark_lasts_its_duration() -> None:
    clock = Clock()
    marks = HitForPass(clock)
    marks.mark("default", 10.0, "k", personal=True)
    clock.now += 9.9
    assert marks.personal("default", 10.0, "k") and marks.marked("default", 10.0, "k")
    clock.now += 0.2
    assert not marks.personal("default", 10.0, "k") and not marks.marked("default", 10.0, "k")


def test_uncacheable_is_marked_but_not_personal() -> None:
    marks = HitForPass(Clock())
    marks.mark("default", 10.0, "k", personal=False)
    assert marks.marked("default", 10.0, "k")
    assert not marks.personal("default", 10.0, "k")


def test_a_personal_mark_is_not_downgraded_but_an_uncacheable_one_is_upgraded() -> None:
    marks = HitForPass(Clock())
    marks.mark("default", 10.0, "a", personal=True)
    marks.mark("default", 10.0, "a", personal=False)
    marks.mark("default", 10.0, "b", personal=False)
    marks.mark("default", 10.0, "b", personal=True)
    assert marks.personal("default", 10.0, "a") and marks.personal("default", 10.0, "b")


def test_zero_duration_marks_nothing() -> None:
    marks = HitForPass(Clock())
    marks.mark("default", 0.0, "k", personal=True)
    assert not marks.marked("default", 0.0, "k")


def test_marks_are_per_cache_and_per_duration() -> None:
    # A reload that changes a cache's hit_for_pass starts afresh; caches never share keys.
    marks = HitForPass(Clock())
    marks.mark("default", 10.0, "k", personal=True)
    assert not marks.marked("other", 10.0, "k")
    assert not marks.marked("default", 30.0, "k")


def test_marks_are_bounded_the_oldest_go_first() -> None:
    marks = HitForPass(Clock())
    for index in range(MAX_KEYS + 1):
        marks.mark("default", 10.0, f"k{index}", personal=True)
    assert not marks.marked("default", 10.0, "k0")
    assert marks.personal("default", 10.0, f"k{MAX_KEYS}")
