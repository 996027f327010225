"""Wiring and lifecycle: stores, upstream session, handler, front and listeners.

`Proxy` is what both the CLI and the in-process tests run, so tests exercise the same wiring as
production, over real sockets.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Callable

from aiohttp import web

from proxy.accesslog import log_access, skip_access
from proxy.front import make_server
from proxy.handler import Handler
from proxy.settings import Listen, Settings
from proxy.store import CacheStore
from proxy.store.memory import MemoryStore
from proxy.upstream import UpstreamClient

log = logging.getLogger("sidecache")
# How long a stop waits for requests in flight (aiohttp's default is 60 s, longer than systemd's
# and Docker's stop timeouts). Configurable with the graceful-lifecycle work.
SHUTDOWN_SECONDS = 10.0


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
        self._runner: web.ServerRunner | None = None

    async def start(self) -> None:
        """Open the upstream session and bind every listener; on failure undo what was done."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.upstream.start()
        access = log_access if self.settings.headers.access_log else skip_access
        server = make_server(self.handler.handle, access, self.settings.trust)
        self._runner = web.ServerRunner(
            server, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._runner.setup()
        for listen in self.settings.listen:
            site = _site(self._runner, listen)
            await site.start()
            self.addresses.extend(_bound(site, listen))
        for address in self.addresses:
            log.info("listening on %s", address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.upstream.close()

    @property
    def port(self) -> int:
        """The first TCP port bound (useful when listening on port 0)."""
        for address in self.addresses:
            if address.startswith("http://"):
                return int(address.rsplit(":", 1)[1])
        raise LookupError("no TCP listener")


def _site(runner: web.ServerRunner, listen: Listen) -> web.BaseSite:
    if listen.path:
        if os.path.exists(listen.path) and _is_stale_socket(listen.path):
            os.unlink(listen.path)
        return web.UnixSite(runner, listen.path)
    return web.TCPSite(runner, listen.host, listen.port, reuse_address=True)


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


def _bound(site: web.BaseSite, listen: Listen) -> list[str]:
    if listen.path:
        return [f"unix:{listen.path}"]
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    found = []
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        found.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return found
