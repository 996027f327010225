"""Message framing and keep-alive, for requests and responses, as small pure functions.

Where a body ends and whether the connection outlives the message (RFC 9112 §6, §9.3), decided
from plain values: the front (`http1.py`, `client_side.py`) reads them for the requests it
parses and the responses it writes, the upstream client (`upstream_exchange.py`) for the
responses it reads, the policy (`policy.py`) for what may be stored. No I/O, no parser: the
callers hand over what the parser reported (h11 keeps its `_body_framing` and `_keep_alive` the
same way, apart from its state machine).

The rules, in one place:

- A request's body is chunked (any Transfer-Encoding: a coding other than chunked is refused
  later, 501), else as long as its Content-Length, else absent (RFC 9112 §6.3 items 4-6).
- A Content-Length is one run of ASCII digits below 2**63 (nginx's bound too); anything else
  (junk, "5, 5" joined from two fields) is a 400 and a close: no guess is made about where the
  body ends (§6.3 item 5).
- HTTP/1.1 persists unless "Connection: close"; HTTP/1.0 only with "keep-alive" (§9.3). A 1.0
  request with Transfer-Encoding (§6.1: smuggling) and an HTTP/0.9 request line are a 400.
- A response to HEAD, a 1xx, a 204 and a 304 have no body (RFC 9110 §6.4.1); a response
  body whose length is not known in advance is chunked to an HTTP/1.1 client, and ends with the
  connection to an HTTP/1.0 one (or when its upstream's did).
- An upstream response's body is framed when its end is marked (chunked, Content-Length, or no
  body by status), so a short one shows; a close-delimited body cannot be told from a cut one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

MAX_CONTENT_LENGTH = 2**63 - 1  # nginx's bound too: no upstream reads a longer one the same way

# Statuses that never have content, so no Content-Length (RFC 9110 §8.6, §15.3.5, §15.4.5).
NO_BODY_STATUSES = frozenset({*range(100, 200), 204, 304})

# What a request's head says of its body and connection: (keep_alive, content_length, has_body,
# problem). content_length is None when the body is chunked or absent; problem is the (status,
# reason) to answer with, or None. A plain tuple: this is made once per request, hits included.
Problem = tuple[int, str]
RequestFraming = tuple[bool, int | None, bool, Problem | None]


def request_framing(version: tuple[int, int], fields: Mapping[str, str]) -> RequestFraming:
    """Keep-alive, Content-Length and whether a body follows, from the joined, lower-cased
    fields of a request head (RFC 9112 §6.1, §6.3, §9.3)."""
    problem: Problem | None = None
    connection = fields.get("connection")
    tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
    if version >= (1, 1):
        keep_alive = "close" not in tokens
    else:
        keep_alive = "keep-alive" in tokens
        problem = older_problem(version, fields)
        keep_alive = keep_alive and problem is None
    if "proxy-connection" in fields:
        # Not HTTP (RFC 9112 §9.6), yet llhttp closes on "Proxy-Connection: close" like on
        # Connection's and refuses what follows: say so, rather than invite a next request.
        keep_alive = keep_alive and "close" not in fields["proxy-connection"].lower()
    chunked = "transfer-encoding" in fields  # any coding but chunked is refused (501)
    length = fields.get("content-length")
    if length is not None and not valid_length(length):
        # Several lengths (joined "5, 5") or junk: llhttp refuses these itself; should one get
        # through, no guess is made about where the body ends. A length of 2**63 or more (as
        # nginx refuses it) is one the upstream may read otherwise (aiohttp: as no body).
        problem = problem or (400, "invalid Content-Length")
        keep_alive = False
        length = None
    content_length = None if chunked or length is None else int(length)
    return keep_alive, content_length, chunked or bool(content_length), problem


def valid_length(length: str) -> bool:
    """One Content-Length of ASCII digits below 2**63 (RFC 9110 §8.6: guard against overflow)."""
    digits = length.strip(" \t")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return False
    return int(digits) <= MAX_CONTENT_LENGTH


def older_problem(version: tuple[int, int], fields: Mapping[str, str]) -> Problem | None:
    """HTTP/1.0 and older (only their requests pay for this). RFC 9112 §6.1: an HTTP/1.0
    message with Transfer-Encoding has faulty framing (1.0 has no chunked; a 1.0 hop would read
    the body another way: smuggling), so 400 and close, as nginx does. A request line without
    a version (HTTP/0.9, RFC 9112 §2.3) is refused too: sidecache does not speak 0.9."""
    if version < (1, 0):
        return (400, "HTTP/0.9 is not supported")
    if "transfer-encoding" in fields:
        return (400, "Transfer-Encoding in an HTTP/1.0 request")
    return None


def status_has_body(status: int) -> bool:
    """RFC 9110 §6.4.1 / RFC 9112 §6.3: 1xx, 204 and 304 responses never have a body."""
    return status >= 200 and status not in (204, 304)


def response_has_body(method: str, status: int) -> bool:
    """Whether this response carries body bytes on the wire: never for HEAD (§9.3.2)."""
    return method != "HEAD" and status_has_body(status)


class BodyFraming(enum.Enum):
    """How the front marks the end of a response body it streams (RFC 9112 §6.3)."""

    NONE = "none"  # no body on the wire (HEAD, 1xx, 204, 304), and no Content-Length either
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked (HTTP/1.1 clients)
    CLOSE = "close"  # the body ends when the connection does


# The members as module constants: on Python 3.11 `BodyFraming.LENGTH` goes through the enum's
# metaclass (~70 ns a lookup), a global ~10 ns; every streamed response (pass, miss) reads two.
NO_BODY, LENGTH, CHUNKED, CLOSE = (
    BodyFraming.NONE,
    BodyFraming.LENGTH,
    BodyFraming.CHUNKED,
    BodyFraming.CLOSE,
)


def streamed_framing(
    method: str,
    status: int,
    version: tuple[int, int],
    content_length: int | None,
    until_close: bool = False,
) -> BodyFraming:
    """The framing of a streamed response: its Content-Length when known (never on a 1xx or a
    204, RFC 9110 §8.6; a HEAD answer keeps the one a GET would get); else none when the
    response has no body; else close-delimited when the upstream's body was (`until_close`) or
    the client speaks HTTP/1.0, which has no chunked; else chunked."""
    if content_length is not None:
        return LENGTH if status >= 200 and status != 204 else NO_BODY
    if not response_has_body(method, status):
        return NO_BODY
    if until_close or version < (1, 1):
        return CLOSE
    return CHUNKED


def body_is_framed(chunked: bool, content_length: int | None, status: int) -> bool:
    """Whether a received response's body end is marked, so a short one shows: close-delimited
    bodies cannot be told apart from truncated ones (RFC 9112 §6.3); a 204 or 304 has no body."""
    return chunked or content_length is not None or status in (204, 304)


def response_length(value: bytes) -> int | None:
    """A response's Content-Length field value as a length, None when it is not one (llhttp has
    refused the malformed ones already; what remains is read as the parser read it)."""
    return int(value) if value.strip().isdigit() else None


def coding_refused(already_chunked: bool, value: bytes) -> bool:
    """A response Transfer-Encoding field we cannot pass on: exactly one "chunked" is taken, as
    nginx takes it; anything else (gzip, chunked twice, a second field) is a coding we would
    pass on undecoded and unlabelled (RFC 9112 §6.1: a proxy must not)."""
    return already_chunked or value.strip().lower() != b"chunked"


def connection_header(version: tuple[int, int], close: bool) -> bytes:
    """The Connection field a response needs, if any (RFC 9112 §9.3, §9.6): "close" to an
    HTTP/1.1 client when this message ends the connection, "keep-alive" to an HTTP/1.0 one when
    it does not; nothing when the version's default already says it."""
    if close:
        return b"Connection: close\r\n" if version >= (1, 1) else b""
    return b"Connection: keep-alive\r\n" if version < (1, 1) else b""
