"""The byte queue with watermarks (`proxy/flow.py`): reading pauses above the high mark and
resumes at the low one, once per crossing (our product rule: a slow reader must not make us
buffer a whole body, nor flip reading on and off per piece)."""

from __future__ import annotations

import pytest

from proxy.flow import ByteQueue


class Reading:
    """Records what the queue asked of the producer."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def queue(self, high: int = 10, low: int = 4) -> ByteQueue:
        return ByteQueue(
            lambda: self.calls.append("pause"), lambda: self.calls.append("resume"), high, low
        )


def test_reading_pauses_once_above_the_high_mark() -> None:
    reading = Reading()
    queue = reading.queue()
    for piece in (b"12345", b"12345", b"1", b"1"):  # 5, 10 (at the mark), 11, 12
        queue.append(piece)
    assert (reading.calls, queue.size, queue.paused) == (["pause"], 12, True)


def test_reading_resumes_once_at_the_low_mark() -> None:
    reading = Reading()
    queue = reading.queue()
    for piece in (b"123456", b"123", b"12", b"12"):  # 13 queued: paused
        queue.append(piece)
    assert queue.take() == b"123456"  # 7 left: still paused
    assert reading.calls == ["pause"]
    assert queue.take() == b"123"  # 4 left: at the low mark
    assert queue.take() == b"12"
    assert (reading.calls, queue.size, queue.paused) == (["pause", "resume"], 2, False)


def test_a_queue_never_paused_never_resumes() -> None:
    reading = Reading()
    queue = reading.queue()
    queue.append(b"abc")
    assert queue.take() == b"abc"
    assert reading.calls == []


@pytest.mark.parametrize(
    ("join_up_to", "taken"),
    [
        pytest.param(0, [b"ab", b"cd", b"efg"], id="one-piece-at-a-time"),
        pytest.param(4, [b"abcd", b"efg"], id="joined-within-the-limit"),
        pytest.param(100, [b"abcdefg"], id="all-at-once"),
        pytest.param(1, [b"ab", b"cd", b"efg"], id="a-piece-larger-than-the-limit-whole"),
    ],
)
def test_take_joins_pieces_up_to_a_size(join_up_to: int, taken: list[bytes]) -> None:
    queue = Reading().queue(high=100)
    for piece in (b"ab", b"cd", b"efg"):
        queue.append(piece)
    got = []
    while queue:
        got.append(queue.take(join_up_to))
    assert (got, queue.size) == (taken, 0)


def test_an_empty_piece_is_still_a_piece() -> None:
    queue = Reading().queue()
    queue.append(b"")
    assert bool(queue) is True
    assert queue.take() == b""
    assert bool(queue) is False


@pytest.mark.parametrize(
    ("pieces", "calls"),
    [
        pytest.param((b"123456", b"123456"), ["pause", "resume"], id="paused-resumes"),
        pytest.param((b"123",), [], id="not-paused-asks-nothing"),
    ],
)
def test_clearing_drops_the_pieces_and_resumes_only_its_own_pause(
    pieces: tuple[bytes, ...], calls: list[str]
) -> None:
    reading = Reading()
    queue = reading.queue()
    for piece in pieces:
        queue.append(piece)
    queue.clear()
    assert (reading.calls, queue.size, bool(queue), queue.paused) == (calls, 0, False, False)
