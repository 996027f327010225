"""A uWSGI ini's caches (`cache2`, the old `cache`) and the app's HTTP address, as sidecache's
`[caches.NAME]` and `[upstream] url` (uWSGI's docs: Caching, "cache2 options"; core/cache.c).

uWSGI sets aside `blocks` x `blocksize` bytes per cache; an item is at most one block (the
whole cache in bitmap mode); `blocks` defaults to `items`, `blocksize` to 65536. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.config import parse_upstream
from proxy.uwsgi_ini import IniOption, placeholder
from proxy.uwsgi_routes import kvlist

DEFAULT_BLOCKSIZE = 65536
DEFAULT_UPSTREAM = "http://127.0.0.1:5000"  # sidecache's own default

# cache2 options sidecache has no use for, and why (one reason per group of aliases).
_NOT_NEEDED = {
    ("hash", "hashsize", "hash_size"): "sidecache's caches have no hash table to size",
    ("keysize", "key_size"): "sidecache keys have no size limit",
    ("store", "store_sync", "storesync", "store_delete", "storedelete"): (
        "sidecache keeps its caches in memory only: a restart starts them empty"
    ),
    ("node", "nodes", "sync", "udp", "udp_servers", "udp_server", "udpservers", "udpserver"): (
        "sidecache does not share caches between hosts"
    ),
    ("lastmod",): "sidecache keeps the app's Last-Modified and answers conditional requests",
    ("math_initial",): "for cacheinc/cachedec counters, not pages",
    ("ignore_full", "purge_lru", "lru", "sweep_on_full", "clear_on_full"): (
        "a full sidecache cache drops its least recently used entry"
    ),
    ("lazy_expire", "lazy", "no_expire"): "a sidecache entry lives for its ttl",
}
NOT_NEEDED = {alias: why for aliases, why in _NOT_NEEDED.items() for alias in aliases}
TRANSLATED = frozenset({"name", "items", "max_items", "maxitems", "blocksize", "blocks", "bitmap"})


@dataclass(frozen=True, slots=True)
class Cache:
    name: str
    option: IniOption
    items: int
    blocksize: int
    blocks: int
    bitmap: bool
    skipped: tuple[str, ...] = field(default=())  # "option=value — why" lines
    blocksize_option: IniOption | None = None  # the old style's cache-blocksize line

    @property
    def item_size(self) -> int:
        return self.blocksize * self.blocks if self.bitmap else self.blocksize


def read_cache2(option: IniOption) -> Cache | str:
    """`cache2 = name=N,items=I[,blocksize=B,blocks=K,...]`, or why uWSGI would refuse it."""
    found = placeholder(option.value)
    if found:
        return f"{found} is a uWSGI placeholder, known only when uWSGI reads the file"
    options = kvlist(option.value)
    name = options.get("name", "")
    items = options.get("items") or options.get("maxitems") or options.get("max_items") or ""
    if not name or not items:
        return "uWSGI refuses a cache2 without name= and items="
    numbers = {"items": items, "blocksize": options.get("blocksize", str(DEFAULT_BLOCKSIZE))}
    numbers["blocks"] = options.get("blocks", items)
    bad = [f"{k}={v}" for k, v in numbers.items() if not v.isdigit() or int(v) == 0]
    if bad:
        return f"{bad[0]} is not a positive whole number (uWSGI reads only leading digits)"
    skipped = tuple(
        f"{k}={v} — {NOT_NEEDED.get(k, 'not a cache2 option uWSGI knows')}"
        for k, v in options.items()
        if k not in TRANSLATED
    )
    counts = {k: int(v) for k, v in numbers.items()}
    if counts["blocks"] < counts["items"]:
        return "uWSGI refuses fewer blocks than items"
    return Cache(
        name,
        option,
        counts["items"],
        counts["blocksize"],
        counts["blocks"],
        "bitmap" in options,
        skipped,
    )


def read_old_cache(option: IniOption, blocksize: IniOption | None) -> Cache | str:
    """The old-style `cache = ITEMS` (with `cache-blocksize`): uWSGI names it "default"."""
    size = blocksize.value if blocksize else str(DEFAULT_BLOCKSIZE)
    if not option.value.isdigit() or not size.isdigit() or not int(size):
        return "not a positive whole number (uWSGI reads only leading digits)"
    if not int(option.value):
        return "0 items: uWSGI makes no cache"
    items = int(option.value)
    return Cache("default", option, items, int(size), items, False, (), blocksize)


def size_text(size: int) -> str:
    """A byte count as sidecache's sizes read best: "64KiB", "6400KiB", "1MiB" or bytes."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f'"{size // factor}{unit}"'
    return str(size)


# --------------------------------------------------------------------------- the app


HTTP_SOCKETS = ("http-socket", "http")
OTHER_SOCKETS = ("socket", "uwsgi-socket", "fastcgi-socket", "scgi-socket", "shared-socket")


@dataclass(frozen=True, slots=True)
class Upstream:
    url: str
    comment: str
    option: IniOption | None = None  # the line it came from


def upstream(options: tuple[IniOption, ...]) -> Upstream:
    """The app's HTTP address from the first `http-socket` (uWSGI speaking HTTP itself) or
    `http` (its HTTP router) that names one sidecache can reach; else sidecache's default,
    with a comment saying to set it (`socket` speaks the uwsgi protocol, not HTTP)."""
    for option in options:
        if option.name not in HTTP_SOCKETS:
            continue
        url = http_url(option.value)
        if url:
            return Upstream(url, f"line {option.line}: {option.text}", option)
    sockets = [o for o in options if o.name in OTHER_SOCKETS]
    hint = (
        f"line {sockets[0].line}: {sockets[0].text} speaks the uwsgi protocol, not HTTP; "
        if sockets
        else "no http-socket in the ini; "
    )
    return Upstream(DEFAULT_UPSTREAM, hint + "set the app's HTTP address here (uWSGI: http-socket)")


def http_url(address: str) -> str:
    """`:8000`, `0.0.0.0:8000`, `[::]:8000`, `host:port` or `/run/app.sock` as an upstream
    URL; "" when sidecache cannot reach it (a placeholder, an abstract socket `@name`...).
    Every-interface addresses become loopback: sidecache runs beside the app."""
    address = address.split(",", 1)[0].strip()
    if not address or placeholder(address) or address.startswith(("@", "=")):
        return ""
    if "/" in address and not address.startswith("["):
        return f"unix:{address.removeprefix('unix:')}"
    host, _, port = address.rpartition(":")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "[::]": "[::1]"}.get(
        host, host
    )
    url = f"http://{host}:{port}"
    try:
        parse_upstream(url)
    except ValueError:
        return ""
    return url
