"""Invalidation (RFC 9111 §4.4): a non-error response to an unsafe request makes the stored
responses for its target URI, and for a same-origin Location or Content-Location, unusable.

Pure: which GET requests would have been answered from the entries to drop, each with what
named it (`TARGET` or `LOCATION`: the rule that stores the entry says which it honours, see
`Rule.invalidate`). The handler decides each (as `decide` would for an anonymous visitor, the
only one ever answered from a cache) and deletes the keys. Keys that read cookies or other
request headers are invalidated for the values this request carried (or their absence) only.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from proxy import fields
from proxy.view import Headers, RequestView

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
TARGET = "target"  # the unsafe request's own URI (§4.4: MUST)
LOCATION = "location"  # a same-origin Location or Content-Location (§4.4: MAY)
# The Accept-Encoding values a key can carry (encoding.normalise_accept_encoding's results).
ENCODINGS = ("identity", "gzip", "br", "br, gzip")
# What makes a request logged-in or personal: left out, the GET is the anonymous visitor's.
_PERSONAL = frozenset({"cookie", "authorization", "accept-encoding"})


def invalidates(method: str, status: int) -> bool:
    """§4.4: an unsafe method with a non-error status (2xx or 3xx)."""
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


def targets(view: RequestView, response_headers: Headers) -> list[tuple[str, str]]:
    """The request's target, then the same-origin Location / Content-Location targets, each
    with what named it (a URI named twice counts as the target)."""
    found = [(view.target, TARGET)]
    seen = {view.target}
    base = f"{view.scheme}://{view.host}{view.target}"
    for name, value in response_headers:
        if name.lower() not in ("location", "content-location"):
            continue
        absolute = urljoin(base, value.strip())
        parts = urlsplit(absolute)
        if (parts.scheme, parts.netloc.lower()) != (view.scheme, view.host):
            continue  # another origin: its responses are not ours to drop (§4.4)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if target not in seen:
            seen.add(target)
            found.append((target, LOCATION))
    return found


def lookups(view: RequestView, response_headers: Headers) -> list[tuple[RequestView, str]]:
    """The anonymous GET requests, one per target and Accept-Encoding a key can carry, whose
    stored responses the unsafe request invalidates, each with what named its target."""
    kept = fields.without(view.headers, _PERSONAL)
    return [
        (
            RequestView(
                "GET",
                target,
                (*kept, ("Accept-Encoding", encoding)),
                peer=view.peer,
                scheme=view.scheme,
                version=view.version,
                trusted=view.trusted,
            ),
            named_by,
        )
        for target, named_by in targets(view, response_headers)
        for encoding in ENCODINGS
    ]
