"""`[redis]` → `RedisSettings`: the shared tier's URL, key prefix, timeouts and circuit breaker.

Every problem is one `ConfigError` naming the file, the key and the problem, as for the rest
of the file. The defaults, and why:

- `timeout = "5ms"`: a visitor whose page is not in this process's memory waits at most this
  long for Redis before the app is asked. A GET from a Redis on the same network answers in
  well under a millisecond; 5 ms leaves room for a busy one and a 64 KiB entry, and is still
  small next to what a fill costs. At most 1 s: Redis is an optimisation, never a reason for a
  visitor to wait.
- `connect_timeout = "1s"`: (re)connecting happens in the background, never on a visitor's
  time, so it can afford a TLS handshake to a distant Redis.
- `failures = 5`, `cooldown = "5s"`: five failed calls in a row open the circuit; Redis is then
  skipped (memory and the app serve) and tried again by one background PING every cool-down.
- `coalesce = false`: coalescing across instances (store/fleet.py) costs a Redis round trip
  before every fill; worth it for a fleet whose cold pages are expensive.
- `prefix = "sidecache:"`: every key starts with it, so two deployments (or staging and
  production) can share one Redis database without reading each other's pages.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from proxy.settings import RedisSettings
from proxy.tomltable import Table, text
from proxy.units import parse_duration

SCHEMES = ("redis", "rediss", "unix")
MAX_TIMEOUT = 1.0
MAX_PREFIX = 100
_PREFIX = re.compile(r"[!-~]*")  # printable ASCII, no space: a key as redis-cli shows it


def parse_redis(table: Table) -> RedisSettings | None:
    """`[redis]`, or None when `url` is absent or "" (the tier is off: the default). Other
    keys without a url are refused (a misspelt url would silently leave the tier off), unless
    the url is "" on purpose (`--redis ""` turns a configured tier off)."""
    url = table.convert("url", text(redis_url), "")
    d = RedisSettings("")  # the defaults
    settings = RedisSettings(
        url=url,
        prefix=table.convert("prefix", text(_prefix), d.prefix),
        timeout=table.convert("timeout", _call_timeout, d.timeout),
        connect_timeout=table.convert("connect_timeout", _positive, d.connect_timeout),
        failures=table.get("failures", int, d.failures),
        cooldown=table.convert("cooldown", _positive, d.cooldown),
        max_connections=table.get("max_connections", int, d.max_connections),
        coalesce=table.get("coalesce", bool, d.coalesce),
    )
    if settings.failures < 1:
        raise table.error("failures", "must be at least 1")
    if settings.max_connections < 1:
        raise table.error("max_connections", "must be at least 1")
    table.finish()
    if not url:
        others = sorted(set(table.data) - {"url"})
        if others and "url" not in table.data:
            raise table.error(others[0], "has no Redis to apply to: set [redis] url (or --redis)")
        return None
    return settings


def redis_url(value: str) -> str:
    """A URL redis-py connects to, checked here so that a typo is a config error, not a
    tier that never comes up: redis://[:password@]host[:port][/db], rediss://... (TLS),
    unix://[:password@]/path/to.sock[?db=N]; "" is off."""
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        port = parts.port  # a ValueError when it is not a number in 0-65535
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {value!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"bad Redis URL {value!r}: use redis://host:port/db, rediss://... or unix:///path"
        )
    if parts.fragment:
        raise ValueError(f"bad Redis URL {value!r}: a fragment (#...) means nothing here")
    if parts.scheme == "unix":
        _unix(value, parts)
    else:
        _tcp(value, parts, port)
    return value


def _tcp(value: str, parts: SplitResult, port: int | None) -> None:
    if not parts.hostname:
        raise ValueError(f"bad Redis URL {value!r}: no host (redis://host:port/db)")
    if port == 0:
        raise ValueError(f"bad Redis URL {value!r}: port 0")
    if parts.query:
        raise ValueError(f"bad Redis URL {value!r}: no query parameters (use [redis] keys)")
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise ValueError(f"bad Redis URL {value!r}: the path is a database number (/0)")


def _unix(value: str, parts: SplitResult) -> None:
    if parts.hostname or not parts.path.startswith("/"):
        raise ValueError(f"bad Redis URL {value!r}: write unix:///absolute/path/to.sock")
    if parts.query and not re.fullmatch(r"db=\d+", parts.query):
        raise ValueError(f"bad Redis URL {value!r}: the only query is ?db=N")


def _prefix(value: str) -> str:
    if not value:
        raise ValueError(
            "must not be empty: it keeps sidecache's keys apart from other programs' in the "
            'same Redis database (e.g. "sidecache:")'
        )
    if len(value) > MAX_PREFIX or not _PREFIX.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r}: at most {MAX_PREFIX} printable ASCII characters, no spaces"
        )
    return value


def _positive(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0")
    return seconds


def _call_timeout(value: object) -> float:
    seconds = _positive(value)
    if seconds > MAX_TIMEOUT:
        raise ValueError(
            f"{seconds:g}s is more than {MAX_TIMEOUT:g}s: a visitor waits this long when "
            "Redis hangs, and Redis is only an optimisation (e.g. 5ms)"
        )
    return seconds
