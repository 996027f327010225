"""What bench/soak's origin and its clients agree on: paths, page sizes and page bodies.

A body starts with its own path (one line), so a client can tell a truncated or mangled body from
a body that belongs to another URL; the rest is a filler derived from the path.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

KIB = 1024
MIB = 1024 * KIB

PAGES = 40  # /page/0 .. /page/39: the cached pages (Cache-Control: max-age=2)
BIG_SIZE = 4 * MIB  # /big: larger than item_size, streamed, read by the slow readers
COOKIE_SIZE = 3 * KIB  # /cookie: sets a cookie on every answer
SLOW_SIZE = 8 * KIB  # /bad/slow: a correct page, sent slowly (within the proxy's read_timeout)

# Misbehaving origin paths (under /bad/) and what a client of the proxy may see for each.
# "cut": the connection was closed before the response was whole (or before any response).
BAD_EXPECTED: dict[str, frozenset[str]] = {
    "reset-head": frozenset({"502"}),  # reset before a byte of the answer
    "reset-body": frozenset({"cut"}),  # headers and part of the body, then a TCP reset
    "close-early": frozenset({"cut"}),  # Content-Length promised more than was sent, then FIN
    "stall-head": frozenset({"504"}),  # no answer for longer than read_timeout
    "stall-body": frozenset({"cut"}),  # headers and part of the body, then silence
    "garbage": frozenset({"502"}),  # not HTTP
    "5xx": frozenset({"500", "503"}),  # the app's own error, relayed
    "slow": frozenset({"200"}),  # slow but within every timeout: must be whole and right
}


def page_size(path: str) -> int:
    """The size of the body of a page path (/page/N, /churn/N, /cookie, /bad/slow, /big)."""
    if path.startswith("/page/"):
        return 2 * KIB + (int(path[6:]) % 8) * KIB
    if path.startswith("/churn/"):
        return 4 * KIB + (int(path[7:]) % 11) * 4 * KIB  # 4 .. 44 KiB, under item_size
    if path == "/cookie":
        return COOKIE_SIZE
    if path == "/bad/slow":
        return SLOW_SIZE
    if path == "/big":
        return BIG_SIZE
    return 2 * KIB


def page_body(path: str) -> bytes:
    """The body the origin sends for `path` (the query string is not part of it)."""
    if path in ("/big",) or path.startswith("/page/"):
        return _cached_body(path)
    return _make_body(path, page_size(path))


@lru_cache(maxsize=64)
def _cached_body(path: str) -> bytes:
    return _make_body(path, page_size(path))


def _make_body(path: str, size: int) -> bytes:
    head = f"{path}\n".encode()
    unit = hashlib.blake2b(path.encode(), digest_size=32).hexdigest().encode()  # 64 bytes
    return (head + unit * (size // len(unit) + 1))[:size]


def body_path(body: bytes) -> str:
    """The path a body says it belongs to ('' when it does not start like a page)."""
    line, sep, _ = body[:512].partition(b"\n")
    if not sep or not line.startswith(b"/"):
        return ""
    return line.decode("latin-1")
