"""Reading TOML tables with errors that name the file, the key path and the problem.

`Table` wraps one table: typed getters record which keys were read, and `finish()` refuses the
keys nobody read, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, rendered as "SOURCE: KEY: problem"."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source, self.key, self.problem = source, key, problem


class Table:
    """Reads one TOML table, tracking the key path and refusing unknown keys."""

    def __init__(self, data: object, source: str, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path, f"expected a table, got {kind_of(data)}")
        self.data, self.source, self.path, self.seen = data, source, path, set[str]()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T) -> T:
        self.seen.add(name)
        value = self.data.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"expected {kind.__name__}, got {kind_of(value)}")
        return value

    def convert(self, name: str, parse: Callable[[Any], T], default: T) -> T:
        self.seen.add(name)
        if name not in self.data:
            return default
        try:
            return parse(self.data[name])
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, list, list(default))
        if not all(isinstance(item, str) for item in value):
            raise self.error(name, "expected a list of strings")
        return tuple(value)

    def table(self, name: str) -> Table:
        self.seen.add(name)
        return Table(self.data.get(name, {}), self.source, self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def text(parse: Callable[[str], T]) -> Callable[[object], T]:
    """Wrap a string parser so a non-string value is a clear ValueError, not a crash."""

    def check(value: object) -> T:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {kind_of(value)}")
        return parse(value)

    return check


def choice(enum: Callable[[str], T], choices: str) -> Callable[[object], T]:
    def check(value: object) -> T:
        try:
            return enum(value)  # type: ignore[arg-type]
        except ValueError:
            raise ValueError(f"expected one of {choices}, got {value!r}") from None

    return check


def kind_of(value: object) -> str:
    names = {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


def shown(value: object) -> str:
    """`value` for a message: its repr, the middle of a long one elided (an int of thousands
    of digits is not even printable: int-to-str has a digit limit)."""
    if isinstance(value, int) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:28]}...{text[-28:]}"
