"""uWSGI routing conditions and cache keys, and what sidecache says for each.

A condition is an `Atom` (what is tested, how, against what); a route reaches a line under a
conjunction of atoms, each true or false (uwsgi_flow.py). This module turns one such literal
into a sidecache rule condition, or says why there is none; and a `key=` of uWSGI's router
cache into a key template.

uWSGI's semantics (core/routing.c, plugins/router_cache): `route = REGEX` searches PATH_INFO
(the %-decoded path, as sidecache's `path` does), `route-host` HTTP_HOST, `route-user-agent`
and `route-referer` their headers; `route-if = TEST:SUBJECT[;OPERAND]` expands `${VAR}` and
`${cookie[NAME]}` in SUBJECT, and a variable that is not there expands to "" (an absent cookie
is an empty one). `empty`, `equal`, `startswith`, `endswith`, `contains`, `regexp` compare
that text. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class Subject(StrEnum):
    PATH = "path"  # PATH_INFO
    COOKIE = "cookie"
    HEADER = "header"
    OTHER = "other"  # no sidecache condition tests it (REQUEST_URI, REMOTE_ADDR, a file...)


TESTS = ("empty", "equal", "startswith", "endswith", "contains", "regexp")
TEST_NAMES = {"isequal": "equal", "eq": "equal", "==": "equal", "re": "regexp"}
TEST_NAMES.update((name, name) for name in TESTS)


@dataclass(frozen=True, slots=True)
class Atom:
    """One test of the request. Atoms that test the same thing the same way are equal
    whatever line they come from, so that `A` on one line and `not A` on another meet."""

    subject: Subject
    name: str  # the cookie or header; for OTHER, why sidecache cannot test it
    test: str  # one of TESTS (a route's REGEX is "regexp")
    operand: str
    source: str = field(compare=False)  # the condition as written, for comments
    line: int = field(compare=False)


Literal = tuple[Atom, bool]  # an atom and whether it holds


def other(reason: str, source: str, line: int) -> Atom:
    return Atom(Subject.OTHER, reason, "", source, source, line)


ROUTE_SUBJECTS = {
    "route": (Subject.PATH, ""),
    "route-host": (Subject.HEADER, "Host"),
    "route-user-agent": (Subject.HEADER, "User-Agent"),
    "route-referer": (Subject.HEADER, "Referer"),
}
UNTESTABLE = {
    "route-uri": "REQUEST_URI (path and query) has no sidecache test: rules test the path",
    "route-qs": "QUERY_STRING has no sidecache test: rules test the path",
    "route-remote-addr": "sidecache rules do not test the client's address",
    "route-remote-user": "REMOTE_USER is set by the app server's authentication",
}


def route_atom(option: str, regex: str, line: int) -> Atom:
    """The atom of `route[-SUBJECT] = REGEX ACTION`."""
    if option in UNTESTABLE:
        return other(UNTESTABLE[option], f"{option} {regex}", line)
    if _bad_regex(regex):
        return other(f"{regex!r} is not a regex sidecache (Python) reads", regex, line)
    subject, name = ROUTE_SUBJECTS[option]
    return Atom(subject, name, "regexp", regex, regex, line)


_VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_COOKIE = re.compile(r"cookie\[([^\[\]]+)\]")


def condition_atom(test: str, argument: str, line: int) -> Atom:
    """The atom of `route-if = TEST:SUBJECT[;OPERAND]`."""
    source = f"{test}:{argument}"
    if TEST_NAMES.get(test) is None:
        return other(f"uWSGI's {test!r} test has no sidecache equivalent", source, line)
    test = TEST_NAMES[test]
    subject_text, semicolon, operand = argument.partition(";")
    if test != "empty" and not semicolon:
        return other(f"{test} needs SUBJECT;VALUE (uWSGI reads it as false)", source, line)
    whole = _VARIABLE.fullmatch(subject_text)
    variable = whole.group(1) if whole else ""
    if "${" in operand or (test == "regexp" and _bad_regex(operand)):
        return other("the value is not a constant sidecache can test", source, line)
    cookie = _COOKIE.fullmatch(variable)
    if cookie:
        return Atom(Subject.COOKIE, cookie.group(1), test, operand, source, line)
    if variable == "PATH_INFO":
        return Atom(Subject.PATH, "", test, operand, source, line)
    if variable.startswith("HTTP_") and variable not in ("HTTP_COOKIE", "HTTP_AUTHORIZATION"):
        return Atom(Subject.HEADER, header_name(variable), test, operand, source, line)
    what = f"${{{variable}}}" if variable else repr(subject_text)
    return other(f"{what} has no sidecache test", source, line)


def header_name(variable: str) -> str:
    """HTTP_X_FORWARDED_PROTO → X-Forwarded-Proto (CGI's spelling of a request header)."""
    return "-".join(part.capitalize() for part in variable[5:].split("_"))


def _bad_regex(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        return True
    return False


# ----------------------------------------------------------------------------- conditions


def value_pattern(atom: Atom) -> str:
    """The test as a regex searched in the value (uWSGI's `equal` compares the whole)."""
    literal = re.escape(atom.operand)
    return {
        "empty": "^$",
        "equal": f"^{literal}$",
        "startswith": f"^{literal}",
        "endswith": f"{literal}$",
        "contains": literal,
        "regexp": atom.operand,
    }[atom.test]


def holds_when_empty(atom: Atom) -> bool:
    return re.search(value_pattern(atom), "") is not None


def not_pattern(pattern: str) -> str:
    """A regex that matches where a search for `pattern` finds nothing."""
    return rf"^(?![\s\S]*?(?:{pattern}))"


def path_pattern(literals: list[Literal]) -> str:
    """One `path` regex for every path test of a rule, ANDed: lookaheads past one."""
    parts = [(value_pattern(atom), holds) for atom, holds in literals]
    if len(parts) == 1 and parts[0][1]:
        return parts[0][0]
    ahead = [rf"(?=[\s\S]*?(?:{p}))" if holds else rf"(?![\s\S]*?(?:{p}))" for p, holds in parts]
    return "^" + "".join(ahead)


_META = set(".^$*+?{}[]\\|()")


def _literal_path(atom: Atom) -> tuple[str, bool] | None:
    """(text, whole) for a path test that is plain text: `^/about$` (the whole path) or
    `^/blog/` (a prefix); None for any other regex."""
    pattern = value_pattern(atom)
    whole = pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[1 : -1 if whole else None] if pattern.startswith("^") else None
    if body is None or _META & set(body):
        return None
    return body, whole


def satisfiable(literals: list[Literal]) -> bool:
    """False when the path tests cannot all hold: a whole path that another test refuses,
    or two prefixes that differ (`^/$` with `^/about$`). True when this cannot tell."""
    paths = [(atom, holds) for atom, holds in literals if atom.subject is Subject.PATH]
    for atom, holds in paths:
        known = _literal_path(atom) if holds else None
        if known is None:
            continue
        text, whole = known
        for other_atom, other_holds in paths:
            if other_atom == atom:
                continue
            if whole and (re.search(value_pattern(other_atom), text) is not None) != other_holds:
                return False
            prefix = _literal_path(other_atom) if other_holds else None
            if prefix and not (text.startswith(prefix[0]) or prefix[0].startswith(text)):
                return False
    return True


def decisive(literals: list[Literal]) -> list[Literal]:
    """The path tests worth writing: a whole path (`^/about$`) decides every other test
    (those that could not hold with it are gone already: `satisfiable`)."""
    for atom, holds in literals:
        known = _literal_path(atom) if holds else None
        if known is not None and known[1]:
            return [(atom, holds)]
    return literals


def field_condition(atom: Atom, holds: bool) -> str | None:
    """A cookie or header test as the TOML value of `cookie.NAME` / `header.NAME`, or None.

    uWSGI reads an absent cookie as "" and sidecache's equals/matches never hold for an absent
    one, so a test is exact when it fails on "" (then it needs the cookie) or, negated, when
    it holds on "" (then an absent cookie fails it too). `empty` is read as "absent" and
    its negation as "present": a cookie sent with no value is then a cookie, which passes
    visitors uWSGI would have cached, never the other way round."""
    if atom.test == "empty":
        return '"absent"' if holds else '"present"'
    if holds_when_empty(atom) == holds:
        return None
    if holds and atom.test == "equal":
        return f"{{ equals = {toml_string(atom.operand)} }}"
    pattern = value_pattern(atom) if holds else not_pattern(value_pattern(atom))
    return f"{{ matches = {toml_string(pattern)} }}"


# ----------------------------------------------------------------------------- keys

KEY_VARIABLES = {
    "REQUEST_URI": "{uri}",
    "PATH_INFO": "{path}",
    "QUERY_STRING": "{query}",
    "HTTP_HOST": "{host}",
    "REQUEST_METHOD": "{method}",
    "UWSGI_SCHEME": "{scheme}",
}
_KEY_PART = re.compile(r"\$\{([^{}]*)\}|\$([0-9])")


@dataclass(frozen=True, slots=True)
class Key:
    template: str  # the sidecache key template
    notes: tuple[str, ...]  # what changed on the way, for the rule's comment

    @property
    def cookies(self) -> tuple[str, ...]:
        """The cookies the key reads: the fill must send them (keep_cookies), as the app got
        them under uWSGI, or one variant would be stored under every value's key."""
        return tuple(dict.fromkeys(re.findall(r"\{cookie\[([^\[\]]+)\]\}", self.template)))


def translate_key(text: str, group_subject: str) -> Key | str:
    """uWSGI's `key=` as a sidecache template, or the reason there is none. Every change
    makes the key finer, never coarser: a finer key costs a miss, a coarser one could answer
    one page with another. `group_subject` is the template of what the route's regex
    searched (for `$1`), "" when a group cannot be rebuilt."""
    parts: list[str] = []
    literals: list[str] = []
    notes: list[str] = []
    position = 0
    for match in _KEY_PART.finditer(text):
        literals.append(text[position : match.start()])
        parts.append(literals[-1])
        position = match.end()
        if match.group(2) is not None:
            if not group_subject:
                return f"${match.group(2)} is a group of a regex sidecache cannot rebuild"
            parts.append(group_subject)
            notes.append(f"${match.group(2)} (a group of the route's regex) → {group_subject}")
            continue
        part = _key_variable(match.group(1), notes)
        if part is None:
            return f"${{{match.group(1)}}} has no sidecache key variable"
        parts.append(part)
    literals.append(text[position:])
    parts.append(literals[-1])
    if any("{" in literal or "}" in literal for literal in literals):
        return "a key with { or } in its text has no sidecache template"
    template = "".join(parts)
    if "{host}" not in template:
        template = "{host}" + template
        notes.append("{host} added: a Host only ever reaches its own entries")
    return Key(template, tuple(dict.fromkeys(notes)))


def _key_variable(name: str, notes: list[str]) -> str | None:
    if name in KEY_VARIABLES:
        return KEY_VARIABLES[name]
    cookie = _COOKIE.fullmatch(name)
    if cookie:
        return f"{{cookie[{cookie.group(1)}]}}"
    if name.startswith("qs[") and name.endswith("]"):
        notes.append(f"${{{name}}} → {{query}}: the whole query string")
        return "{query}"
    if name.startswith("HTTP_") and name not in ("HTTP_COOKIE", "HTTP_AUTHORIZATION"):
        return f"{{header[{header_name(name)}]}}"
    return None


# ----------------------------------------------------------------------------- TOML

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def toml_string(text: str) -> str:
    """A TOML string for `text`: literal ('...') when it has a backslash (a regex reads as
    written), else basic ("...") with the escapes TOML requires."""
    plain = not any(c == "'" or _control(c) for c in text)
    if "\\" in text and plain:
        return f"'{text}'"
    return '"' + "".join(_ESCAPES.get(c) or _escaped(c) for c in text) + '"'


def _control(char: str) -> bool:
    return (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F


def _escaped(char: str) -> str:
    return f"\\u{ord(char):04x}" if _control(char) else char


def toml_key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)
