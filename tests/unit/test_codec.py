"""The shared tier's entry encoding (store/codec.py): what goes in comes out, on the reader's
clock; whatever is not an entry of this version is an EntryError (the tier's counted miss)."""

from __future__ import annotations

import contextlib
import math
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.store import CachedResponse, vary_marker
from proxy.store.codec import VERSION, EntryError, decode, encode

WRITER = 1_700_000_000.0 - 1_000.0  # wall - monotonic on the writing host
READER = 1_700_000_000.0 - 50_000.0  # and on the reading one: its monotonic clock is ahead

PAGE = CachedResponse(
    status=200,
    reason="OK",
    headers=(
        ("Content-Type", "text/html; charset=utf-8"),
        ("Set-Cookie-Free", "yes"),
        ("X-Repeated", "1"),
        ("X-Repeated", "2"),  # repeated fields keep their order
        ("ETag", '"v1"'),
    ),
    body=b"<p>caf\xc3\xa9</p>",
    stored_at=1_000.0,
    expires_at=1_610.0,
    initial_age=30.0,
    fresh_until=1_030.0,
    host="example.com",
    target="/caf%C3%A9?page=2",
)
MARKED = replace(PAGE, tags=("news", "front page"))

CASES = [
    pytest.param(PAGE, id="a page"),
    pytest.param(replace(PAGE, body=b""), id="an empty body"),
    pytest.param(replace(PAGE, status=404, reason="Not Found"), id="another status"),
    pytest.param(replace(PAGE, must_revalidate=True), id="must-revalidate"),
    pytest.param(
        replace(PAGE, stale_while_revalidate=30.0, stale_if_error=86_400.0), id="stale windows"
    ),
    pytest.param(
        replace(PAGE, etag='"given"', last_modified="Tue, 01 Dec 2026 10:00:00 GMT"),
        id="validators given, not read from the headers",
    ),
    pytest.param(
        replace(PAGE, headers=(("X-Raw", "bytes \udcff\udcfe as received"),)),
        id="a header that was not UTF-8 (surrogate-escaped octets)",
    ),
    pytest.param(replace(MARKED, vary=("accept-language",)), id="a variant, tagged"),
    pytest.param(replace(PAGE, host="", target=""), id="no place (an entry made by hand)"),
    pytest.param(vary_marker(("accept-language", "cookie"), MARKED), id="a marker, tagged"),
]


@pytest.mark.parametrize("entry", CASES)
def test_an_entry_comes_back_whole_on_the_readers_clock(entry: CachedResponse) -> None:
    back = decode(encode(entry, WRITER), READER)
    moved = WRITER - READER  # the same wall-clock instant on the reader's monotonic clock

    assert (back.host, back.target, back.tags) == (entry.host, entry.target, entry.tags)
    assert (back.status, back.reason, back.headers, back.body) == (
        entry.status,
        entry.reason,
        entry.headers,
        entry.body,
    )
    assert (back.etag, back.last_modified, back.vary, back.generation) == (
        entry.etag,
        entry.last_modified,
        entry.vary,
        entry.generation,
    )
    assert (back.must_revalidate, back.stale_while_revalidate, back.stale_if_error) == (
        entry.must_revalidate,
        entry.stale_while_revalidate,
        entry.stale_if_error,
    )
    assert back.stored_at == pytest.approx(entry.stored_at + moved, abs=1e-6)
    assert back.expires_at == pytest.approx(entry.expires_at + moved, abs=1e-6)
    assert back.fresh_until == pytest.approx(entry.fresh_until + moved, abs=1e-6)
    assert back.header_block == entry.header_block  # the hit's one write, made again
    assert back.size == entry.size


def test_age_and_freshness_are_the_writers_on_another_clock() -> None:
    """RFC 9111 §4.2.3: the Age a reader sends counts from the writer's store time; 10 s
    later on the reader, the entry is 10 s older and fresh as long as on the writer."""
    back = decode(encode(PAGE, WRITER), READER)
    reader_now = PAGE.stored_at + (WRITER - READER) + 10.0

    assert back.age(reader_now) == 40  # the origin's 30 s, plus 10 s in the cache
    assert back.fresh(reader_now)  # fresh for 30 s from its store time
    assert not back.fresh(reader_now + 20.0)


def valid() -> bytes:
    return encode(replace(PAGE, tags=("tag",)), WRITER)


REFUSED = [
    pytest.param(b"", "corrupt", id="empty"),
    pytest.param(b"\x00\x01plain text", "corrupt", id="another program's value"),
    pytest.param(b"SC\x03" + valid()[3:], "version", id="the next version"),
    pytest.param(b"SC\x01" + valid()[3:], "version", id="version 1 (had no place)"),
    pytest.param(b"SC\x00" + valid()[3:], "version", id="version 0"),
    pytest.param(valid()[:20], "corrupt", id="cut in the fixed part"),
    pytest.param(valid()[:70], "corrupt", id="cut in the lengths"),
    pytest.param(valid()[:120], "corrupt", id="cut in the texts"),
    pytest.param(valid()[:-1], "corrupt", id="cut in the body"),
    pytest.param(valid() + b"x", "corrupt", id="something after the body"),
    pytest.param(valid(), None, id="control: the valid value itself"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSED)
def test_what_is_not_an_entry_of_this_version_is_refused(data: bytes, reason: str | None) -> None:
    if reason is None:
        assert decode(data, READER).body == PAGE.body
        return
    with pytest.raises(EntryError) as refused:
        decode(data, READER)
    assert refused.value.reason == reason


def test_a_bad_text_inside_is_refused_not_raised() -> None:
    data = bytearray(valid())
    at = data.index(b"OK")  # the reason phrase
    data[at : at + 2] = b"\xff\xfe"  # not UTF-8, not a surrogate escape either
    with pytest.raises(EntryError):
        decode(bytes(data), READER)


def test_an_entry_too_odd_to_encode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode(replace(PAGE, generation=2**64), WRITER)


def test_the_version_is_the_third_byte() -> None:
    assert valid()[:3] == b"SC" + struct.pack("B", VERSION)


# --- property: any entry round-trips -------------------------------------------------------

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
times = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)


@st.composite
def entries(draw: st.DrawFn) -> CachedResponse:
    stored = draw(times)
    return CachedResponse(
        status=draw(st.integers(0, 999)),
        reason=draw(texts),
        headers=tuple(draw(st.lists(st.tuples(texts, texts), max_size=8))),
        body=draw(st.binary(max_size=300)),
        stored_at=stored,
        expires_at=stored + draw(times),
        initial_age=draw(times),
        fresh_until=stored + draw(times),
        must_revalidate=draw(st.booleans()),
        etag=draw(st.none() | texts),
        last_modified=draw(st.none() | texts),
        vary=tuple(draw(st.lists(texts, max_size=3))),
        generation=draw(st.integers(0, 2**64 - 1)),
        stale_while_revalidate=draw(times),
        stale_if_error=draw(times),
        host=draw(texts),
        target=draw(texts),
        tags=tuple(draw(st.lists(texts, max_size=3))),
    )


@given(entries(), st.floats(-1e9, 2e9), st.floats(-1e9, 2e9))
def test_any_entry_round_trips(entry: CachedResponse, writer: float, reader: float) -> None:
    back = decode(encode(entry, writer), reader)
    moved = writer - reader
    same = ("status", "reason", "headers", "body", "etag", "last_modified", "vary", "generation")
    same += ("host", "target", "tags")
    for name in same:
        assert getattr(back, name) == getattr(entry, name), name
    for name in ("stored_at", "expires_at", "fresh_until"):
        assert math.isclose(getattr(back, name), getattr(entry, name) + moved, abs_tol=1e-3)


@given(st.binary(max_size=200))
def test_no_bytes_make_decode_raise_anything_but_entry_error(data: bytes) -> None:
    with contextlib.suppress(EntryError):  # anything else fails the test
        decode(b"SC\x02" + data, READER)
