"""Compiling `[[rules]]` and `[shared]` tables into `Rule`s (config.py reads the rest): conditions,
ttl and its policy over the rule's cache, statuses, methods, invalidation, names, warnings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from proxy.decide import CACHEABLE_METHODS
from proxy.forwarding import DEBUG
from proxy.freshness import TtlMode, TtlPolicy
from proxy.identity import IdentityPolicy
from proxy.invalidate import LOCATION, TARGET
from proxy.keys import DEFAULT_KEY, compile_key
from proxy.rules import Action, Condition, Rule, SetCookieMode, Test
from proxy.settings import CacheSettings
from proxy.tomltable import ConfigError, Table, choice, kind_of, shown, text
from proxy.units import parse_duration


def compile_rule(
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
    _check_debug_header(table, rule)
    return _check_cache(table, rule, caches)


def _check_debug_header(table: Table, rule: Rule) -> None:
    """Sidecache-Debug asks for a trace and must never change what is cached or fetched: no
    rule tests it, keys on it or sends it on fills (forwarding.py never forwards it)."""
    problem = "is the debug header: it asks for a trace and never changes what is cached"
    for condition in rule.headers:
        if condition.name.lower() == DEBUG:
            raise table.error(f"header.{condition.name}", problem)
    if rule.key is not None and DEBUG in rule.key.headers:
        raise table.error("key", f"{{header[{DEBUG}]}} {problem}")
    if DEBUG in rule.keep_headers:
        raise table.error("keep_headers", f"{DEBUG!r} {problem}")


SHARED_STATUSES = frozenset(range(200, 600)) - {206, 304}


def shared_rule(
    table: Table, caches: Mapping[str, CacheSettings], identity: IdentityPolicy
) -> Rule:
    """Shared mode's one rule: every GET/HEAD of an anonymous visitor, stored as the origin's
    headers say (nothing without explicit freshness but for revalidation, unless heuristics are
    on), fills forwarding the request as it came, Authorization as RFC 9111 §3.5 says."""
    rule = Rule(
        number=1,
        name="shared",
        action=Action.CACHE,
        methods=CACHEABLE_METHODS,
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
    return TtlMode.FORCE, lifetime(value)


def lifetime(value: object) -> float:
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
        return CACHEABLE_METHODS if action is Action.CACHE else None
    methods = frozenset(m.upper() for m in table.strings("methods", ()))
    extra = sorted(methods - CACHEABLE_METHODS)
    if action is Action.CACHE and extra:
        raise table.error("methods", f"{extra[0]} is never answered from cache (GET, HEAD only)")
    return methods


def check_names(rules: tuple[Rule, ...], source: str) -> None:
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


def rule_warnings(rule: Rule) -> list[str]:
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
