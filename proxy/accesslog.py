r"""The access log's lines: one per request, made on the event loop, no I/O here.

Format (space-separated, easy to grep and to split, e.g. with shlex.split), after the time, the
level and the logger, as on every log line of the command (logs.FORMAT):
    2026-11-28 11:02:03,123 INFO sidecache.access CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE
    BYTES TIMEus rule=RULE detail=DETAIL
and, with worker processes, `worker=N` (which one served it) at the end.
CACHE is HIT, MISS, PASS, STALE or ERROR; DETAIL says why (a PassReason or NotStoredReason
value, or "stored"). RULE is the rule's name, which the config may write with spaces or quotes
(the `--cache REGEX` rules are named "--cache REGEX"): such a value is written in double quotes,
with `"` and `\` escaped by a backslash and control characters as \xNN, so a field never splits
and a line never breaks (rule="--cache ^/about$"). The cache key is never logged: it can carry
cookie values.

`Lines` makes whole lines into a buffer that access_writer.py writes between requests;
`format_line` is the part after the logger's name, for the `logging` route (`log_access`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from math import trunc
from typing import NamedTuple

from proxy.exchange import CacheResult, Outcome
from proxy.view import RequestView

logger = logging.getLogger("sidecache.access")
_NEEDS_QUOTES = re.compile(r'[\s"\\\x00-\x1f\x7f]').search
_ESCAPES = {'"': '\\"', "\\": "\\\\"}
# Written values by value: rule names and reasons are few, so the common case is one lookup.
_WRITTEN: dict[str, str] = {}
_WRITTEN_MAX = 1024
# What follows the second in a line's time: the milliseconds, the level and the logger, as
# logging's Formatter writes them ("%(asctime)s %(levelname)s %(name)s ").
_MILLIS = tuple(f",{ms:03d} INFO sidecache.access " for ms in range(1000))
NUMBERS = 10_000  # statuses, and most sizes and durations (µs) of hits, are below this
_TEXT = [str(number) for number in range(NUMBERS)]
_CACHE = {result: result.value for result in CacheResult}  # a StrEnum formats slowly
# A buffer this full is written at once: about 64 KiB, nginx's `buffer=64k`. The loop writes
# it (access_writer.py), so a bigger batch would only make a longer pause between requests.
BATCH_LINES = 512
_worker = ""  # " worker=N" in a worker process (set_worker), so a line says who served it


def set_worker(number: int) -> None:
    """Workers (`[server] workers` > 1): each line ends with `worker=N`."""
    global _worker
    _worker = f" worker={number}"


def field_value(value: str) -> str:
    """`value` as written after `name=`: as it is, or quoted when it holds a space, a quote, a
    backslash or a control character (or is empty)."""
    written = _WRITTEN.get(value)
    if written is None:
        written = quote(value) if not value or _NEEDS_QUOTES(value) else value
        if len(_WRITTEN) < _WRITTEN_MAX:
            _WRITTEN[value] = written
    return written


def quote(value: str) -> str:
    r"""Double quotes around `value`; `"` and `\` escaped by a backslash, controls as \xNN."""
    inner = "".join(
        _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if c < " " or c == "\x7f" else c) for c in value
    )
    return f'"{inner}"'


def written_target(target: str) -> str:
    """The request target as logged: `"` as %22, octets that are not UTF-8 as \\x escapes."""
    target = target.replace('"', "%22")
    if not target.isascii():
        target = target.encode("utf-8", "backslashreplace").decode("utf-8")
    return target


def format_line(view: RequestView, outcome: Outcome, seconds: float) -> str:
    """The line after the logger's name (what `Lines.add` writes after the time)."""
    client = view.peer or "unix"
    major, minor = view.version
    return (
        f'{client} "{view.method} {written_target(view.target)} HTTP/{major}.{minor}" '
        f"{outcome.status} {_CACHE[outcome.cache]} {outcome.sent} {int(seconds * 1_000_000)}us "
        f"rule={field_value(outcome.rule)} detail={field_value(outcome.detail or '-')}{_worker}"
    )


def log_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    """The line through the `logging` module (one write per line): for the in-process tests,
    which read it with pytest's caplog. The command writes through `Lines` instead."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(format_line(view, outcome, seconds))


def skip_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    """Used when access_log = false."""


def encoded(text: str) -> bytes:
    """Lines as written: UTF-8, and what cannot be (octets of a target that were not UTF-8,
    kept as surrogates) as \\x or \\u escapes, as format_line writes them."""
    return text.encode("utf-8", "backslashreplace")


class Batch(NamedTuple):
    """Lines taken from the buffer together: their text, and how many."""

    text: str
    lines: int


class Lines:
    """The access log's buffer on the event loop: `add` writes a request's whole line (with the
    time it ended, in local time as logging writes it) and calls `wake(False)` for the first
    line of a batch (to start the flush timer) and `wake(True)` once the batch holds `limit`
    lines; `take` empties it. The line's start (time to the millisecond, level, logger)
    is made again only when the millisecond changes, the date and time once a second."""

    __slots__ = (
        "_clock",
        "_from",
        "_limit",
        "_lines",
        "_prefix",
        "_second",
        "_stamp",
        "_until",
        "_wake",
    )

    def __init__(
        self,
        wake: Callable[[bool], None],
        limit: int = BATCH_LINES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._wake, self._limit, self._clock = wake, limit, clock
        self._lines: list[str] = []
        self._from = self._until = 0.0  # the times _prefix holds for
        self._prefix = ""
        self._second = -1  # the second _stamp was made for
        self._stamp = ""

    def add(self, view: RequestView, outcome: Outcome, seconds: float) -> None:
        """One line; format_line's fields, written inline: this runs for every request."""
        now = self._clock()
        if not self._from <= now < self._until:
            self._new_millisecond(now)
        target = view.target
        if '"' in target:  # the rest of written_target's work is done by `encoded`
            target = target.replace('"', "%22")
        try:
            rule, detail = _WRITTEN[outcome.rule], _WRITTEN[outcome.detail or "-"]
        except KeyError:
            rule, detail = field_value(outcome.rule), field_value(outcome.detail or "-")
        version = "HTTP/1.1" if view.version == (1, 1) else _version(view.version)
        # Numbers below NUMBERS as text by index: a conversion costs several times more. Both
        # are never negative (a byte count, a perf_counter difference).
        sent, micros = outcome.sent, trunc(seconds * 1_000_000)
        lines = self._lines
        lines.append(
            f'{self._prefix}{view.peer or "unix"} "{view.method} {target} {version}" '
            f"{_TEXT[outcome.status]} {_CACHE[outcome.cache]} "
            f"{_TEXT[sent] if sent < NUMBERS else sent} "
            f"{_TEXT[micros] if micros < NUMBERS else micros}us "
            f"rule={rule} detail={detail}{_worker}\n"
        )
        count = len(lines)
        if count >= self._limit:
            self._wake(True)
        elif count == 1:
            self._wake(False)

    def take(self) -> Batch:
        """The lines so far, oldest first, as one text; the buffer starts again empty."""
        lines, self._lines = self._lines, []
        return Batch("".join(lines), len(lines))

    def __len__(self) -> int:
        return len(self._lines)

    def _new_millisecond(self, now: float) -> None:
        """The line's start for `now`, as logging.Formatter writes it: the local date and time,
        then the milliseconds cut (not rounded)."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        millis = int((now - second) * 1000)
        self._prefix = self._stamp + _MILLIS[millis]
        self._from, self._until = now, second + (millis + 1) / 1000


def _version(version: tuple[int, int]) -> str:
    return f"HTTP/{version[0]}.{version[1]}"
