"""The access-log writer's rules without a loop or a file (issue 14): how a batch is cut into
writes, and how the backlog bounds what waits for the reader, drops and reports."""

from __future__ import annotations

import itertools

import pytest

from proxy.access_writer import Backlog, Losses
from proxy.accesslog import Batch

# (data, largest write, the writes) - every write ends a line; none is over the largest unless
# a single line is: a pipe writes up to PIPE_BUF bytes whole, so lines of two processes sharing
# it never mix (POSIX write(2)).
PIECES = [
    pytest.param(b"a\nb\n", 4096, [b"a\nb\n"], id="small-batch-one-write"),
    pytest.param(b"aaa\nbbb\nccc\n", 8, [b"aaa\nbbb\n", b"ccc\n"], id="cut-at-a-line-end"),
    pytest.param(b"aaa\nbbb\nccc\n", 9, [b"aaa\nbbb\n", b"ccc\n"], id="never-mid-line"),
    pytest.param(b"aaa\nbbb\n", 4, [b"aaa\n", b"bbb\n"], id="exactly-the-largest"),
    pytest.param(
        b"a\n" + b"x" * 10 + b"\nb\n", 4, [b"a\n", b"x" * 10 + b"\n", b"b\n"], id="long-line-alone"
    ),
    pytest.param(b"x" * 10 + b"\n", 4, [b"x" * 10 + b"\n"], id="one-long-line"),
    pytest.param(b"a\n" * 5000, None, [b"a\n" * 5000], id="regular-file-one-write"),
]


def writes_of(data: bytes, most: int | None) -> list[bytes]:
    """The writes the access log makes of one batch holding `data`, to a reader that keeps up."""
    backlog = Backlog(clock=Clock())
    backlog.offer(Batch(data.decode(), data.count(b"\n")))
    return write_all(backlog, most)[0]


@pytest.mark.parametrize(("data", "most", "writes"), PIECES)
def test_a_batch_is_written_in_whole_lines(
    data: bytes, most: int | None, writes: list[bytes]
) -> None:
    assert writes_of(data, most) == writes


def test_pieces_of_a_big_batch_fill_each_write() -> None:
    data = b"".join(b"%05d %s\n" % (i, b"x" * (i % 300)) for i in range(2000))

    written = writes_of(data, 4096)

    assert b"".join(written) == data
    assert all(len(w) <= 4096 and w.endswith(b"\n") for w in written)
    # each write is as full as it can be: the next line would not have fitted
    assert all(len(w) + n.index(b"\n") + 1 > 4096 for w, n in itertools.pairwise(written))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batch(lines: int, size: int = 100) -> Batch:
    """`lines` lines in `size` characters."""
    return Batch("x" * (size - lines) + "\n" * lines, lines)


def write_all(backlog: Backlog, most: int | None = None) -> tuple[list[bytes], Losses | None]:
    """Take every piece as a reader that keeps up would: the writes, and the last report."""
    writes, losses = [], None
    while (piece := backlog.piece(most)) is not None:
        writes.append(bytes(piece))
        losses = backlog.wrote(len(piece)) or losses
    return writes, losses


def test_batches_wait_up_to_the_bound_then_are_dropped_and_counted() -> None:
    backlog = Backlog(limit=250, clock=Clock())

    taken = [backlog.offer(batch(3)), backlog.offer(batch(4)), backlog.offer(batch(5))]

    assert taken == [True, True, False]  # 300 bytes would wait
    assert backlog.waiting == 200
    assert backlog.losses.behind == 5
    writes, _ = write_all(backlog)
    assert [w.count(b"\n") for w in writes] == [3, 4]  # oldest first, one write each
    assert backlog.waiting == 0


def test_one_batch_larger_than_the_bound_is_taken_when_nothing_waits() -> None:
    # At stop, or after a stall of the loop, a batch may be over the bound by itself.
    backlog = Backlog(limit=50, clock=Clock())

    assert backlog.offer(batch(7, size=500))
    assert not backlog.offer(batch(1, size=1))


def test_pieces_never_pass_a_batch_or_the_largest_write() -> None:
    backlog = Backlog(clock=Clock())
    backlog.offer(Batch("aaa\nbbb\n", 2))
    backlog.offer(Batch("ccc\n", 1))

    writes, _ = write_all(backlog, most=5)

    assert writes == [b"aaa\n", b"bbb\n", b"ccc\n"]


def test_a_write_that_took_part_of_a_piece_goes_on_from_there() -> None:
    # A socket may take part of a write (a signal, a non-blocking descriptor): the next piece
    # starts where it stopped, and ends on a line boundary again.
    backlog = Backlog(clock=Clock())
    backlog.offer(Batch("aaaa\nbbbb\ncccc\n", 3))

    first = backlog.piece(10)
    backlog.wrote(3)
    second = backlog.piece(10)

    assert first is not None and bytes(first) == b"aaaa\nbbbb\n"
    assert second is not None and bytes(second) == b"a\nbbbb\n"
    assert backlog.waiting == 12


def test_losses_are_reported_once_the_reader_has_caught_up() -> None:
    backlog = Backlog(limit=250, clock=Clock())
    backlog.offer(batch(3))
    backlog.offer(batch(4))
    backlog.offer(batch(5))  # dropped
    backlog.offer(batch(6))  # dropped

    first = backlog.piece(None)
    assert first is not None
    after_first = backlog.wrote(len(first))
    second = backlog.piece(None)
    assert second is not None
    after_second = backlog.wrote(len(second))

    assert after_first is None  # a batch still waits: the reader is behind
    assert after_second == Losses(behind=11, since=100.0)
    assert after_second.warning() == (
        "access log: lines lost: 11 dropped while the writer was more than 8MiB behind"
    )
    assert backlog.report() is None  # reported once


def test_losses_that_go_on_are_reported_every_so_often() -> None:
    clock = Clock()
    backlog = Backlog(limit=100, report_seconds=60.0, clock=clock)
    backlog.offer(batch(1, size=50))
    backlog.offer(batch(1, size=50))
    backlog.offer(batch(2))  # dropped at 100.0
    backlog.offer(batch(3))  # dropped

    clock.now = 159.0
    early = backlog.wrote(50)
    clock.now = 160.0
    late = backlog.wrote(10)  # a batch still waits, but the losses have gone on a minute

    assert early is None
    assert late is not None and late.behind == 5


def test_a_failed_write_loses_the_rest_of_its_batch_and_says_why() -> None:
    backlog = Backlog(clock=Clock())
    backlog.offer(Batch("aaa\nbbb\nccc\nddd\n", 4))
    backlog.wrote(4)  # "aaa" was written

    losses = backlog.failed("No space left on device")

    assert losses == Losses(failed=3, error="No space left on device", since=100.0)
    assert losses.warning() == (
        "access log: lines lost: 3 lost in writes that failed (No space left on device)"
    )
    assert backlog.waiting == 0 and backlog.piece(None) is None


def test_at_stop_what_was_lost_is_reported_even_if_batches_wait() -> None:
    backlog = Backlog(limit=100, clock=Clock())
    backlog.offer(batch(1))
    backlog.offer(batch(2))

    assert backlog.report() == Losses(behind=2, since=100.0)
    assert backlog.report() is None
