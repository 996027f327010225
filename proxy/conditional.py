"""Conditional requests answered by the cache (RFC 9110 §13, RFC 9111 §4.3.2): is the client's
copy current, so that a 304 will do?"""

from __future__ import annotations

import re

from proxy import fields
from proxy.freshness import http_date
from proxy.view import RequestView

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; a list may hold commas inside
# tags, and empty elements, which a recipient ignores (§5.6.1.2).
_ENTITY_TAG = re.compile(r'[\s,]*(?:W/)?("[^"]*")\s*(?:,|$)')


def entity_tags(value: str) -> list[str] | None:
    """The opaque tags of an If-None-Match list (weak prefixes dropped: a weak comparison);
    None for `*`. Parsing stops at the first element that is not an entity tag."""
    if value.strip() == "*":
        return None
    tags: list[str] = []
    pos = 0
    while pos < len(value) and value[pos:].strip(" \t,"):
        match = _ENTITY_TAG.match(value, pos)
        if match is None:
            break
        tags.append(match.group(1))
        pos = match.end()
    return tags


def _opaque(etag: str) -> str:
    etag = etag.strip()
    return etag[2:] if etag.startswith("W/") else etag


def not_modified(view: RequestView, etag: str | None, last_modified: str | None) -> bool:
    """True when the request's preconditions say its copy is current (§13.1.2, §13.1.3):
    If-None-Match by weak comparison, else If-Modified-Since against `last_modified` (the
    stored Last-Modified, or its Date when it has none: RFC 9111 §4.3.2)."""
    if view.method not in ("GET", "HEAD"):
        return False
    none_match = view.header("if-none-match")
    if none_match is not None:  # §13.2.2: If-Modified-Since is ignored when this is present
        tags = entity_tags(none_match)
        if tags is None:  # "*": any current representation, and the entry is one (§13.1.2)
            return True
        return etag is not None and _opaque(etag) in tags
    since = view.header("if-modified-since")
    if since is None or last_modified is None or not _one_date(view, since):
        return False
    since_at, modified_at = http_date(since), http_date(last_modified)
    return since_at is not None and modified_at is not None and modified_at <= since_at


def _one_date(view: RequestView, since: str) -> bool:
    """§13.1.3: an If-Modified-Since with more than one member is ignored. An HTTP-date has
    at most one comma (IMF-fixdate and RFC 850 after the weekday, asctime none)."""
    sent = fields.count(view.headers, "if-modified-since")
    return sent == 1 and since.count(",") <= 1
