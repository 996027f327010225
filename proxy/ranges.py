"""Range requests answered from a stored complete response (RFC 9110 §14).

Only a single byte range is answered from cache (206); several ranges, or a Range this module
does not understand, are forwarded to the app (a cache may always do that). Pure.
"""

from __future__ import annotations

import re

from proxy.conditional import entity_tags
from proxy.freshness import http_date

_SINGLE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)

UNSATISFIABLE = (-1, -1)


def byte_range(value: str, length: int) -> tuple[int, int] | None:
    """(first, last) byte positions for a single-range `Range` against a body of `length`
    bytes, UNSATISFIABLE when no byte of it exists (416), None when it is not a single byte
    range (then the request goes to the app)."""
    match = _SINGLE.fullmatch(value)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes (§14.1.1)
        count = int(last)
        if count == 0 or length == 0:
            return UNSATISFIABLE
        return max(0, length - count), length - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as if there were no Range (§14.2)
    if start >= length:
        return UNSATISFIABLE
    return start, min(int(last), length - 1) if last else length - 1


def if_range_holds(value: str | None, etag: str | None, last_modified: str | None) -> bool:
    """§13.1.5: without If-Range, or when it matches (strong comparison of an entity-tag, or
    an exact Last-Modified date), the range applies; otherwise the whole response is sent."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        tags = entity_tags(value)
        strong = etag is not None and not etag.startswith("W/") and not value.startswith("W/")
        return strong and tags == [etag]
    modified = http_date(last_modified)
    return modified is not None and http_date(value) == modified
