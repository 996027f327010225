"""The `sidecache` command: run (the default), check, dev, demo (see arguments.py).

Flags override the config file (or the embedded default); the common case needs no file:
    sidecache --upstream http://127.0.0.1:5000 --cache '^/$' --cache '^/about$' --ttl 30s
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from proxy import __version__, logs, systemd
from proxy import dev as dev_mode
from proxy.arguments import apply_environment, apply_flags, option, parse_arguments
from proxy.config import ConfigError, parse, read_toml
from proxy.explain import describe
from proxy.server import ListenError, Proxy
from proxy.settings import Settings

log = logging.getLogger("sidecache")
CHECKING_DEFAULT = (
    "no config file given (CONFIG, --config or SIDECACHE_CONFIG): "
    "checking the embedded default, what sidecache runs without one"
)


def load_settings(args: argparse.Namespace) -> Settings:
    data, source = read_toml(args.config)
    if apply_flags(data, args):
        source = f"{source} + command line"
    return parse(data, source)


def log_level(args: argparse.Namespace) -> int:
    """--log-level (or SIDECACHE_LOG_LEVEL), INFO when unset; an unknown level is refused."""
    try:
        return logs.parse_level(option(args, "log_level") or "INFO")
    except ValueError as exc:
        raise ConfigError("command line", "--log-level", str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_arguments(sys.argv[1:] if argv is None else argv)
        apply_environment(args, os.environ)
        logs.setup(log_level(args))
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"sidecache: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":  # its summary ends with the warnings: said once, on stdout
        summary = describe(settings)
        try:
            print(f"{CHECKING_DEFAULT}\n{summary}" if not args.config else summary, flush=True)
        except BrokenPipeError:  # `sidecache check | head`: the reader had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    for warning in settings.warnings:
        print(f"sidecache: warning: {warning}", file=sys.stderr)
    if args.command == "demo":
        from proxy.demo import run_demo

        return _run_loop(lambda: run_demo(settings, args.demo_port))
    if args.command == "dev":
        watched = Path(args.config) if args.config else None
        return _run_loop(
            lambda: serve(settings, lambda: load_settings(args), dev=True, watched=watched)
        )
    return _run_loop(lambda: serve(settings, lambda: load_settings(args)))


async def serve(
    settings: Settings,
    reread: Callable[[], Settings] | None = None,
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
    log.info("%s ready, upstream %s", __version__, _upstream_label(settings))
    tasks: list[asyncio.Task[None]] = []
    if dev:
        upstream = _upstream_label(settings)
        print(
            dev_mode.banner(
                proxy.addresses, upstream, proxy.admin.addresses, settings.source, watched
            ),
            flush=True,
        )
        if watched is not None and reread is not None:
            tasks.append(
                asyncio.create_task(dev_mode.watch(watched, lambda: _reload(proxy, reread)))
            )
    serving = ", ".join(proxy.addresses)
    systemd.notify(f"READY=1\nSTATUS=serving on {serving}\nMAINPID={os.getpid()}")
    loop = asyncio.get_running_loop()
    stop, hangup = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reread is not None:
        loop.add_signal_handler(signal.SIGHUP, hangup.set)
    try:
        while not stop.is_set():
            await _first(stop.wait(), hangup.wait())
            if hangup.is_set() and reread is not None and not stop.is_set():
                hangup.clear()
                await _reload(proxy, reread)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        systemd.notify("STOPPING=1")
        log.info("stopping: requests in flight get %gs", proxy.settings.limits.shutdown_timeout)
        await proxy.stop()
        log.info("stopped")


async def wait_for_signal() -> None:
    """Until SIGTERM or SIGINT (the demo's loop)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _reload(proxy: Proxy, reread: Callable[[], Settings]) -> None:
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


async def _first(*waits: Coroutine[Any, Any, bool]) -> None:
    """Wait until one of `waits` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _upstream_label(settings: Settings) -> str:
    up = settings.upstream
    return f"unix:{up.socket}" if up.socket else up.url


def _run_loop(main_coro: Callable[[], Awaitable[None]]) -> int:
    async def runner() -> None:
        await main_coro()

    try:
        _event_loop_runner()(runner())
    except ListenError as exc:
        print(f"sidecache: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"sidecache: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _event_loop_runner() -> Callable[[Awaitable[None]], None]:
    """uvloop when installed (it is a dependency everywhere it builds), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows has no uvloop
        return asyncio.run  # type: ignore[return-value]
    return uvloop.run  # type: ignore[return-value]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
