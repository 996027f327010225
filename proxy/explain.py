"""Human-readable summary of compiled settings, printed by `sidecache check`."""

from __future__ import annotations

from collections.abc import Iterable

from proxy.freshness import TtlMode
from proxy.identity import IdentityPolicy
from proxy.rules import Action, Condition, Rule
from proxy.settings import (
    ADMIN_PATHS,
    CacheSettings,
    Limits,
    RedisSettings,
    Settings,
    Trust,
)
from proxy.units import format_size


def describe(settings: Settings) -> str:
    up = settings.upstream
    admin = _admin(settings)
    total = f", whole exchange {up.total_timeout:g}s" if up.total_timeout else ""
    host = f", Host: {up.host}" if up.host else ", the client's Host"
    lines = [
        f"config: {settings.source}",
        "listen: " + ", ".join(str(listen) for listen in settings.listen),
        f"admin: {admin}",
        _workers(settings.workers, settings.caches.values()),
        *_redis(settings.redis),
        f"upstream: {f'unix:{up.socket}' if up.socket else up.url} "
        f"(connect {up.connect_timeout:g}s, read {up.read_timeout:g}s{total}, "
        f"{up.max_connections} connections{host})",
        _limits(settings.limits),
        _trust(settings.trust),
        _debug_from(settings.debug_from),
        _headers(settings),
        *_identity(settings.identity),
        "caches:",
        *(f"  {cache_line(cache)}" for cache in settings.caches.values()),
        "mode: shared (no rules: the origin's headers decide, RFC 9111)"
        if settings.mode == "shared"
        else "rules (first match wins; no match: pass):",
        *(f"  {rule_line(rule)}" for rule in settings.rules),
    ]
    if not settings.rules:
        lines.append("  (none: every request is passed)")
    lines.extend(f"warning: {w}" for w in settings.warnings)
    return "\n".join(lines)


def _workers(count: int, caches: Iterable[CacheSettings]) -> str:
    if count == 1:
        return "workers: 1 (one process)"
    memory = format_size(count * sum(cache.max_bytes for cache in caches))
    return (
        f"workers: {count} (a master and {count} worker processes, each with its own caches: "
        f"up to {memory} in all)"
    )


def _identity(policy: IdentityPolicy) -> list[str]:
    """Who is passed as logged in, and who as having a message waiting."""
    logged_in = ["Authorization"]
    logged_in += [f"cookie {name}" for name in policy.remember_cookies]
    keys = "/".join(policy.session_user_keys)
    logged_in += [f"session cookie {name} with {keys}" for name in policy.session_cookies]
    messages = [f"cookie {name}" for name in policy.message_cookies]
    if policy.session_cookies:
        messages += [f"session key {key}" for key in policy.session_message_keys]
    lines = ["logged in (passed): " + ", ".join(logged_in)]
    lines.append("messages waiting (passed): " + (", ".join(messages) or "-"))
    csrf = ", ".join(policy.csrf_cookies) or "-"
    lines.append(f"CSRF cookies (never stripped from a fill's answer): {csrf}")
    return lines


def _limits(limits: Limits) -> str:
    body = f"up to {format_size(limits.max_body_size)}" if limits.max_body_size else "no limit"
    return (
        f"clients: head {limits.header_timeout:g}s, keep-alive {limits.keepalive_timeout:g}s, "
        f"body idle {limits.body_timeout:g}s, request bodies {body}, "
        f"{limits.max_client_connections} connections; shutdown waits "
        f"{limits.shutdown_timeout:g}s"
    )


def _admin(settings: Settings) -> str:
    """The admin listener, what it serves, and whether /purge needs the token."""
    if settings.admin is None:
        return "off"
    token = "required (Bearer)" if settings.admin_token else "none (loopback or unix only)"
    tags = ", ".join(sorted(settings.purge.tag_headers))
    told = "passed on" if settings.purge.deliver_tags else "removed from responses"
    return f"{settings.admin} ({ADMIN_PATHS}); token: {token}; purge tags from {tags} ({told})"


def _peers(peers: Trust) -> list[str]:
    """The networks a Trust names, and unix sockets when it takes them."""
    return [str(network) for network in peers.networks] + (["unix sockets"] if peers.unix else [])


def _trust(trust: Trust) -> str:
    """Whose X-Forwarded-* is believed: the one setting that lets a client speak for others."""
    if not (trusted := _peers(trust)):
        return "trusted proxies: none (a client's X-Forwarded-* and Forwarded are replaced)"
    return "trusted proxies (their X-Forwarded-* believed): " + ", ".join(trusted)


def _debug_from(peers: Trust) -> str:
    """Who may ask for the decision trace ([admin] debug_from)."""
    if not (allowed := _peers(peers)):
        return "Sidecache-Debug traces: off"
    return "Sidecache-Debug traces for: " + ", ".join(allowed)


def _redis(redis: RedisSettings | None) -> list[str]:
    """The shared tier's line, when there is one (`check` says nothing of it otherwise)."""
    if redis is None:
        return []
    coalesce = "; cross-instance coalescing on" if redis.coalesce else ""
    return [
        f"redis: {redis.shown_url} behind every cache (keys {redis.prefix}..., timeout "
        f"{redis.timeout * 1000:g}ms, connect {redis.connect_timeout:g}s, circuit opens after "
        f"{redis.failures} failures for {redis.cooldown:g}s, {redis.max_connections} "
        f"connections{coalesce})"
    ]


def _headers(settings: Settings) -> str:
    shown = [name for name, on in (("X-Cache", settings.headers.x_cache),
             ("Cache-Status", settings.headers.cache_status)) if on]  # fmt: skip
    log = _access_log(settings.headers.access_log)
    directives = ", ".join(sorted(settings.request_directives)) or "none"
    return (
        f"response headers: {', '.join(shown) or 'none'}; access log: {log}; "
        f"request Cache-Control honoured: {directives}"
    )


def _access_log(where: bool | str) -> str:
    if isinstance(where, str):
        return f"{where} (SIGUSR1 reopens it)"
    return "stdout" if where else "off"


def cache_line(cache: CacheSettings) -> str:
    return (
        f"{cache.name}: items={cache.items} item_size={format_size(cache.item_size)} "
        f"max_bytes={format_size(cache.max_bytes)} ttl={cache.ttl:g}s keep={cache.keep:g}s"
    )


def rule_line(rule: Rule) -> str:
    conditions = []
    if rule.path is not None:
        conditions.append(f"path ~ {rule.path.pattern!r}")
    if rule.methods is not None:
        conditions.append("method in " + ",".join(sorted(rule.methods)))
    if rule.anonymous is not None:
        conditions.append("anonymous" if rule.anonymous else "not anonymous")
    conditions += [f"cookie {_condition(c)}" for c in rule.cookies]
    conditions += [f"header {_condition(c)}" for c in rule.headers]
    when = " and ".join(conditions) or "always"
    if rule.action is Action.PASS:
        return f"{rule.number}. {rule.label}: when {when} → pass"
    ttl = f"ttl={rule.ttl:g}s" if rule.ttl is not None else "ttl=cache default"
    if rule.ttl_mode is TtlMode.ORIGIN:
        ttl = "ttl=origin, fallback " + (f"{rule.ttl:g}s" if rule.ttl is not None else "cache ttl")
        ttl += ", heuristic" if rule.heuristic else ""
    ttl += f", max_ttl={rule.max_ttl:g}s" if rule.max_ttl is not None else ""
    ttl += f", keep={rule.keep:g}s" if rule.keep is not None else ""
    if rule.stale_while_revalidate is not None:
        ttl += f", stale_while_revalidate={rule.stale_while_revalidate:g}s"
    if rule.stale_if_error is not None:
        ttl += f", stale_if_error={rule.stale_if_error:g}s"
    if rule.stale_if_unreachable:
        ttl += ", stale_if_unreachable"
    if rule.invalidate:
        ttl += ", invalidate=" + "+".join(sorted(rule.invalidate, reverse=True))
    if rule.forward_all:
        ttl = "ttl=origin, heuristic" if rule.heuristic else "ttl=origin"
        ttl += ", statuses=any final but 206 and 304, fills forward every header"
    elif rule.statuses != frozenset({200}):
        ttl += ", statuses=" + ",".join(str(s) for s in sorted(rule.statuses))
    key = rule.key.source if rule.key else "-"
    extra = f" keep_cookies={','.join(rule.keep_cookies)}" if rule.keep_cookies else ""
    extra += f" keep_headers={','.join(rule.keep_headers)}" if rule.keep_headers else ""
    return (
        f"{rule.number}. {rule.label}: when {when} → cache in {rule.cache!r} "
        f"({ttl}, set_cookie={rule.set_cookie.value}, key={key}{extra})"
    )


def _condition(condition: Condition) -> str:
    if condition.pattern is not None:
        return f"{condition.name} ~ {condition.pattern.pattern!r}"
    if condition.value:
        return f"{condition.name} == {condition.value!r}"
    return f"{condition.name} {condition.test.value}"
