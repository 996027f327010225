"""Response heads as the front writes them: status lines, the Date header, a hit's bytes.

Everything a hit sends that can be made before the hit is made before it: the entry's header
block when it is stored, status lines once per (status, reason), the Date value once a second.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from proxy.framing import NO_BODY_STATUSES, connection_header
from proxy.store import CachedResponse
from proxy.view import RequestView

# Over max_client_connections: the whole answer, whatever was asked.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 32\r\nConnection: close\r\n\r\n503 too many client connections\n"
)
SMALL_HIT = 4096  # a hit body up to this size is copied into its head's buffer: one write

_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def status_line(status: int, reason: str) -> bytes:
    """`HTTP/1.1 status reason` and CRLF, kept for the first 512 (status, reason) pairs."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = f"HTTP/1.1 {status} {reason or _phrase(status)}\r\n".encode("latin-1", "replace")
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[(status, reason)] = line
    return line


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status code no RFC names: the reason phrase may be empty (§4)
        return ""


class _DateHeader:
    """The Date header value, formatted once per second (RFC 9110 §6.6.1: a proxy adds Date
    to a response that lacks one). Wall time, not the injected clock: it is what the client
    reads as "now"."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def value_now(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second, self.value = now, formatdate(now, usegmt=True).encode()
        return self.value


date_now = _DateHeader().value_now


def entry_response(
    entry: CachedResponse, age: int, tags: bytes, view: RequestView, close: bool, status: int
) -> tuple[bytes, ...]:
    """A hit on the wire: the entry's header block was serialised when it was stored, the
    tags once per server; only Age and the framing are formatted per hit. A small body rides
    in the same bytes (one small copy beats a second buffer); a large one is passed as is, for
    one writev. A 304 carries the entry's 304 subset of headers and nothing else; a 204 has
    no Content-Length (RFC 9110 §8.6)."""
    if status == 304:
        head = b"".join(
            (
                status_line(304, "Not Modified"),
                entry.not_modified_block,
                b"Age: %d\r\n" % age,
                tags,
                connection_header(view.version, close),
                b"\r\n",
            )
        )
        return (head,)
    if entry.status in NO_BODY_STATUSES:
        framing = b"Age: %d\r\n" % age
    else:
        framing = b"Age: %d\r\nContent-Length: %d\r\n" % (age, len(entry.body))
    head = b"".join(
        (
            status_line(entry.status, entry.reason),
            entry.header_block,
            framing,
            tags,
            connection_header(view.version, close),
            b"\r\n",
        )
    )
    if view.method == "HEAD":
        return (head,)
    if len(entry.body) <= SMALL_HIT:
        return (head + entry.body,)
    return (head, entry.body)
