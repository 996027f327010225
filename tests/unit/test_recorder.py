"""Pin proxy.recorder: a byte-capped tee that keeps a copy until the body outgrows the cap."""

from __future__ import annotations

import pytest

from proxy.recorder import Recorder

LIMIT = 10


def fed(*chunks: bytes, limit: int = LIMIT) -> Recorder:
    recorder = Recorder(limit)
    for chunk in chunks:
        recorder.feed(chunk)
    return recorder


@pytest.mark.parametrize(
    ("chunks", "body"),
    [
        # product rule: a body up to item_size is kept whole, in order
        pytest.param((), b"", id="nothing-fed"),
        pytest.param((b"",), b"", id="empty-chunk"),
        pytest.param((b"abc",), b"abc", id="under-one-chunk"),
        pytest.param((b"abc", b"", b"def"), b"abcdef", id="under-several-chunks"),
        pytest.param((b"0123456789",), b"0123456789", id="exactly-at-cap-one-chunk"),
        pytest.param((b"01234", b"56789"), b"0123456789", id="exactly-at-cap-two-chunks"),
    ],
)
def test_keeps_body_up_to_the_cap(chunks: tuple[bytes, ...], body: bytes) -> None:
    recorder = fed(*chunks)
    assert recorder.overflowed is False
    assert recorder.body() == body
    assert recorder.size == len(body)


@pytest.mark.parametrize(
    "chunks",
    [
        # product rule: a body bigger than item_size is streamed on and not stored
        pytest.param((b"0123456789X",), id="one-byte-over-in-one-chunk"),
        pytest.param((b"0123456789", b"X"), id="one-byte-over-after-cap"),
        pytest.param((b"01234", b"567890"), id="over-across-chunks"),
        pytest.param((b"x" * 1000,), id="far-over"),
        pytest.param((b"0123456789X", b"more", b"and more"), id="chunks-after-overflow"),
    ],
)
def test_over_the_cap_overflows_and_holds_nothing(chunks: tuple[bytes, ...]) -> None:
    recorder = fed(*chunks)
    assert recorder.overflowed is True
    with pytest.raises(ValueError, match="overflowed"):
        recorder.body()


def test_overflow_drops_what_it_held() -> None:
    # product rule: an oversized body never sits in memory whole
    recorder = fed(b"01234", b"567890")
    assert recorder._chunks == []


def test_chunks_after_overflow_are_not_counted_or_kept() -> None:
    recorder = fed(b"0123456789X", b"more")
    assert recorder.size == 11
    assert recorder._chunks == []


def test_zero_cap_keeps_only_an_empty_body() -> None:
    assert fed(b"", limit=0).body() == b""
    assert fed(b"x", limit=0).overflowed is True
