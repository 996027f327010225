"""Conditional requests answered by the cache (RFC 9110 §13, RFC 9111 §4.3.2): is the client's
copy current, so that a 304 will do?"""

from __future__ import annotations

import re

from proxy.freshness import http_date
from proxy.view import RequestView

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; a list may hold commas inside tags.
_ENTITY_TAG = re.compile(r'\s*(?:W/)?("[^"]*")\s*(?:,|$)')


def entity_tags(value: str) -> list[str] | None:
    """The opaque tags of an If-None-Match list (weak prefixes dropped: a weak comparison);
    None for `*` or a value that is not a list of entity tags."""
    if value.strip() == "*":
        return None
    tags: list[str] = []
    pos = 0
    while pos < len(value):
        match = _ENTITY_TAG.match(value, pos)
        if match is None or match.end() == pos:
            return tags  # what parsed before the junk
        tags.append(match.group(1))
        pos = match.end()
    return tags


def _opaque(etag: str) -> str:
    etag = etag.strip()
    return etag[2:] if etag.startswith("W/") else etag


def not_modified(view: RequestView, etag: str | None, last_modified: str | None) -> bool:
    """True when the request's preconditions say its copy is current (§13.1.2, §13.1.3):
    If-None-Match by weak comparison, else If-Modified-Since against Last-Modified."""
    if view.method not in ("GET", "HEAD"):
        return False
    none_match = view.header("if-none-match")
    if none_match is not None:  # §13.2.2: If-Modified-Since is ignored when this is present
        if etag is None:
            return False
        tags = entity_tags(none_match)
        return tags is None or _opaque(etag) in tags
    since = view.header("if-modified-since")
    if since is None or last_modified is None:
        return False
    since_at, modified_at = http_date(since), http_date(last_modified)
    return since_at is not None and modified_at is not None and modified_at <= since_at
