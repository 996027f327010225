"""Which stored entries a purge looks at: the digests of the entries stored for each target
and under each tag, so that a purge by URL or tag costs what it matches, not a scan.

Nothing tells the index when cachetools evicts or expires an entry, so it holds some digests
of entries already gone (a purge skips them: it checks the live entry). To keep that bounded,
`add` counts what it indexed since the last rebuild and asks for a new one once that passes
twice the live entries (plus a floor): rebuilding walks the live entries once, so it costs
O(1) per store, amortised, and the index holds at most a few times what the cache does.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.store import CachedResponse

REBUILD_FLOOR = 1024  # index additions never trigger a rebuild below this many


class PurgeIndex:
    def __init__(self) -> None:
        self.by_target: dict[str, set[bytes]] = {}
        self.by_tag: dict[str, set[bytes]] = {}
        self._added = 0  # digests added since the last rebuild
        self._live = 0  # entries at the last rebuild

    def add(self, key_digest: bytes, entry: CachedResponse) -> bool:
        """Index `entry` stored under `key_digest`; True when the index should be rebuilt."""
        self.by_target.setdefault(entry.target, set()).add(key_digest)
        for tag in entry.tags:
            self.by_tag.setdefault(tag, set()).add(key_digest)
        self._added += 1
        return self._added > 2 * self._live + REBUILD_FLOOR

    def rebuild(self, live: Iterable[tuple[bytes, CachedResponse | None]]) -> None:
        """Index exactly the `live` entries (None: gone meanwhile)."""
        self.by_target, self.by_tag = {}, {}
        count = 0
        for key_digest, entry in live:
            if entry is not None:
                self.add(key_digest, entry)
                count += 1
        self._added, self._live = 0, count
