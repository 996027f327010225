"""The request as the pure core sees it: plain values, no server objects.

The front (`http1.py`) builds a `RequestView`; everything that
decides works on it alone, so a different front can be swapped in without touching the core.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from proxy import fields
from proxy.identity import IdentityPolicy, Visitor, conflicting_cookies, parse_cookies, visitor

Headers = tuple[tuple[str, str], ...]


def header_text(raw: bytes) -> str:
    """Header bytes as text that goes back out byte for byte: UTF-8 (and so ASCII) as itself,
    any other octet (RFC 9110 §5.5 obs-text) as a surrogate escape that the writers
    (`.encode("utf-8", "surrogateescape")`) turn back into the same octet."""
    return raw.decode("utf-8", "surrogateescape")


def decode_fields(raw: list[tuple[bytes, bytes]]) -> Headers:
    """Field lines as the parser hands them over, as text (see header_text): UTF-8 (and so
    ASCII) as almost every message's are, in one pass; header_text for the rest. Both sides
    use it: the front for requests, the upstream client for responses."""
    try:
        return tuple([(n.decode(), v.decode()) for n, v in raw])
    except UnicodeDecodeError:
        return tuple([(header_text(n), header_text(v)) for n, v in raw])


def field_lines(headers: Headers) -> bytes:
    """`headers` as HTTP/1.1 field lines, octets as received (see header_text)."""
    return "".join([f"{n}: {v}\r\n" for n, v in headers]).encode("utf-8", "surrogateescape")


# RFC 9110 §7.2 / RFC 3986 §3.2.2: reg-name or IPv4 (unreserved, sub-delims, pct-encoded), or an
# IP literal in brackets; then an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")


class RequestView:
    """An HTTP request line and headers, exactly as received (target kept raw, never re-quoted).

    Derived values (cookies, host, decoded path) are computed on first use and kept: a cache
    hit reads only a few of them, and this sits on the hit path. The header map is made at once.
    """

    __slots__ = (
        "_cookies",
        "_decoded",
        "_host",
        "_visitor",
        "has_body",
        "header_map",
        "headers",
        "method",
        "path",
        "peer",
        "query",
        "scheme",
        "target",
        "trusted",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        *,
        peer: str = "",
        scheme: str = "http",
        version: tuple[int, int] = (1, 1),
        has_body: bool = False,
        trusted: bool = False,
    ) -> None:
        self.method = method.upper()
        self.target = target
        self.headers = headers
        self.peer = peer
        self.trusted = trusted  # the peer is a trusted proxy: its X-Forwarded-* are believed
        self.scheme = scheme
        self.version = version
        self.has_body = has_body
        self.path, _, self.query = target.partition("?")
        # Lower-cased names; repeated fields joined with ", " as RFC 9110 §5.3 allows (Cookie
        # is the exception, RFC 6265 §5.4 joins with "; ", but it is read via `cookies`). Made
        # here, not on first use: every request reads it (the front for its framing), and a
        # plain attribute costs the hit path no call per read.
        joined: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self.header_map: Mapping[str, str] = joined
        self._cookies: dict[str, str] | None = None
        self._host: str | None = None
        self._decoded: str | None = None
        self._visitor: tuple[IdentityPolicy, Visitor] | None = None
        if trusted:
            self.scheme = _first(self.header("x-forwarded-proto")) or scheme

    @property
    def decoded_path(self) -> str:
        """The path %-decoded, as the app sees it (WSGI's PATH_INFO): rules match on this, so
        `/%61ccount` cannot slip past a pass rule for `^/account`. Keys keep the raw path."""
        if self._decoded is None:
            self._decoded = unquote(self.path) if "%" in self.path else self.path
        return self._decoded

    def header(self, name: str) -> str | None:
        """The (joined) value of header `name` (any case); None when absent."""
        return self.header_map.get(name.lower())

    @property
    def cookies(self) -> Mapping[str, str]:
        """Cookies from every Cookie header, parsed tolerantly (see identity.py)."""
        if self._cookies is None:
            self._cookies = (
                parse_cookies(self._cookie_lines()) if "cookie" in self.header_map else {}
            )
        return self._cookies

    def _cookie_lines(self) -> list[str]:
        # Inline, not fields.values: on the hit path of every browser request with cookies.
        return [v for n, v in self.headers if n.lower() == "cookie"]

    def is_anonymous(self, policy: IdentityPolicy, *, count_authorization: bool = True) -> bool:
        """identity.is_anonymous for this request."""
        if count_authorization and "authorization" in self.header_map:
            return False
        return self.visitor(policy) is not Visitor.LOGGED_IN

    def visitor(self, policy: IdentityPolicy) -> Visitor:
        """identity.visitor for this request's cookies (Authorization aside), worked out once
        per policy; no parse at all when no cookie it reads is named in the Cookie header
        (`IdentityPolicy.none_in`), and duplicate session cookies are looked at only when a
        session cookie is present, so the common request pays for one parse at most."""
        header_map = self.header_map
        if "cookie" not in header_map or policy.none_in(header_map["cookie"]):
            return _ANONYMOUS  # no remember cookie, no session, no message cookie
        known = self._visitor
        if known is not None and known[0] is policy:
            return known[1]
        cookies = self.cookies
        conflicts = _NO_CONFLICTS
        if not cookies.keys().isdisjoint(policy.session_cookies):
            conflicts = conflicting_cookies(self._cookie_lines())
        found = visitor(cookies, False, policy, conflicts)
        self._visitor = (policy, found)
        return found

    @property
    def host(self) -> str:
        """The host the visitor asked for, lower-cased (RFC 9110 §4.2.3): the Host header, or
        X-Forwarded-Host when a trusted proxy sent one."""
        if self._host is None:
            forwarded = _first(self.header("x-forwarded-host")) if self.trusted else ""
            self._host = (forwarded or self.header_map.get("host") or "").lower()
        return self._host

    @property
    def forwarded_variant(self) -> str:
        """Forwarding headers a trusted proxy sent that can change the page (all X-Forwarded-*
        but -For, Forwarded, X-Original-URL, X-Rewrite-URL), for the key; "" when untrusted.
        The client address headers stay out, or every client would get an entry of its own."""
        if not self.trusted:
            return ""
        return "\x00".join(
            f"{n.lower()}={v}"
            for n, v in self.headers
            if n.lower() in _VARIANT_HEADERS
            or (n.lower().startswith("x-forwarded-") and n.lower() != "x-forwarded-for")
        )


_VARIANT_HEADERS = frozenset({"forwarded", "x-original-url", "x-rewrite-url"})
_ANONYMOUS = Visitor.ANONYMOUS
_NO_CONFLICTS: frozenset[str] = frozenset()


def _first(value: str | None) -> str:
    """The first member of a comma-separated list (the hop nearest the client)."""
    return value.split(",", 1)[0].strip().lower() if value else ""


_ABSOLUTE = re.compile(r"https?://([^/?#]*)([^#]*)", re.IGNORECASE)


def origin_form(target: str, headers: Headers) -> tuple[str, Headers]:
    """RFC 9112 §3.2.2: a server must accept an absolute-form target; its authority replaces
    the Host header. Returns the origin-form target and the headers to use."""
    if target.startswith("/"):  # origin-form already: the common case
        return target, headers
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        return target, headers
    authority, rest = match.groups()
    rest = rest if rest.startswith("/") else "/" + rest
    kept = tuple((n, v) for n, v in headers if n.lower() != "host")
    return rest, (("Host", authority), *kept)


def request_problem(view: RequestView) -> tuple[int, str] | None:
    """The status and reason to answer before anything else happens, or None.

    RFC 9112 §3.2: a server must reject an HTTP/1.1 request without Host, with several Host
    lines, or with an invalid Host (400). For a cache it is also a key-poisoning guard: a Host
    holding "/" or "?" could imitate another page's key. The target must be in origin-form (an
    absolute-form one is converted first, see origin_form). §6.1: a transfer coding other than
    chunked is not understood (501): forwarding the decoded chunks without it would corrupt the
    body.
    """
    if not view.target.startswith("/"):
        return 400, "the request target must be a path (origin-form)"
    host = view.header_map.get("host")
    if host is None:
        if view.version >= (1, 1):
            return 400, "missing Host header"
    elif "," in host and fields.count(view.headers, "host") > 1:
        return 400, "more than one Host header"
    elif _HOST.fullmatch(host) is None:
        return 400, "invalid Host header"
    coding = view.header_map.get("transfer-encoding")
    if coding is not None and coding.strip().lower() != "chunked":
        return 501, "only the chunked transfer coding is implemented"
    return None
