"""fields: the one header accessor (names case-insensitive, values as received)."""

from __future__ import annotations

from proxy import fields

HEADERS = (
    ("Cache-Control", "max-age=60"),
    ("Vary", "Accept-Encoding"),
    ("vary", " Accept-Language , "),
    ("Set-Cookie", "a=1"),
    ("SET-COOKIE", "b=2"),
)


def test_reading_fields() -> None:
    assert fields.values(HEADERS, "set-cookie") == ["a=1", "b=2"]
    assert fields.first(HEADERS, "vary") == "Accept-Encoding"
    assert fields.first(HEADERS, "etag") is None
    assert fields.has(HEADERS, "etag", "cache-control") and not fields.has(HEADERS, "etag")
    assert fields.count(HEADERS, "vary") == 2
    assert fields.joined(HEADERS, "vary") == "Accept-Encoding,  Accept-Language , "
    assert fields.members(HEADERS, "vary") == ["accept-encoding", "accept-language"]
    assert fields.without(HEADERS, {"vary", "set-cookie"}) == (("Cache-Control", "max-age=60"),)
    assert fields.joined((), "vary") == "" and fields.members((), "vary") == []
