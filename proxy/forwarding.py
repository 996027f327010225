"""The headers of the request we send upstream, for a pass and for a fill.

Product rule: forwarding headers a client sends (X-Forwarded-*, Forwarded, X-Real-IP,
X-Original-URL, X-Rewrite-URL) are not believed unless the peer is a trusted proxy. An app that
builds links from them must not be able to cache a page poisoned by one visitor.
"""

from __future__ import annotations

from proxy.policy import end_to_end
from proxy.settings import Trust, Upstream
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
# A fill asks for what a brand-new visitor would get, in full: no cookies, no validators,
# no credentials (unless the rule allows them), and the normalised Accept-Encoding.
FILL_DROPS = frozenset(
    {
        "cookie",
        "authorization",
        "accept-encoding",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    }
)


def forwarded(view: RequestView, trust: Trust) -> Headers:
    """X-Forwarded-For/-Proto/-Host and X-Real-IP, as the proxy vouches for them."""
    client = view.peer or "unix"
    if trust.trusts(view.peer):
        chain = view.header("x-forwarded-for")
        return (
            ("X-Forwarded-For", f"{chain}, {client}" if chain else client),
            ("X-Forwarded-Proto", view.header("x-forwarded-proto") or view.scheme),
            ("X-Forwarded-Host", view.header("x-forwarded-host") or view.host),
            ("X-Real-IP", view.header("x-real-ip") or client),
        )
    return (
        ("X-Forwarded-For", client),
        ("X-Forwarded-Proto", view.scheme),
        ("X-Forwarded-Host", view.host),
        ("X-Real-IP", client),
    )


def _x_forwarded(headers: Headers) -> frozenset[str]:
    """Every X-Forwarded-* a client sent (-Port, -Prefix, -Server, -Ssl...): apps such as
    Werkzeug's ProxyFix build URLs from them, so an untrusted one could poison a page."""
    return frozenset(n.lower() for n, _ in headers if n.lower().startswith("x-forwarded-"))


# Always rewritten by the proxy (from the trusted chain, or from scratch).
_VOUCHED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"})


def _base(view: RequestView, trust: Trust, upstream: Upstream, drop: frozenset[str]) -> Headers:
    removed = drop | _VOUCHED
    if not trust.trusts(view.peer):
        removed |= FORWARDING | _x_forwarded(view.headers)
    if upstream.host:
        removed |= {"host"}
    host = (("Host", upstream.host),) if upstream.host else ()
    return end_to_end(view.headers, drop=removed) + host + forwarded(view, trust)


def pass_headers(view: RequestView, trust: Trust, upstream: Upstream) -> Headers:
    """Everything end-to-end, with forwarding headers the proxy vouches for."""
    return _base(view, trust, upstream, frozenset())


def fill_headers(
    view: RequestView,
    trust: Trust,
    upstream: Upstream,
    *,
    encoding: str,
    keep_cookies: tuple[str, ...],
    keep_authorization: bool,
) -> Headers:
    """A fill: like a pass, minus cookies (but the kept ones), validators and credentials."""
    headers = _base(view, trust, upstream, FILL_DROPS)
    cookies = "; ".join(f"{n}={view.cookies[n]}" for n in keep_cookies if n in view.cookies)
    extra: list[tuple[str, str]] = [("Accept-Encoding", encoding)]
    if cookies:
        extra.append(("Cookie", cookies))
    authorization = view.header("authorization")
    if keep_authorization and authorization is not None:
        extra.append(("Authorization", authorization))
    return headers + tuple(extra)
