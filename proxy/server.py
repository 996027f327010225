"""Wiring and lifecycle: stores, upstream session, handler, front and listeners.

`Proxy` is what both the CLI and the in-process tests run, so tests exercise the same wiring as
production, over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable

from proxy.accesslog import log_access, skip_access
from proxy.handler import Handler
from proxy.http1 import Http1Server
from proxy.settings import Listen, Settings
from proxy.store import CacheStore
from proxy.store.memory import MemoryStore
from proxy.upstream import UpstreamClient

log = logging.getLogger("sidecache")


class Proxy:
    """A running sidecache: `await start()`, read `addresses`, `await stop()`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.stores: dict[str, CacheStore] = {
            name: MemoryStore(cache, clock) for name, cache in settings.caches.items()
        }
        self.upstream = UpstreamClient(settings.upstream)
        self.handler = Handler(settings, self.stores, self.upstream, clock)
        self.addresses: list[str] = []
        self._http1: Http1Server | None = None
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        """Open the upstream session and bind every listener; on failure undo what was done."""
        try:
            await self.upstream.start()
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        for address in self.addresses:
            log.info("listening on %s", address)

    async def _listen(self) -> None:
        access = log_access if self.settings.headers.access_log else skip_access
        factory = Http1Server(self.handler, access, self.settings.trust, self.settings.limits)
        self._http1 = factory
        loop = asyncio.get_running_loop()
        for listen in self.settings.listen:
            server: asyncio.Server
            if listen.path:
                _remove_stale_socket(listen.path)
                server = await loop.create_unix_server(factory, listen.path)
            else:
                server = await loop.create_server(
                    factory, listen.host or None, listen.port, reuse_address=True
                )
            self._servers.append(server)
            self.addresses.extend(_addresses(server.sockets, listen))

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish ([server] shutdown_timeout at most: 10 s
        by default, inside systemd's and Docker's stop timeouts), close."""
        for server in self._servers:
            server.close()
        if self._http1 is not None:
            await self._http1.shutdown(self.settings.limits.shutdown_timeout)
            self._http1 = None
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        await self.handler.aclose()
        await self.upstream.close()

    @property
    def port(self) -> int:
        """The first TCP port bound (useful when listening on port 0)."""
        for address in self.addresses:
            if address.startswith("http://"):
                return int(address.rsplit(":", 1)[1])
        raise LookupError("no TCP listener")


def _remove_stale_socket(path: str) -> None:
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


def _addresses(sockets: Iterable[socket.socket], listen: Listen) -> list[str]:
    if listen.path:
        return [f"unix:{listen.path}"]
    found = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        found.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return found
