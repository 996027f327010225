"""A master's queries to its worker processes (master.ask), in this process with two real
workers: a query waits for the answers as long as it is told, no longer."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

import pytest

from proxy.config import parse
from proxy.master import Master

from .support import FakeUpstream


@pytest.fixture
async def master(upstream: FakeUpstream) -> AsyncIterator[Master]:
    settings = parse(
        {
            "server": {"listen": ["127.0.0.1:0"], "workers": 2},
            "upstream": {"url": upstream.url},
            "rules": [{"path": "^/"}],
        },
        "test.toml",
    )
    started = Master(settings, logging.WARNING)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_query_waits_as_long_as_it_is_told(master: Master) -> None:
    """A worker stopped (SIGSTOP: alive, not answering) for longer than the wait is late,
    the other answers; once it runs again, a long wait gets both."""
    stopped, running = master.serving_pids()
    os.kill(stopped, signal.SIGSTOP)
    try:
        asking = asyncio.ensure_future(master.ask("purge", {"url": "/"}, wait=0.5))
        await asyncio.sleep(1.5)  # a query waiting longer than told would hear it after this
    finally:
        os.kill(stopped, signal.SIGCONT)
    hasty = await asking
    patient = await master.ask("purge", {"url": "/"}, wait=30.0)

    assert (list(hasty.answers), hasty.late, hasty.gone) == ([running], 1, 0)
    assert sorted(patient.answers) == sorted([stopped, running])
    assert (patient.late, patient.gone) == (0, 0)
