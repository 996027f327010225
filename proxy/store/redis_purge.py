"""Purge on the shared tier: the index Redis keeps of its entries, the purge itself, and the
message that tells every instance to purge its own memory (L1).

The index. Each entry written to Redis is added (by INDEX_SCRIPT, in the writer's pipeline)
to a sorted set per place and one per tag, scored by the entry's expiry (Redis's clock):

    {prefix}{cache}:url:{host} {target}   the entries stored for that Host and target
    {prefix}{cache}:tagged:{tag}          the entries tagged so

(a Host and a request target hold no space, so the space separates them; the place is the
key's view of the request, keys.py `place`.) The script drops the members already expired and
keeps each set as long as its longest-lived member, so a set holds about the live entries of
its place or tag, however long writes go on. Names are bytes as the visitor sent them (UTF-8
or not). A purge by tag, or by URL with a host, reads the few sets it can be in; by `/path`
(any host) or by prefix, it SCANs the cache's `url:` sets: O(keys in the database), as a ban
in Varnish is, bounded by SCAN_SECONDS. The entries named are deleted with their sets.
(Before this layout, 0.x wrote plain sets under `:u:` and `:tag:`; those expire by themselves.)

The message. After its own purge, an instance PUBLISHes the purge on `{prefix}purge`; every
instance subscribed (`PurgeListener`) removes the same entries from its memory. A purge
published while an instance was not subscribed (Redis down, reconnecting) does not reach that
instance's memory: its entries there live out their ttl (which is why the default ttl is
short). The sender skips its own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.keys import ANY_HOST
from proxy.purge import Purge, PurgeError, parse_purge, url_targets
from proxy.settings import SCAN_SECONDS, RedisSettings
from proxy.store import CachedResponse

log = logging.getLogger("sidecache")
FAILURES = (RedisError, OSError, TimeoutError)  # what a call to Redis raises (redis_tier too)
SCAN_COUNT = 1000
LISTEN_POLL = 5.0  # seconds the subscriber waits for a message before it looks again

# KEYS: the index sets of one entry; ARGV[1]: the entry's key, ARGV[2]: its ttl (ms). Scores
# are expiries on Redis's clock (TIME), so every instance's writes agree; PTTL is -1 for a
# set just created by ZADD.
INDEX_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return #KEYS
"""
_GLOB = re.compile(rb"([*?\[\]\\])")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # the octets the visitor or app sent


def _places(prefix: str, cache: str) -> bytes:
    """What the names of a cache's place sets start with."""
    return _bytes(f"{prefix}{cache}:url:")


def _place_key(prefix: str, cache: str, host: str, target: str) -> bytes:
    return _places(prefix, cache) + _bytes(f"{host} {target}")


def index_keys(prefix: str, cache: str, entry: CachedResponse) -> list[bytes]:
    """The index sets `entry` belongs to."""
    keys = [_place_key(prefix, cache, entry.host, entry.target)]
    keys.extend(_bytes(f"{prefix}{cache}:tagged:{tag}") for tag in entry.tags)
    return keys


def purge_sets(prefix: str, cache: str, purge: Purge) -> tuple[list[bytes], bytes | None]:
    """The index sets that can name what `purge` removes: read them directly, or SCAN with
    the pattern (the second, or None) and keep those `scanned_place` finds `purge` reaches."""
    if purge.kind == "tag":
        return [_bytes(f"{prefix}{cache}:tagged:{purge.tag}")], None
    if purge.kind == "url" and purge.host is not None:
        hosts = (purge.host, ANY_HOST)
        targets = url_targets(purge.target)
        return [_place_key(prefix, cache, h, t) for h in hosts for t in targets], None
    return [], _GLOB.sub(rb"\\\1", _places(prefix, cache)) + b"*"


def scanned_place(prefix: str, cache: str, key: bytes) -> tuple[str, str]:
    """(host, target) of an index set's name found by a SCAN of `purge_sets`' pattern."""
    base = len(_places(prefix, cache))
    host, _, target = key[base:].decode("utf-8", "surrogateescape").partition(" ")
    return host, target


def channel(prefix: str) -> str:
    return f"{prefix}purge"


def message(sender: str, cache: str, purge: Purge) -> str:
    return json.dumps({"from": sender, "cache": cache, **purge.args})


def read_message(data: bytes | str, me: str) -> tuple[str, Purge] | None:
    """(cache, purge) of another instance's message; None for our own or a malformed one."""
    try:
        fields = json.loads(data)
        if not isinstance(fields, dict) or fields.pop("from", None) == me:
            return None
        cache = fields.pop("cache")
        if not isinstance(cache, str) or not all(isinstance(v, str) for v in fields.values()):
            return None
        return cache, parse_purge(fields)
    except (ValueError, KeyError, PurgeError):
        return None


async def purge_redis(client: Redis, prefix: str, cache: str, purge: Purge) -> int:
    """Delete the entries of `cache` that `purge` names, and their index sets; how many
    entries Redis held. FAILURES propagate: the caller says the purge is incomplete."""
    sets, pattern = purge_sets(prefix, cache, purge)
    if pattern is not None:
        for key in await _scan(client, pattern):
            host, target = scanned_place(prefix, cache, key)
            if purge.matches(host, target, ()):
                sets.append(key)
    removed = 0
    for start in range(0, len(sets), 100):
        some = sets[start : start + 100]
        pipe = client.pipeline(transaction=False)
        for key in some:
            _ = pipe.zrange(key, 0, -1)
        members: set[bytes] = set().union(*await pipe.execute())
        entries = [member.decode() for member in members]
        for first in range(0, len(entries), 500):
            removed += int(await client.unlink(*entries[first : first + 500]))
        await client.unlink(*some)
    return removed


async def _scan(client: Redis, pattern: bytes) -> list[bytes]:
    found: list[bytes] = []
    deadline = time.monotonic() + SCAN_SECONDS
    cursor = 0
    while True:
        cursor, keys = await client.scan(cursor, match=pattern, count=SCAN_COUNT)
        found.extend(key if isinstance(key, bytes) else _bytes(key) for key in keys)
        if cursor == 0:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"SCAN for {pattern!r} did not end within {SCAN_SECONDS:g}s")


class PurgeListener:
    """The subscription to `{prefix}purge`: each other instance's purge is handed to
    `on_purge(cache, purge)` (this process's memory). Reconnects every cool-down while Redis
    is away, on a connection of its own (a subscribed connection can do nothing else)."""

    def __init__(
        self,
        settings: RedisSettings,
        connect: Callable[[RedisSettings], Redis],
        on_purge: Callable[[str, Purge], Awaitable[int]],
    ) -> None:
        self.settings, self._connect, self.on_purge = settings, connect, on_purge
        self.me = os.urandom(8).hex()
        self.subscribed = asyncio.Event()
        self._closing = asyncio.Event()
        self.received = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # Not `while True`: redis-py can turn the cancellation of a connect in progress into
        # a TimeoutError, which would leave this loop running after close().
        while not self._closing.is_set():
            try:
                await self._listen()
            except FAILURES as exc:
                log.debug("redis: the purge subscription ended (%s); again soon", exc)
            except Exception:  # a bug must not end the subscription for good
                log.exception("redis: the purge subscription failed")
            self.subscribed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.settings.cooldown)

    async def _listen(self) -> None:
        client = self._connect(self.settings)
        try:
            pubsub = client.pubsub()
            async with asyncio.timeout(self.settings.connect_timeout):
                await pubsub.subscribe(channel(self.settings.prefix))
            self.subscribed.set()
            while True:
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=LISTEN_POLL)
                if got is None:
                    async with asyncio.timeout(self.settings.connect_timeout):
                        await pubsub.ping()  # a connection gone quiet is found out
                    continue
                if got.get("type") == "message":
                    await self._take(got["data"])
        finally:
            with contextlib.suppress(*FAILURES):
                await client.aclose()

    async def _take(self, data: bytes | str) -> None:
        found = read_message(data, self.me)
        if found is None:
            return
        cache, purge = found
        self.received += 1
        removed = await self.on_purge(cache, purge)
        log.debug(
            "redis: purge %s of cache %s from another instance: %d removed",
            purge.described(),
            cache,
            removed,
        )
