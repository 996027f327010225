"""Accept-Encoding normalisation, so a cache key carries what the client can decode.

Bodies pass through compressed and untouched, so the key must say which codings the client
accepts; otherwise a gzip body stored for one client would be served to one that cannot read it.
We distinguish only br and gzip (what origins actually send); the fill asks the upstream for
exactly the normalised set, so every client sharing the key can decode the stored body.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from proxy import fields

_DISTINGUISHED = ("br", "gzip")  # in the order the fill lists them
IDENTITY = "identity"
# The other normalised values: keys whose stored body may still be uncoded (see `uncoded`).
CODED = ("br, gzip", "gzip", "br")


@lru_cache(maxsize=256)  # browsers send a handful of distinct values: parse each once
def normalise_accept_encoding(header: str | None) -> str:
    """ "br, gzip", "br", "gzip" or "identity" for an Accept-Encoding (RFC 9110 §12.5.3)."""
    if not header:
        return IDENTITY
    accepted: set[str] = set()
    refused: set[str] = set()
    wildcard = False
    for item in header.lower().split(","):
        coding, _, params = item.partition(";")
        coding = "gzip" if coding.strip() == "x-gzip" else coding.strip()
        if _rejected(params):
            refused.add(coding)
        elif coding == "*":
            wildcard = True
        elif coding in _DISTINGUISHED:
            accepted.add(coding)
    if wildcard and not accepted and "gzip" not in refused:
        accepted.add("gzip")
    accepted -= refused
    chosen = [c for c in _DISTINGUISHED if c in accepted]
    return ", ".join(chosen) if chosen else IDENTITY


def _rejected(params: str) -> bool:
    """True for a q=0 weight, which means "not acceptable"."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value) <= 0
            except ValueError:
                return True
    return False


def uncoded(headers: Iterable[tuple[str, str]]) -> bool:
    """True when a response's body has no content coding: any client can read it (RFC 9110
    §12.5.3: identity is acceptable unless refused), whichever key it was stored under."""
    codings = fields.values(headers, "content-encoding")
    return all(value.strip().lower() in ("", IDENTITY) for value in codings)
