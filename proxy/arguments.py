"""The `sidecache` command line: commands, their options, and how they merge with the
environment and the config file. Pure: argv and a mapping in, a Namespace and a raw table out.

    sidecache [run] [CONFIG] [options]    serve (the default command)
    sidecache check [CONFIG] [options]    validate, print the compiled configuration
    sidecache dev [CONFIG] [options]      a local dev proxy: coloured lines, reload on save
    sidecache demo [CONFIG] [options]     a demo site with sidecache in front
    sidecache explain URL [options]       why a request would be cached or passed (no server)
    sidecache import-uwsgi FILE.ini       a uWSGI router-cache setup as a sidecache config
    sidecache purge --url|--prefix|--tag  remove pages from a running sidecache's caches

Precedence, for every command: the command line, then SIDECACHE_* variables, then the config
file, then the embedded default. The config file named on the command line (CONFIG or
--config) wins over SIDECACHE_CONFIG.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from proxy import __version__, build
from proxy.settings import ADMIN_PATHS
from proxy.tomltable import ConfigError

COMMANDS = {
    "run": "serve: the caching proxy in front of the app (the default command)",
    "check": "validate the configuration and print the compiled rules, caches and warnings",
    "dev": "a local dev proxy: one coloured line per request, the config file reloaded on save",
    "demo": "a demo site on 127.0.0.1 with sidecache in front, to see hit, miss and pass",
    "explain": "why a request would be cached or passed: the rules, the key, the fill (no server)",
    "import-uwsgi": "print a sidecache config equivalent to a uWSGI ini's router-cache setup",
    "purge": "remove pages from a running sidecache's caches, through its admin listener",
}
DEFAULT_COMMAND = "run"
TOP_LEVEL = ("-h", "--help", "--version")


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse argv; without a command it is `run` (`sidecache --upstream URL` serves)."""
    argv = list(argv)
    defaulted = not argv or (argv[0] not in COMMANDS and argv[0] not in TOP_LEVEL)
    if defaulted:
        argv.insert(0, DEFAULT_COMMAND)
    args = build_parser().parse_args(argv)
    if defaulted and args.config_path in COMMANDS:
        # `sidecache --config site.toml check`: the command came after options, and run's
        # CONFIG took it for a file name. Read it as the command it names.
        del argv[argv.index(args.config_path, 1)]
        argv[0] = args.config_path
        args = build_parser().parse_args(argv)
    choose_config_file(args)
    return args


def choose_config_file(args: argparse.Namespace) -> None:
    """CONFIG and --config are the same setting: one file, named either way (not both)."""
    if args.config_path and args.config and args.config_path != args.config:
        raise ConfigError(
            "command line",
            "CONFIG",
            f"two config files ({args.config_path} and --config {args.config}): name one",
        )
    args.config = args.config or args.config_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecache",
        description="A caching reverse proxy that answers anonymous visitors from memory.",
        epilog="Without a command, sidecache runs: `sidecache --upstream URL` serves. "
        "`sidecache COMMAND --help` lists a command's options.",
    )
    version = f"sidecache {__version__} ({build()})"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    config, overrides, public = _config_options(), _override_options(), _public_options()
    logging, workers = _logging_options(), _workers_options()
    for name, parents in (
        ("run", [config, public, overrides, workers, logging]),
        ("check", [config, public, overrides, workers]),
        ("dev", [config, public, overrides, logging]),
        ("demo", [config, overrides, logging]),
        ("explain", [_config_flag(), public, overrides]),
    ):
        command = commands.add_parser(
            name, parents=parents, help=COMMANDS[name], description=_description(name)
        )
        if name == "explain":
            _explain_options(command)
        if name == "demo":
            command.add_argument(
                "--demo-port",
                type=int,
                default=5050,
                metavar="PORT",
                help="the demo site's port on 127.0.0.1 (default 5050); sidecache's own "
                "address is --listen (default 127.0.0.1:8080)",
            )
    _import_uwsgi_command(commands)
    _purge_command(commands, config)
    return parser


def _purge_command(commands: Any, config: argparse.ArgumentParser) -> None:
    """`sidecache purge (--url U | --prefix P | --tag T) [--admin ADDR] [--token T]`."""
    command = commands.add_parser(
        "purge",
        parents=[config],
        help=COMMANDS["purge"],
        description="Remove pages from a running sidecache's caches (every worker's, and the "
        "shared Redis tier's) through its admin listener: POST /purge. The admin address and "
        "token are --admin and --token, else SIDECACHE_ADMIN and SIDECACHE_ADMIN_TOKEN, else "
        "the config file's [admin]. Prints how many entries were removed; exit status 1 when "
        "the purge failed or was incomplete, 2 on a bad argument or config.",
    )
    what = command.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="a page: /path?query (every host) or http://host/path")
    what.add_argument("--prefix", help="every page under /path/ (or http://host/path/)")
    what.add_argument("--tag", help="every page whose Cache-Tag, Surrogate-Key or xkey names it")
    command.add_argument(
        "--admin", metavar="ADDR", help="the admin listener: host:port, [::1]:port or unix:/path"
    )
    command.add_argument(
        "--token",
        dest="admin_token",
        metavar="TOKEN",
        help="[admin] token (better: SIDECACHE_ADMIN_TOKEN, which no `ps` shows)",
    )


def _import_uwsgi_command(commands: Any) -> None:
    """`sidecache import-uwsgi FILE.ini [--section NAME]`: no config, no settings."""
    command = commands.add_parser(
        "import-uwsgi",
        help=COMMANDS["import-uwsgi"],
        description="Print, on stdout, a sidecache TOML config equivalent to the router-cache "
        "setup of a uWSGI ini file (cache2, route/route-if/route-run with cache:, "
        "cachestore:, goto:, continue:), with a comment for every line it could not "
        "translate and why. Exit status 2 when the file cannot be read.",
    )
    command.add_argument("ini", metavar="FILE.ini", help="the uWSGI ini file")
    command.add_argument(
        "--section",
        default="uwsgi",
        metavar="NAME",
        help="the ini section to read (default uwsgi, as uWSGI reads; FILE.ini:NAME there)",
    )
    command.set_defaults(config_path=None, config=None)


def _description(name: str) -> str:
    text = COMMANDS[name][:1].upper() + COMMANDS[name][1:] + "."
    if name == "check":
        text += (
            " Without CONFIG (nor --config, nor SIDECACHE_CONFIG) it checks the embedded "
            "default, and says so. Exit status 2 on a config error."
        )
    if name == "demo":
        text += " The demo site is the upstream: there is no --upstream."
    if name == "dev":
        text += " Saving the config file reloads it, as SIGHUP does."
    if name == "explain":
        text += (
            " It prints each rule looked at and why it did not match, the decision and its "
            "reason, the visitor's identity, the cache key, the cache, and the headers a fill "
            "or a pass sends upstream. Exit status 2 on a config error or a bad request."
        )
    return text + " Options override the config file."


def _config_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "config_path",
        nargs="?",
        metavar="CONFIG",
        help="TOML config file, the same as --config (default: the embedded default)",
    )
    options.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
    return options


def _config_flag() -> argparse.ArgumentParser:
    """--config alone: `explain`'s positional argument is the URL."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-c", "--config", metavar="FILE", help="TOML config file")
    options.set_defaults(config_path=None)
    return options


def _explain_options(command: argparse.ArgumentParser) -> None:
    """`sidecache explain URL [-H 'Name: value']... [--cookie 'k=v']... [--method M]`."""
    add = command.add_argument
    add("url", metavar="URL", help="http://host/path?query, or /path (Host: the listen address)")
    add(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeatable)",
    )
    add("--cookie", action="append", default=[], metavar="NAME=VALUE", help="a cookie (repeatable)")
    add("--method", default="GET", metavar="M", help="the request method (default GET)")
    add(
        "--peer",
        default="127.0.0.1",
        metavar="ADDR",
        help='the address the request comes from (default 127.0.0.1; "unix": a unix socket): '
        "[server] trusted_proxies decides whether its X-Forwarded-* are believed",
    )


def _public_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--upstream", metavar="URL", help="the app server: http://host:port or unix:/path.sock"
    )
    return options


def _override_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    add = options.add_argument
    add(
        "--listen",
        action="append",
        metavar="ADDR",
        help="where visitors connect: host:port, [::1]:port or unix:/path (repeatable)",
    )
    add(
        "--admin",
        metavar="ADDR",
        help=f"the admin listener ({ADMIN_PATHS}) on a loopback host:port or unix:/path; off "
        'unless given ("" turns a configured one off)',
    )
    add(
        "--redis",
        metavar="URL",
        help="[redis] url: a shared tier behind the in-process caches, e.g. "
        'redis://127.0.0.1:6379/0, rediss://... or unix:///path.sock ("" turns it off)',
    )
    add(
        "--cache",
        action="append",
        metavar="REGEX",
        help="cache these paths for anonymous visitors (repeatable; replaces the config's rules)",
    )
    add(
        "--shared",
        action="store_true",
        help="no rules: a standards-following shared cache, the origin's headers decide",
    )
    add("--ttl", metavar="DURATION", help="the default cache's ttl, e.g. 30s")
    add(
        "--stale-while-revalidate",
        metavar="DURATION",
        help="serve stale this long past freshness while refreshing in the background",
    )
    add(
        "--stale-if-error",
        metavar="DURATION",
        help="serve stale this long past freshness when the app fails or times out",
    )
    add("--items", type=int, metavar="N", help="the default cache: most entries")
    add("--item-size", metavar="SIZE", help="the default cache: largest body stored, e.g. 64KiB")
    add("--max-bytes", metavar="SIZE", help="the default cache: total size, e.g. 64MiB")
    options.set_defaults(admin_token=None)  # SIDECACHE_ADMIN_TOKEN only: no flag shows it in ps
    return options


def _workers_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--workers",
        metavar="N",
        help='[server] workers: N worker processes under a master, or "auto" (one per CPU); '
        "1 (the default) is one process",
    )
    return options


def _logging_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO (default), WARNING or ERROR; the access log has its own switch "
        "([server] access_log)",
    )
    return options


def option(args: argparse.Namespace, name: str) -> Any:
    """An option's value, None when the command has no such option."""
    return getattr(args, name, None)


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
    "workers": "SIDECACHE_WORKERS",
    "redis": "SIDECACHE_REDIS",
    "admin_token": "SIDECACHE_ADMIN_TOKEN",
}


# The config keys each variable's option writes (apply_flags), so that a config error in one
# names the variable, not the command line (`blame`).
_KEYS = {
    "upstream": ("upstream.url",),
    "listen": ("server.listen",),
    "admin": ("admin.listen",),
    "ttl": ("caches.default.ttl",),
    "max_bytes": ("caches.default.max_bytes",),
    "stale_while_revalidate": ("stale_while_revalidate",),  # on each cache rule, or [shared]
    "stale_if_error": ("stale_if_error",),
    "shared": ("mode",),
    "workers": ("server.workers",),
    "redis": ("redis.url",),
    "admin_token": ("admin.token",),
}


def apply_environment(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Fill the options the command line left unset (and the command has) from SIDECACHE_*
    variables; the config file named on the command line wins over SIDECACHE_CONFIG. Which
    variable filled which option is kept in `args.environment` (see `blame`)."""
    args.environment = {}
    for name, variable in ENVIRONMENT.items():
        value = environ.get(variable)
        if value is None or not hasattr(args, name) or getattr(args, name) not in (None, False):
            continue
        args.environment[name] = variable
        if name == "listen":
            args.listen = [item.strip() for item in value.split(",") if item.strip()]
        elif name == "shared":
            args.shared = value.strip().lower() in ("1", "true", "yes")
        else:
            setattr(args, name, value)


def blame(error: ConfigError, args: argparse.Namespace) -> ConfigError:
    """`error` with the SIDECACHE_* variable that set its key named in place of "command
    line" (a container's operator passed no flag); `error` itself otherwise."""
    filled: Mapping[str, str] = getattr(args, "environment", {})
    key = error.key
    for name, variable in filled.items():
        if any(key == k or key.endswith("." + k) for k in _KEYS.get(name, ())):
            source = error.source.replace("command line", variable)
            return ConfigError(source, key, error.problem)
    return error


def apply_flags(data: dict[str, Any], args: argparse.Namespace) -> bool:
    """Write command-line overrides into the raw config table; True if any was given."""
    changed = False

    def put(section: str, key: str, value: object) -> None:
        nonlocal changed
        data.setdefault(section, {})[key] = value
        changed = True

    if option(args, "upstream"):
        put("upstream", "url", args.upstream)
    if args.listen:
        put("server", "listen", args.listen)
    if args.admin is not None:
        put("admin", "listen", args.admin)
    if option(args, "workers") is not None:
        put("server", "workers", args.workers)
    if option(args, "redis") is not None:
        put("redis", "url", args.redis)
    if option(args, "admin_token"):
        put("admin", "token", args.admin_token)
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
    return _apply_windows(data, args) or changed


def _apply_windows(data: dict[str, Any], args: argparse.Namespace) -> bool:
    """--stale-while-revalidate and --stale-if-error on every cache rule (and shared mode)."""
    changed = False
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
