"""TOML → `Settings`. Every error names the file, the key path and the problem.

Regexes and key templates are compiled here, once; nothing downstream parses configuration.
The embedded default (`default.toml`) makes `sidecache --upstream URL` work with no file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from enum import StrEnum
from importlib.resources import files
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

from proxy.freshness import REQUEST_DIRECTIVES, TtlMode, TtlPolicy
from proxy.identity import PRESETS, IdentityPolicy
from proxy.invalidate import LOCATION, TARGET
from proxy.keys import DEFAULT_KEY, compile_key
from proxy.rules import Action, Condition, Rule, SetCookieMode, Test
from proxy.settings import (
    CacheSettings,
    Headers,
    Limits,
    Listen,
    Settings,
    Trust,
    Upstream,
)
from proxy.tomltable import ConfigError, Table, choice, kind_of, shown, text
from proxy.units import parse_duration, parse_size
from proxy.view import RequestView, request_problem

__all__ = ["ConfigError", "load", "parse", "read_toml"]
DEFAULT_SOURCE = "<embedded default.toml>"
CACHEABLE = frozenset({"GET", "HEAD"})


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
        access_log=server.get("access_log", bool, True),
    )
    limits = Limits(
        header_timeout=server.convert("header_timeout", _timeout, 10.0),
        keepalive_timeout=server.convert("keepalive_timeout", _timeout, 75.0),
        body_timeout=server.convert("body_timeout", _timeout, 60.0),
        max_client_connections=server.get("max_client_connections", int, 4096),
        max_body_size=server.convert("max_body_size", parse_size, 0),
        shutdown_timeout=server.convert("shutdown_timeout", parse_duration, 10.0),
    )
    if limits.max_client_connections < 1:
        raise server.error("max_client_connections", "must be at least 1")
    honoured = _request_directives(server)
    targeted = server.strings(
        "targeted_cache_control", ("Sidecache-Cache-Control", "CDN-Cache-Control")
    )
    server.finish()
    upstream = _upstream(root.table("upstream"))
    identity = _identity(root.table("identity"))
    admin = _admin(root.table("admin"), listen)
    defined = _caches(root.table("caches"))
    # A "default" cache with the documented defaults when the file defines none: every key of
    # the file is optional, `cache = "default"` included. Kept only when a rule uses it.
    caches = {"default": CacheSettings("default"), **defined}
    mode = root.convert("mode", choice(Mode, '"rules", "shared"'), Mode.RULES)
    rules_raw = root.get("rules", list, [])
    shared = root.table("shared")
    if mode is Mode.SHARED:
        if rules_raw:
            raise root.error("rules", 'mode = "shared" has no rules: the origin\'s headers decide')
        rules: tuple[Rule, ...] = (_shared_rule(shared, caches, identity),)
    else:
        if shared.data:
            raise root.error("shared", 'only used with mode = "shared"')
        rules = tuple(
            _rule(Table(r, source, f"rules[{i}]"), i, caches, identity)
            for i, r in enumerate(rules_raw, 1)
        )
    root.finish()
    _check_names(rules, source)
    if "default" not in defined and all(rule.cache != "default" for rule in rules):
        del caches["default"]
    warnings = tuple(w for rule in rules if not rule.forward_all for w in _warnings(rule))
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
    )


def _admin(table: Table, public: tuple[Listen, ...]) -> Listen | None:
    """[admin] listen: off ("") unless configured, so that two proxies on one host never
    collide on a default port; a loopback host:port or unix:/path, never a public address."""
    text_value = table.get("listen", str, "")
    table.finish()
    if not text_value:
        return None
    try:
        admin = parse_listen(text_value)
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None
    if not admin.path and not is_loopback(admin.host):
        raise table.error(
            "listen",
            f"{admin} is not a loopback address: the admin listener has no authentication "
            "(use 127.0.0.1:PORT, [::1]:PORT or unix:/path)",
        )
    clash = any(
        (admin.path and admin.path == p.path)
        or (admin.port and (admin.host, admin.port) == (p.host, p.port))
        for p in public
    )
    if clash:
        raise table.error("listen", "is a public listen address: the admin listener is separate")
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
    items = server.strings("trusted_proxies", ())
    try:
        networks = tuple(ip_network(i, strict=False) for i in items if i != "unix")
    except ValueError as exc:
        raise server.error("trusted_proxies", str(exc)) from None
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
        ttl=table.convert("ttl", _lifetime, d.ttl),
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


def _rule(
    table: Table, number: int, caches: Mapping[str, CacheSettings], identity: IdentityPolicy
) -> Rule:
    name = table.get("name", str, "")
    action = table.convert("action", choice(Action, '"cache", "pass"'), Action.CACHE)
    no_ttl: tuple[TtlMode, float | None] = (TtlMode.FORCE, None)
    mode, ttl = table.convert("ttl", _ttl, no_ttl)
    fallback = table.convert("fallback_ttl", parse_duration, None)
    if fallback is not None:
        if mode is not TtlMode.ORIGIN:
            raise table.error("fallback_ttl", 'only means something with ttl = "origin"')
        ttl = fallback
    methods = _methods(table, action)
    rule = Rule(
        number=number,
        name=name,
        action=action,
        path=table.convert("path", _regex, None),
        methods=methods,
        anonymous=table.get("anonymous", bool, True) if "anonymous" in table.data else None,
        cookies=_conditions(table.table("cookie")),
        headers=_conditions(table.table("header")),
        cache=table.get("cache", str, "default" if action is Action.CACHE else ""),
        ttl_mode=mode,
        ttl=ttl,
        max_ttl=table.convert("max_ttl", parse_duration, None),
        heuristic=table.get("heuristic", bool, False),
        keep=table.convert("keep", parse_duration, None),
        statuses=_statuses(table),
        stale_while_revalidate=table.convert("stale_while_revalidate", parse_duration, None),
        stale_if_error=table.convert("stale_if_error", parse_duration, None),
        stale_if_unreachable=table.get("stale_if_unreachable", bool, False),
        set_cookie=table.convert(
            "set_cookie", choice(SetCookieMode, '"skip", "strip"'), SetCookieMode.SKIP
        ),
        state_cookies=identity.state_cookies,
        keep_cookies=table.strings("keep_cookies", ()),
        keep_headers=tuple(h.lower() for h in table.strings("keep_headers", ())),
        allow_authorization=table.get("allow_authorization", bool, False),
        invalidate=_invalidate(table, ()),
        key=table.convert("key", text(compile_key), compile_key(DEFAULT_KEY)),
    )
    table.finish()
    return _check_cache(table, rule, caches)


class Mode(StrEnum):
    RULES = "rules"  # the ordered rules decide what is cached (the default)
    SHARED = "shared"  # no rules: a standards-following shared cache (RFC 9111)


# RFC 9111 §3: a shared cache may store any final status it understands, when the response
# allows it; partial content is not stored whole, and a 304 is not a response to store.
SHARED_STATUSES = frozenset(range(200, 600)) - {206, 304}


def _shared_rule(
    table: Table, caches: Mapping[str, CacheSettings], identity: IdentityPolicy
) -> Rule:
    """Shared mode's one rule: every GET/HEAD of an anonymous visitor, stored as the origin's
    headers say (nothing without explicit freshness but for revalidation, unless heuristics are
    on), fills forwarding the request as it came, Authorization as RFC 9111 §3.5 says."""
    rule = Rule(
        number=1,
        name="shared",
        action=Action.CACHE,
        methods=CACHEABLE,
        cache=table.get("cache", str, "default"),
        ttl_mode=TtlMode.ORIGIN,
        ttl=0.0,
        max_ttl=table.convert("max_ttl", parse_duration, None),
        heuristic=table.get("heuristic", bool, False),
        keep=table.convert("keep", parse_duration, None),
        statuses=SHARED_STATUSES,
        stale_while_revalidate=table.convert("stale_while_revalidate", parse_duration, None),
        stale_if_error=table.convert("stale_if_error", parse_duration, None),
        stale_if_unreachable=table.get("stale_if_unreachable", bool, True),
        set_cookie=SetCookieMode.SKIP,
        state_cookies=identity.state_cookies,
        allow_authorization=True,
        invalidate=_invalidate(table, (TARGET, LOCATION)),
        key=compile_key(DEFAULT_KEY),
        forward_all=True,
    )
    table.finish()
    return _check_cache(table, rule, caches)


def _ttl(value: object) -> tuple[TtlMode, float | None]:
    """`ttl = "origin"` (the origin's headers decide) or a duration (forced, more than 0)."""
    if value == "origin":
        return TtlMode.ORIGIN, None
    return TtlMode.FORCE, _lifetime(value)


def _lifetime(value: object) -> float:
    """A forced lifetime: 0 would store every page stale at once (a pass that costs memory)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError('must be more than 0 (a page never to be reused: action = "pass")')
    return seconds


def _statuses(table: Table) -> frozenset[int]:
    """Statuses a rule stores: 200 unless it opts into more (e.g. 301, 404 for a short ttl)."""
    statuses = table.get("statuses", list, [200])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in statuses):
        raise table.error("statuses", "expected a list of status codes")
    bad = [s for s in statuses if not 200 <= s <= 599 or s in (206, 304)]
    if bad:
        raise table.error("statuses", f"{bad[0]} can never be stored (200-599, not 206 or 304)")
    return frozenset(statuses)


def _methods(table: Table, action: Action) -> frozenset[str] | None:
    if "methods" not in table.data:
        table.seen.add("methods")
        return CACHEABLE if action is Action.CACHE else None
    methods = frozenset(m.upper() for m in table.strings("methods", ()))
    extra = sorted(methods - CACHEABLE)
    if action is Action.CACHE and extra:
        raise table.error("methods", f"{extra[0]} is never answered from cache (GET, HEAD only)")
    return methods


def _check_names(rules: tuple[Rule, ...], source: str) -> None:
    """Rule names are what the log and Cache-Status show: two rules with one name are one
    rule to whoever reads them."""
    first: dict[str, Rule] = {}
    for rule in rules:
        if not rule.name:
            continue
        other = first.setdefault(rule.name, rule)
        if other is not rule:
            raise ConfigError(
                source,
                f"rules[{rule.number}].name",
                f"{rule.name!r} is already the name of rules[{other.number}]",
            )


def _invalidate(table: Table, default: tuple[str, ...]) -> frozenset[str]:
    """`invalidate`: which URIs an unsafe request's non-error answer invalidates (RFC 9111
    §4.4): "target" (the request's own), "location" (a same-origin Location or
    Content-Location). Any client can send an unsafe request, so every entry it drops is one
    more request for the app: rules drop none unless they say so."""
    named = table.strings("invalidate", default)
    unknown = sorted(set(named) - {TARGET, LOCATION})
    if unknown:
        raise table.error("invalidate", f'unknown {unknown[0]!r} (use "target", "location")')
    return frozenset(named)


def _check_cache(table: Table, rule: Rule, caches: Mapping[str, CacheSettings]) -> Rule:
    """A cache rule's cache exists (checked after the table's unknown keys: a typo first);
    the rule with its TTL policy, its settings over its cache's."""
    if rule.action is not Action.CACHE:
        return rule
    cache = caches.get(rule.cache)
    if cache is None:
        known = ", ".join(sorted(caches))
        raise table.error("cache", f"unknown cache {rule.cache!r} (caches: {known})")
    policy = TtlPolicy(
        mode=rule.ttl_mode,
        ttl=cache.ttl if rule.ttl is None else rule.ttl,
        max_ttl=rule.max_ttl,
        heuristic=rule.heuristic,
        keep=cache.keep if rule.keep is None else rule.keep,
        stale_while_revalidate=rule.stale_while_revalidate,
        stale_if_error=rule.stale_if_error,
    )
    return replace(rule, policy=policy)


def _regex(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"expected a regex string, got {kind_of(value)}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    except (OverflowError, RecursionError):  # a repeat count >= 2**32; groups nested too deep
        raise ValueError(f"invalid regex {shown(value)}: too large or nested too deeply") from None


def _conditions(table: Table) -> tuple[Condition, ...]:
    conditions = tuple(_condition(table, name) for name in list(table.data))
    table.finish()
    return conditions


def _condition(table: Table, name: str) -> Condition:
    table.seen.add(name)
    value = table.data[name]
    if value in ("present", "absent"):
        return Condition(name, Test(value))
    if isinstance(value, dict) and value.keys() == {"equals"} and isinstance(value["equals"], str):
        return Condition(name, Test.EQUALS, value=value["equals"])
    if isinstance(value, dict) and len(value) == 1 and "matches" in value:
        try:
            return Condition(name, Test.MATCHES, pattern=_regex(value["matches"]))
        except ValueError as exc:
            raise table.error(name, str(exc)) from None
    raise table.error(
        name, 'expected "present", "absent", { equals = "text" } or { matches = "regex" }'
    )


def _warnings(rule: Rule) -> list[str]:
    """Legal but risky: a kept cookie that the key does not carry mixes variants; a path
    regex that is not anchored matches inside other paths."""
    cookies = rule.key.cookies if rule.key else frozenset()
    headers = rule.key.headers if rule.key else frozenset()
    found = []
    if rule.path is not None and not rule.path.pattern.startswith(("^", "\\A")):
        found.append(
            f"{rule.label}: path {rule.path.pattern!r} is not anchored: it matches anywhere in "
            f"the path (/x{rule.path.pattern}, {rule.path.pattern}-old...); write "
            f"'^{rule.path.pattern}$' for that path only, '^{rule.path.pattern}' for a prefix"
        )
    found += [
        f"{rule.label}: keep_cookies {name!r} is sent on fills but is not part of the key "
        f"(add {{cookie[{name}]}} to key, or one visitor's variant is served to all)"
        for name in rule.keep_cookies
        if name not in cookies
    ]
    found += [
        f"{rule.label}: keep_headers {name!r} is sent on fills but is not part of the key "
        f"(add {{header[{name}]}} to key, or one visitor's variant is served to all)"
        for name in rule.keep_headers
        if name not in headers
    ]
    if rule.allow_authorization:
        found.append(
            f"{rule.label}: allow_authorization shares a response fetched with one visitor's "
            "credentials with every visitor, also those without any, whenever the app marks it "
            "public, s-maxage or must-revalidate (RFC 9111 §3.5)"
        )
    return found
