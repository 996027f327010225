"""One access-log line per request, on the "sidecache.access" logger.

Format (space-separated, easy to grep and to split):
    CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE BYTES TIMEus rule=RULE detail=DETAIL
CACHE is HIT, MISS, PASS or ERROR; DETAIL says why (a PassReason or NotStoredReason value, or
"stored"). The cache key is never logged: it can carry cookie values.
"""

from __future__ import annotations

import logging

from proxy.exchange import Outcome
from proxy.view import RequestView

logger = logging.getLogger("sidecache.access")


def format_line(view: RequestView, outcome: Outcome, seconds: float) -> str:
    client = view.peer or "unix"
    major, minor = view.version
    target = view.target.replace('"', "%22")
    if not target.isascii():  # octets that are not UTF-8 are written as \x escapes
        target = target.encode("utf-8", "backslashreplace").decode("utf-8")
    return (
        f'{client} "{view.method} {target} HTTP/{major}.{minor}" {outcome.status} '
        f"{outcome.cache} {outcome.sent} {int(seconds * 1_000_000)}us "
        f"rule={outcome.rule} detail={outcome.detail or '-'}"
    )


def log_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(format_line(view, outcome, seconds))


def skip_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    """Used when access_log = false."""
