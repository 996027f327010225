"""The `sidecache` command: run (the default), check, dev, demo, explain, import-uwsgi,
purge (see arguments.py).

This module parses, loads the settings and dispatches; serving, reloading and signals are
lifecycle.py's.

Flags override the config file (or the embedded default); the common case needs no file:
    sidecache --upstream http://127.0.0.1:5000 --cache '^/$' --cache '^/about$' --ttl 30s
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy import lifecycle, logs
from proxy.arguments import apply_environment, apply_flags, blame, option, parse_arguments
from proxy.config import ConfigError, parse, read_toml
from proxy.demo import run_demo
from proxy.explain import describe
from proxy.purge_cli import run_purge
from proxy.settings import Settings
from proxy.trace_report import report, request_view
from proxy.uwsgi_cli import run_import

CHECKING_DEFAULT = (
    "no config file given (CONFIG, --config or SIDECACHE_CONFIG): "
    "checking the embedded default, what sidecache runs without one"
)


def load_settings(args: argparse.Namespace) -> Settings:
    data, source = read_toml(args.config)
    if apply_flags(data, args):
        source = f"{source} + command line"
    try:
        return parse(data, source)
    except ConfigError as exc:
        raise blame(exc, args) from None


def log_level(args: argparse.Namespace) -> int:
    """--log-level (or SIDECACHE_LOG_LEVEL), INFO when unset; an unknown level is refused."""
    try:
        return logs.parse_level(option(args, "log_level") or "INFO")
    except ValueError as exc:
        variable = getattr(args, "environment", {}).get("log_level")
        if variable is not None:
            raise ConfigError("environment", variable, str(exc)) from None
        raise ConfigError("command line", "--log-level", str(exc)) from None


def explain_request(settings: Settings, args: argparse.Namespace) -> int:
    """`sidecache explain`: the trace of one request, no server; 2 for a bad request."""
    try:
        view = request_view(settings, args.url, args.header, args.cookie, args.method, args.peer)
    except ValueError as exc:
        print(f"sidecache: explain: {exc}", file=sys.stderr)
        return 2
    try:
        print(report(settings, view), flush=True)
    except BrokenPipeError:  # `sidecache explain URL | head -1`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_arguments(sys.argv[1:] if argv is None else argv)
        if args.command == "import-uwsgi":  # reads an ini, not the settings
            return run_import(args)
        apply_environment(args, os.environ)
        if args.command == "purge":  # asks a running server; serves nothing
            return run_purge(args)
        level = log_level(args)
        logs.setup(level)
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
    if args.command == "explain":
        return explain_request(settings, args)
    if args.command == "demo":
        return lifecycle.run(lambda: run_demo(settings, args.demo_port))
    if args.command == "dev":
        watched = Path(args.config) if args.config else None
        return lifecycle.run(
            lambda: lifecycle.serve(
                settings, lambda: load_settings(args), dev=True, watched=watched
            )
        )
    if settings.workers > 1:
        return lifecycle.run(
            lambda: lifecycle.serve_workers(settings, lambda: load_settings(args), level)
        )
    return lifecycle.run(lambda: lifecycle.serve(settings, lambda: load_settings(args)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
