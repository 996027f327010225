"""Parsing of human-written sizes (`64KiB`, `10MB`) and durations (`30s`, `5m`).

Sizes follow IEC (KiB = 1024) and SI (KB = 1000) as written, like nginx's and Varnish's docs use
them; a bare integer is bytes. Durations accept ms, s, m, h, d; a bare number is seconds.
"""

from __future__ import annotations

import math
import re

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
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: object) -> int:
    """Return a byte count for `value` (int, or a string such as "64KiB"); raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64KiB, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 64KiB, got {type(value).__name__}")
    match = _NUMBER_UNIT.fullmatch(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"cannot parse size {value!r} (use e.g. 512, 64KiB, 10MB, 1GiB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: object) -> float:
    """Return seconds for `value` (a number, or a string such as "30s"); raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, got {type(value).__name__}")
    match = _NUMBER_UNIT.fullmatch(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"cannot parse duration {value!r} (use e.g. 500ms, 30s, 5m, 1h)")
    return float(match.group(1)) * _DURATION_UNITS[unit]
