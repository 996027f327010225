"""Reading a uWSGI ini file the way uWSGI reads it (core/ini.c), for `sidecache import-uwsgi`.

Not configparser: uWSGI's ini repeats keys (every `route = ...` line is one more route, in
order), has no inline comments (`;` inside a value is part of it: `equal:${PATH_INFO};/bad`),
and a key without `=` is a flag. The rules, as uWSGI applies them:

- a line is stripped of spaces, tabs and CRs at both ends; an empty line is skipped;
- `[name]` starts a section; uWSGI reads `[uwsgi]` unless started with `FILE.ini:name`;
- a line starting with `;` or `#` is a comment;
- anything else is `key = value`, split at the first `=`, both sides stripped.

Pure: text in, values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SECTION = "uwsgi"
# Expanded by uWSGI when it reads the file, before any option sees its value: %(name) (another
# option or a set-placeholder), $(ENV), @(file), @[...], and the magic %d, %n, %0-%9 ...
# (uWSGI's docs, "Configuring uWSGI": placeholders and magic variables).
_PLACEHOLDER = re.compile(r"%\([^)]*\)|\$\([^)]*\)|@\([^)]*\)|%[0-9A-Za-z_]")


@dataclass(frozen=True, slots=True)
class IniOption:
    """One `key = value` line of the section read, with its 1-based line number."""

    line: int
    key: str
    value: str
    text: str  # the line as written (stripped): what a "not translated" comment quotes

    @property
    def name(self) -> str:
        """The option's name as uWSGI's option table spells it (`http_socket` is read as
        `http-socket` too: uWSGI's environment and ini spellings meet there)."""
        return self.key.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Ini:
    section: str
    options: tuple[IniOption, ...]  # the section's lines, in order, repeats kept
    sections: tuple[str, ...]  # every section the file has, in order (for messages)

    @property
    def found(self) -> bool:
        return self.section in self.sections


def read_ini(text: str, section: str = DEFAULT_SECTION) -> Ini:
    """The options of `section` in `text`, in file order."""
    current = ""
    sections: list[str] = []
    options: list[IniOption] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r")
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            current = line[1:-1]  # uWSGI drops the last character, whatever it is
            sections.append(current)
            continue
        if current != section:
            continue
        key, _, value = line.partition("=")
        options.append(IniOption(number, key.rstrip(" \t\r"), value.strip(" \t\r"), line))
    return Ini(section, tuple(options), tuple(sections))


def placeholder(value: str) -> str | None:
    """The first uWSGI placeholder in `value` (`%(name)`, `$(ENV)`, `%d`...), or None: its
    value is known only to the uWSGI that reads the file, so a line holding one is not
    translated (a guess could cache the wrong pages)."""
    found = _PLACEHOLDER.search(value)
    return found.group(0) if found else None
