"""sidecache `[[rules]]` from a walked uWSGI routing table (uwsgi_flow.py).

A `cache:` line looks a key up; a `cachestore:` line with the same key and cache stores the
response under it (router_cache: only a 200 with a body). A sidecache cache rule does both,
so each such pair becomes one rule per path that reaches both lines (their conditions ANDed):
uWSGI stored under wider conditions than it looked up serves nothing more than the narrower
rule does. The rule sits where the later of the two lines is, and an exit (`continue`,
`last`, a redirect...) becomes a pass rule where it is, when a cache rule below it could
match its requests: sidecache's rules are first-match, as uWSGI's walk is. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from proxy.uwsgi_flow import Flow, Path, Reach, consistent, simplify
from proxy.uwsgi_routes import kvlist
from proxy.uwsgi_setup import Cache
from proxy.uwsgi_terms import (
    Key,
    Literal,
    Subject,
    decisive,
    field_condition,
    path_pattern,
    toml_key,
    toml_string,
    translate_key,
)

Field = tuple[str, str, str]  # TOML key, TOML value, comment
GROUP = re.compile(r"\$[0-9]")  # a group of the route's regex, in a key
LOOKUP_OPTIONS = {"key", "name", "content_type", "content_encoding", "mime"}
STORE_OPTIONS = {"key", "name", "expires", "gzip"}
NOT_NEEDED = {
    "content_type": "sidecache stores and sends the app's own headers",
    "content_encoding": "sidecache stores and sends the app's own headers",
    "mime": "sidecache stores and sends the app's own headers",
    "gzip": "sidecache keeps each encoding the app sends; Accept-Encoding picks",
}


@dataclass(frozen=True, slots=True)
class CacheRule:
    lookup: Reach
    store: Reach
    path: Path
    cache: str
    key: Key
    ttl: int  # expires= of the cachestore line; 0: the cache's ttl

    @property
    def line(self) -> int:
        return max(self.lookup.route.option.line, self.store.route.option.line)


@dataclass(frozen=True, slots=True)
class Block:
    """Output lines and the ini line they answer for (the output follows the ini's order)."""

    line: int
    lines: tuple[str, ...]


def not_translated(reach_or_line: Reach | int, text: str, why: str) -> Block:
    line = reach_or_line if isinstance(reach_or_line, int) else reach_or_line.route.option.line
    return Block(line, (f"# not translated: line {line}: {text} — {why}",))


def cache_rules(flow: Flow, caches: dict[str, Cache]) -> tuple[list[CacheRule], list[Block]]:
    """Pair each lookup with the stores of its key and cache; the rules and the notes."""
    rules: list[CacheRule] = []
    notes: list[Block] = []
    paired: set[int] = set()
    for lookup in flow.lookups:
        found = _lookup_rules(lookup, flow.stores, caches)
        if isinstance(found, str):
            notes.append(not_translated(lookup, lookup.route.option.text, found))
            continue
        rules.extend(found)
        paired.update(id(rule.store) for rule in found)
    for store in flow.stores:
        if id(store) not in paired:
            why = (
                "it stores under a key no cache: line reads (the app may read it with "
                "uwsgi.cache_get); a sidecache rule stores what it answers from"
            )
            notes.append(not_translated(store, store.route.option.text, why))
    return rules, notes


def _lookup_rules(
    lookup: Reach, stores: list[Reach], caches: dict[str, Cache]
) -> list[CacheRule] | str:
    options = kvlist(lookup.route.argument)
    unknown = sorted(set(options) - LOOKUP_OPTIONS)
    if unknown or "key" not in options:
        what = f"{unknown[0]}= is no cache: option" if unknown else "a cache: needs key="
        return f"uWSGI refuses it: {what}"
    cache, problem = _cache_name(options.get("name", ""), caches)
    if problem:
        return problem
    key = translate_key(options["key"], _group_subject(lookup))
    if isinstance(key, str):
        return key
    rules: list[CacheRule] = []
    for store in stores:
        store_options = kvlist(store.route.argument)
        same_key = store_options.get("key") == options["key"]
        if not same_key or _cache_name(store_options.get("name", ""), caches) != (cache, ""):
            continue
        if GROUP.search(options["key"]) and store.route.condition != lookup.route.condition:
            continue  # $1 in both keys, but groups of different regexes
        expires = store_options.get("expires", "0")
        ttl = int(expires) if expires.isdigit() else 0
        products = [a | b for a in lookup.paths for b in store.paths if consistent(a | b)]
        for path in simplify(products):
            if not any(rule.path <= path for rule in rules):
                rules.append(CacheRule(lookup, store, path, cache, key, ttl))
    if not rules:
        return (
            f"no cachestore: line stores key={options['key']} in cache {cache!r} on the way "
            "(the app may fill it with uwsgi.cache_set): a sidecache rule stores what it "
            "answers from"
        )
    return rules


def _cache_name(name: str, caches: dict[str, Cache]) -> tuple[str, str]:
    """The cache a route names ("" is uWSGI's first cache), or "" and why there is none."""
    if "$" in name or "@" in name:
        return "", f"name={name} is not a local cache sidecache can name"
    if not name and not caches:
        return "", "no cache in the ini (cache2 = name=...,items=...)"
    if name and name not in caches:
        return "", f"no cache2 named {name!r} in the ini"
    return name or next(iter(caches)), ""


def _group_subject(lookup: Reach) -> str:
    """What `$1` stands for in the key: a group of the route's regex, so a part of what it
    searched; the whole of that keeps the key at least as fine."""
    atom = lookup.route.condition
    if atom is None or lookup.route.option.name.startswith("route-if"):
        return ""
    if atom.subject is Subject.PATH:
        return "{path}"
    if atom.subject is Subject.HEADER:
        return "{host}" if atom.name == "Host" else f"{{header[{atom.name}]}}"
    return ""


def conditions(path: Path) -> list[Field] | str:
    """The rule's conditions for `path`, or why sidecache cannot test it."""
    literals = sorted(path, key=lambda literal: (literal[0].line, literal[0].source))
    for atom, _ in literals:
        if atom.subject is Subject.OTHER:
            where = f" (line {atom.line}: {atom.source})" if atom.line else ""
            return atom.name + where
    fields: list[Field] = []
    on_path = decisive([literal for literal in literals if literal[0].subject is Subject.PATH])
    if on_path:
        fields.append(("path", toml_string(path_pattern(on_path)), _said(on_path)))
    for subject in (Subject.COOKIE, Subject.HEADER):
        found = _field_tests(subject, [lit for lit in literals if lit[0].subject is subject])
        if isinstance(found, str):
            return found
        fields.extend(found)
    return fields


def _field_tests(subject: Subject, literals: list[Literal]) -> list[Field] | str:
    fields: list[Field] = []
    seen: dict[str, Literal] = {}
    for atom, holds in literals:
        folded = atom.name.lower() if subject is Subject.HEADER else atom.name
        if folded in seen:
            both = _said([seen[folded], (atom, holds)])
            return f"two tests of {subject.value} {atom.name} in one rule ({both})"
        seen[folded] = (atom, holds)
        value = field_condition(atom, holds)
        if value is None:
            return (
                f"line {atom.line}: {'not ' if not holds else ''}{atom.source} holds for a "
                f"request without {subject.value} {atom.name} too (uWSGI reads it as empty): "
                "no sidecache test says that"
            )
        fields.append((f"{subject.value}.{toml_key(atom.name)}", value, _said([(atom, holds)])))
    return fields


def _said(literals: list[Literal]) -> str:
    return " and ".join(
        f"line {atom.line}: {'not ' if not holds else ''}{atom.source}" for atom, holds in literals
    )


def exit_paths(exit: Reach, emitted: list[tuple[int, Path]]) -> Iterator[tuple[Path, bool]]:
    """Each path of an exit, and whether a pass rule is needed for it: whether a cache rule
    below the exit could match a request on it (else no rule matching is a pass already)."""
    line = exit.route.option.line
    for path in exit.paths:
        yield path, any(below > line and consistent(path | other) for below, other in emitted)
