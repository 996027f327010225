"""Wiring: stores, upstream session, handler, front and listeners.

`Proxy` is what both the command (through lifecycle.py, which owns signals and reloads) and the
in-process tests run, so tests exercise the same wiring as production, over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.access_writer import AccessLog
from proxy.accesslog import skip_access
from proxy.admin import Admin
from proxy.counters import Counters, Snapshot
from proxy.front_server import Http1Server, LogAccess
from proxy.handler import Handler
from proxy.purge import Purge, parse_purge
from proxy.settings import ADMIN_PATHS, CacheSettings, Listen, Settings
from proxy.store import CacheStore, Fleet, PurgeIncomplete
from proxy.store.memory import MemoryStore
from proxy.store.tiered import TieredStore
from proxy.upstream import UpstreamClient

if TYPE_CHECKING:
    from proxy.store.redis_tier import RedisTier

log = logging.getLogger("sidecache")
T = TypeVar("T")

# Each listener and the settings that change its address, for bind errors.
PUBLIC_LISTENER = "the public listener ([server] listen, --listen, SIDECACHE_LISTEN)"
ADMIN_LISTENER = "the admin listener ([admin] listen, --admin, SIDECACHE_ADMIN)"


class ListenError(OSError):
    """A listener could not be bound: the message names the address, the listener and the
    settings that change it (a bare "[Errno 98] ... ('127.0.0.1', 9180)" said neither).
    An OSError still, with the cause's errno, for callers that catch those."""

    def __init__(self, address: str, listener: str, cause: OSError) -> None:
        super().__init__(cause.errno, listen_problem(address, listener, cause))

    def __str__(self) -> str:
        return str(self.strerror)


def listen_problem(address: str, listener: str, cause: OSError) -> str:
    """`cannot listen on ADDRESS for LISTENER: reason`, the reason as the OS words it."""
    if cause.errno is not None and cause.errno > 0:
        reason = os.strerror(cause.errno)
    else:  # e.g. socket.gaierror, whose codes are not errno values
        reason = cause.strerror or str(cause)
    return f"cannot listen on {address} for {listener}: {reason[:1].lower()}{reason[1:]}"


async def bind(opening: Awaitable[T], address: str, listener: str) -> T:
    """Await `opening` (a server being bound); an OSError becomes a ListenError."""
    try:
        return await opening
    except OSError as exc:
        raise ListenError(address, listener, exc) from exc


class Proxy:
    """A running sidecache: `await start()`, read `addresses`, `await stop()`."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        passed: Sequence[socket.socket] = (),
        access: LogAccess | None = None,
        announce: bool = True,
    ) -> None:
        self.settings = settings
        self.announce = announce  # log the addresses (a worker leaves that to its master)
        self.access = access  # another access-log writer (the dev proxy's coloured lines)
        self.access_log: AccessLog | None = None  # [server] access_log's writer, when in use
        self.passed = list(passed)  # listening sockets from systemd (socket activation)
        self.clock = clock
        self._retired: set[asyncio.Task[None]] = set()  # a reload's old handler and client
        self.counters = Counters()  # /metrics: the process's, kept across reloads
        # The shared tier ([redis]): one client for every cache; a restart applies changes.
        self.tier = shared_tier(settings, clock)
        if self.tier is not None:
            self.tier.on_purge = self._purge_memory
        self.admin = Admin(
            lambda: self.settings,
            lambda: list(self.addresses),
            redis=self._redis_status,
            purge=self.purge,
            metrics=self.metrics,
        )
        # What a master may ask this process (a worker's): query name → its answer.
        self.answers: dict[str, Callable[[Mapping[str, str]], Awaitable[object]]] = {
            "purge": self._purge_answer,
            "metrics": self._metrics_answer,
        }
        self.stores: dict[str, CacheStore] = {
            name: self._store(cache) for name, cache in settings.caches.items()
        }
        self.upstream = UpstreamClient(settings.upstream, counts=self.counters.upstream)
        self.fleet = fleet_fills(settings, self.tier)
        self.handler = Handler(settings, self.stores, self.upstream, clock, fleet=self.fleet)
        self.addresses: list[str] = []
        self._http1: Http1Server | None = None
        self._servers: list[asyncio.Server] = []

    def _store(self, cache: CacheSettings) -> CacheStore:
        memory = MemoryStore(cache, self.clock)
        return memory if self.tier is None else TieredStore(memory, self.tier)

    async def purge(self, purge: Purge) -> tuple[int, dict[str, object]]:
        """Remove what `purge` names from every cache: 200 and how many entries (each copy:
        in memory, in Redis); 502 and why when the shared tier could not be purged. The caches
        are purged side by side: with `[redis]` each may take RedisSettings.purge_seconds, and
        the whole purge takes no longer than the slowest (admin_rules.purge_wait)."""
        removed, errors = 0, []
        done = await asyncio.gather(
            *(store.purge(purge) for store in self.stores.values()), return_exceptions=True
        )
        for result in done:
            if isinstance(result, PurgeIncomplete):
                removed += result.removed
                errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                removed += result
        if errors:
            return 502, {"purged": removed, "error": "; ".join(sorted(set(errors)))}
        return 200, {"purged": removed}

    async def _purge_memory(self, cache: str, purge: Purge) -> int:
        """Another instance's purge (its Redis message): this process's memory only."""
        store = self.stores.get(cache)
        if isinstance(store, TieredStore):
            return await store.memory.purge(purge)
        return 0

    async def _purge_answer(self, args: Mapping[str, str]) -> object:
        _, body = await self.purge(parse_purge(args))
        return body

    async def answer(self, what: str, args: Mapping[str, str]) -> object:
        """A master's query (worker.py): the answer, or {"error": why} (logged)."""
        answering = self.answers.get(what)
        if answering is None:
            return {"error": f"no such query: {what!r}"}
        try:
            return await answering(args)
        except Exception as exc:  # a bug, or a bad argument: the master says it, we serve on
            log.exception("answering the master's %s query", what)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _redis_status(self) -> dict[str, object] | None:
        return self.tier.status() if self.tier is not None else None

    async def start(self) -> None:
        """Open the upstream session and bind every listener; on failure undo what was done."""
        try:
            self.access_log = self._open_access_log(self.settings)
            if self.tier is not None:  # one PING at most connect_timeout; serves either way
                await self.tier.start()
            await self.upstream.start()
            await self._listen()
            admin = self.settings.admin
            if admin is not None:
                await bind(self.admin.start(admin), str(admin), ADMIN_LISTENER)
        except BaseException:
            await self.stop()
            raise
        if not self.announce:
            return
        for address in self.addresses:
            log.info("listening on %s", address)
        for address in self.admin.addresses:
            log.info("admin (%s) on %s", ADMIN_PATHS, address)

    async def _listen(self) -> None:
        access = self._access_log(self.settings)
        factory = Http1Server(self.handler, access, self.settings.trust, self.settings.limits)
        self._http1 = factory
        loop = asyncio.get_running_loop()
        if self.passed:  # socket activation: systemd's sockets replace [server] listen
            for sock in self.passed:
                activated: asyncio.Server
                if sock.family == socket.AF_UNIX:
                    activated = await loop.create_unix_server(factory, sock=sock)
                    self.addresses.append(f"unix:{sock.getsockname()}")
                else:
                    activated = await loop.create_server(factory, sock=sock)
                    self.addresses.extend(addresses([sock], Listen()))
                self._servers.append(activated)
            return
        for listen in self.settings.listen:
            server = await bind(self._open(listen, factory), str(listen), PUBLIC_LISTENER)
            self._servers.append(server)
            self.addresses.extend(addresses(server.sockets, listen))

    async def _open(self, listen: Listen, factory: Http1Server) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if listen.path:
            remove_stale_socket(listen.path)
            return await loop.create_unix_server(factory, listen.path)
        return await loop.create_server(
            factory, listen.host or None, listen.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish ([server] shutdown_timeout at most: 10 s
        by default, inside systemd's and Docker's stop timeouts), close."""
        await self.admin.stop()
        for server in self._servers:
            server.close()
        if self._http1 is not None:
            await self._http1.shutdown(self.settings.limits.shutdown_timeout)
            self._http1 = None
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        await self.handler.aclose()
        for task in list(self._retired):  # a reload's leftovers: close them now
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        await self.upstream.close()
        if self.tier is not None:
            await self.tier.close()
        if self.access_log is not None:  # last: the lines of requests cut at stop are in
            await self.access_log.close()
            self.access_log = None

    def metrics_snapshot(self) -> Snapshot:
        """The counters now, with each store's size and the client connections open."""
        stats = {name: store.stats() for name, store in self.stores.items()}
        connections = len(self._http1.connections) if self._http1 is not None else 0
        redis = self.tier.metric_counts() if self.tier is not None else None
        return self.counters.snapshot(stats, connections, redis)

    async def metrics(self) -> Snapshot:
        return self.metrics_snapshot()

    async def _metrics_answer(self, args: Mapping[str, str]) -> object:
        return self.metrics_snapshot()

    def _access_log(self, settings: Settings) -> LogAccess:
        """What the front calls when a request ends: the counters' `count`, and the access log's
        writer when it is on (after the count)."""
        writer = self._access_writer(settings)
        self.counters.then = None if writer is skip_access else writer
        return self.counters.count

    def _access_writer(self, settings: Settings) -> LogAccess:
        if not settings.headers.access_log:
            return skip_access
        if self.access is not None:
            return self.access
        return self.access_log.log if self.access_log is not None else skip_access

    def _open_access_log(self, settings: Settings) -> AccessLog | None:
        """The writer [server] access_log asks for (None when off, or when another writer
        replaces it); an AccessLogError naming the file when it cannot be opened."""
        wanted = settings.headers.access_log
        if not wanted or self.access is not None:
            return None
        writer = AccessLog(_log_path(wanted))
        writer.open()
        return writer

    def reopen_access_log(self) -> None:
        """SIGUSR1: open the access-log file again by its name (logrotate moved it)."""
        if self.access_log is not None:
            self.access_log.reopen()

    def _reload_access_log(self, settings: Settings) -> str | None:
        """Flush the access log; when `settings` send it elsewhere (or turn it off), open the
        new one and retire the old after its last lines. A note when the new one cannot be
        opened: the old one stays."""
        old, wanted = self.access_log, settings.headers.access_log
        if old is not None:
            old.flush()
        if self.access is not None or (old is None and not wanted):
            return None
        if old is not None and wanted and old.path == _log_path(wanted):
            return None
        try:
            self.access_log = self._open_access_log(settings)
        except OSError as exc:
            return f"{exc}; the access log stays {f'on {old.sink}' if old else 'off'}"
        if old is not None:
            old.stop()  # now: a stop right after this reload cancels the retiring task
            self._retire_soon(old.close())
        return None

    async def reload(self, settings: Settings) -> list[str]:
        """Take a new configuration for new requests, without dropping a connection: caches
        whose definition is unchanged keep their contents; a request in flight finishes with
        the handler and upstream client it started with. Returns what only a restart applies."""
        later = restart_notes(self.settings, settings)
        stores: dict[str, CacheStore] = {}
        for name, cache in settings.caches.items():
            kept = self.stores.get(name)
            same = kept is not None and self.settings.caches.get(name) == cache
            stores[name] = kept if same and kept is not None else self._store(cache)
        for name, store in self.stores.items():
            if stores.get(name) is not store:
                self.counters.retire(name, store.stats())
        old_handler, old_upstream = self.handler, self.upstream
        upstream = self.upstream
        if settings.upstream != self.settings.upstream:
            upstream = UpstreamClient(settings.upstream, counts=self.counters.upstream)
            await upstream.start()
        self.handler = Handler(settings, stores, upstream, self.clock, fleet=self.fleet)
        for note in (self._reload_access_log(settings), self.admin.reload(settings)):
            if note is not None:
                later.append(note)
        self.settings, self.stores, self.upstream = settings, stores, upstream
        if self._http1 is not None:
            self._http1.set_driver(self.handler)
            self._http1.trust, self._http1.limits = settings.trust, settings.limits
            self._set_log_access(self._access_log(settings))
        retiring = old_upstream if upstream is not old_upstream else None
        self._retire_soon(self._retire(old_handler, retiring))
        return later

    def _set_log_access(self, log_access: LogAccess) -> None:
        """Every connection, open ones too, logs with `log_access` from now on."""
        assert self._http1 is not None
        self._http1.log_access = log_access
        for connection in self._http1.connections:
            connection.log_access = log_access

    def _retire_soon(self, ending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(ending)
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _retire(self, handler: Handler, upstream: UpstreamClient | None) -> None:
        """After a reload: the old handler's background refreshes stop; the old upstream
        client closes once the last exchange that uses it has ended (or at stop)."""
        await handler.aclose()
        if upstream is None:
            return
        try:
            await upstream.retire()
        finally:
            await upstream.close()

    @property
    def port(self) -> int:
        """The first TCP port bound (useful when listening on port 0)."""
        for address in self.addresses:
            if address.startswith("http://"):
                return int(address.rsplit(":", 1)[1])
        raise LookupError("no TCP listener")


def shared_tier(settings: Settings, clock: Callable[[], float]) -> RedisTier | None:
    """The Redis tier `[redis]` asks for, or None. redis-py is imported here, only then: it
    adds ~50 ms to every start (and every worker's) that does not use it."""
    if settings.redis is None:
        return None
    from proxy.store.redis_tier import RedisTier

    return RedisTier(settings.redis, clock)


def fleet_fills(settings: Settings, tier: RedisTier | None) -> Fleet | None:
    """Coalescing across instances, when `[redis] coalesce` asks for it."""
    if tier is None or settings.redis is None or not settings.redis.coalesce:
        return None
    from proxy.store.fleet import FleetFills

    return FleetFills(tier)


def restart_notes(old: Settings, new: Settings) -> list[str]:
    """What of a reload takes effect only later: on new connections, or at a restart."""
    later: list[str] = []
    if new.listen != old.listen:
        later.append("listen addresses changed: a restart applies them")
    if new.workers != old.workers:
        later.append("the number of workers changed: a restart applies it")
    if (new.trust, new.limits) != (old.trust, old.limits):
        later.append("trusted_proxies and client limits apply to new connections")
    if new.redis != old.redis:
        later.append("[redis] changed: a restart applies it")
    if new.admin != old.admin:
        later.append("[admin] listen changed: a restart applies it")
    return later


def _log_path(wanted: bool | str) -> str | None:
    """[server] access_log's file, or None for stdout (`wanted` is not false)."""
    return wanted if isinstance(wanted, str) else None


def remove_stale_socket(path: str) -> None:
    if os.path.exists(path) and _is_stale_socket(path):
        os.unlink(path)


def _is_stale_socket(path: str) -> bool:
    """A socket file nobody listens on (left by a crash) may be replaced; anything else not
    (connecting to a regular file is refused too, so the file type is checked first)."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def addresses(sockets: Iterable[socket.socket], listen: Listen) -> list[str]:
    if listen.path:
        return [f"unix:{listen.path}"]
    found = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        found.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return found
