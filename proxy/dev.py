"""`sidecache dev`: the local dev proxy in front of an app on a laptop.

One coloured line per request saying HIT/MISS/PASS/STALE and why (the rule that matched, the
pass reason, or why a response was not stored), a banner with the URLs, and the config file
watched: saving it reloads it, as SIGHUP does. Colour only on a terminal: never with NO_COLOR
set (no-color.org), always with FORCE_COLOR set (force-color.org), else when stdout is a tty.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from proxy.exchange import CacheResult, Outcome
from proxy.settings import ADMIN_PATHS
from proxy.view import RequestView

WATCH_SECONDS = 0.5  # how often the config file's modification time is looked at
_COLOURS = {"HIT": "32", "STALE": "35", "MISS": "33", "PASS": "36", "ERROR": "31"}


def wants_colour(environ: Mapping[str, str], terminal: bool) -> bool:
    """NO_COLOR (any non-empty value) wins, then FORCE_COLOR; else colour on a terminal only,
    so a log piped to a file or a pager carries no escape codes."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return terminal


def paint(text: str, code: str) -> str:
    if not wants_colour(os.environ, sys.stdout.isatty()):
        return text
    return f"\033[{code}m{text}\033[0m"


def access_line(view: RequestView, outcome: Outcome, seconds: float) -> str:
    """HH:MM:SS  HIT    200 GET /path  rule-or-reason  1.2 ms"""
    why = outcome.detail if outcome.cache != CacheResult.HIT or outcome.detail else ""
    because = " ".join(part for part in (f"rule={outcome.rule}", why) if part and part != "rule=-")
    cache = paint(f"{outcome.cache:<5}", _COLOURS.get(outcome.cache, "0"))
    return (
        f"{time.strftime('%H:%M:%S')}  {cache} {outcome.status:>3} {view.method} {view.target}"
        f"  {because}  {seconds * 1000:.1f} ms"
    )


def log_access(view: RequestView, outcome: Outcome, seconds: float) -> None:
    print(access_line(view, outcome, seconds), file=sys.stdout, flush=True)


def banner(
    addresses: list[str], upstream: str, admin: list[str], source: str, watched: Path | None
) -> str:
    """The URLs, the config, and how to change it: save the watched file, or restart."""
    public = ", ".join(addresses)
    lines = [
        paint("sidecache dev", "1") + f": {public}  →  {upstream}",
        f"  config: {source}",
    ]
    if admin:
        lines.append(f"  admin:  {', '.join(admin)} ({ADMIN_PATHS})")
    if watched is not None:
        lines.append(f"  HIT/MISS/PASS per request below; save {watched} to reload it")
    else:
        lines.append("  HIT/MISS/PASS per request below; no config file: restart to change it")
    return "\n".join(lines)


async def watch(path: Path, reload: Callable[[], Awaitable[None]]) -> None:
    """Reload whenever `path`'s modification time changes (saved in an editor)."""
    seen = _stamp(path)
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        now = _stamp(path)
        if now != seen:
            seen = now
            await reload()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
