"""A master's queries to its worker processes (master.ask), in this process with two real
workers: a query waits for the answers as long as it is told, no longer."""

from __future__ import annotations

import logging
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
    hasty = await master.ask("purge", {"url": "/"}, wait=0.0)
    patient = await master.ask("purge", {"url": "/"}, wait=30.0)

    assert (hasty.answers, hasty.late, hasty.gone) == ({}, 2, 0)  # asked both, waited for none
    assert sorted(patient.answers) == sorted(master.serving_pids())
    assert (patient.late, patient.gone) == (0, 0)
