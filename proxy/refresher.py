"""Background refreshes (stale-while-revalidate, RFC 5861): one per key, with no client.

A stale entry answers at once while this revalidates it (conditionally, with its validators)
through the handler's own revalidation and fill path, for an `Unattended` client: a 304
refreshes the entry, a storable answer is stored, anything else leaves the stale entry and
marks the key as a fill would. A refresh is the key's fill for the coalescer: requests that
need a fresh answer wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from proxy.coalescer import Coalescer
from proxy.decide import Lookup
from proxy.exchange import CacheResult, ClientSide, Outcome
from proxy.store import CachedResponse, CacheStore
from proxy.view import Headers, RequestView

log = logging.getLogger("sidecache")


class Unattended:
    """The `ClientSide` of a background refresh: a copy of the request that started it, whose
    answer no one reads. What is sent to it is dropped; a stream to it reads only what is to
    be stored (`attended` is False)."""

    attended = False

    def __init__(self, view: RequestView) -> None:
        self.view = view
        self.outcome = Outcome()

    def body(self) -> AsyncIterator[bytes] | None:
        return None

    def body_length(self) -> int | None:
        return None

    def interim(self, status: int, reason: str, headers: Headers) -> None:
        pass

    async def respond(self, status: int, reason: str, headers: Headers, body: bytes) -> None:
        pass

    async def respond_entry(
        self, entry: CachedResponse, age: int, tags: Headers, status: int
    ) -> None:
        pass

    async def start(
        self,
        status: int,
        reason: str,
        headers: Headers,
        content_length: int | None,
        until_close: bool = False,
    ) -> None:
        pass

    async def write(self, chunk: bytes, *, wait: bool = True) -> None:
        pass

    async def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


# The handler's revalidation (Handler.revalidate): a 304 refreshes the entry, anything else is
# a fill, a failure is answered as the stale-if-error settings say.
Revalidation = Callable[
    [ClientSide, Lookup, CacheStore, CachedResponse, str], Coroutine[Any, Any, Outcome]
]


class Refresher:
    """The refreshes running in the background; `aclose` cancels them at shutdown."""

    def __init__(self, coalescer: Coalescer, revalidate: Revalidation) -> None:
        self.coalescer = coalescer
        self.revalidate = revalidate
        self.background: set[asyncio.Task[None]] = set()

    def refresh_behind(
        self, store: CacheStore, lookup: Lookup, view: RequestView, entry: CachedResponse, key: str
    ) -> None:
        """Refresh a stale entry in the background (stale-while-revalidate), one per key: a
        fill already under way for the key is the refresh."""
        leader = self.coalescer.lead(lookup)
        if leader is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._refresh(store, lookup, view, entry, key, leader)
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _refresh(
        self,
        store: CacheStore,
        lookup: Lookup,
        view: RequestView,
        entry: CachedResponse,
        key: str,
        leader: asyncio.Event,
    ) -> None:
        """The revalidation a request would make, for no one: the fill path stores what it may."""
        client = Unattended(view)
        try:
            outcome = await self.revalidate(client, lookup, store, entry, key)
            if outcome.cache in (CacheResult.ERROR, CacheResult.STALE):
                log.info("background refresh of %s failed: %s", view.target, outcome.detail)
        except Exception:  # a bug: logged, and the stale entry simply stays stale
            log.exception("background refresh of %s", view.target)
        finally:
            self.coalescer.release(lookup, leader, client.outcome)

    async def aclose(self) -> None:
        """Cancel background refreshes (at shutdown)."""
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def validators(entry: CachedResponse) -> Headers:
    """The conditional headers that ask the origin whether `entry` is still current."""
    found: list[tuple[str, str]] = []
    if entry.etag is not None:
        found.append(("If-None-Match", entry.etag))
    if entry.last_modified is not None:
        found.append(("If-Modified-Since", entry.last_modified))
    return tuple(found)
