"""Background refreshes (stale-while-revalidate, RFC 5861): one per key, with no client.

A stale entry answers at once while this fetches it again (conditionally, with its
validators) and stores what comes back, through the same EntryWriter as a fill. A refresh is
the key's fill for the coalescer: requests that need a fresh answer wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proxy.coalescer import Coalescer
from proxy.decide import Lookup
from proxy.entries import EntryWriter
from proxy.exchange import CacheResult, Outcome
from proxy.forwarding import fill_headers, unconditional
from proxy.policy import Store, personal
from proxy.reasons import NotStoredReason
from proxy.recorder import Recorder
from proxy.settings import Settings
from proxy.store import CachedResponse, CacheStore
from proxy.upstream import UpstreamClient, UpstreamError
from proxy.view import Headers, RequestView

log = logging.getLogger("sidecache")


class Refresher:
    """The refreshes running in the background; `aclose` cancels them at shutdown."""

    def __init__(
        self,
        settings: Settings,
        upstream: UpstreamClient,
        coalescer: Coalescer,
        entries: EntryWriter,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.upstream = upstream
        self.coalescer = coalescer
        self.entries = entries
        self.clock = clock
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
        """Fetch (conditionally, with the entry's validators) and store, with no client."""
        outcome = Outcome(cache=CacheResult.MISS, rule=lookup.rule.label)
        try:
            headers, authorized = fill_request(self.settings, view, lookup)
            asked = self.entries.wall()
            headers = unconditional(headers) + validators(entry)
            response = await self.upstream.request("GET", view.target, headers)
            outcome.status = response.status
            if response.status == 304:
                await self.entries.refreshed(store, lookup, view, entry, key, response, asked)
                outcome.detail = "revalidated"
                return
            made_for_one = personal(response.headers, lookup.rule, self.settings.targeted)
            if made_for_one is not None:
                response.close()
                outcome.detail = made_for_one.value  # marked when the refresh is released
                return
            verdict = self.entries.verdict(response, lookup, authorized)
            if not isinstance(verdict, Store):
                response.close()
                outcome.detail = verdict.reason.value
                return
            recorder = Recorder(self.settings.caches[lookup.rule.cache].item_size)
            async for chunk in response.chunks():
                recorder.feed(chunk)
                if recorder.overflowed:
                    response.close()
                    outcome.detail = NotStoredReason.TOO_BIG.value
                    return
            response.release()
            outcome.detail = await self.entries.store_fill(
                store, lookup, view, response, recorder.body(), verdict, asked
            )
        except UpstreamError as exc:
            log.info("background refresh of %s failed: %s", view.target, exc.message)
        except Exception:  # a bug: logged, and the stale entry simply stays stale
            log.exception("background refresh of %s", view.target)
        finally:
            self.coalescer.release(lookup, leader, outcome)

    async def aclose(self) -> None:
        """Cancel background refreshes (at shutdown)."""
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def fill_request(settings: Settings, view: RequestView, lookup: Lookup) -> tuple[Headers, bool]:
    """What a fill sends (as a brand-new visitor would), and whether it carries
    Authorization (the rule allows it and the client sent one)."""
    rule = lookup.rule
    authorized = rule.allow_authorization and view.header("authorization") is not None
    headers = fill_headers(
        view,
        settings.trust,
        settings.upstream,
        encoding=lookup.encoding,
        keep_cookies=rule.keep_cookies,
        keep_authorization=authorized,
        keep_headers=rule.fill_headers,
        forward_all=rule.forward_all,
    )
    return headers, authorized


def validators(entry: CachedResponse) -> Headers:
    """The conditional headers that ask the origin whether `entry` is still current."""
    found: list[tuple[str, str]] = []
    if entry.etag is not None:
        found.append(("If-None-Match", entry.etag))
    if entry.last_modified is not None:
        found.append(("If-Modified-Since", entry.last_modified))
    return tuple(found)
