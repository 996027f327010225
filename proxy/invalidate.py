"""Invalidation (RFC 9111 §4.4): a non-error response to an unsafe request makes the stored
responses for its target URI, and for a same-origin Location or Content-Location, unusable.

Pure: which GET requests would have been answered from the entries to drop. The handler
decides each (as `decide` would for an anonymous visitor, the only one ever answered from a
cache) and deletes the keys. Keys that read cookies or other request headers are invalidated
for the values this request carried (or their absence) only.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from proxy.view import Headers, RequestView

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1
# The Accept-Encoding values a key can carry (encoding.normalise_accept_encoding's results).
ENCODINGS = ("identity", "gzip", "br", "br, gzip")
# What makes a request logged-in or personal: left out, the GET is the anonymous visitor's.
_PERSONAL = frozenset({"cookie", "authorization", "accept-encoding"})


def invalidates(method: str, status: int) -> bool:
    """§4.4: an unsafe method with a non-error status (2xx or 3xx)."""
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


def targets(view: RequestView, response_headers: Headers) -> list[str]:
    """The request's target and the same-origin Location / Content-Location targets."""
    found = [view.target]
    base = f"{view.scheme}://{view.host}{view.target}"
    for name, value in response_headers:
        if name.lower() not in ("location", "content-location"):
            continue
        absolute = urljoin(base, value.strip())
        parts = urlsplit(absolute)
        if (parts.scheme, parts.netloc.lower()) != (view.scheme, view.host):
            continue  # another origin: its responses are not ours to drop (§4.4)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if target not in found:
            found.append(target)
    return found


def lookups(view: RequestView, response_headers: Headers) -> list[RequestView]:
    """The anonymous GET requests, one per target and Accept-Encoding a key can carry, whose
    stored responses the unsafe request invalidates."""
    kept = tuple((n, v) for n, v in view.headers if n.lower() not in _PERSONAL)
    return [
        RequestView(
            "GET",
            target,
            (*kept, ("Accept-Encoding", encoding)),
            peer=view.peer,
            scheme=view.scheme,
            version=view.version,
            trusted=view.trusted,
        )
        for target in targets(view, response_headers)
        for encoding in ENCODINGS
    ]
