"""The admin listener's decisions that a reload or the worker processes change: which token
it checks, and what a purge asked of the workers answers.

No I/O (admin.py, server.py and master.py call these), so each is a table in
tests/unit/test_admin_rules.py.

- The token. The listener is bound once, at start: a reload changes its address only at a
  restart. config.py refuses an address off loopback without a token, but checks the *new*
  configuration's address: a reload that removes the token (or moves `[admin] listen` to
  loopback and drops the token) would leave the bound listener open on 0.0.0.0 with no token.
  So a token is never removed while the bound listener is off loopback; a changed one applies
  at once (an operator rotating a leaked token must not wait for a restart).
- A purge with worker processes (master.py asks every serving worker): what counts is the
  workers asked. A worker that is dead, or being started again, holds no memory to purge, so
  its slot is no failure; a worker asked that did not answer in time is (its memory may still
  hold the page), and so is no worker at all to ask.
- How long a purge waits for the workers: each purges its caches side by side
  (server.Proxy.purge), and with `[redis]` a cache's Redis purge may take
  RedisSettings.purge_seconds (SCAN_SECONDS plus the connect timeout, store/redis_tier.py),
  however many caches there are. A wait shorter than that turns a slow purge that worked into
  a 502.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config import is_loopback
from proxy.settings import Listen, Settings
from proxy.workers import summed

ASK_WAIT = 5.0  # seconds a query waits for the workers' answers (a purge may wait longer)


def admin_token(bound: Listen | None, checked: str, wanted: str) -> tuple[str, str | None]:
    """The token the admin listener bound on `bound` (None: none bound) checks once a reload
    asks for `wanted`, while it checks `checked`; and a note when the reload cannot apply
    it (the removal waits for a restart)."""
    off_loopback = bound is not None and not bound.path and not is_loopback(bound.host)
    if wanted or not checked or not off_loopback:
        return wanted, None
    return checked, (
        f"[admin] token removed, but the admin listener is bound on {bound}: it requires "
        "the token it had until a restart"
    )


@dataclass(frozen=True, slots=True)
class Asked:
    """What a query to the workers got: the answers by worker pid, and how many of the
    workers asked did not answer: `late` (still running after the wait), `gone` (died)."""

    answers: dict[int, object]
    late: int = 0
    gone: int = 0


def purge_outcome(asked: Asked) -> tuple[int, dict[str, object]]:
    """The admin listener's answer to a purge the workers were `asked`: 200 and the entries
    removed in all; 502 (and why) when a worker asked failed or did not answer in time, or
    when none answered (none serves: they are all being started again)."""
    removed, errors = summed(asked.answers.values(), "purged")
    if asked.late:
        total = len(asked.answers) + asked.late + asked.gone
        errors.append(f"{asked.late} of {total} workers did not answer")
    elif not asked.answers:
        errors.append("no worker serves now (they are being started again)")
    if errors:
        return 502, {"purged": removed, "error": "; ".join(errors)}
    return 200, {"purged": removed}


def purge_wait(settings: Settings) -> float:
    """How long a purge waits for the workers: ASK_WAIT, plus, with `[redis]`, the longest
    Redis purge (RedisSettings.purge_seconds; the caches are purged side by side)."""
    if settings.redis is None:
        return ASK_WAIT
    return ASK_WAIT + settings.redis.purge_seconds
