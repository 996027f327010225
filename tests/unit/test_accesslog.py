"""Pin the access log's fields (issue 12 point 16): a value with a space, a quote, a backslash
or a control character is quoted, so every line splits into the same fields (shlex.split)."""

from __future__ import annotations

import shlex

import pytest

from proxy import accesslog
from proxy.accesslog import field_value, format_line
from proxy.exchange import CacheResult, Outcome
from proxy.view import RequestView

# (value, as written) - the common case is written as it is.
VALUES = [
    pytest.param("anonymous-reads", "anonymous-reads", id="plain-name"),
    pytest.param("-", "-", id="no-rule"),
    pytest.param("hit-for-pass", "hit-for-pass", id="reason"),
    pytest.param("café", "café", id="non-ascii-letters"),
    pytest.param("--cache ^/about$", '"--cache ^/about$"', id="space"),
    pytest.param('say "hi"', '"say \\"hi\\""', id="quotes"),
    pytest.param("a\\b", '"a\\\\b"', id="backslash"),
    pytest.param("two\nlines", '"two\\x0alines"', id="newline-never-breaks-the-line"),
    pytest.param("tab\there", '"tab\\x09here"', id="tab"),
    pytest.param("", '""', id="empty"),
]


@pytest.mark.parametrize(("value", "written"), VALUES)
def test_field_values(value: str, written: str) -> None:
    assert field_value(value) == written
    assert field_value(value) == written  # the second time from the cache of written values


@pytest.mark.parametrize(("value", "written"), VALUES)
def test_every_line_splits_into_the_same_fields(value: str, written: str) -> None:
    view = RequestView("GET", "/about", (("Host", "h"),), peer="127.0.0.1")
    outcome = Outcome(status=200, cache=CacheResult.MISS, detail="stored", rule=value, sent=5)

    line = format_line(view, outcome, 0.000187)

    assert line == (
        f'127.0.0.1 "GET /about HTTP/1.1" 200 MISS 5 187us rule={written} detail=stored'
    )
    fields = shlex.split(line)
    assert len(fields) == 8
    if "\n" not in value and "\t" not in value:
        assert fields[6] == f"rule={value}"


def test_a_worker_adds_its_number_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: with worker processes each line says which one served it."""
    view = RequestView("GET", "/", (("Host", "h"),), peer="127.0.0.1")
    outcome = Outcome(status=200, cache=CacheResult.HIT, detail="", rule="r", sent=5)
    assert format_line(view, outcome, 0.0).endswith(" detail=-")
    monkeypatch.setattr(accesslog, "_worker", "")
    accesslog.set_worker(3)
    assert shlex.split(format_line(view, outcome, 0.0))[-2:] == ["detail=-", "worker=3"]
