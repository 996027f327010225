"""The Redis tier's circuit breaker (breaker.py), driven by an injected clock: each case is a
sequence of events at given times and the states they lead to."""

from __future__ import annotations

import pytest

from proxy.breaker import Breaker, Circuit

UP, DOWN, OPEN = Circuit.UP, Circuit.DOWN, Circuit.OPEN


def run(breaker: Breaker, events: list[tuple[float, str]]) -> list[tuple[Circuit, bool]]:
    """Apply ("ok" | "fail" at a time) events; after each, the state and whether calls go."""
    seen = []
    for now, event in events:
        if event == "ok":
            breaker.succeeded(now)
        else:
            breaker.failed(now)
        seen.append((breaker.state, breaker.allows()))
    return seen


CASES = [
    pytest.param(
        [(0, "ok"), (1, "fail"), (2, "ok")],
        [(UP, True), (DOWN, True), (UP, True)],
        id="a failure now and then never opens it",
    ),
    pytest.param(
        [(0, "ok"), (1, "fail"), (2, "fail"), (3, "fail")],
        [(UP, True), (DOWN, True), (DOWN, True), (OPEN, False)],
        id="three failures in a row open it",
    ),
    pytest.param(
        [(0, "ok"), (1, "fail"), (2, "fail"), (3, "ok"), (4, "fail"), (5, "fail")],
        [(UP, True), (DOWN, True), (DOWN, True), (UP, True), (DOWN, True), (DOWN, True)],
        id="a success in between starts the count again",
    ),
    pytest.param(
        [(0, "ok"), (1, "fail"), (1, "fail"), (1, "fail"), (12, "fail"), (23, "ok")],
        [(UP, True), (DOWN, True), (DOWN, True), (OPEN, False), (OPEN, False), (UP, True)],
        id="a failed probe keeps it open, a good one closes it",
    ),
    pytest.param([(0, "fail")], [(OPEN, False)], id="new: open until the first probe answers"),
]


@pytest.mark.parametrize(("events", "states"), CASES)
def test_states(events: list[tuple[float, str]], states: list[tuple[Circuit, bool]]) -> None:
    assert run(Breaker(failures=3, cooldown=10.0), events) == states


def test_a_new_breaker_is_open_with_its_probe_due_at_once() -> None:
    breaker = Breaker(failures=3, cooldown=10.0)
    assert (breaker.state, breaker.allows(), breaker.probe_due(0.0)) == (OPEN, False, True)


def test_the_probe_is_due_one_cool_down_after_the_last_failure() -> None:
    breaker = Breaker(failures=1, cooldown=10.0, state=UP)
    breaker.failed(100.0)
    due = [breaker.probe_due(t) for t in (100.0, 109.9, 110.0)]
    wait = breaker.retry_in(104.0)
    breaker.failed(110.0)  # the probe failed: another cool-down
    again = [breaker.probe_due(t) for t in (110.0, 119.9, 120.0)]

    assert (due, wait, again) == ([False, False, True], 6.0, [False, False, True])


def test_each_change_is_returned_once_so_it_is_logged_once() -> None:
    breaker = Breaker(failures=2, cooldown=5.0, state=UP)
    changes = [
        breaker.failed(0.0),
        breaker.failed(0.1),
        breaker.failed(0.2),  # open already: no change
        breaker.failed(5.3),  # a failed probe: no change
        breaker.succeeded(10.4),
        breaker.succeeded(10.5),
    ]
    assert changes == [DOWN, OPEN, None, None, UP, None]


def test_retry_in_is_zero_unless_open() -> None:
    breaker = Breaker(failures=1, cooldown=5.0, state=UP)
    assert breaker.retry_in(0.0) == 0.0
    breaker.failed(0.0)
    assert breaker.retry_in(1.0) == 4.0


SPACED = [
    pytest.param(
        [0.0, 0.001, 0.002, 0.003, 0.004], [DOWN, DOWN, DOWN, DOWN, DOWN], id="a burst is one"
    ),
    pytest.param([0.0, 0.005, 0.010], [DOWN, DOWN, OPEN], id="failures a spacing apart count each"),
    pytest.param(
        [0.0, 0.004, 0.006, 0.009, 0.012],
        [DOWN, DOWN, DOWN, DOWN, OPEN],
        id="from the last counted",
    ),
]


@pytest.mark.parametrize(("times", "states"), SPACED)
def test_failures_closer_than_the_spacing_are_one_event(
    times: list[float], states: list[Circuit]
) -> None:
    """Calls under way together that fail together (a stall of the process) count once."""
    breaker = Breaker(failures=3, cooldown=10.0, spacing=0.005, state=UP)
    seen = []
    for now in times:
        breaker.failed(now)
        seen.append(breaker.state)
    assert seen == states
