"""Decide who a visitor is, from the Cookie and Authorization headers.

Product rule: sidecache stores and serves cached pages only for anonymous visitors. A visitor
is *not* anonymous when they send an Authorization header, a "remember me" cookie (or, for
Django, a `sessionid`: that session lives on the server), or a session cookie that carries a
user id. Every doubt resolves to "not anonymous" (fail closed): such a visitor only bypasses
the cache, so a forged or unreadable cookie can slow down its own sender but can never expose
another visitor's page, nor put a logged-in page into the cache.

An anonymous visitor with a one-time message waiting (Flask's `_flashes` in the session,
Django's `messages` cookie) must reach the app too, or the message is shown on no page or on a
later one: such a visitor's next page is personal.

Pure: standard library only, no I/O.
"""

import base64
import binascii
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields
from enum import StrEnum

# RFC 6265 §6.1 asks browsers to keep at least 4096 bytes per cookie, and the major browsers
# stop there; a session value twice that size was not issued by the app, so we do not read it.
MAX_SESSION_CHARS = 8192
# A 4 KiB cookie of zlib data can inflate a thousandfold; real sessions are a few hundred bytes.
MAX_PAYLOAD_BYTES = 64 * 1024

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def parse_cookies(header_values: Iterable[str]) -> dict[str, str]:
    """Read every Cookie header of a request into one name -> value map.

    RFC 6265 §4.2.1 as browsers send it, read as tolerantly as §5.2: split on ";" and the first
    "=", strip spaces and tabs and one pair of double quotes, skip pieces without "=" or a name.
    Never raises, unlike http.cookies.SimpleCookie, which drops all cookies after a bad one.
    The first name wins: browsers send the most specific path first (§5.4 step 2).
    """
    cookies: dict[str, str] = {}
    for header in header_values:
        for piece in header.split(";"):
            # _parse_pair and _unquote inline: every hit with cookies comes through here.
            name, separator, value = piece.partition("=")
            name = name.strip(" \t")
            if not separator or not name or name in cookies:
                continue
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            cookies[name] = value
    return cookies


def _parse_pair(piece: str) -> tuple[str, str] | None:
    """Split one "name=value" piece; None when it has no "=" or an empty name."""
    name, separator, value = piece.partition("=")
    name = name.strip(" \t")
    if not separator or not name:
        return None
    return name, _unquote(value.strip(" \t"))


def _unquote(value: str) -> str:
    """Remove one pair of surrounding double quotes (the DQUOTE form of RFC 6265 §4.1.1)."""
    quoted = len(value) >= 2 and value[0] == '"' and value[-1] == '"'
    return value[1:-1] if quoted else value


class Visitor(StrEnum):
    ANONYMOUS = "anonymous"
    LOGGED_IN = "logged-in"
    MESSAGES = "messages"  # anonymous, with a one-time message waiting: its page is personal


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    """Which cookies mark a visitor as logged in or as having messages waiting (defaults: Flask
    with Flask-Login and Flask-WTF; `PRESETS["django"]` for Django)."""

    remember_cookies: tuple[str, ...] = ("remember_token",)  # present: logged in
    session_cookies: tuple[str, ...] = ("session",)  # client-side sessions we can read
    session_user_keys: tuple[str, ...] = ("_user_id", "user_id")  # set: logged in
    session_message_keys: tuple[str, ...] = ("_flashes",)  # set: messages waiting
    message_cookies: tuple[str, ...] = ()  # present: messages waiting
    # Hold a CSRF secret a form page renders a token for (Flask-WTF keeps it in the session).
    csrf_cookies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Reject settings that would silently let logged-in visitors through as anonymous.

        A bare string is read letter by letter and no user keys makes every session anonymous.
        """
        for field in fields(self):
            names = getattr(self, field.name)
            if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(
                    f"IdentityPolicy.{field.name} must be a tuple of non-empty strings, "
                    f"got {names!r}"
                )
        if self.session_cookies and not self.session_user_keys:
            raise ValueError("IdentityPolicy.session_user_keys must not be empty")

    def none_in(self, cookie_header: str) -> bool:
        """Does no name of a cookie `visitor` reads (remember, session, message cookies) occur
        anywhere in `cookie_header` (a request's Cookie lines, joined)? Then no such cookie can
        be parsed from it (a parsed name is a piece of the header), and the visitor is
        anonymous without parsing a cookie: the common browser request, which carries only
        analytics and preference cookies."""
        for names in (self.remember_cookies, self.session_cookies, self.message_cookies):
            for name in names:
                if name in cookie_header:
                    return False
        return True

    @property
    def state_cookies(self) -> frozenset[str]:
        """Cookies that hold a visitor's state: a fill response setting one started a session
        its page may show (a CSRF token, a message), so it is never stored, even stripped."""
        return frozenset(
            self.remember_cookies + self.session_cookies + self.message_cookies + self.csrf_cookies
        )


PRESETS = {
    "flask": IdentityPolicy(),
    # Django keeps sessions on the server (the cookie is an opaque id: fail closed), messages in
    # a cookie of their own (FallbackStorage), and the CSRF secret in `csrftoken`.
    "django": IdentityPolicy(
        remember_cookies=("sessionid",),
        session_cookies=(),
        session_user_keys=(),
        session_message_keys=(),
        message_cookies=("messages",),
        csrf_cookies=("csrftoken",),
    ),
}


def session_has_user(value: str, user_keys: Sequence[str]) -> bool:
    """Tell whether a Flask session cookie names a user (see session_state)."""
    if isinstance(user_keys, str):
        raise TypeError("user_keys must be a sequence of key names, not one string")
    return session_state(value, user_keys, ()) is Visitor.LOGGED_IN


def session_state(value: str, user_keys: Sequence[str], message_keys: Sequence[str]) -> Visitor:
    """Who a Flask session cookie says the visitor is, without knowing the app's secret.

    The itsdangerous format is "[.]<base64url payload>.<timestamp>.<signature>", a leading "."
    meaning zlib; the payload alone is accepted too. A user is present when the JSON object has
    any of user_keys with a value other than None, "" or False (Flask-Login's "_user_id"; keys
    like "_fresh", "_id" and "csrf_token" exist for anonymous visitors too); messages wait when
    it has any of message_keys set and not empty (Flask's "_flashes"). An empty value is no
    session, as for Flask. Anything unreadable (too long, bad base64, bad or oversized zlib,
    bad JSON, not an object) counts as a user: fail closed, see the module docstring.
    """
    if not value:
        return Visitor.ANONYMOUS
    payload = session_payload(value)
    if not isinstance(payload, dict):
        return Visitor.LOGGED_IN
    if any(_is_set(payload.get(key)) for key in user_keys):
        return Visitor.LOGGED_IN
    if any(_is_set(payload.get(key)) and payload[key] not in ([], {}) for key in message_keys):
        return Visitor.MESSAGES
    return Visitor.ANONYMOUS


def _is_set(value: object) -> bool:
    """Product rule: None, "" and False mean "no user"; anything else, even 0, is an id."""
    return value is not None and value is not False and value != ""


def session_payload(value: str) -> object:
    """Decode the JSON payload of a session cookie; None when it cannot be read."""
    if len(value) > MAX_SESSION_CHARS:
        return None
    segment = value.removeprefix(".").split(".", 1)[0]
    data = _b64decode(segment)
    if data is not None and value.startswith("."):
        data = _inflate(data)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        return None


def _b64decode(segment: str) -> bytes | None:
    """Decode unpadded base64url as itsdangerous writes it; None on any other character."""
    if not _BASE64URL.fullmatch(segment):
        return None
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error:  # a length of 4n + 1 characters cannot be base64
        return None


def _inflate(data: bytes) -> bytes | None:
    """Decompress a complete zlib stream of at most MAX_PAYLOAD_BYTES; None otherwise."""
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(data, MAX_PAYLOAD_BYTES)
    except zlib.error:
        return None
    # Not at the end of the stream: truncated, or stopped at the cap (a zip bomb).
    return inflated if inflater.eof else None


def conflicting_cookies(header_values: Iterable[str]) -> frozenset[str]:
    """Names sent more than once with different values.

    parse_cookies keeps the first, but the app behind us may read another one; for a session
    cookie that ambiguity must not make a logged-in visitor look anonymous.
    """
    seen: dict[str, str] = {}
    conflicts: set[str] = set()
    for header in header_values:
        for piece in header.split(";"):
            pair = _parse_pair(piece)
            if pair is None:
                continue
            if seen.setdefault(pair[0], pair[1]) != pair[1]:
                conflicts.add(pair[0])
    return frozenset(conflicts)


def is_anonymous(
    cookies: Mapping[str, str],
    has_authorization: bool,
    policy: IdentityPolicy,
    conflicts: AbstractSet[str] = frozenset(),
) -> bool:
    """Product rule: anonymous unless `visitor` says logged in."""
    return visitor(cookies, has_authorization, policy, conflicts) is not Visitor.LOGGED_IN


def visitor(
    cookies: Mapping[str, str],
    has_authorization: bool,
    policy: IdentityPolicy,
    conflicts: AbstractSet[str] = frozenset(),
) -> Visitor:
    """Product rule: logged in with Authorization, any remember cookie (whatever its value, even
    empty), a session cookie that session_state reads as a user, or a session cookie sent twice
    with different values (`conflicts`; fail closed). Else messages wait when a message cookie
    has a value or a session carries a message key; else anonymous.
    """
    if has_authorization:
        return Visitor.LOGGED_IN
    names = cookies.keys()
    if not names.isdisjoint(policy.remember_cookies):
        return Visitor.LOGGED_IN
    if conflicts and not conflicts.isdisjoint(policy.session_cookies):
        return Visitor.LOGGED_IN
    found = Visitor.ANONYMOUS
    if policy.message_cookies and any(cookies.get(name) for name in policy.message_cookies):
        found = Visitor.MESSAGES
    if names.isdisjoint(policy.session_cookies):  # the common visitor: no session at all
        return found
    for name in policy.session_cookies:
        if name in cookies:
            state = session_state(
                cookies[name], policy.session_user_keys, policy.session_message_keys
            )
            if state is Visitor.LOGGED_IN:
                return state
            if state is Visitor.MESSAGES:
                found = state
    return found
