"""A circuit breaker for an optional dependency (the Redis tier): a pure state machine on an
injected clock, no I/O.

Why: when Redis is down or slow, every call would cost a visitor the call's timeout before
the app is asked. After `failures` failed calls in a row the circuit opens: calls are skipped
(memory and the app serve) until a probe succeeds, one probe every `cooldown` seconds, made in
the background by the tier, never on a visitor's time. The states, as `/ready` shows them:

    up    ── a call fails ──▶ down (fewer than `failures` in a row)  ── a call succeeds ──▶ up
    down  ── `failures` in a row ──▶ open (retry at now + cooldown)
    open  ── the probe fails ──▶ open (retry at now + cooldown)
    open  ── the probe succeeds ──▶ up

Failures count in a row only when at least `spacing` apart (the tier gives its call
timeout): calls under way together that fail together (a stall of this process, which the
kernel did not schedule for 20 ms, times out every call in flight) are one event, not
sixteen. A Redis that is down keeps failing, so it still opens the circuit, after about
`failures` x `spacing` seconds.

A new breaker is open with its probe due at once: nothing is asked of Redis before one PING
has answered. Each method returns the new state when it changed, None when not, so the caller
logs a change once, never once per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Circuit(StrEnum):
    UP = "up"  # calls go to Redis
    DOWN = "down"  # calls go to Redis, but the last ones failed
    OPEN = "open"  # calls are skipped until a probe succeeds


@dataclass
class Breaker:
    failures: int  # failed calls in a row that open the circuit
    cooldown: float  # seconds between probes while open
    spacing: float = 0.0  # failures closer than this to the last one counted are the same
    state: Circuit = Circuit.OPEN
    failed_in_row: int = 0
    retry_at: float = 0.0  # when open: the next probe is due then
    last_failure: float = float("-inf")  # the last one counted

    def allows(self) -> bool:
        """May a call go to Redis now? (The hot question: one comparison.)"""
        return self.state is not Circuit.OPEN

    def failed(self, now: float) -> Circuit | None:
        """A call (or the probe) failed at `now`."""
        if self.state is Circuit.OPEN:
            self.retry_at = now + self.cooldown
            return None
        if self.failed_in_row and now - self.last_failure < self.spacing:
            return None  # the same event as the last failure counted
        self.failed_in_row += 1
        self.last_failure = now
        if self.failed_in_row >= self.failures:
            return self._become(Circuit.OPEN, now)
        return self._become(Circuit.DOWN, now)

    def succeeded(self, now: float) -> Circuit | None:
        """A call (or the probe) succeeded at `now`."""
        self.failed_in_row = 0
        return self._become(Circuit.UP, now)

    def probe_due(self, now: float) -> bool:
        return self.state is Circuit.OPEN and now >= self.retry_at

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe (0 when one is due or the circuit is not open)."""
        return max(0.0, self.retry_at - now) if self.state is Circuit.OPEN else 0.0

    def _become(self, state: Circuit, now: float) -> Circuit | None:
        if state is Circuit.OPEN:
            self.retry_at = now + self.cooldown
        if state is self.state:
            return None
        self.state = state
        return state
