"""Typed, immutable settings: what config.py produces and everything else reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from proxy.identity import IdentityPolicy
from proxy.rules import Rule

Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class Listen:
    """A listener: TCP host and port, or a unix socket path (then host is "" and port 0)."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Upstream:
    """The one origin: `http://host:port` or a unix socket path."""

    url: str = "http://127.0.0.1:5000"  # base URL requests are sent to ("http://localhost" on unix)
    socket: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_connections: int = 100
    host: str = ""  # "" keeps the client's Host; anything else replaces it
    total_timeout: float = 0.0  # a whole exchange, body included, must end in this; 0: no bound


@dataclass(frozen=True, slots=True)
class CacheSettings:
    name: str
    items: int = 1000
    item_size: int = 64 * 1024  # uWSGI's cache2 blocksize default
    max_bytes: int = 64 * 1024 * 1024
    ttl: float = 10.0
    keep: float = 600.0  # stale entries stay this long: to be revalidated, or for max-stale
    coalesce_wait: float = 5.0  # concurrent misses wait this long for one fill (0: no waiting)
    hit_for_pass: float = 10.0  # a key whose fill could not be stored is not waited on for this


# What the admin listener answers, as every message that names the listener says it.
ADMIN_PATHS = "/health, /ready, /metrics, /purge"
SCAN_SECONDS = 10.0  # a purge's SCAN of the shared tier's index (store/redis_purge.py) ends by then


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """`[redis]`: the shared tier behind every cache (store/tiered.py). The defaults and why
    are config_redis.py's."""

    url: str  # redis://[:password@]host[:port][/db], rediss://..., unix://[:password@]/path[?db=N]
    prefix: str = "sidecache:"  # before every key: deployments sharing one Redis stay apart
    timeout: float = 0.005  # every call a visitor waits for (get, delete)
    connect_timeout: float = 1.0  # the background (re)connection's PING
    failures: int = 5  # failed calls in a row that open the circuit
    cooldown: float = 5.0  # Redis is skipped this long before it is tried again
    max_connections: int = 16  # per process
    coalesce: bool = False  # a lock in Redis: one fill of a cold key across instances (fleet.py)

    @property
    def shown_url(self) -> str:
        """The URL without its password, for logs, /ready and `check`."""
        scheme, sep, rest = self.url.partition("://")
        userinfo, at, location = rest.rpartition("@")
        if not at or ":" not in userinfo:
            return self.url
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{location}"

    @property
    def purge_seconds(self) -> float:
        """The longest one cache's purge on Redis may take: its SCAN (SCAN_SECONDS), and
        connect_timeout for the connection it opens and its other calls."""
        return SCAN_SECONDS + self.connect_timeout


@dataclass(frozen=True, slots=True)
class Trust:
    """Peers whose X-Forwarded-* / Forwarded headers are believed (a fronting load balancer)."""

    networks: tuple[Network, ...] = ()
    unix: bool = False  # peers on a unix-socket listener

    def trusts(self, peer: str) -> bool:
        if not peer:
            return self.unix
        if not self.networks:  # the common case: nobody is trusted; skip parsing the address
            return False
        try:
            address = ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.networks)


def loopback() -> Trust:
    """`[admin] debug_from`'s default: this machine's own addresses (127.0.0.0/8, ::1)."""
    return Trust((IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")))


@dataclass(frozen=True, slots=True)
class Limits:
    """What the front allows a client, and how long a stop waits (nginx's names in comments)."""

    header_timeout: float = 10.0  # the whole request head must arrive in this time (408 after)
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed (keepalive_timeout)
    max_body_size: int = 0  # larger request bodies get 413 (client_max_body_size); 0: no limit
    body_timeout: float = 60.0  # no more of a request body for this long: 408 or cut
    max_client_connections: int = 4096  # more at once are answered 503 and closed
    shutdown_timeout: float = 10.0  # SIGTERM: requests in flight get this long, then are cut


@dataclass(frozen=True, slots=True)
class Headers:
    x_cache: bool = True
    cache_status: bool = True
    access_log: bool | str = True  # True: stdout; False: off; a path: that file (O_APPEND)


# The response headers whose values are purge tags (Fastly, Akamai, Varnish's xkey).
TAG_HEADERS = frozenset({"cache-tag", "surrogate-key", "xkey"})


@dataclass(frozen=True, slots=True)
class PurgeSettings:
    """`[purge]`: the response headers that carry tags, and whether visitors get them."""

    tag_headers: frozenset[str] = TAG_HEADERS  # lower-case
    deliver_tags: bool = False  # False: stripped from every response (they are the site's own)

    @property
    def stripped(self) -> frozenset[str]:
        """The header names no visitor gets."""
        return frozenset() if self.deliver_tags else self.tag_headers


@dataclass(frozen=True, slots=True)
class Settings:
    source: str
    listen: tuple[Listen, ...]
    upstream: Upstream
    trust: Trust
    headers: Headers
    identity: IdentityPolicy
    caches: Mapping[str, CacheSettings]
    rules: tuple[Rule, ...]
    warnings: tuple[str, ...] = field(default=())
    # Request Cache-Control directives honoured (RFC 9111 §5.2.1); see config.py for the default.
    request_directives: frozenset[str] = frozenset(
        {"no-store", "max-stale", "min-fresh", "only-if-cached"}
    )
    mode: str = "rules"  # or "shared": no rules, a plain RFC 9111 shared cache
    limits: Limits = field(default_factory=Limits)
    # The operator's listener (ADMIN_PATHS); None: off (the default). Loopback or
    # unix only, unless an admin_token is set.
    admin: Listen | None = None
    # RFC 9213 targeted fields for this cache (lower-case), first found wins over Cache-Control.
    targeted: tuple[str, ...] = ("sidecache-cache-control", "cdn-cache-control")
    # Worker processes (`[server] workers`, "auto" already counted); 1: one process, no master.
    workers: int = 1
    # The raw table these settings were parsed from: what a master hands its workers, which
    # parse it again (a parsed Settings holds compiled functions, which do not pickle).
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Peers whose `Sidecache-Debug: 1` gets the decision trace (`[admin] debug_from`).
    debug_from: Trust = field(default_factory=loopback)
    # The shared tier on Redis (`[redis] url`, --redis, SIDECACHE_REDIS); None: off.
    redis: RedisSettings | None = None
    # `Authorization: Bearer` the admin listener requires for /purge and /metrics
    # (`[admin] token`, SIDECACHE_ADMIN_TOKEN); "": none (it is then loopback or unix only).
    admin_token: str = field(default="", repr=False)
    purge: PurgeSettings = field(default_factory=PurgeSettings)
