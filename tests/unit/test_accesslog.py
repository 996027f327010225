"""Pin the access log's fields (issue 12 point 16): a value with a space, a quote, a backslash
or a control character is quoted, so every line splits into the same fields (shlex.split)."""

from __future__ import annotations

import logging
import shlex
import time

import pytest

from proxy import accesslog
from proxy.accesslog import Lines, encoded, field_value, format_line
from proxy.exchange import CacheResult, Outcome
from proxy.logs import ACCESS_LOGGER, FORMAT
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
    # and the buffered writer's lines, the same way
    lines = Lines(lambda full: None)
    lines.add(view, outcome, 0.0)
    assert lines.take().text.endswith(" detail=- worker=3\n")


# --------------------------------------------------------------------------- Lines: the buffer

# 2026-11-28 11:02:03 UTC and fractions of its second, as time.time() gives them.
NOON = 1795863723.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def logged_by_logging(message: str, now: float, monkeypatch: pytest.MonkeyPatch) -> str:
    """What logs.setup's formatter writes for `message` logged at `now` (the line before)."""
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: now)
        record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, message, None, None)
    return logging.Formatter(FORMAT).format(record) + "\n"


REQUESTS = [
    pytest.param(RequestView("GET", "/about", (), peer="127.0.0.1"), "stored", id="plain"),
    pytest.param(RequestView("HEAD", '/a"b', (), peer="::1"), "", id="quote-in-target"),
    pytest.param(RequestView("GET", "/caf\udcc3\udca9", ()), "", id="not-utf8-unix-peer"),
    pytest.param(
        RequestView("GET", "/", (), peer="10.0.0.1", version=(1, 0)), "hit-for-pass", id="1.0"
    ),
    pytest.param(RequestView("GET", "/", (), version=(2, 0)), "x y", id="other-version"),
]


@pytest.mark.parametrize("fraction", [0.0, 0.000999, 0.1234, 0.5, 0.9999999])
@pytest.mark.parametrize(("view", "detail"), REQUESTS)
def test_a_line_is_what_logging_wrote_for_it(
    view: RequestView, detail: str, fraction: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The format does not change (issue 14): time, level and logger as logging.Formatter wrote
    # them (local time, milliseconds cut, not rounded), then format_line's fields.
    outcome = Outcome(200, CacheResult.HIT, detail, "--cache ^/a$", 2048)
    lines = Lines(lambda full: None, clock=Clock(NOON + fraction))

    lines.add(view, outcome, 0.000187)

    message = format_line(view, outcome, 0.000187)
    expected = logged_by_logging(message, NOON + fraction, monkeypatch)
    assert encoded(lines.take().text) == expected.encode()


@pytest.mark.parametrize(
    ("status", "sent", "seconds"),
    [
        (200, 0, 0.0),
        (304, 9_999, 0.009_999_5),  # the last numbers the table writes
        (599, 10_000, 0.010_000_2),  # the first it does not
        (100, 2**40, 12.5),
    ],
)
def test_numbers_are_written_whole_inside_and_past_the_table(
    status: int, sent: int, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = RequestView("GET", "/", (), peer="127.0.0.1")
    outcome = Outcome(status, CacheResult.MISS, "stored", "r", sent)
    lines = Lines(lambda full: None, clock=Clock(NOON))
    lines.add(view, outcome, seconds)
    expected = logged_by_logging(format_line(view, outcome, seconds), NOON, monkeypatch)
    assert lines.take().text == expected
    assert f" {status} MISS {sent} {int(seconds * 1_000_000)}us " in expected


def test_the_date_is_made_again_when_the_second_changes_either_way() -> None:
    clock = Clock(NOON + 0.5)
    lines = Lines(lambda full: None, clock=clock)
    view, outcome = RequestView("GET", "/", (), peer="p"), Outcome(200)
    stamps = []
    for now in (NOON + 0.5, NOON + 0.999, NOON + 1.0, NOON + 61.25, NOON - 3600.75):
        clock.now = now
        lines.add(view, outcome, 0.0)
        stamps.append(lines.take().text[:23])

    def stamp(now: float) -> str:
        struct = time.localtime(now)
        return time.strftime("%Y-%m-%d %H:%M:%S", struct) + f",{int(now % 1 * 1000):03d}"

    expected = [NOON + 0.5, NOON + 0.999, NOON + 1.0, NOON + 61.25, NOON - 3600.75]
    assert stamps == [stamp(now) for now in expected]


def test_lines_wake_the_writer_for_a_new_batch_and_for_a_full_one() -> None:
    woken: list[bool] = []
    view, outcome = RequestView("GET", "/", (), peer="p"), Outcome(200)
    lines = Lines(woken.append, limit=3, clock=Clock(NOON))

    for _ in range(3):
        lines.add(view, outcome, 0.0)
    first = lines.take()
    lines.add(view, outcome, 0.0)

    assert woken == [False, True, False]  # the first line starts the timer; the third fills
    assert first.lines == 3 and first.text.count("\n") == 3
    assert len(lines) == 1
