"""Cache key templates, compiled once at config load.

A template such as ``{scheme}://{host}{uri}|{cookie[lang]}`` is split into literal text and getter
functions, so building a key per request is a join, not a parse. Variables:

    {uri}           path and query as received       {path}   path only
    {query}         query string (no "?")            {host}   Host header, lower-cased
    {method}        GET (HEAD shares GET's entry)    {scheme} http or https as received
    {cookie[NAME]}  a cookie's value, "" if absent   {header[NAME]} a header's value, "" if absent

Product rule: the default key carries the Host, so a forged Host header only ever reaches an entry
of its own and can never poison the page other visitors get.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from proxy.view import RequestView

DEFAULT_KEY = "{scheme}://{host}{uri}"

Getter = Callable[[RequestView], str]

_SIMPLE: dict[str, Getter] = {
    "uri": lambda v: v.target,
    "path": lambda v: v.path,
    "query": lambda v: v.query,
    "host": lambda v: _safe_host(v.host),
    "scheme": lambda v: v.scheme,
    # HEAD is answered from the GET entry, so both must build the same key.
    "method": lambda v: "GET" if v.method == "HEAD" else v.method,
}
_PLAIN_HOST = re.compile(r"[a-z0-9\-.:\[\]]*")


def _safe_host(host: str) -> str:
    """The Host as a key part that cannot imitate a path: fronts reject invalid hosts with 400,
    and should one get through anyway, everything but plain host characters is %-encoded."""
    return host if _PLAIN_HOST.fullmatch(host) else quote(host, safe="")


_VARIABLE = re.compile(r"\{([^{}]*)\}")
_INDEXED = re.compile(r"(cookie|header)\[([^\[\]]+)\]")


def _cookie_getter(name: str) -> Getter:
    return lambda v: v.cookies.get(name, "")


def _header_getter(name: str) -> Getter:
    return lambda v: v.header(name) or ""


@dataclass(frozen=True, slots=True)
class KeyTemplate:
    """A compiled template; `render` builds the key for one request."""

    source: str
    parts: tuple[str | Getter, ...]
    cookies: frozenset[str]  # cookie names the key carries (kept-cookie checks use this)
    headers: frozenset[str]  # lower-cased header names the key carries (Vary checks use this)

    def render(self, view: RequestView) -> str:
        return "".join([p if isinstance(p, str) else p(view) for p in self.parts])


def compile_key(source: str) -> KeyTemplate:
    """Compile `source`; raise ValueError naming the unknown variable or stray brace."""
    parts: list[str | Getter] = []
    cookies: set[str] = set()
    headers: set[str] = set()
    pos = 0
    for match in _VARIABLE.finditer(source):
        parts.append(_literal(source[pos : match.start()]))
        parts.append(_getter(match.group(1), cookies, headers))
        pos = match.end()
    parts.append(_literal(source[pos:]))
    return KeyTemplate(
        source, tuple(p for p in parts if p != ""), frozenset(cookies), frozenset(headers)
    )


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"unbalanced brace in key template near {text!r}")
    return text


def _getter(name: str, cookies: set[str], headers: set[str]) -> Getter:
    if name in _SIMPLE:
        return _SIMPLE[name]
    indexed = _INDEXED.fullmatch(name)
    if indexed is None:
        known = ", ".join(sorted(_SIMPLE)) + ", cookie[NAME], header[NAME]"
        raise ValueError(f"unknown key variable {{{name}}} (known: {known})")
    kind, field = indexed.groups()
    if kind == "cookie":
        cookies.add(field)
        return _cookie_getter(field)
    headers.add(field.lower())
    return _header_getter(field)
