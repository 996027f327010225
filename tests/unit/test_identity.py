"""Pin the anonymity rules of proxy.identity: cookie parsing, Flask session reading, the verdict."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proxy
from proxy.identity import (
    MAX_PAYLOAD_BYTES,
    MAX_SESSION_CHARS,
    PRESETS,
    IdentityPolicy,
    Visitor,
    conflicting_cookies,
    is_anonymous,
    parse_cookies,
    session_has_user,
    session_state,
    visitor,
)
from proxy.view import RequestView

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_KEYS = ("_user_id", "user_id")
FAKE_TIMESTAMP_AND_SIGNATURE = "Z0x1Aw.kq3Hn8Lw2Vb1-Zx_r0T9sE4mQpU"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as itsdangerous writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def payload_segment(raw: bytes, *, compress: bool) -> str:
    """The "[.]<payload>" part of a Flask session cookie for raw JSON bytes."""
    return "." + b64url(zlib.compress(raw)) if compress else b64url(raw)


def flask_cookie(session: object, *, compress: bool, signed: bool = True) -> str:
    """A Flask session cookie value as the app would set it (signature faked)."""
    raw = json.dumps(session, separators=(",", ":")).encode()
    segment = payload_segment(raw, compress=compress)
    return f"{segment}.{FAKE_TIMESTAMP_AND_SIGNATURE}" if signed else segment


ANONYMOUS_SESSION = {"_fresh": False, "_id": "9f2c0a", "csrf_token": "e1b7c4d2"}
LOGGED_IN_SESSION = {**ANONYMOUS_SESSION, "_user_id": "42", "_fresh": True}
ZIP_BOMB = b'{"csrf_token":"' + b"x" * (4 * MAX_PAYLOAD_BYTES) + b'"}'
# Valid JSON within the first MAX_PAYLOAD_BYTES, so only the inflate cap can catch it.
PADDED_BOMB = b'{"csrf_token":"x"}' + b" " * (4 * MAX_PAYLOAD_BYTES)


def unterminated_zlib(raw: bytes) -> str:
    """A compressed payload whose zlib stream is flushed but never finished."""
    compressor = zlib.compressobj()
    return "." + b64url(compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH))


def json_of_size(size: int) -> bytes:
    """An anonymous session JSON document of exactly size bytes."""
    frame = b'{"csrf_token":""}'
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


# --- parse_cookies -------------------------------------------------------------------------

PARSE_CASES = [
    pytest.param(["a=1; b=2"], {"a": "1", "b": "2"}, id="split-on-semicolon"),
    pytest.param(["a=1", "b=2; c=3"], {"a": "1", "b": "2", "c": "3"}, id="several-headers"),
    pytest.param(["a=1; a=2"], {"a": "1"}, id="duplicate-first-wins"),
    pytest.param(["a=1", "a=2"], {"a": "1"}, id="duplicate-across-headers-first-wins"),
    pytest.param([" \ta \t= \t1 \t;b=2"], {"a": "1", "b": "2"}, id="strip-spaces-and-tabs"),
    pytest.param(["a=b=c"], {"a": "b=c"}, id="split-on-first-equals"),
    pytest.param(['a="x y"'], {"a": "x y"}, id="quotes-stripped"),
    pytest.param(['a=""x""'], {"a": '"x"'}, id="only-one-pair-of-quotes-stripped"),
    pytest.param(['a="; b=x"'], {"a": '"', "b": 'x"'}, id="stray-quotes-kept"),
    pytest.param(['a=""'], {"a": ""}, id="quoted-empty-value"),
    pytest.param(["a="], {"a": ""}, id="empty-value-kept"),
    pytest.param(["flag; a=1"], {"a": "1"}, id="piece-without-equals-skipped"),
    pytest.param(["=x; \t=y; a=1"], {"a": "1"}, id="empty-name-skipped"),
    pytest.param(["a=1, b=2"], {"a": "1, b=2"}, id="comma-is-not-a-separator"),
    pytest.param(["A=1; a=2"], {"A": "1", "a": "2"}, id="names-case-sensitive"),
    pytest.param([";;a=1;; ;"], {"a": "1"}, id="empty-pieces-skipped"),
    pytest.param(["", " "], {}, id="empty-headers"),
    pytest.param([], {}, id="no-headers"),
    pytest.param(["a=é; b=\udcff\udcfe"], {"a": "é", "b": "\udcff\udcfe"}, id="non-ascii-kept"),
    pytest.param(
        ['x=[1,2]; {bad name}="\x00; session=s; remember_token=r'],
        {"x": "[1,2]", "{bad name}": '"\x00', "session": "s", "remember_token": "r"},
        id="garbage-does-not-drop-later-cookies",
    ),
]


@pytest.mark.parametrize(("headers", "expected"), PARSE_CASES)
def test_parse_cookies(headers: list[str], expected: dict[str, str]) -> None:
    assert parse_cookies(headers) == expected


def test_parse_cookies_accepts_any_iterable() -> None:
    # Rule: every Cookie header value is read, whatever container the caller has.
    assert parse_cookies(iter(("a=1", "b=2"))) == {"a": "1", "b": "2"}


# --- session_has_user ----------------------------------------------------------------------

SESSION_CASES = [
    # Rule: a user key with a real value means a logged-in visitor, compressed or not.
    pytest.param(flask_cookie(LOGGED_IN_SESSION, compress=False), True, id="logged-in-plain"),
    pytest.param(flask_cookie(LOGGED_IN_SESSION, compress=True), True, id="logged-in-zlib"),
    pytest.param(flask_cookie({"user_id": 7}, compress=False), True, id="second-user-key"),
    pytest.param(flask_cookie({"_user_id": 0}, compress=False), True, id="user-id-zero-is-a-user"),
    pytest.param(flask_cookie({"_user_id": {" u": "x"}}, compress=True), True, id="tagged-value"),
    # Rule: "_fresh", "_id", "csrf_token" alone do not make a user.
    pytest.param(flask_cookie(ANONYMOUS_SESSION, compress=False), False, id="anonymous-plain"),
    pytest.param(flask_cookie(ANONYMOUS_SESSION, compress=True), False, id="anonymous-zlib"),
    pytest.param(flask_cookie({}, compress=False), False, id="empty-session"),
    # Rule: None, "" and False under a user key mean "no user".
    pytest.param(flask_cookie({"_user_id": None}, compress=False), False, id="user-id-null"),
    pytest.param(flask_cookie({"_user_id": ""}, compress=False), False, id="user-id-empty"),
    pytest.param(flask_cookie({"_user_id": False}, compress=True), False, id="user-id-false"),
    # Rule: the payload segment alone is accepted too.
    pytest.param(
        flask_cookie(ANONYMOUS_SESSION, compress=True, signed=False), False, id="payload-only-zlib"
    ),
    pytest.param(
        flask_cookie(LOGGED_IN_SESSION, compress=False, signed=False), True, id="payload-only"
    ),
    # Rule: an empty value is no session at all (Flask starts a new, empty one).
    pytest.param("", False, id="empty-value-is-no-session"),
    # Rule: unreadable means "has a user" (fail closed).
    pytest.param("not base64!", True, id="garbage-characters"),
    pytest.param("été.abc.def", True, id="non-ascii"),
    pytest.param("A.Z0x1Aw.sig", True, id="impossible-base64-length"),
    pytest.param(".", True, id="lone-dot"),
    pytest.param("..", True, id="empty-compressed-payload"),
    pytest.param("." + b64url(b"not zlib at all") + ".t.s", True, id="bad-zlib"),
    pytest.param(
        "." + b64url(zlib.compress(json.dumps(ANONYMOUS_SESSION).encode())[:-6]),
        True,
        id="truncated-zlib",
    ),
    pytest.param(
        unterminated_zlib(json.dumps(ANONYMOUS_SESSION).encode()), True, id="unterminated-zlib"
    ),
    pytest.param(b64url(b"{not json"), True, id="bad-json"),
    pytest.param(b64url(b'{"_fresh":"\xff"}'), True, id="bad-utf8"),
    pytest.param(b64url(b'["_user_id"]'), True, id="json-array-not-object"),
    pytest.param(b64url(b"null"), True, id="json-null-not-object"),
    pytest.param(b64url(b'"_user_id"'), True, id="json-string-not-object"),
    pytest.param(
        payload_segment(b"[" * (MAX_PAYLOAD_BYTES // 2), compress=True),
        True,
        id="deep-nesting-recursion",
    ),
    # Rule: caps against zip bombs and oversized cookies.
    pytest.param(payload_segment(ZIP_BOMB, compress=True), True, id="zip-bomb-over-cap"),
    pytest.param(payload_segment(PADDED_BOMB, compress=True), True, id="valid-json-over-cap"),
    pytest.param(
        payload_segment(json_of_size(MAX_PAYLOAD_BYTES + 1), compress=True),
        True,
        id="inflated-one-byte-over-cap",
    ),
    pytest.param(
        payload_segment(json_of_size(MAX_PAYLOAD_BYTES), compress=True),
        False,
        id="inflated-exactly-at-cap",
    ),
    pytest.param(
        flask_cookie({"csrf_token": "x" * MAX_SESSION_CHARS}, compress=False),
        True,
        id="input-over-length-cap",
    ),
]


@pytest.mark.parametrize(("value", "expected"), SESSION_CASES)
def test_session_has_user(value: str, expected: bool) -> None:
    assert session_has_user(value, USER_KEYS) is expected


def test_session_user_keys_are_configurable() -> None:
    # Rule: only the configured keys name a user.
    cookie = flask_cookie({"uid": "5"}, compress=True)
    assert session_has_user(cookie, ("uid",)) is True
    assert session_has_user(cookie, USER_KEYS) is False


def test_session_user_keys_reject_a_bare_string() -> None:
    # Rule: a string would be read letter by letter and miss "_user_id" (fail open).
    with pytest.raises(TypeError):
        session_has_user(flask_cookie(LOGGED_IN_SESSION, compress=False), "_user_id")


def test_zip_bomb_fits_the_input_cap() -> None:
    # The zip-bomb case must be stopped by the inflate cap, not the input-length cap.
    for bomb in (ZIP_BOMB, PADDED_BOMB):
        assert len(payload_segment(bomb, compress=True)) < MAX_SESSION_CHARS


# --- is_anonymous --------------------------------------------------------------------------

DEFAULT = IdentityPolicy()
LOGGED_IN = flask_cookie(LOGGED_IN_SESSION, compress=True)
ANONYMOUS = flask_cookie(ANONYMOUS_SESSION, compress=True)

VERDICT_CASES = [
    pytest.param({}, False, True, id="no-cookies-anonymous"),
    pytest.param({"theme": "dark"}, False, True, id="unrelated-cookies-anonymous"),
    pytest.param({}, True, False, id="authorization-not-anonymous"),
    pytest.param({"session": ANONYMOUS}, True, False, id="authorization-beats-anon-session"),
    pytest.param({"remember_token": ""}, False, False, id="remember-cookie-even-empty"),
    pytest.param(
        {"remember_token": "1|abc", "session": ANONYMOUS}, False, False, id="remember-beats-session"
    ),
    pytest.param({"session": ANONYMOUS}, False, True, id="anonymous-session"),
    pytest.param({"session": LOGGED_IN}, False, False, id="logged-in-session"),
    pytest.param({"session": "garbage!"}, False, False, id="unreadable-session-fails-closed"),
    pytest.param({"session": ""}, False, True, id="empty-session-is-no-session"),
    pytest.param({"Session": LOGGED_IN}, False, True, id="cookie-names-case-sensitive"),
    pytest.param({"REMEMBER_TOKEN": "x"}, False, True, id="remember-name-case-sensitive"),
]


@pytest.mark.parametrize(("cookies", "has_authorization", "expected"), VERDICT_CASES)
def test_is_anonymous(cookies: dict[str, str], has_authorization: bool, expected: bool) -> None:
    assert is_anonymous(cookies, has_authorization, DEFAULT) is expected


CUSTOM = IdentityPolicy(
    remember_cookies=("keep_me",), session_cookies=("sid", "legacy_sid"), session_user_keys=("uid",)
)

CUSTOM_CASES = [
    pytest.param({"keep_me": "1"}, False, id="custom-remember-cookie"),
    pytest.param({"remember_token": "1"}, True, id="default-remember-name-no-longer-counts"),
    pytest.param(
        {"legacy_sid": flask_cookie({"uid": 3}, compress=False)},
        False,
        id="second-session-cookie-name",
    ),
    pytest.param({"sid": flask_cookie({"_user_id": "3"}, compress=True)}, True, id="custom-keys"),
    pytest.param({"session": "garbage!"}, True, id="default-session-name-no-longer-counts"),
]


@pytest.mark.parametrize(("cookies", "expected"), CUSTOM_CASES)
def test_is_anonymous_with_custom_policy(cookies: dict[str, str], expected: bool) -> None:
    assert is_anonymous(cookies, False, CUSTOM) is expected


def test_no_remember_or_session_cookies_configured() -> None:
    # Rule: a site without login cookies only sees Authorization as identity.
    policy = IdentityPolicy(remember_cookies=(), session_cookies=(), session_user_keys=())
    assert is_anonymous({"session": LOGGED_IN}, False, policy) is True
    assert is_anonymous({}, True, policy) is False


HEADER_CASES = [
    pytest.param([f"theme=dark; session={ANONYMOUS}"], True, id="anonymous-visitor"),
    pytest.param(["theme=dark", f"session={LOGGED_IN}"], False, id="session-in-2nd-header"),
    pytest.param([f'session="{LOGGED_IN}"'], False, id="quoted-session"),
    pytest.param([f"bad; =x; session={LOGGED_IN}"], False, id="garbage-before-session"),
    pytest.param(["remember_token="], False, id="empty-remember-token"),
    # The parser keeps the first value, but the app may read another: fail closed.
    pytest.param([f"session={ANONYMOUS}; session={LOGGED_IN}"], False, id="sessions-differ"),
    pytest.param([f"session={ANONYMOUS}", f"session={ANONYMOUS}"], True, id="same-session-twice"),
    pytest.param(["theme=a; theme=b"], True, id="other-cookie-differs"),
]


@pytest.mark.parametrize(("headers", "expected"), HEADER_CASES)
def test_is_anonymous_from_cookie_headers(headers: list[str], expected: bool) -> None:
    # Rule: the parser and the verdict together, as the proxy calls them.
    conflicts = conflicting_cookies(headers)
    assert is_anonymous(parse_cookies(headers), False, DEFAULT, conflicts) is expected


# --- visitor: messages waiting (issue 10) ---------------------------------------------------

FLASHES = [{" t": ["message", "You have been logged out."]}]  # Flask's tagged (category, text)
DJANGO = PRESETS["django"]

VISITOR_CASES = [
    pytest.param(DEFAULT, {}, Visitor.ANONYMOUS, id="no-cookies"),
    pytest.param(DEFAULT, {"_ga": "GA1.2.3"}, Visitor.ANONYMOUS, id="analytics-cookie"),
    # Product rule: a flash waits in the session → its owner's next page is personal.
    pytest.param(
        DEFAULT,
        {"session": flask_cookie({"_flashes": FLASHES}, compress=True)},
        Visitor.MESSAGES,
        id="flask-flashes",
    ),
    pytest.param(
        DEFAULT,
        {"session": flask_cookie({**ANONYMOUS_SESSION, "_flashes": FLASHES}, compress=False)},
        Visitor.MESSAGES,
        id="flashes-beside-csrf",
    ),
    pytest.param(
        DEFAULT,
        {"session": flask_cookie({"_flashes": []}, compress=False)},
        Visitor.ANONYMOUS,
        id="empty-flashes-list",
    ),
    pytest.param(
        DEFAULT,
        {"session": flask_cookie({"_flashes": FLASHES, "_user_id": "7"}, compress=False)},
        Visitor.LOGGED_IN,
        id="logged-in-beats-flashes",
    ),
    pytest.param(
        DEFAULT,
        {"session": flask_cookie({"csrf_token": "x"}, compress=False)},
        Visitor.ANONYMOUS,
        id="csrf-only-session",
    ),
    pytest.param(DEFAULT, {"session": "garbage!"}, Visitor.LOGGED_IN, id="unreadable-fails-closed"),
    # Django: the session lives on the server (an opaque id: fail closed); messages in a cookie.
    pytest.param(DJANGO, {"sessionid": "k2j3h4"}, Visitor.LOGGED_IN, id="django-sessionid"),
    pytest.param(DJANGO, {"messages": "abc:xyz"}, Visitor.MESSAGES, id="django-messages"),
    pytest.param(DJANGO, {"messages": ""}, Visitor.ANONYMOUS, id="django-empty-messages"),
    pytest.param(DJANGO, {"csrftoken": "abc"}, Visitor.ANONYMOUS, id="django-csrftoken"),
    pytest.param(
        DJANGO,
        {"messages": "abc", "sessionid": "x"},
        Visitor.LOGGED_IN,
        id="django-logged-in-beats-messages",
    ),
    pytest.param(
        DJANGO,
        {"session": flask_cookie({"_user_id": "1"}, compress=False)},
        Visitor.ANONYMOUS,
        id="django-ignores-flask-session",
    ),
]


@pytest.mark.parametrize(("policy", "cookies", "expected"), VISITOR_CASES)
def test_visitor(policy: IdentityPolicy, cookies: dict[str, str], expected: Visitor) -> None:
    assert visitor(cookies, False, policy) is expected


def test_visitor_with_authorization_is_logged_in() -> None:
    assert visitor({"messages": "x"}, True, DJANGO) is Visitor.LOGGED_IN


def test_session_state_reads_configured_message_keys() -> None:
    cookie = flask_cookie({"notice": "Saved"}, compress=False)
    assert session_state(cookie, USER_KEYS, ("notice",)) is Visitor.MESSAGES
    assert session_state(cookie, USER_KEYS, ("_flashes",)) is Visitor.ANONYMOUS


def test_state_cookies_name_every_cookie_that_holds_a_visitors_state() -> None:
    # Product rule: set_cookie = "strip" never stores a page that set one of these.
    assert DEFAULT.state_cookies == {"remember_token", "session"}
    assert DJANGO.state_cookies == {"sessionid", "messages", "csrftoken"}


# --- IdentityPolicy ------------------------------------------------------------------------

POLICY_ERRORS = [
    pytest.param({"remember_cookies": "remember_token"}, "remember_cookies", id="bare-string"),
    pytest.param({"session_cookies": ["session"]}, "session_cookies", id="list-not-tuple"),
    pytest.param({"session_user_keys": ("",)}, "session_user_keys", id="empty-name"),
    pytest.param({"session_user_keys": ()}, "session_user_keys", id="sessions-without-user-keys"),
]
# Compiled (the optional mypyc build), a value of the wrong type is refused before
# __post_init__ runs: a TypeError, whose message names the type, not the field.
WRONG_TYPE = {"bare-string", "list-not-tuple"}


@pytest.mark.parametrize(("settings", "field"), POLICY_ERRORS)
def test_policy_rejects_fail_open_settings(
    settings: dict[str, object], field: str, request: pytest.FixtureRequest
) -> None:
    # Rule: settings that would make every visitor look anonymous are errors naming the key.
    if proxy.build("proxy.identity") == "compiled" and request.node.callspec.id in WRONG_TYPE:
        with pytest.raises(TypeError, match="tuple"):
            IdentityPolicy(**settings)  # type: ignore[arg-type]
        return
    with pytest.raises(ValueError, match=field):
        IdentityPolicy(**settings)  # type: ignore[arg-type]


# --- purity --------------------------------------------------------------------------------


def test_import_does_not_load_aiohttp() -> None:
    # Rule: the module is pure; importing it must not pull in the network stack.
    code = "import sys, proxy.identity; assert 'aiohttp' not in sys.modules, 'aiohttp imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- the shortcut of RequestView.visitor: no cookie it reads is named in the header --------

_NAMES = ["remember_token", "session", "sessionid", "messages", "_ga", "theme", "sess", "x"]
_PIECE = st.builds(
    lambda spaces, name, equals, value: f"{spaces}{name}{equals}{value}",
    st.sampled_from(["", " ", "\t", "  "]),
    st.one_of(st.sampled_from(_NAMES), st.text('abcdefghijklmnopqrstuvwxyz_-=" ;,', max_size=12)),
    st.sampled_from(["=", "", "=="]),
    st.one_of(
        st.sampled_from(["", "1", '"q"', "eyJfdXNlcl9pZCI6IjEifQ.x.y", ".eJx", "a=b"]),
        st.text(max_size=10),
    ),
)
_LINE = st.lists(_PIECE, max_size=6).map(";".join)


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(_LINE, min_size=1, max_size=3),
    preset=st.sampled_from(sorted(PRESETS)),
)
def test_the_view_shortcut_agrees_with_parsing_every_cookie(lines: list[str], preset: str) -> None:
    # Rule: skipping the parse when no name `visitor` reads occurs in the Cookie header never
    # changes the verdict (a logged-in visitor must never be taken for an anonymous one).
    policy = PRESETS[preset]
    view = RequestView("GET", "/", tuple(("Cookie", line) for line in lines))
    full = visitor(parse_cookies(lines), False, policy, conflicting_cookies(lines))
    assert view.visitor(policy) is full


def test_the_shortcut_is_taken_only_when_no_name_occurs() -> None:
    policy = PRESETS["flask"]
    assert policy.none_in("_ga=GA1.1.123456789.1700000000; theme=dark")
    assert not policy.none_in("_ga=1; remember_token=abc")
    assert not policy.none_in("my_session_pref=1")  # "session" occurs: parsed as usual
    assert not PRESETS["django"].none_in("messages=x")
