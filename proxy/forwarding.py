"""The headers of the request we send upstream, for a pass and for a fill.

Product rules:
- Forwarding headers a client sends (X-Forwarded-*, Forwarded, X-Real-IP, X-Original-URL,
  X-Rewrite-URL) are not believed unless the peer is a trusted proxy: an app that builds links
  from them must not be able to cache a page poisoned by one visitor.
- `Sidecache-Debug` (the operator's request for a trace) is never forwarded.
- Header names with "_" are dropped (nginx's `underscores_in_headers off`): WSGI servers map "_"
  and "-" to the same CGI variable, so `X_Forwarded_Prefix` would slip past the rule above.
- A `Connection` header may drop hop-by-hop headers it names, but never Host or a header a
  fill sends (the allowlist, the key's and the rule's headers; in shared mode every header):
  a stored response may vary on any of them, and the fill must see what the variant says.
- A revalidation asks about the stored response only: the client's own conditional headers
  stay out of it (RFC 9111 §4.3.1), or a 304 for the client's validator would be merged onto
  a stored body it says nothing about.
- A fill is what a brand-new visitor would send: an allowlist of content-negotiation headers,
  the headers the key reads, the rule's keep_headers and keep_cookies, and nothing else — no
  cookies, credentials (unless the rule allows Authorization), validators or Range.
"""

from __future__ import annotations

from proxy import fields
from proxy.decide import Lookup
from proxy.policy import FILL_ALLOWED, end_to_end
from proxy.settings import Settings, Trust, Upstream
from proxy.view import Headers, RequestView

FORWARDING = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
    }
)
# The operator's request for a decision trace (`Sidecache-Trace` on the response, from the
# peers `[admin] debug_from` lists, trace.py): never sent upstream, from anyone, so it cannot
# change what the app answers, nor what is stored.
DEBUG = "sidecache-debug"
# Always written by the proxy (from the trusted chain, or from scratch).
_VOUCHED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"})
_TRUSTED_DROP = _VOUCHED | {DEBUG}
_UNTRUSTED_DROP = _TRUSTED_DROP | FORWARDING  # and every other x-forwarded-* name


def client_address(view: RequestView, trust: Trust) -> str:
    """The visitor's address: the peer, or behind trusted proxies the nearest untrusted hop of
    X-Forwarded-For (or their X-Real-IP). "" for a unix-socket peer with no such header."""
    if not trust.trusts(view.peer):
        return view.peer
    real = (view.header("x-real-ip") or "").strip()
    if real:
        return real
    chain = [a.strip() for a in (view.header("x-forwarded-for") or "").split(",") if a.strip()]
    for address in reversed(chain):
        if not trust.trusts(address):
            return address
    return chain[0] if chain else view.peer


def forwarded(view: RequestView, trust: Trust) -> Headers:
    """X-Forwarded-For/-Proto/-Host and X-Real-IP, as the proxy vouches for them."""
    trusted = trust.trusts(view.peer)
    chain = view.header("x-forwarded-for") if trusted else None
    hops = [h for h in (chain, view.peer) if h]
    headers = [("X-Forwarded-For", ", ".join(hops))] if hops else []
    # From a trusted proxy, its values are passed on as sent; otherwise the proxy's own.
    proto = view.header("x-forwarded-proto") if trusted else None
    host = view.header("x-forwarded-host") if trusted else None
    headers.append(("X-Forwarded-Proto", proto or view.scheme))
    if host or view.host:  # a request without Host (HTTP/1.0) has no host to vouch for
        headers.append(("X-Forwarded-Host", host or view.host))
    address = client_address(view, trust)
    if address:
        headers.append(("X-Real-IP", address))
    return tuple(headers)


def _client_headers(
    view: RequestView, trust: Trust, upstream: Upstream, protect: frozenset[str]
) -> Headers:
    """The client's end-to-end headers that may go upstream at all."""
    untrusted = not trust.trusts(view.peer)
    removed = _UNTRUSTED_DROP if untrusted else _TRUSTED_DROP
    if upstream.host:
        removed = removed | {"host"}
    kept = end_to_end(view.headers, drop=removed, protect=protect)
    return tuple(
        [
            (n, v)
            for n, v in kept
            if "_" not in n and not (untrusted and n.lower().startswith("x-forwarded-"))
        ]
    )


def _host(upstream: Upstream) -> Headers:
    return (("Host", upstream.host),) if upstream.host else ()


def pass_headers(view: RequestView, trust: Trust, upstream: Upstream) -> Headers:
    """Everything end-to-end, with forwarding headers the proxy vouches for."""
    kept = _client_headers(view, trust, upstream, frozenset({"host"}))
    return kept + _host(upstream) + forwarded(view, trust)


def fill_headers(
    view: RequestView,
    trust: Trust,
    upstream: Upstream,
    *,
    encoding: str,
    keep_cookies: tuple[str, ...],
    keep_authorization: bool,
    keep_headers: frozenset[str] = frozenset(),
    forward_all: bool = False,
) -> Headers:
    """A fill: the allowlist, the key's and the rule's headers (`keep_headers`, lower-case),
    kept cookies, Authorization only if the rule allows it, the normalised Accept-Encoding.
    `forward_all` (shared mode): every end-to-end header, as a pass sends them (a body in an
    encoding outside the key's normalised Accept-Encoding is then not stored)."""
    if forward_all:
        every = frozenset(n.lower() for n, _ in view.headers)
        sent = _client_headers(view, trust, upstream, every)
        return sent + _host(upstream) + forwarded(view, trust)
    allowed = FILL_ALLOWED | keep_headers
    protect = allowed
    trusted = trust.trusts(view.peer)
    kept = tuple(
        (n, v)
        for n, v in _client_headers(view, trust, upstream, protect)
        if n.lower() in allowed or (trusted and _is_forwarding(n.lower()))
    )
    extra: list[tuple[str, str]] = [("Accept-Encoding", encoding)]
    cookies = "; ".join(f"{n}={view.cookies[n]}" for n in keep_cookies if n in view.cookies)
    if cookies:
        extra.append(("Cookie", cookies))
    authorization = view.header("authorization")
    if keep_authorization and authorization is not None:
        extra.append(("Authorization", authorization))
    return kept + _host(upstream) + forwarded(view, trust) + tuple(extra)


def fill_request(settings: Settings, view: RequestView, lookup: Lookup) -> tuple[Headers, bool]:
    """What a fill sends (as a brand-new visitor would), and whether it carries
    Authorization (the rule allows it and the client sent one)."""
    rule = lookup.rule
    authorized = rule.allow_authorization and view.header("authorization") is not None
    headers = fill_headers(
        view,
        settings.trust,
        settings.upstream,
        encoding=lookup.encoding,
        keep_cookies=rule.keep_cookies,
        keep_authorization=authorized,
        keep_headers=rule.fill_headers,
        forward_all=rule.forward_all,
    )
    return headers, authorized


CONDITIONAL = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)


def unconditional(headers: Headers) -> Headers:
    """`headers` without the client's conditional fields, for a revalidation that sends the
    stored response's validators instead (RFC 9111 §4.3.1)."""
    return fields.without(headers, CONDITIONAL)


def _is_forwarding(name: str) -> bool:
    """A forwarding header: dropped from untrusted peers; from trusted ones a fill carries it
    (and the key carries it too, see RequestView.forwarded_variant)."""
    return name in FORWARDING or name.startswith("x-forwarded-")
