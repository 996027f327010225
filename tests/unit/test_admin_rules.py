"""The admin listener's decisions (admin_rules.py) as tables."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.admin_rules import ASK_WAIT, Asked, admin_token, purge_outcome, purge_wait
from proxy.config import parse
from proxy.settings import Listen

ANY = Listen(host="0.0.0.0", port=9180)
ALL = Listen(host="", port=9180)  # "[admin] listen = ':9180'": every address
V6 = Listen(host="::", port=9180)
LOOPBACK = Listen(host="127.0.0.1", port=9180)
UNIX = Listen(path="/run/sidecache/admin.sock")
OLD, NEW = "old-token-0123456789", "new-token-0123456789"


@pytest.mark.parametrize(
    ("bound", "checked", "wanted", "token", "noted"),
    [
        # Off loopback: a removed token stays until a restart (the listener stays there).
        (ANY, OLD, "", OLD, True),
        (ALL, OLD, "", OLD, True),
        (V6, OLD, "", OLD, True),
        # A changed or added token applies at once, wherever the listener is.
        (ANY, OLD, NEW, NEW, False),
        (LOOPBACK, OLD, NEW, NEW, False),
        (LOOPBACK, "", NEW, NEW, False),
        (UNIX, OLD, NEW, NEW, False),
        (None, OLD, NEW, NEW, False),
        # Loopback, a unix socket or no listener at all: the removal applies at once.
        (LOOPBACK, OLD, "", "", False),
        (UNIX, OLD, "", "", False),
        (None, OLD, "", "", False),
        # Nothing to keep.
        (ANY, "", "", "", False),
        (ANY, OLD, OLD, OLD, False),
    ],
)
def test_the_token_a_reload_leaves(
    bound: Listen | None, checked: str, wanted: str, token: str, noted: bool
) -> None:
    got, note = admin_token(bound, checked, wanted)
    assert got == token
    assert (note is not None) is noted
    if note is not None:
        assert "restart" in note and str(bound) in note


@pytest.mark.parametrize(
    ("asked", "status", "body"),
    [
        (Asked({1: {"purged": 2}, 2: {"purged": 1}}), 200, {"purged": 3}),
        # A worker killed (or being started again) has no memory left to purge.
        (Asked({1: {"purged": 2}}, gone=1), 200, {"purged": 2}),
        (Asked({1: {"purged": 0}}), 200, {"purged": 0}),
        # One asked did not answer in time: its memory may still hold the page.
        (
            Asked({1: {"purged": 2}}, late=1),
            502,
            {"purged": 2, "error": "1 of 2 workers did not answer"},
        ),
        (
            Asked({1: {"purged": 2}}, late=1, gone=1),
            502,
            {"purged": 2, "error": "1 of 3 workers did not answer"},
        ),
        (
            Asked({1: {"purged": 1}, 2: {"purged": 0, "error": "redis down"}}),
            502,
            {"purged": 1, "error": "redis down"},
        ),
        # Nobody to ask, or everybody asked died: nobody purged the shared tier either.
        (
            Asked({}),
            502,
            {"purged": 0, "error": "no worker serves now (they are being started again)"},
        ),
        (
            Asked({}, gone=2),
            502,
            {"purged": 0, "error": "no worker serves now (they are being started again)"},
        ),
    ],
)
def test_a_purge_asked_of_the_workers(asked: Asked, status: int, body: dict[str, object]) -> None:
    assert purge_outcome(asked) == (status, body)


@pytest.mark.parametrize(
    ("config", "wait"),
    [
        ({}, ASK_WAIT),  # memory only: microseconds per cache
        (
            {"redis": {"url": "redis://127.0.0.1:6379"}, "rules": [{"path": "^/"}]},
            ASK_WAIT + 10.0 + 1.0,
        ),
        (
            {
                "redis": {"url": "redis://127.0.0.1:6379", "connect_timeout": "2s"},
                "caches": {"a": {}, "b": {}},
                "rules": [{"path": "^/a", "cache": "a"}, {"path": "^/b", "cache": "b"}],
            },
            ASK_WAIT + 10.0 + 2.0,  # the caches' Redis purges side by side
        ),
    ],
)
def test_a_purge_waits_as_long_as_a_redis_purge_may_take(
    config: dict[str, Any], wait: float
) -> None:
    settings = parse({"upstream": {"url": "http://127.0.0.1:8000"}, **config}, "t.toml")
    assert purge_wait(settings) == pytest.approx(wait)
