"""The operator's listener: health, readiness and metrics.

It is never the public listener (the public one serves no internal path at all), it is off
unless configured, it listens on loopback or a unix socket only (config.py refuses any other
address: there is no authentication), and it is plain aiohttp.web: nothing here is on a hot path.

    GET /health   200 "ok" while the process runs (Docker's HEALTHCHECK, liveness probes)
    GET /ready    200 when the listeners are bound, a configuration is loaded and the upstream
                  accepts a connection within READY_CHECK_SECONDS (and, with worker processes,
                  every worker is serving); else 503. JSON either way.
    GET /metrics  the counters in the Prometheus format (metrics.py; of every worker, summed)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from proxy.counters import Snapshot
from proxy.metrics import render
from proxy.settings import Listen, Settings

READY_CHECK_SECONDS = 1.0


async def upstream_reachable(settings: Settings) -> tuple[bool, str]:
    """A cheap check: can a connection to the upstream be opened (and closed) in time?"""
    up = settings.upstream
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            if up.socket:
                _, writer = await asyncio.open_unix_connection(up.socket)
            else:
                parts = urlsplit(up.url)
                _, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    except (OSError, TimeoutError) as exc:
        return False, f"upstream not reachable: {type(exc).__name__}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "upstream reachable"


class Admin:
    """The admin listener of one proxy, or of a master: `workers` then says how many workers
    serve and how many there should be. `metrics` gives the counters' snapshot to render."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        listening: Callable[[], list[str]],
        workers: Callable[[], tuple[int, int]] | None = None,
        metrics: Callable[[], Awaitable[Snapshot]] | None = None,
    ):
        self._settings, self._listening, self._workers = settings, listening, workers
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.addresses: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        if self._metrics is not None:
            app.router.add_get("/metrics", self.metrics)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(self, request: web.Request) -> web.Response:
        settings = self._settings()
        listening = self._listening()
        reachable, why = await upstream_reachable(settings)
        ok = bool(listening) and reachable
        body: dict[str, object] = {
            "ready": ok,
            "listening": listening,
            "config": settings.source,
            "upstream": why,
        }
        if self._workers is not None:
            serving, wanted = self._workers()
            body["ready"] = ok = ok and serving == wanted
            body["workers"] = {"serving": serving, "wanted": wanted}
        return web.Response(
            status=200 if ok else 503,
            text=json.dumps(body) + "\n",
            content_type="application/json",
        )

    async def metrics(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        body, content_type = render(await self._metrics(), request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, listen: Listen) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite
        if listen.path:
            site = web.UnixSite(self._runner, listen.path)
        else:
            site = web.TCPSite(self._runner, listen.host or None, listen.port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, str):
                self.addresses.append(f"unix:{address}")
            else:
                host, port = address[:2]
                self.addresses.append(
                    f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
                )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
