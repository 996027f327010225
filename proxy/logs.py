"""The `sidecache` command's log: one line per record, level included, split by level.

    2026-11-28 11:02:03,123 INFO sidecache.access 127.0.0.1 "GET / HTTP/1.1" 200 HIT ...

Records below WARNING (the access log among them) go to stdout; warnings and errors go to
stderr, where an operator and a service manager look for them. `--log-level` sets how much of
the operational log is written; it never silences the access log, which has its own switch
(`[server] access_log`).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
ACCESS_LOGGER = "sidecache.access"


def parse_level(text: str) -> int:
    """DEBUG, INFO, WARNING or ERROR (any case); anything else is a ValueError."""
    level = LEVELS.get(text.strip().upper())
    if level is None:
        raise ValueError(f"unknown level {text!r} (use {', '.join(LEVELS)})")
    return level


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup(level: int, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
    """Route the root logger's records: below WARNING to stdout, the rest to stderr."""
    formatter = logging.Formatter(FORMAT)
    out = logging.StreamHandler(stdout or sys.stdout)
    out.addFilter(_BelowWarning())
    err = logging.StreamHandler(stderr or sys.stderr)
    err.setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in (out, err):
        handler.setFormatter(formatter)
    root.handlers = [out, err]
    root.setLevel(level)
    # The access log is on or off by [server] access_log, whatever the level.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
