"""planner.stand_in: when a stale entry may answer instead of a failed upstream exchange
(RFC 5861 stale-if-error; RFC 9111 §4.2.4, a disconnected cache), driven directly."""

from __future__ import annotations

import pytest

from proxy.planner import stand_in
from proxy.rules import Action, Rule
from proxy.store import CachedResponse

OFF = Rule(number=1, name="off", action=Action.CACHE)
ON = Rule(number=1, name="on", action=Action.CACHE, stale_if_unreachable=True)


def entry(*, stale_if_error: float = 0.0, must: bool = False) -> CachedResponse:
    """Fresh until 10, kept until 600."""
    return CachedResponse(
        200, "OK", (), b"", 0.0, 600.0, fresh_until=10.0, must_revalidate=must,
        stale_if_error=stale_if_error,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "rule", "now", "unreachable", "why"),
    [
        pytest.param(None, ON, 20, True, None, id="nothing-stored"),
        pytest.param(entry(stale_if_error=60), OFF, 20, False, "stale-if-error", id="sie-5xx"),
        pytest.param(entry(stale_if_error=60), OFF, 20, True, "stale-if-error", id="sie-down"),
        pytest.param(entry(stale_if_error=60), OFF, 80, True, None, id="sie-past-window"),
        pytest.param(entry(), ON, 500, True, "stale-if-unreachable", id="unreachable-kept"),
        pytest.param(entry(), ON, 500, False, None, id="a-5xx-is-an-answer"),
        pytest.param(entry(), OFF, 500, True, None, id="rule-off"),
        pytest.param(entry(must=True), ON, 20, True, None, id="must-revalidate"),
        pytest.param(entry(stale_if_error=60, must=True), ON, 20, False, None, id="must-sie"),
        pytest.param(entry(stale_if_error=60), ON, 80, True, "stale-if-unreachable", id="both"),
    ],
)
def test_stand_in(
    stored: CachedResponse | None, rule: Rule, now: float, unreachable: bool, why: str | None
) -> None:
    assert stand_in(stored, rule, now, unreachable=unreachable) == why
