"""The process lifecycle: serve a `Proxy` until a stop signal, reload, shut down gracefully.

The one place that installs signal handlers and tells systemd what the process is doing:
- SIGTERM and SIGINT stop: listeners close, requests in flight get `shutdown_timeout`.
- SIGHUP (and, in `sidecache dev`, saving the watched config file) reloads: the configuration is
  read and checked again; a valid one takes effect for new requests, an invalid one is logged
  and the running one kept.
- SIGUSR1 opens the access-log file again by its name (logrotate's postrotate); with the
  access log on stdout, or off, it does nothing (and never stops the process). A master
  passes it on to every worker, each of which writes its own lines to the file.
- sd_notify(3): READY once listening, RELOADING then READY around a reload, STOPPING at stop.

With `[server] workers` > 1 the same hold for the master (`serve_workers`, master.py does the
supervision): it reloads and stops every worker, and it alone speaks to systemd, READY once
every worker serves. A worker (`serve_worker`) stops on SIGTERM or SIGINT (the master sends
SIGTERM), or when its master is gone; it ignores SIGHUP: a reload comes from the master.

`cli.py` parses the command line and calls `run`, `serve`, `serve_workers`; worker.py calls
`serve_worker`; `demo.py` waits with `until_stopped`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from setproctitle import setproctitle

from proxy import __version__, build, systemd
from proxy import dev as dev_mode
from proxy.config import ConfigError
from proxy.master import Master, WorkerFailed
from proxy.server import ListenError, Proxy
from proxy.settings import Settings
from proxy.workers import READY, RELOADED, State

log = logging.getLogger("sidecache")
GC_YOUNG = 10_000  # allocations between young-generation collections (CPython's default: 700)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
Reread = Callable[[], Settings]  # reads and checks the configuration again; raises ConfigError
T = TypeVar("T")


class Served(Protocol):
    """What is served until a stop: a single process's `Proxy`, or a `Master` of workers."""

    settings: Settings

    async def reload(self, settings: Settings) -> list[str]: ...

    async def stop(self) -> None: ...

    def reopen_access_log(self) -> None: ...


Answerer = Callable[[str, Mapping[str, str]], Awaitable[object]]  # a query → its answer


class MasterSide(Protocol):
    """A worker's link to its master (worker.MasterLink)."""

    async def open(self) -> None: ...

    async def next_settings(self) -> Settings | None: ...

    def tell(self, state: State) -> None: ...

    def answer_with(self, answerer: Answerer) -> None: ...


def run(main: Callable[[], Awaitable[None]]) -> int:
    """Run `main` on the event loop; the exit status: 0, or 1 when a listener or anything else
    the process needs could not be had (the reason on stderr)."""

    async def runner() -> None:
        await main()

    try:
        _event_loop_runner()(runner())
    except (ListenError, WorkerFailed) as exc:
        print(f"sidecache: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sidecache: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(
    settings: Settings,
    reread: Reread | None = None,
    *,
    dev: bool = False,
    watched: Path | None = None,
) -> None:
    """Run the proxy until SIGTERM or SIGINT, then stop listening and close the session.
    SIGHUP reads the configuration again (`reread`): a valid one takes effect for new
    requests, an invalid one is reported and the running one kept."""
    proxy = Proxy(
        settings, passed=systemd.passed_sockets(), access=dev_mode.log_access if dev else None
    )
    await proxy.start()
    tune_gc()
    log.info("%s (%s) ready, upstream %s", __version__, build(), upstream_label(settings))
    tasks = _start_dev(proxy, reread, watched) if dev else []
    serving = ", ".join(proxy.addresses)
    systemd.notify(f"READY=1\nSTATUS=serving on {serving}\nMAINPID={os.getpid()}")
    try:
        await _serve_until_stopped(proxy, reread)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _shut_down(proxy)


async def serve_workers(settings: Settings, reread: Reread, level: int) -> None:
    """`[server] workers` > 1: a master (master.py) and its workers until SIGTERM or SIGINT,
    then every worker drains. SIGHUP reads and checks the configuration once, here, and hands
    a valid one to every worker."""
    setproctitle(" ".join(["sidecache master", *sys.argv[1:]]))
    master = Master(settings, level, systemd.passed_sockets())
    await master.start()
    count = len(master.workers)
    label = upstream_label(settings)
    log.info("%s (%s) ready, upstream %s, %d workers", __version__, build(), label, count)
    serving = ", ".join(master.addresses)
    systemd.notify(
        f"READY=1\nSTATUS=serving on {serving} with {count} workers\nMAINPID={os.getpid()}"
    )
    try:
        await _serve_until_stopped(master, reread)
    finally:
        await _shut_down(master)


async def serve_worker(
    settings: Settings, passed: Sequence[socket.socket], master: MasterSide
) -> None:
    """A worker: a `Proxy` on the sockets its master bound, until SIGTERM or SIGINT or until
    the master is gone; each configuration the master sends is applied as a reload."""
    proxy = Proxy(settings, passed=passed, announce=False)
    await proxy.start()
    tune_gc()
    stop, _ = _install_signal_handlers(False, proxy.reopen_access_log, ignore_hangup=True)
    try:
        master.answer_with(proxy.answer)
        await master.open()
        master.tell(READY)
        while (new := await _unless_stopped(stop, master.next_settings())) is not None:
            await proxy.reload(new)
            master.tell(RELOADED)
        if not stop.is_set():
            log.warning("the master is gone: this worker stops")
    finally:
        await proxy.stop()


def tune_gc() -> None:
    """Once serving: the cyclic garbage collector, tuned for what a request allocates. Reference
    counting frees it all (a pass leaves no cyclic garbage: bench/profile_front.py measured 0.0
    objects per request with gc.DEBUG_SAVEALL), so the collector's passes only walk the live
    objects of requests in flight: run the young generation every GC_YOUNG allocations instead
    of 700, and leave what start-up made (config, rules, modules) out of every pass."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 50, 100)


async def until_stopped(reopen: Callable[[], None] | None = None) -> None:
    """Until SIGTERM or SIGINT (the demo's loop: it does not reload); SIGUSR1 calls `reopen`
    (without one, SIGUSR1's default action would end the process)."""
    stop, _ = _install_signal_handlers(reloads=False, reopen=reopen)
    await stop.wait()


async def reload(proxy: Served, reread: Reread) -> None:
    """Read and check the configuration again and hand it to `proxy`; on a config error keep
    the running one. SIGHUP and the dev watcher both come here."""
    # sd_notify(3): RELOADING=1 with the monotonic time, READY=1 once the reload is over.
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")
    try:
        settings = reread()
    except ConfigError as exc:
        log.error("reload failed, the running configuration stays: config error: %s", exc)
        systemd.notify("READY=1\nSTATUS=reload failed: the running configuration stays")
        return
    for note in await proxy.reload(settings):
        log.warning("reload: %s", note)
    log.info("reloaded %s", settings.source)
    systemd.notify(f"READY=1\nSTATUS=reloaded {settings.source}")


def upstream_label(settings: Settings) -> str:
    up = settings.upstream
    return f"unix:{up.socket}" if up.socket else up.url


def _install_signal_handlers(
    reloads: bool, reopen: Callable[[], None] | None = None, ignore_hangup: bool = False
) -> tuple[asyncio.Event, asyncio.Event]:
    """The only signal handlers sidecache installs: SIGTERM and SIGINT set the first event;
    SIGHUP sets the second when the process `reloads`, is ignored by a worker (a reload comes
    from its master), else keeps its default action; SIGUSR1 calls `reopen` when given."""
    loop = asyncio.get_running_loop()
    stop, hangup = asyncio.Event(), asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if reloads:
        loop.add_signal_handler(signal.SIGHUP, hangup.set)
    elif ignore_hangup:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if reopen is not None:
        loop.add_signal_handler(signal.SIGUSR1, reopen)
    return stop, hangup


async def _serve_until_stopped(proxy: Served, reread: Reread | None) -> None:
    """Reload on each SIGHUP until SIGTERM or SIGINT; a stop wins over a pending reload."""
    stop, hangup = _install_signal_handlers(reread is not None, proxy.reopen_access_log)
    while not stop.is_set():
        await _first(stop.wait(), hangup.wait())
        if hangup.is_set() and reread is not None and not stop.is_set():
            hangup.clear()
            await reload(proxy, reread)


async def _shut_down(proxy: Served) -> None:
    systemd.notify("STOPPING=1")
    log.info("stopping: requests in flight get %gs", proxy.settings.limits.shutdown_timeout)
    await proxy.stop()
    log.info("stopped")


def _start_dev(
    proxy: Proxy, reread: Reread | None, watched: Path | None
) -> list[asyncio.Task[None]]:
    """`sidecache dev`: print the banner; reload whenever the watched config file is saved."""
    settings = proxy.settings
    banner = dev_mode.banner(
        proxy.addresses, upstream_label(settings), proxy.admin.addresses, settings.source, watched
    )
    print(banner, flush=True)
    if watched is None or reread is None:
        return []
    return [asyncio.create_task(dev_mode.watch(watched, lambda: reload(proxy, reread)))]


async def _unless_stopped(stop: asyncio.Event, wait: Coroutine[Any, Any, T]) -> T | None:
    """What `wait` gives, or None once `stop` is set first."""
    task = asyncio.ensure_future(wait)
    await _first(stop.wait(), asyncio.shield(task))
    if stop.is_set() or not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.result()


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until one of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _event_loop_runner() -> Callable[[Awaitable[None]], None]:
    """uvloop when installed (it is a dependency everywhere it builds), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows has no uvloop
        return asyncio.run  # type: ignore[return-value]
    return uvloop.run  # type: ignore[return-value]
