"""Hit-for-pass: keys whose last fill could not be stored, remembered for a while (Varnish's
`hit_for_pass`; the cache's `hit_for_pass` duration, 0 for never).

Two kinds of mark, both bounded in number (the oldest go first) and in time:
- **personal**: the app's answer to a fill (a request without cookies) set a cookie, or said
  `private` or `no-store`. The page is made per visitor, so each request for the key is then a
  pass of the visitor's own request (cookies and all): their CSRF form, their message.
- **uncacheable** for any other reason that belongs to the response (a status not stored, too
  big, no freshness...): requests are still filled without cookies, but no longer wait for each
  other's fills (coalescing would only serialise them).
A personal mark is never turned back into an uncacheable one before it expires.

Pure: no I/O; the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable

from cachetools import TTLCache

from proxy.reasons import NotStoredReason

MAX_KEYS = 10_000  # marks kept per cache (and per hit_for_pass duration, across a reload)

# What a fill's response says about every later request for its key. A reason not listed
# (incomplete, request-no-store, ...) belongs to one request and marks nothing.
PERSONAL = frozenset(
    {NotStoredReason.SET_COOKIE, NotStoredReason.PRIVATE, NotStoredReason.NO_STORE}
)
UNCACHEABLE = frozenset(
    {
        NotStoredReason.STATUS,
        NotStoredReason.NO_CACHE,
        NotStoredReason.VARY,
        NotStoredReason.VARY_STAR,
        NotStoredReason.AUTHORIZATION,
        NotStoredReason.TOO_BIG,
        NotStoredReason.ENCODING,
        NotStoredReason.UNFRAMED,
        NotStoredReason.NO_SPACE,
        NotStoredReason.ZERO_TTL,
    }
)


class HitForPass:
    """The marks of every cache, keyed by (cache name, duration) so a reload that changes the
    duration starts afresh."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._marks: dict[tuple[str, float], TTLCache[str, bool]] = {}

    def mark(self, cache: str, ttl: float, key: str, *, personal: bool) -> None:
        """Remember `key` as personal (True) or uncacheable for `ttl` seconds."""
        if ttl <= 0:
            return
        marks = self._marks.get((cache, ttl))
        if marks is None:
            marks = self._marks[(cache, ttl)] = TTLCache(MAX_KEYS, ttl, timer=self._clock)
        if personal or key not in marks:
            marks[key] = personal

    def personal(self, cache: str, ttl: float, key: str) -> bool:
        """Is `key` marked personal: pass each visitor's own request?"""
        marks = self._marks.get((cache, ttl))
        return marks is not None and marks.get(key, False)

    def marked(self, cache: str, ttl: float, key: str) -> bool:
        """Is `key` marked at all: do not make requests wait for its fills?"""
        marks = self._marks.get((cache, ttl))
        return marks is not None and key in marks


def mark_for(detail: str) -> bool | None:
    """The mark a fill's outcome detail calls for: True personal, False uncacheable, None."""
    if detail in PERSONAL:
        return True
    if detail in UNCACHEABLE:
        return False
    return None
