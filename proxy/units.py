"""Parsing of human-written sizes (`64KiB`, `10MB`) and durations (`30s`, `5m`).

Sizes follow IEC (KiB = 1024) and SI (KB = 1000) as written, like nginx's and Varnish's docs use
them; a bare integer is bytes. Durations accept ms, s, m, h, d; a bare number is seconds.
Numbers are ASCII digits. A size is read exactly (no float rounding) and is at most 2**63 - 1
bytes, as nginx bounds its sizes; a duration is a finite number of seconds. Anything else is a
ValueError, which config turns into one line naming the key.
"""

from __future__ import annotations

import math
import re

from proxy.tomltable import shown

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SIZE = 2**63 - 1
_NUMBER_UNIT = re.compile(r"[ \t]*([0-9]+)(?:\.([0-9]+))?[ \t]*([a-zA-Z]*)[ \t]*")


def parse_size(value: object) -> int:
    """Return a byte count for `value` (int, or a string such as "64KiB"); raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB, got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _NUMBER_UNIT.fullmatch(value)
        unit = match.group(3).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"cannot parse size {value!r} (use e.g. 512, 64KiB, 10MB, 1GiB)")
        whole, fraction = match.group(1), match.group(2) or ""
        if len(whole) > 20:  # beyond MAX_SIZE whatever the unit; int() of it would be slow
            raise ValueError(f"size {shown(value)} is larger than {MAX_SIZE} bytes")
        factor = _SIZE_UNITS[unit]
        size = int(whole) * factor + int(fraction or 0) * factor // 10 ** len(fraction)
    else:
        raise ValueError(f"expected a size such as 64KiB, got {type(value).__name__}")
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError(f"size {shown(value)} is larger than {MAX_SIZE} bytes")
    return size


def parse_duration(value: object) -> float:
    """Return seconds for `value` (a number, or a string such as "30s"); raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got a boolean")
    if isinstance(value, int | float):
        seconds = _finite(value, value)
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, got {type(value).__name__}")
    match = _NUMBER_UNIT.fullmatch(value)
    unit = match.group(3).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"cannot parse duration {value!r} (use e.g. 500ms, 30s, 5m, 1h)")
    number = match.group(1) + "." + (match.group(2) or "0")
    return _finite(float(number) * _DURATION_UNITS[unit], value)


def _finite(number: float, written: object) -> float:
    """`number` as a finite float; a ValueError for NaN, infinity and ints beyond float range."""
    try:
        seconds = float(number)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {shown(written)}")
    return seconds


_BINARY = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_DECIMAL = (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))


def format_size(size: int) -> str:
    """`size` as it would be written in a config: the largest unit that divides it exactly
    (64KiB, 16MiB, 10MB), else bytes (1500B); parse_size reads it back to the same number."""
    for unit, factor in _BINARY + _DECIMAL:
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
