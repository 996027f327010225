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
"""

from __future__ import annotations

from proxy.config import is_loopback
from proxy.settings import Listen


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
