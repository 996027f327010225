r"""One access-log line per request, on the "sidecache.access" logger.

Format (space-separated, easy to grep and to split, e.g. with shlex.split):
    CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE BYTES TIMEus rule=RULE detail=DETAIL
and, with worker processes, `worker=N` (which one served it) at the end.
CACHE is HIT, MISS, PASS or ERROR; DETAIL says why (a PassReason or NotStoredReason value, or
"stored"). RULE is the rule's name, which the config may write with spaces or quotes (the
`--cache REGEX` rules are named "--cache REGEX"): such a value is written in double quotes, with
`"` and `\` escaped by a backslash and control characters as \xNN, so a field never splits
and a line never breaks (rule="--cache ^/about$"). The cache key is never logged: it can carry
cookie values.
"""

from __future__ import annotations

import logging
import re

from proxy.exchange import Outcome
from proxy.view import RequestView

logger = logging.getLogger("sidecache.access")
_NEEDS_QUOTES = re.compile(r'[\s"\\\x00-\x1f\x7f]').search
_ESCAPES = {'"': '\\"', "\\": "\\\\"}
# Written values by value: rule names and reasons are few, so the common case is one lookup.
_WRITTEN: dict[str, str] = {}
_WRITTEN_MAX = 1024
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


def format_line(view: RequestView, outcome: Outcome, seconds: float) -> str:
    client = view.peer or "unix"
    major, minor = view.version
    target = view.target.replace('"', "%22")
    if not target.isascii():  # octets that are not UTF-8 are written as \x escapes
        target = target.encode("utf-8", "backslashreplace").decode("utf-8")
    return (
        f'{client} "{view.method} {target} HTTP/{major}.{minor}" {outcome.status} '
        f"{outcome.cache} {outcome.sent} {int(seconds * 1_000_000)}us "
        f"rule={field_value(outcome.rule)} detail={field_value(outcome.detail or '-')}{_worker}"
    )


def log_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(format_line(view, outcome, seconds))


def skip_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    """Used when access_log = false."""
