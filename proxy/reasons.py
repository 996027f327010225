"""Why a request was passed or a response was not stored.

Every "why not cached" answer is one member of these enums; the same value appears in the access
log, in `Cache-Status` details and (later) in metric labels. Values are short kebab-case tokens
because they travel inside an RFC 9211 `detail` parameter.
"""

from __future__ import annotations

from enum import StrEnum


class PassReason(StrEnum):
    """Why `decide` sent a request upstream without touching any cache."""

    NO_RULE = "no-rule"  # no rule matched: the product default is pass
    RULE = "rule"  # the first matching rule says action = "pass"
    METHOD = "method"  # only GET and HEAD are ever answered from a cache
    AUTHORIZATION = "authorization"  # RFC 9111 §3.5; the rule did not allow it
    AUTHENTICATED = "authenticated"  # remember cookie or logged-in session (identity.py)
    FLASHES = "flashes"  # a one-time message is waiting for this visitor (identity.py)
    HIT_FOR_PASS = "hit-for-pass"  # the page proved personal: each visitor's own request goes
    REQUEST_BODY = "request-body"  # a GET/HEAD with a body is not a plain read
    RANGE = "range"  # a Range request with no usable entry: partial responses are not stored
    UPGRADE = "upgrade"  # a protocol switch (WebSocket) is never a cacheable read


class NotStoredReason(StrEnum):
    """Why a fill response (the upstream answer to a miss) was delivered but not stored."""

    STATUS = "status"  # only 200 is stored
    NO_STORE = "no-store"  # Cache-Control: no-store (RFC 9111 §5.2.2.5)
    PRIVATE = "private"  # Cache-Control: private (RFC 9111 §5.2.2.7)
    NO_CACHE = "no-cache"  # needs revalidation on every use, and has no validator to do it with
    SET_COOKIE = "set-cookie"  # rule says set_cookie = "skip"
    VARY = "vary"  # Vary names a request header the fill does not send
    VARY_STAR = "vary-star"  # Vary: * never matches (RFC 9111 §4.1)
    AUTHORIZATION = "authorization"  # §3.5: needs public, s-maxage or must-revalidate
    TOO_BIG = "too-big"  # body larger than the cache's item_size
    ENCODING = "encoding"  # a Content-Encoding the fill did not ask for (origin ignored us)
    UNFRAMED = "unframed"  # close-delimited body: truncation cannot be detected
    INCOMPLETE = "incomplete"  # the body did not arrive whole
    REQUEST_NO_STORE = "request-no-store"  # the request said Cache-Control: no-store (§5.2.1.5)
    NO_SPACE = "no-space"  # the store refused it (larger than max_bytes)
    ZERO_TTL = "zero-ttl"  # no freshness lifetime and no validator: useless once stored
