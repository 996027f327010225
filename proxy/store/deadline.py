"""A timeout for a call to a fast dependency (Redis) that a busy event loop does not trip.

Why: the tier's calls are bounded by a few milliseconds, to protect visitors from a Redis that
is slow or hangs. But when this process's own loop is busy (a burst of requests, each costing
tens of microseconds of CPU, or a process the kernel did not schedule for a while), its timer
fires late, and a plain `asyncio.timeout` then cancels calls Redis answered in time: the
answer is read in the same loop iteration as the timer fires, and the timer's callback runs
before the task the answer wakes. The circuit would open and every request would go to the
app: the worst answer to a load peak. So:

- a due timer cancels the call from the next iteration (call_soon), after the answer it
  may have read in this one has woken the call;
- a timer that fires late by more than half the timeout (the loop, not Redis, was slow)
  first grants the call one more timeout, counted from then; the second one cancels.

A timer that fires on time with no answer cancels the call (TimeoutError), as
`asyncio.timeout` does: a Redis that hangs costs a visitor one timeout, or two at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(call: Awaitable[T], seconds: float) -> T:
    """`await call`, a TimeoutError after `seconds` (one more when the loop was late)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as scope:
        timer = _Timer(scope, loop, seconds)
        try:
            return await call
        finally:
            timer.cancel()


class _Timer:
    def __init__(
        self, scope: asyncio.Timeout, loop: asyncio.AbstractEventLoop, seconds: float
    ) -> None:
        self.scope, self.loop, self.seconds = scope, loop, seconds
        self.due = loop.time() + seconds
        self.graced = False
        self.handle = loop.call_at(self.due, self.fire)

    def fire(self) -> None:
        now = self.loop.time()
        if not self.graced and now - self.due > self.seconds / 2:
            self.graced = True
            self.due = now + self.seconds
            self.handle = self.loop.call_at(self.due, self.fire)
            return
        self.scope.reschedule(now)  # due: the scope cancels the call, TimeoutError out of it

    def cancel(self) -> None:
        self.handle.cancel()
