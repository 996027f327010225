"""The `sidecache` command: run (the default), check, demo.

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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from proxy import __version__, systemd
from proxy import dev as dev_mode
from proxy.config import ConfigError, parse, read_toml
from proxy.explain import describe
from proxy.server import ListenError, Proxy
from proxy.settings import Settings

COMMANDS = ("run", "check", "demo", "dev")
log = logging.getLogger("sidecache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecache",
        description="A caching reverse proxy that answers anonymous visitors from memory.",
        epilog="commands: run (default), check CONFIG, demo, dev (a local dev proxy: coloured "
        "log, config reloaded on save)",
    )
    parser.add_argument("command", nargs="?", default="run", choices=COMMANDS)
    parser.add_argument("config_path", nargs="?", metavar="CONFIG", help="config file (check)")
    parser.add_argument("--version", action="version", version=f"sidecache {__version__}")
    parser.add_argument("-c", "--config", help="TOML config file (default: embedded default)")
    parser.add_argument("--upstream", help="app server: http://host:port or unix:/path.sock")
    parser.add_argument("--listen", action="append", help="host:port, [::1]:port or unix:/path")
    parser.add_argument(
        "--admin", metavar="ADDR", help='the admin listener (/health, /ready); "" turns it off'
    )
    parser.add_argument(
        "--cache",
        action="append",
        metavar="REGEX",
        help="cache these paths for anonymous visitors (repeatable; replaces the config's rules)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="no rules: a standards-following shared cache, the origin's headers decide",
    )
    parser.add_argument("--ttl", help="default cache ttl, e.g. 30s")
    parser.add_argument(
        "--stale-while-revalidate",
        metavar="DURATION",
        help="serve stale this long past freshness while refreshing in the background",
    )
    parser.add_argument(
        "--stale-if-error",
        metavar="DURATION",
        help="serve stale this long past freshness when the app fails or times out",
    )
    parser.add_argument("--items", type=int, help="default cache: most entries")
    parser.add_argument("--item-size", help="default cache: largest body stored, e.g. 64KiB")
    parser.add_argument("--max-bytes", help="default cache: total size, e.g. 64MiB")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--demo-port", type=int, default=5050, help="demo: the demo site's port")
    return parser


def apply_flags(data: dict[str, Any], args: argparse.Namespace) -> bool:
    """Write command-line overrides into the raw config table; True if any was given."""
    changed = False

    def put(section: str, key: str, value: object) -> None:
        nonlocal changed
        data.setdefault(section, {})[key] = value
        changed = True

    if args.upstream:
        put("upstream", "url", args.upstream)
    if args.listen:
        put("server", "listen", args.listen)
    if args.admin is not None:
        put("admin", "listen", args.admin)
    caches = data.setdefault("caches", {})
    flags = {
        "ttl": args.ttl,
        "items": args.items,
        "item_size": args.item_size,
        "max_bytes": args.max_bytes,
    }
    for key, value in flags.items():
        if value is not None:
            caches.setdefault("default", {})[key] = value
            changed = True
    if args.shared and args.cache:
        raise ConfigError("command line", "--shared", "has no rules: leave out --cache")
    if args.shared:
        data["mode"] = "shared"
        data.pop("rules", None)
        changed = True
    if args.cache:
        caches.setdefault("default", {})
        data["rules"] = [
            {"name": f"--cache {regex}", "path": regex, "cache": "default"} for regex in args.cache
        ]
        changed = True
    windows = {
        "stale_while_revalidate": args.stale_while_revalidate,
        "stale_if_error": args.stale_if_error,
    }
    for key, value in windows.items():
        if value is None:
            continue
        changed = True
        if data.get("mode") == "shared":
            data.setdefault("shared", {})[key] = value
        for rule in data.get("rules", []):
            if isinstance(rule, dict) and rule.get("action", "cache") == "cache":
                rule[key] = value
    return changed


def load_settings(args: argparse.Namespace) -> Settings:
    path = args.config or (args.config_path if args.command == "check" else None)
    data, source = read_toml(path)
    if apply_flags(data, args):
        source = f"{source} + command line"
    return parse(data, source)


# Environment variables for what a container sidecar needs without any file (flags win).
ENVIRONMENT = {
    "config": "SIDECACHE_CONFIG",
    "upstream": "SIDECACHE_UPSTREAM",
    "listen": "SIDECACHE_LISTEN",  # comma-separated addresses
    "admin": "SIDECACHE_ADMIN",
    "ttl": "SIDECACHE_TTL",
    "max_bytes": "SIDECACHE_MAX_BYTES",
    "stale_while_revalidate": "SIDECACHE_STALE_WHILE_REVALIDATE",
    "stale_if_error": "SIDECACHE_STALE_IF_ERROR",
    "log_level": "SIDECACHE_LOG_LEVEL",
    "shared": "SIDECACHE_SHARED",  # "1", "true" or "yes"
}


def apply_environment(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill the options the command line left unset from SIDECACHE_* variables."""
    for name, variable in ENVIRONMENT.items():
        value = environ.get(variable)
        if value is None or getattr(args, name) not in (None, False):
            continue
        if name == "listen":
            args.listen = [item.strip() for item in value.split(",") if item.strip()]
        elif name == "shared":
            args.shared = value.strip().lower() in ("1", "true", "yes")
        else:
            setattr(args, name, value)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_environment(args, os.environ)
    _setup_logging(args.log_level or "INFO")
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        print(f"sidecache: config error: {exc}", file=sys.stderr)
        return 2
    for warning in settings.warnings:
        print(f"sidecache: warning: {warning}", file=sys.stderr)
    if args.command == "check":
        print(describe(settings))
        return 0
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
    log.info("sidecache %s ready, upstream %s", __version__, _upstream_label(settings))
    tasks: list[asyncio.Task[None]] = []
    if dev:
        upstream = _upstream_label(settings)
        print(
            dev_mode.banner(proxy.addresses, upstream, proxy.admin.addresses, settings.source),
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
        log.info(
            "sidecache stopping: requests in flight get %gs", proxy.settings.limits.shutdown_timeout
        )
        await proxy.stop()
        log.info("sidecache stopped")


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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(name)s %(message)s",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
