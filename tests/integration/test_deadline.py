"""store/deadline.py: the tier's call timeout, on a real event loop and a real socket pair.

The cases it exists for: the answer arrives while this process's loop is busy and the timer
fires late, in the same loop iteration that reads the answer (a plain `asyncio.timeout`
cancels that call: its timer's callback runs before the woken task); or the loop was so
busy that Redis had no fair chance to answer at all: `within` then gives it one more timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from proxy.store.deadline import within


async def test_an_answer_read_while_the_loop_was_busy_is_not_timed_out() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:

        def busy() -> None:
            theirs.send(b"answer")  # Redis answered in time...
            time.sleep(0.05)  # ...while this loop was busy five timeouts long

        loop.call_later(0.001, busy)
        answer = await within(loop.sock_recv(ours, 16), 0.01)
    finally:
        ours.close()
        theirs.close()
    assert answer == b"answer"


async def test_a_loop_busy_past_the_timeout_gives_redis_one_more() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:

        def busy() -> None:
            time.sleep(0.03)  # three timeouts: the timer will fire late
            loop.call_later(0.002, theirs.send, b"answer")  # answered soon after

        loop.call_later(0.001, busy)
        answer = await within(loop.sock_recv(ours, 16), 0.01)
    finally:
        ours.close()
        theirs.close()
    assert answer == b"answer"


async def test_no_answer_times_out_after_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[bytes] = loop.create_future()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(never, 0.01)
    assert 0.01 <= time.monotonic() - started < 0.1


async def test_a_loop_busy_past_the_grace_too_times_out() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[bytes] = loop.create_future()
    loop.call_later(0.001, time.sleep, 0.03)  # late: one more timeout, and no answer in it
    with pytest.raises(TimeoutError):
        await within(never, 0.01)


async def test_an_answer_in_time_is_returned() -> None:
    loop = asyncio.get_running_loop()
    soon: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.001, soon.set_result, "answer")
    assert await within(soon, 1.0) == "answer"
