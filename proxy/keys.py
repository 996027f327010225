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
from typing import Literal
from urllib.parse import quote

from proxy.view import RequestView

DEFAULT_KEY = "{scheme}://{host}{uri}"

# What a stored entry answers for, when its key leaves part of the request out (a purge must
# find the entry from any URL it answers, store/purge_index.py): every Host (no {host}), every
# query of its path (a key with {path} but neither {uri} nor {query}: the path is recorded with
# ANY_QUERY after it), every target the rule matches (no {path} or {uri}).
ANY_HOST = "*"
ANY_QUERY = "?*"
ANY_TARGET = "*"

Getter = Callable[[RequestView], str]
Scope = Literal["target", "path", "none"]

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
    by_host: bool = True  # the key carries {host}
    scope: Scope = "target"  # what of the target it carries: all of it, its path, nothing

    def render(self, view: RequestView) -> str:
        return "".join([p if isinstance(p, str) else p(view) for p in self.parts])

    def place(self, view: RequestView) -> tuple[str, str]:
        """(host, target) of every request this key sends to the entry `view` fills: what a
        purge finds the entry by (ANY_HOST, ANY_QUERY, ANY_TARGET for what it leaves out)."""
        host = view.host if self.by_host else ANY_HOST
        if self.scope == "target":
            return host, view.target
        return host, view.path + ANY_QUERY if self.scope == "path" else ANY_TARGET


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
    names = set(_VARIABLE.findall(source))
    return KeyTemplate(
        source,
        tuple(p for p in parts if p != ""),
        frozenset(cookies),
        frozenset(headers),
        by_host="host" in names,
        scope=_scope(names),
    )


def _scope(names: set[str]) -> Scope:
    """How much of the target a key with variables `names` tells apart."""
    if "uri" in names or {"path", "query"} <= names:
        return "target"
    return "path" if "path" in names else "none"


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
