"""Purge, the decisions: what a purge request names, which stored entries it removes, the
tags a response carries, and who may ask.

`POST /purge?url=…`, `?prefix=…` or `?tag=…` on the admin listener (admin.py) becomes a
`Purge`; every store removes the entries it `matches` (store/memory.py keeps an index so that
a tag or a URL costs what it matches, not a scan). An entry knows the Host and target it was
stored for and its tags (CachedResponse.host, .target, .tags), so a purge reaches every
variant (Vary) and every encoding of a URL. The Host and target recorded are the key's view of
them (keys.py `place`): an entry whose key leaves out the Host, the query or the whole target
answers every Host, query or target, and every purge naming one of those reaches it.

- `url`: `http://host/path?query` (that host only; http and https alike) or `/path?query`
  (every host). The target is compared as the visitor sent it (no %-decoding), query included.
- `prefix`: the same forms; every target that starts with it.
- `tag`: one tag of the stored response's `Cache-Tag`, `Surrogate-Key` or `xkey` header
  (`[purge] tag_headers`), whose values are lists separated by spaces or commas.

No I/O: the admin listener, the stores and the CLI call these.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from proxy.keys import ANY_HOST, ANY_QUERY, ANY_TARGET
from proxy.view import Headers

KINDS = ("url", "prefix", "tag")
Kind = Literal["url", "prefix", "tag"]
MAX_VALUE = 8192  # the longest target a front accepts is far shorter than a purge may name
_TAG_SEPARATORS = re.compile(r"[\s,]+")


class PurgeError(ValueError):
    """A purge request that names nothing, or too much: the admin listener's 400."""


@dataclass(frozen=True, slots=True)
class Purge:
    """What to remove: entries stored for `target` (kind "url"), for targets starting with it
    ("prefix"), on `host` only when one is named; or tagged `tag` ("tag")."""

    kind: Kind
    target: str = ""
    host: str | None = None
    tag: str = ""

    def matches(self, host: str, target: str, tags: Iterable[str]) -> bool:
        """Does this purge remove an entry stored for `host` and `target` with `tags`?"""
        if self.kind == "tag":
            return self.tag in tags
        if self.host is not None and host not in (self.host, ANY_HOST):
            return False
        return self.reaches(target)

    def reaches(self, target: str) -> bool:
        """Does this purge by url or prefix reach an entry recorded for `target` (keys.py's
        place: a target, a path with ANY_QUERY, or ANY_TARGET)?"""
        if self.kind == "url":
            return target in url_targets(self.target)
        if target == ANY_TARGET:
            return True
        if target.endswith(ANY_QUERY):  # every query of that path: a prefix in the query too
            path = target[: -len(ANY_QUERY)]
            return path.startswith(self.target) or self.target.startswith(path + "?")
        return target.startswith(self.target)

    def described(self) -> str:
        """For the log: `url=//example.com/about` (any scheme), `url=/about` (any host),
        `prefix=/blog/`, `tag=product-42`."""
        if self.kind == "tag":
            return f"tag={self.tag}"
        where = f"//{self.host}" if self.host is not None else ""
        return f"{self.kind}={where}{self.target}"

    @property
    def args(self) -> dict[str, str]:
        """The query parameters that ask for this purge again (a worker, the CLI)."""
        if self.kind == "tag":
            return {"tag": self.tag}
        where = f"http://{self.host}" if self.host is not None else ""
        return {self.kind: where + self.target}


def url_targets(target: str) -> tuple[str, str, str]:
    """The targets an entry answering requests for `target` can be recorded for: that target,
    its path with any query, any target."""
    return target, target.partition("?")[0] + ANY_QUERY, ANY_TARGET


def parse_purge(args: Mapping[str, str]) -> Purge:
    """The purge `args` (the query of `POST /purge`) name; a PurgeError saying what is wrong."""
    named = [kind for kind in KINDS if kind in args]
    others = sorted(set(args) - set(KINDS))
    if others:
        raise PurgeError(f"unknown parameter {others[0]!r}: use one of url, prefix, tag")
    if len(named) != 1:
        raise PurgeError("name exactly one of url=, prefix= or tag=")
    kind = named[0]
    value = args[kind]
    if not value:
        raise PurgeError(f"{kind}= is empty")
    if len(value) > MAX_VALUE:
        raise PurgeError(f"{kind}= is longer than {MAX_VALUE} characters")
    if kind == "tag":
        if _TAG_SEPARATORS.search(value):
            raise PurgeError("tag= is one tag: no spaces or commas")
        return Purge("tag", tag=value)
    host, target = _location(kind, value)
    return Purge("url" if kind == "url" else "prefix", target=target, host=host)


def _location(kind: str, value: str) -> tuple[str | None, str]:
    """(host or None, target) of `/path?query` or `http(s)://host[:port]/path?query`."""
    if value.startswith("/"):
        return None, value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PurgeError(f"{kind}= must be /path or http://host/path, got {value[:80]!r}")
    if "@" in parts.netloc:
        raise PurgeError(f"{kind}= has user information: name the host only")
    target = parts.path or ("" if kind == "prefix" else "/")
    if parts.query or value.endswith("?"):
        target += "?" + parts.query
    return parts.netloc.lower(), target


def response_tags(headers: Headers, names: frozenset[str]) -> tuple[str, ...]:
    """The tags a response carries in the headers `names` (lower-case), in order, once each."""
    found: dict[str, None] = {}
    for name, value in headers:
        if name.lower() in names:
            for tag in _TAG_SEPARATORS.split(value):
                if tag:
                    found[tag] = None
    return tuple(found)


def authorized(token: str, authorization: str | None) -> bool:
    """Does `Authorization: Bearer TOKEN` carry the admin token (compared in constant time)?
    Always true without a token: the listener is then loopback or a unix socket (config.py)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode())
