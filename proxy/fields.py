"""Reading header fields from `(name, value)` pairs as received: the one accessor every module
uses (names compared case-insensitively; `name` arguments are lower-case). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

Pairs = Iterable[tuple[str, str]]
# RFC 9110 §5.6.2: what a method or a field name is made of.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def values(headers: Pairs, name: str) -> list[str]:
    """The values of every field called `name`, in order."""
    return [v for n, v in headers if n.lower() == name]


def first(headers: Pairs, name: str) -> str | None:
    """The value of the first field called `name`, or None."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def has(headers: Pairs, *names: str) -> bool:
    """Is there a field called one of `names`? (Names of another length are not lower-cased;
    a plain loop: on the path of every streamed response, ~2x a generator's speed.)"""
    for field, _ in headers:
        for name in names:
            if len(field) == len(name) and field.lower() == name:
                return True
    return False


def count(headers: Pairs, name: str) -> int:
    """How many fields are called `name` (a list-valued field may be sent several times)."""
    return sum(1 for n, _ in headers if n.lower() == name)


def joined(headers: Pairs, name: str) -> str:
    """The fields called `name` as one list value (RFC 9110 §5.3: joined with ", ")."""
    return ", ".join(values(headers, name))


def members(headers: Pairs, name: str) -> list[str]:
    """Every comma-separated member of the fields called `name`, trimmed and lower-cased."""
    return [
        item.strip().lower() for v in values(headers, name) for item in v.split(",") if item.strip()
    ]


def without(headers: Pairs, names: Collection[str]) -> tuple[tuple[str, str], ...]:
    """The fields whose names are not in `names` (lower-case), in order."""
    return tuple([(n, v) for n, v in headers if n.lower() not in names])
