"""The operator's listener: health, readiness, metrics and purge.

It is never the public listener (the public one serves no internal path at all), it is off
unless configured, it listens on loopback or a unix socket unless `[admin] token` is set
(config.py refuses any other address without one; with one, /purge and /metrics require
`Authorization: Bearer TOKEN` on every address), and it is plain aiohttp.web: nothing here is
on a hot path. It is bound once: a reload moves it only at a restart, applies a changed token
at once, and never removes the token while it is bound off loopback (admin_rules.py).

    GET /health   200 "ok" while the process runs (Docker's HEALTHCHECK, liveness probes)
    GET /ready    200 when the listeners are bound, a configuration is loaded and the upstream
                  accepts a connection within READY_CHECK_SECONDS (and, with worker processes,
                  every worker is serving); else 503. JSON either way. With [redis], its
                  `redis` field says how the shared tier is (up, down, open circuit); that
                  never makes it 503: Redis is an optimisation, memory and the app serve.
    POST /purge?url=URL|prefix=PREFIX|tag=TAG
                  removes the entries stored for that URL (every variant and encoding), for
                  every target under that prefix, or tagged TAG (purge.py): 200
                  {"purged": N}; 400 for a request naming none or several; 401 without the
                  token when one is set; 502 when a worker did not answer (the others purged).
    GET /metrics  the counters in the Prometheus format (metrics.py; of every worker, summed);
                  401 without the token when one is set
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from proxy.admin_rules import admin_token
from proxy.counters import Snapshot
from proxy.metrics import render
from proxy.purge import Purge, PurgeError, authorized, parse_purge
from proxy.settings import Listen, Settings

log = logging.getLogger("sidecache")
READY_CHECK_SECONDS = 1.0
# What a purge did: the HTTP status and the JSON body ({"purged": N}, and "error" if any).
Purger = Callable[[Purge], Awaitable[tuple[int, dict[str, object]]]]


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
        redis: Callable[[], Mapping[str, object] | None] | None = None,
        purge: Purger | None = None,
        metrics: Callable[[], Awaitable[Snapshot]] | None = None,
    ):
        """`redis`: the tier's state (a proxy's); a master, whose workers hold the tiers,
        has none and PINGs Redis itself. `purge`: who removes what a purge names."""
        self._settings, self._listening, self._workers = settings, listening, workers
        self._redis, self._purge, self._metrics = redis, purge, metrics
        self._runner: web.AppRunner | None = None
        self.addresses: list[str] = []
        self.bound: Listen | None = None  # where `start` bound it: a reload does not move it
        self.token = settings().admin_token  # what /purge and /metrics require ("": nothing)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        if self._purge is not None:
            app.router.add_post("/purge", self.purge)
        if self._metrics is not None:
            app.router.add_get("/metrics", self.metrics)
        return app

    def reload(self, settings: Settings) -> str | None:
        """Take `settings`' token (the caller has taken `settings`); a note when only a
        restart applies it: its removal while the listener is off loopback (admin_rules)."""
        self.token, note = admin_token(self.bound, self.token, settings.admin_token)
        return note

    def refused(self, request: web.Request) -> web.Response | None:
        """401 when a token is set and the request does not carry it."""
        if authorized(self.token, request.headers.get("Authorization")):
            return None
        return _json(
            401,
            {"error": "Authorization: Bearer TOKEN required ([admin] token)"},
            {"WWW-Authenticate": 'Bearer realm="sidecache admin"'},
        )

    async def purge(self, request: web.Request) -> web.Response:
        assert self._purge is not None
        if (refusal := self.refused(request)) is not None:
            return refusal
        query = request.query
        try:
            if len(set(query)) != len(query):
                raise PurgeError("a parameter is repeated: one purge per request")
            purge = parse_purge(dict(query))
        except PurgeError as exc:
            return _json(400, {"error": str(exc)})
        status, body = await self._purge(purge)
        log.info("purge %s: %s removed", purge.described(), body.get("purged"))
        return _json(status, body)

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
        if settings.redis is not None:
            body["redis"] = await self._redis_state(settings)
        return web.Response(
            status=200 if ok else 503,
            text=json.dumps(body) + "\n",
            content_type="application/json",
        )

    async def _redis_state(self, settings: Settings) -> dict[str, object]:
        tier = self._redis() if self._redis is not None else None
        if tier is not None:
            return dict(tier)
        assert settings.redis is not None
        from proxy.store.redis_tier import ping  # only with [redis]

        return await ping(settings.redis)

    async def metrics(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        if (refusal := self.refused(request)) is not None:
            return refusal
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
        self.bound = listen
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


def _json(
    status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body) + "\n",
        content_type="application/json",
        headers=headers,
    )
