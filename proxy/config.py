"""TOML → `Settings`. Every error names the file, the key path and the problem.

Regexes and key templates are compiled here, once; nothing downstream parses configuration.
The embedded default (`default.toml`) makes `sidecache --upstream URL` work with no file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum
from importlib.resources import files
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from proxy.config_redis import parse_redis
from proxy.config_rules import check_names, compile_rule, lifetime, rule_warnings, shared_rule
from proxy.fields import TOKEN
from proxy.freshness import REQUEST_DIRECTIVES
from proxy.identity import PRESETS, IdentityPolicy
from proxy.rules import Action, Rule
from proxy.settings import (
    TAG_HEADERS,
    CacheSettings,
    Headers,
    Limits,
    Listen,
    PurgeSettings,
    Settings,
    Trust,
    Upstream,
)
from proxy.tomltable import ConfigError, Table, choice, kind_of, shown, text
from proxy.units import parse_duration, parse_size
from proxy.view import RequestView, request_problem
from proxy.workers import available_cpus, parse_workers

__all__ = ["ConfigError", "load", "parse", "read_toml"]
DEFAULT_SOURCE = "<embedded default.toml>"
MIN_TOKEN = 16
# Said at start and by `check` when rules mode has no cache rule (every key is optional, so an
# operator's first minimal file caches nothing without a word otherwise).
NOTHING_CACHED = (
    'no cache rule ([[rules]] with action = "cache"): every request is passed to the app; '
    'add one, or set mode = "shared" to let the app\'s caching headers decide'
)
_BEARER = re.compile(r"[!-~]+")  # printable ASCII, no space: what a Bearer header carries


def default_text() -> str:
    return files("proxy").joinpath("default.toml").read_text(encoding="utf-8")


def read_toml(path: str | None) -> tuple[dict[str, Any], str]:
    """The raw table of `path` (or of the embedded default) and the source name for messages."""
    source = path or DEFAULT_SOURCE
    try:
        text = Path(path).read_text(encoding="utf-8") if path else default_text()
        return tomllib.loads(text), source
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r}"
        raise ConfigError(source, "", f"not UTF-8 text (TOML is UTF-8), at {where}") from None
    except RecursionError:
        raise ConfigError(source, "", "invalid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # TOMLDecodeError, and int()'s limit of 4300 digits in tomllib
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None


def load(path: str | None = None) -> Settings:
    data, source = read_toml(path)
    return parse(data, source)


def parse(data: Mapping[str, Any], source: str) -> Settings:
    """Validate and compile a raw TOML table into `Settings`."""
    root = Table(dict(data), source, "")
    server = root.table("server")
    listen = tuple(_listen(server, item) for item in server.strings("listen", ("127.0.0.1:8080",)))
    if not listen:
        raise server.error("listen", "needs at least one address")
    trust = _trust(server)
    headers = Headers(
        x_cache=server.get("x_cache", bool, True),
        cache_status=server.get("cache_status", bool, True),
        access_log=server.convert("access_log", access_log, ACCESS_LOG_DEFAULT),
    )
    limits = _limits(server)
    workers = server.convert("workers", lambda v: parse_workers(v, available_cpus()), 1)
    honoured = _request_directives(server)
    targeted = server.strings(
        "targeted_cache_control", ("Sidecache-Cache-Control", "CDN-Cache-Control")
    )
    server.finish()
    upstream = _upstream(root.table("upstream"))
    identity = _identity(root.table("identity"))
    admin_table = root.table("admin")
    debug_from = _debug_from(admin_table)
    admin_token = _admin_token(admin_table)
    admin = _admin(admin_table, listen, admin_token)
    purge = _purge(root.table("purge"))
    redis = parse_redis(root.table("redis"))
    defined = _caches(root.table("caches"))
    # A "default" cache with the documented defaults when the file defines none: every key of
    # the file is optional, `cache = "default"` included. Kept only when a rule uses it.
    caches = {"default": CacheSettings("default"), **defined}
    mode = root.convert("mode", choice(Mode, '"rules", "shared"'), Mode.RULES)
    rules = _rules(root, mode, caches, identity)
    root.finish()
    check_names(rules, source)
    if "default" not in defined and all(rule.cache != "default" for rule in rules):
        del caches["default"]
    warnings = tuple(w for rule in rules if not rule.forward_all for w in rule_warnings(rule))
    if mode is Mode.RULES and not any(rule.action is Action.CACHE for rule in rules):
        warnings += (NOTHING_CACHED,)
    return Settings(
        source,
        listen,
        upstream,
        trust,
        headers,
        identity,
        caches,
        rules,
        warnings,
        request_directives=honoured,
        mode=mode.value,
        targeted=tuple(name.lower() for name in targeted),
        limits=limits,
        admin=admin,
        workers=workers,
        raw=data,
        debug_from=debug_from,
        redis=redis,
        admin_token=admin_token,
        purge=purge,
    )


def _rules(
    root: Table, mode: Mode, caches: Mapping[str, CacheSettings], identity: IdentityPolicy
) -> tuple[Rule, ...]:
    """`[[rules]]`, or shared mode's one rule from `[shared]` (the other must be absent)."""
    rules_raw = root.get("rules", list, [])
    shared = root.table("shared")
    if mode is Mode.SHARED:
        if rules_raw:
            raise root.error("rules", 'mode = "shared" has no rules: the origin\'s headers decide')
        return (shared_rule(shared, caches, identity),)
    if shared.data:
        raise root.error("shared", 'only used with mode = "shared"')
    return tuple(
        compile_rule(Table(r, root.source, f"rules[{i}]"), i, caches, identity)
        for i, r in enumerate(rules_raw, 1)
    )


def _limits(server: Table) -> Limits:
    """[server]'s client limits and timeouts (nginx's names in settings.Limits)."""
    d = Limits()  # the defaults
    limits = Limits(
        header_timeout=server.convert("header_timeout", _timeout, d.header_timeout),
        keepalive_timeout=server.convert("keepalive_timeout", _timeout, d.keepalive_timeout),
        body_timeout=server.convert("body_timeout", _timeout, d.body_timeout),
        max_client_connections=server.get("max_client_connections", int, d.max_client_connections),
        max_body_size=server.convert("max_body_size", parse_size, d.max_body_size),
        shutdown_timeout=server.convert("shutdown_timeout", parse_duration, d.shutdown_timeout),
    )
    if limits.max_client_connections < 1:
        raise server.error("max_client_connections", "must be at least 1")
    return limits


def _admin_token(table: Table) -> str:
    """[admin] token (or SIDECACHE_ADMIN_TOKEN): what `Authorization: Bearer` must carry for
    /purge and /metrics; long enough not to be guessed, and one word of printable ASCII."""
    token = table.get("token", str, "")
    if token and not (MIN_TOKEN <= len(token) <= 512 and _BEARER.fullmatch(token)):
        raise table.error(
            "token",
            f"must be {MIN_TOKEN} to 512 printable ASCII characters without spaces "
            "(e.g. the output of `openssl rand -hex 32`)",
        )
    return token


def _purge(table: Table) -> PurgeSettings:
    """[purge] tag_headers (the response headers whose values are tags) and deliver_tags."""
    names = table.strings("tag_headers", tuple(sorted(TAG_HEADERS)))
    for name in names:
        if not TOKEN.fullmatch(name):
            raise table.error("tag_headers", f"{name!r} is not a header name")
    deliver = table.get("deliver_tags", bool, False)
    table.finish()
    return PurgeSettings(frozenset(name.lower() for name in names), deliver)


def _admin(table: Table, public: tuple[Listen, ...], token: str) -> Listen | None:
    """[admin] listen: off ("") unless configured, so that two proxies on one host never
    collide on a default port; a loopback host:port or unix:/path, or any address once a
    token is set (then /purge and /metrics require it)."""
    text_value = table.get("listen", str, "")
    table.finish()
    if not text_value:
        return None
    try:
        admin = parse_listen(text_value)
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None
    if not admin.path and not is_loopback(admin.host) and not token:
        raise table.error(
            "listen",
            f"{admin} is not a loopback address: set [admin] token (or SIDECACHE_ADMIN_TOKEN) "
            "so that /purge and /metrics require it there, or use 127.0.0.1:PORT, "
            "[::1]:PORT or unix:/path",
        )
    clash = any(
        (admin.path and admin.path == p.path)
        or (admin.port and (admin.host, admin.port) == (p.host, p.port))
        for p in public
    )
    if clash:
        raise table.error(
            "listen",
            f"{admin} is also a public listen address ([server] listen): the admin listener "
            "needs an address of its own",
        )
    return admin


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost": reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _request_directives(server: Table) -> frozenset[str]:
    """Which request Cache-Control directives are honoured (RFC 9111 §5.2.1). Not no-cache nor
    max-age by default: browsers send them on every reload, and a cache in front of an app is
    there to protect it (nginx and Varnish ignore them all)."""
    names = server.strings("request_cache_control", DEFAULT_REQUEST_DIRECTIVES)
    unknown = sorted(set(names) - REQUEST_DIRECTIVES)
    if unknown:
        known = ", ".join(sorted(REQUEST_DIRECTIVES))
        raise server.error("request_cache_control", f"unknown directive {unknown[0]!r} ({known})")
    return frozenset(names)


DEFAULT_REQUEST_DIRECTIVES = ("no-store", "max-stale", "min-fresh", "only-if-cached")


def parse_listen(text: str) -> Listen:
    """`host:port`, `[v6]:port`, a bare port (127.0.0.1) or `unix:/path`; raise ValueError."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("unix: needs a socket path")
        return Listen(path=text[5:])
    host, sep, port = text.rpartition(":")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"bad listen address {text!r} (write IPv6 as [::1]:port)")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad listen address {text!r} (use host:port, [::1]:port or unix:/path)")
    return Listen(host=host or "0.0.0.0", port=int(port))


def _listen(table: Table, text: str) -> Listen:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None


def _trust(server: Table) -> Trust:
    return _peers(server, "trusted_proxies", ())


def _debug_from(admin: Table) -> Trust:
    """[admin] debug_from: the peers whose `Sidecache-Debug: 1` is answered with the decision
    trace (trace.py). Loopback by default: the operator's curl on the host. Not the trusted
    proxies: a load balancer passes every visitor's headers on."""
    return _peers(admin, "debug_from", DEBUG_FROM_DEFAULT)


DEBUG_FROM_DEFAULT = ("127.0.0.0/8", "::1")


def _peers(table: Table, name: str, default: tuple[str, ...]) -> Trust:
    """A list of addresses or networks (CIDR), and "unix" for unix-socket peers."""
    items = table.strings(name, default)
    try:
        networks = tuple(ip_network(i, strict=False) for i in items if i != "unix")
    except ValueError as exc:
        raise table.error(
            name, f'{exc} (use addresses, networks such as 10.0.0.0/8, or "unix")'
        ) from None
    return Trust(networks, "unix" in items)


def parse_upstream(text: str) -> tuple[str, str]:
    """(base URL, unix socket path) for `http://host:port` or `unix:/path`; raise ValueError."""
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError("unix: needs a socket path")
        return "http://localhost", text[5:]
    match = re.fullmatch(r"http://(\[[0-9a-fA-F:.]+\]|[^/:\[\]@?#\s]+)(?::(\d{1,5}))?/?", text)
    if match is None or (match.group(2) and not 0 < int(match.group(2)) <= 65535):
        raise ValueError(f"bad upstream {text!r} (use http://host:port or unix:/path/to.sock)")
    return text.rstrip("/"), ""


def _upstream(table: Table) -> Upstream:
    url, socket = table.convert("url", text(parse_upstream), ("http://127.0.0.1:5000", ""))
    upstream = Upstream(
        url=url,
        socket=socket,
        connect_timeout=table.convert("connect_timeout", _timeout, 5.0),
        read_timeout=table.convert("read_timeout", _timeout, 30.0),
        max_connections=table.get("max_connections", int, 100),
        host=table.convert("host", text(_host_value), ""),
        total_timeout=table.convert("total_timeout", parse_duration, 0.0),
    )
    if upstream.max_connections < 1:
        raise table.error("max_connections", "must be at least 1")
    table.finish()
    return upstream


ACCESS_LOG_DEFAULT: bool | str = True  # [server] access_log: stdout


def access_log(value: object) -> bool | str:
    """[server] access_log: true (stdout), false (off) or an absolute file path. Absolute: a
    service's working directory is rarely where its logs belong, and never obvious."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value:
        got = "an empty string" if value == "" else kind_of(value)
        raise ValueError(f"expected true, false or a file path, got {got}")
    if "\0" in value:
        raise ValueError("a file path cannot hold a NUL character")
    if not value.startswith("/"):
        raise ValueError(
            f"{shown(value)} is not an absolute path (e.g. /var/log/sidecache/access.log)"
        )
    return value


def _timeout(value: object) -> float:
    """A timeout of 0 is refused: it would fail every request at once (and aiohttp, which
    sidecache used before, read it as "no timeout": a silent upstream would hang the client)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a timeout must be longer than 0")
    return seconds


def _host_value(value: str) -> str:
    """upstream.host replaces the Host header ("" keeps the client's): a valid host[:port]."""
    view = RequestView("GET", "/", (("Host", value),))
    if value and request_problem(view) is not None:  # the Host checks, on this one value
        raise ValueError(f"invalid host {value!r} (use e.g. app.internal or app.internal:8000)")
    return value


def _identity(table: Table) -> IdentityPolicy:
    """[identity]: a preset ("flask", the default, or "django") and any list it sets, replaced."""
    name = table.get("preset", str, "flask")
    preset = PRESETS.get(name)
    if preset is None:
        raise table.error("preset", f"unknown preset {name!r} (use one of: {', '.join(PRESETS)})")
    lists = {f.name: table.strings(f.name, getattr(preset, f.name)) for f in fields(preset)}
    table.finish()
    try:
        policy = IdentityPolicy(**lists)
    except ValueError as exc:
        raise ConfigError(table.source, table.path, str(exc)) from None
    return policy


def _caches(table: Table) -> dict[str, CacheSettings]:
    caches = {name: _cache(table.table(name), name) for name in list(table.data)}
    table.finish()
    return caches


def _cache(table: Table, name: str) -> CacheSettings:
    d = CacheSettings(name)  # the defaults
    cache = CacheSettings(
        name=name,
        items=table.get("items", int, d.items),
        item_size=table.convert("item_size", parse_size, d.item_size),
        max_bytes=table.convert("max_bytes", parse_size, d.max_bytes),
        ttl=table.convert("ttl", lifetime, d.ttl),
        keep=table.convert("keep", parse_duration, d.keep),
        coalesce_wait=table.convert("coalesce_wait", parse_duration, d.coalesce_wait),
        hit_for_pass=table.convert("hit_for_pass", parse_duration, d.hit_for_pass),
    )
    if cache.items < 1:
        raise table.error("items", "must be at least 1")
    if cache.item_size > cache.max_bytes:
        raise table.error("item_size", "is larger than max_bytes: no item could ever be stored")
    table.finish()
    return cache


class Mode(StrEnum):
    RULES = "rules"  # the ordered rules decide what is cached (the default)
    SHARED = "shared"  # no rules: a standards-following shared cache (RFC 9111)


# RFC 9111 §3: a shared cache may store any final status it understands, when the response
# allows it; partial content is not stored whole, and a 304 is not a response to store.
