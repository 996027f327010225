"""The Redis side of the shared tier: one client per process, every call under `[redis]
timeout`, a circuit breaker (breaker.py), writes in the background and a probe that
reconnects. What an entry looks like in Redis is codec.py's; which calls are made when is
tiered.py's.

Redis down never hurts a visitor: a call that fails or takes longer than the timeout is a
miss (a get) or is dropped (a write); after `failures` in a row the circuit opens and Redis is
not asked at all, until a PING made in the background (never on a visitor's time, with
`connect_timeout`) answers. Changes of state are logged once each.

Writes never hold a response: `store` queues the entry (at most WRITE_QUEUE entries and
WRITE_BYTES of them; past that a write is dropped and counted, never queued without bound),
and one task encodes and sends them, a pipeline of a few at a time. A newer write of a key
replaces a queued older one; a delete takes a queued write of its key back first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.breaker import Breaker, Circuit
from proxy.purge import Purge
from proxy.settings import RedisSettings
from proxy.store import CachedResponse, PurgeIncomplete
from proxy.store.codec import EntryError, decode, encode
from proxy.store.deadline import within
from proxy.store.redis_purge import (
    FAILURES,
    INDEX_SCRIPT,
    PurgeListener,
    channel,
    index_keys,
    message,
    purge_redis,
)

log = logging.getLogger("sidecache")
Clock = Callable[[], float]
T = TypeVar("T")

WRITE_QUEUE = 256  # entries waiting to be written, at most (then writes are dropped)
WRITE_BYTES = 16 * 1024 * 1024  # and bytes of them
BATCH = 16  # entries in one pipeline, at most
BATCH_BYTES = 256 * 1024  # and bytes: a batch must fit in the call's timeout


@dataclass
class TierCounts:
    """What the tier did, for /ready (and metrics)."""

    hits: int = 0
    misses: int = 0
    skipped: int = 0  # calls not made: the circuit was open
    errors: int = 0  # calls that failed or timed out
    undecodable: int = 0  # values that were not an entry this version reads (a miss)
    writes: int = 0
    writes_dropped: int = 0  # the queue was full, or the circuit open
    deletes: int = 0  # keys Redis held and deleted


class _Skipped(Exception):
    """The circuit opened while a call waited for a slot: it is not made."""


@dataclass
class _Write:
    cache: str  # the named cache: its index sets (redis_purge.py) carry its name
    entry: CachedResponse
    ttl_ms: int


class RedisTier:
    """`await start()`, then `fetch`, `store`, `delete`; `await close()`.

    `clock` is the entries' monotonic clock and `wall` epoch seconds (their difference moves
    entry times to and from the wall clock); `timer` drives the breaker and the probe (real
    monotonic time: the probe sleeps on it)."""

    def __init__(
        self,
        settings: RedisSettings,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        timer: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock, self.wall, self.timer = clock, wall, timer
        self.breaker = Breaker(settings.failures, settings.cooldown, settings.timeout)
        self.counts = TierCounts()
        self.client: Redis | None = None
        self._pending: dict[str, _Write] = {}
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._opened = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error = ""
        self._closing = False
        self._slots = asyncio.Semaphore(settings.max_connections)
        # Other instances' purges, for this process's memory (Proxy sets on_purge).
        self.listener = PurgeListener(settings, connect, self._purged_elsewhere)
        self.on_purge: Callable[[str, Purge], Awaitable[int]] | None = None

    async def _purged_elsewhere(self, cache: str, purge: Purge) -> int:
        """Another instance's purge: this process's queued writes of what it names would put
        the page back in Redis, and its memory still serves it."""
        self._unqueue_purged(cache, purge)
        return await self.on_purge(cache, purge) if self.on_purge is not None else 0

    # --- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (one PING, within connect_timeout: serving starts either way) and start the
        writer and the probe."""
        self.client = connect(self.settings)
        if not await self._probe():
            log.warning(
                "redis %s: down (%s); memory and the app serve, Redis is tried again every %gs",
                self.settings.shown_url,
                self._last_error,
                self.settings.cooldown,
            )
            self._opened.set()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._probe_loop())]
        self.listener.start()

    async def close(self) -> None:
        """Stop the writer, the probe and the subscription, then close the client. The
        loops also stop on `_closing`: redis-py can turn a cancellation that lands in a call
        into a TimeoutError (a failure those loops survive), which would keep them running."""
        self._closing = True
        self._wake.set()
        self._opened.set()
        await self.listener.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.client is not None:
            with contextlib.suppress(*FAILURES):
                await self.client.aclose()
            self.client = None

    def key(self, cache: str, key: str) -> str:
        """The Redis key of a cache's key: the deployment's prefix, the cache's name and a
        digest of the key (a visitor chooses the key's target: it can be kilobytes)."""
        digest = blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return f"{self.settings.prefix}{cache}:{digest}"

    # --- calls a request waits for ---------------------------------------------------------

    async def _call(self, command: Callable[[Redis], Awaitable[T]]) -> T:
        """`command` on the client within [redis] timeout, once one of max_connections slots
        is free (the timeout counts from then: time spent queued behind this process's own
        calls says nothing of Redis); `_Skipped` when the circuit is open by then."""
        async with self._slots:
            if not self.breaker.allows() or self.client is None:
                raise _Skipped
            return await within(command(self.client), self.settings.timeout)

    async def run(self, command: Callable[[Redis], Awaitable[T]]) -> T | None:
        """`command` as every call is made (a slot, the timeout, the breaker told how it
        went); None when it was skipped or failed, so `command` must not return None."""
        if not self.breaker.allows():  # the common case while Redis is down: no slot taken
            self.counts.skipped += 1
            return None
        try:
            result = await self._call(command)
        except _Skipped:
            self.counts.skipped += 1
            return None
        except FAILURES as exc:
            self._failed(exc)
            return None
        self._succeeded()
        return result

    async def fetch(self, rkey: str) -> CachedResponse | None:
        """The entry under `rkey` on this process's clock; None for a miss, an open circuit,
        a failure, a value that does not decode or an entry already expired."""
        found = await self.run(lambda client: _boxed(client.get(rkey)))
        if found is None:
            return None
        (value,) = found
        if not isinstance(value, bytes):
            self.counts.misses += 1
            return None
        return self._decoded(rkey, value)

    def _decoded(self, rkey: str, value: bytes) -> CachedResponse | None:
        try:
            entry = decode(value, self.wall() - self.clock())
        except EntryError as exc:
            self.counts.undecodable += 1
            log.debug("redis: %s is not an entry this version reads (%s): a miss", rkey, exc)
            return None
        if entry.expires_at <= self.clock():
            self.counts.misses += 1
            return None
        self.counts.hits += 1
        return entry

    async def delete(self, rkeys: Iterable[str]) -> bool:
        """Delete `rkeys` (and any queued write of them); True when Redis held one."""
        keys = list(rkeys)
        for rkey in keys:
            self._unqueue(rkey)
        if not keys:
            return False
        deleted = await self.run(lambda client: client.delete(*keys))
        if not deleted:
            return False
        self.counts.deletes += int(deleted)
        return True

    async def purge(self, cache: str, purge: Purge) -> int:
        """Remove what `purge` names from Redis (and from the writes queued for it), then
        tell every other instance to remove it from its memory; how many entries Redis held.
        PurgeIncomplete when Redis could not be reached in time: the caller says so."""
        self._unqueue_purged(cache, purge)
        if self.client is None or not self.breaker.allows():
            raise PurgeIncomplete(f"redis {self.settings.shown_url}: {self.breaker.state.value}")
        # A client of its own: the visitors' calls share max_connections through their
        # slots, and a SCAN or a pipeline of this purge taking one of those connections would
        # make a visitor's call wait in the pool, past its timeout (a failure, for a purge).
        prefix, client = self.settings.prefix, connect(self.settings)
        try:
            async with asyncio.timeout(self.settings.purge_seconds):
                removed = await purge_redis(client, prefix, cache, purge)
                await client.publish(channel(prefix), message(self.listener.me, cache, purge))
        except FAILURES as exc:
            raise PurgeIncomplete(f"redis {self.settings.shown_url}: {_describe(exc)}") from exc
        finally:
            with contextlib.suppress(*FAILURES):
                await client.aclose()
        self.counts.deletes += removed
        return removed

    # --- writes, in the background ---------------------------------------------------------

    def store(self, cache: str, rkey: str, entry: CachedResponse) -> bool:
        """Queue `entry` of `cache` to be written under `rkey` (and indexed for purges) until
        it expires; False when it is not (the circuit is open, the queue is full, or it
        expires within a millisecond)."""
        ttl_ms = int((entry.expires_at - self.clock()) * 1000)
        if ttl_ms < 1:
            return False
        self._unqueue(rkey)
        full = len(self._pending) >= WRITE_QUEUE or self._pending_bytes + entry.size > WRITE_BYTES
        if full or not self.breaker.allows():
            self.counts.writes_dropped += 1
            return False
        self._pending[rkey] = _Write(cache, entry, ttl_ms)
        self._pending_bytes += entry.size
        self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _unqueue(self, rkey: str) -> None:
        write = self._pending.pop(rkey, None)
        if write is not None:
            self._pending_bytes -= write.entry.size

    def _unqueue_purged(self, cache: str, purge: Purge) -> None:
        for rkey, write in list(self._pending.items()):
            entry = write.entry
            if write.cache == cache and purge.matches(entry.host, entry.target, entry.tags):
                self._unqueue(rkey)

    def _batch(self) -> list[tuple[str, _Write]]:
        """The oldest queued writes, at most BATCH of them and BATCH_BYTES (at least one)."""
        batch: list[tuple[str, _Write]] = []
        size = 0
        for rkey, write in list(self._pending.items()):
            if batch and (len(batch) >= BATCH or size + write.entry.size > BATCH_BYTES):
                break
            batch.append((rkey, write))
            size += write.entry.size
            self._unqueue(rkey)
        return batch

    async def _write_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                batch = self._batch()
                try:
                    await self._write(batch)
                except Exception:  # a bug must not end the writer: writes would stop for good
                    self.counts.writes_dropped += len(batch)
                    log.exception("redis: writing %d entries failed", len(batch))

    async def _write(self, batch: list[tuple[str, _Write]]) -> None:
        if not self.breaker.allows() or self.client is None:
            self.counts.writes_dropped += len(batch)
            return
        offset = self.wall() - self.clock()
        pipe = self.client.pipeline(transaction=False)
        written = 0
        for rkey, write in batch:
            try:
                value = encode(write.entry, offset)
            except ValueError:
                continue
            _ = pipe.set(rkey, value, px=write.ttl_ms)  # queued: the pipeline is awaited below
            keys = index_keys(self.settings.prefix, write.cache, write.entry)
            # EVAL with the text, not a registered script's EVALSHA: a pipeline of those
            # first runs SCRIPT EXISTS on a connection of its own, and Redis keeps the
            # compiled script by its digest anyway (the text is ~300 bytes a write).
            _ = pipe.eval(INDEX_SCRIPT, len(keys), *keys, rkey, write.ttl_ms)
            written += 1
        if not written:
            return
        try:
            await self._call(lambda _: pipe.execute())
        except _Skipped:
            self.counts.writes_dropped += written
            return
        except FAILURES as exc:
            self.counts.writes_dropped += written
            self._failed(exc)
            return
        self._succeeded()
        self.counts.writes += written

    # --- the breaker and the probe ---------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self.counts.errors += 1
        self._last_error = _describe(exc)
        if self.breaker.failed(self.timer()) is Circuit.OPEN:
            log.warning(
                "redis %s: circuit open after %d failures in a row (%s); memory and the app "
                "serve, Redis is tried again every %gs",
                self.settings.shown_url,
                self.settings.failures,
                self._last_error,
                self.settings.cooldown,
            )
            self._opened.set()

    def _succeeded(self) -> None:
        was = self.breaker.state
        if self.breaker.succeeded(self.timer()) is not None and was is Circuit.OPEN:
            self._opened.clear()
            log.info("redis %s: up", self.settings.shown_url)

    async def _probe(self) -> bool:
        """One PING within connect_timeout; the breaker hears how it went."""
        assert self.client is not None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await self.client.ping()
        except FAILURES as exc:
            self._last_error = _describe(exc)
            self.breaker.failed(self.timer())
            return False
        self._succeeded()
        return True

    async def _probe_loop(self) -> None:
        """While the circuit is open: a PING every cool-down, until one answers."""
        while not self._closing:
            await self._opened.wait()
            while self.breaker.state is Circuit.OPEN and not self._closing:
                await asyncio.sleep(self.breaker.retry_in(self.timer()))
                if not self.breaker.probe_due(self.timer()):
                    continue
                try:
                    await self._probe()
                except Exception:  # a bug must not end the probe: the circuit would stay open
                    self.breaker.failed(self.timer())
                    log.exception("redis: the probe failed")

    def metric_counts(self) -> dict[str, int]:
        """What /metrics shows of the tier: its counts, and "up" (1 while the circuit is)."""
        counts = dict(vars(self.counts))
        counts["purges_received"] = self.listener.received
        counts["up"] = int(self.breaker.state is Circuit.UP)
        return counts

    def status(self) -> dict[str, Any]:
        """What /ready says of the tier."""
        state = self.breaker.state
        shown: dict[str, Any] = {"state": state.value, "url": self.settings.shown_url}
        if state is not Circuit.UP and self._last_error:
            shown["error"] = self._last_error
        if state is Circuit.OPEN:
            shown["retry_in"] = round(self.breaker.retry_in(self.timer()), 3)
        shown.update(vars(self.counts))
        shown["writes_queued"] = len(self._pending)
        shown["purges_subscribed"] = self.listener.subscribed.is_set()
        shown["purges_received"] = self.listener.received  # other instances' purges
        return shown


async def _boxed(reply: Awaitable[T]) -> tuple[T]:
    """A reply that may be None (GET of a missing key) in a tuple: `run`'s None is a failure."""
    return (await reply,)


def connect(settings: RedisSettings) -> Redis:
    """A client for `settings.url` (no connection yet): a pool of max_connections (as many as
    the tier's slots: a call never waits in it), no retries (a retry would double a visitor's
    wait: the breaker decides when to try again), connect and read bounded by
    connect_timeout underneath every call's own timeout."""
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=None,
        socket_timeout=settings.connect_timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


async def ping(settings: RedisSettings) -> dict[str, Any]:
    """For a master's /ready (its workers hold the tiers): one PING on a connection of its
    own, within connect_timeout."""
    client = connect(settings)
    try:
        async with asyncio.timeout(settings.connect_timeout):
            await client.ping()
    except FAILURES as exc:
        return {"state": "down", "url": settings.shown_url, "error": _describe(exc)}
    finally:
        with contextlib.suppress(*FAILURES):
            await client.aclose()
    return {"state": "up", "url": settings.shown_url}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
