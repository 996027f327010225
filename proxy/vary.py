"""Vary (RFC 9111 §4.1): a response that varies on request headers is stored once per
combination of their values, under a secondary key; the primary key holds a marker naming the
headers (and its generation, unique to it), so a lookup knows which values pick the
variant."""

from __future__ import annotations

from proxy.view import RequestView

ABSENT = "\x01"  # an absent header is a value of its own, unlike an empty one


def variant_key(key: str, names: tuple[str, ...], view: RequestView, generation: int) -> str:
    """The secondary key: the primary key, the marker's generation (a marker made anew, e.g.
    after an invalidation, never reaches the variants of the one before) and the request's
    normalised values of `names`."""
    parts = [key, f"vary{generation}"]
    for name in names:
        value = view.header(name)
        parts.append(f"{name}={normalise(value)}" if value is not None else f"{name}{ABSENT}")
    return "\x00".join(parts)


def normalise(value: str) -> str:
    """§4.1: values that differ only in whitespace around list commas, or in the whitespace
    around the value, select the same variant. Whitespace is SP and HTAB only (RFC 9110
    §5.6.3): an NBSP is part of the value the app sees, so it picks a variant of its own."""
    return ",".join(item.strip(" \t") for item in value.split(","))
