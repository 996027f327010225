"""Flow control for a body in transit: a byte queue with watermarks.

A producer (the transport that reads from a peer) appends pieces as they arrive; a consumer takes
them at its own pace. A slow consumer must not make us buffer a whole body: above HIGH_WATER
queued bytes the queue asks for reading to pause, and once at most LOW_WATER bytes wait it asks
for it to resume, each once per crossing (the two marks apart, so a consumer taking one piece at
a time does not flip reading on and off per piece). The numbers are aiohttp's and uvicorn's
order of magnitude: a few socket buffers' worth, small beside a worker's memory.

The queue knows nothing of transports: `pause` and `resume` are callbacks, so either side of the
proxy can use it (the upstream connection does for response bodies, the front for request bodies).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class ByteQueue:
    """Pieces of bytes, first in first out, with reading paused above `high` queued bytes and
    resumed at or below `low`."""

    __slots__ = ("_pause", "_pieces", "_resume", "high", "low", "paused", "size")

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        high: int = HIGH_WATER,
        low: int = LOW_WATER,
    ) -> None:
        self._pause, self._resume = pause, resume
        self.high, self.low = high, low
        self._pieces: deque[bytes] = deque()
        self.size = 0  # bytes queued
        self.paused = False  # the queue asked for reading to pause, and not yet to resume

    def __bool__(self) -> bool:
        """Whether a piece waits (an empty piece counts: it was queued)."""
        return bool(self._pieces)

    def __repr__(self) -> str:
        state = " paused" if self.paused else ""
        return f"<ByteQueue {len(self._pieces)} pieces, {self.size} bytes{state}>"

    def append(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self.size += len(piece)
        if self.size > self.high and not self.paused:
            self.paused = True
            self._pause()

    def take(self, join_up_to: int = 0) -> bytes:
        """The oldest piece, with the pieces after it joined on while the whole stays within
        `join_up_to` bytes (0: one piece). The queue must not be empty."""
        pieces = self._pieces
        piece = pieces.popleft()
        if pieces and len(piece) + len(pieces[0]) <= join_up_to:
            parts = [piece]
            size = len(piece)
            while pieces and size + len(pieces[0]) <= join_up_to:
                parts.append(pieces.popleft())
                size += len(parts[-1])
            piece = b"".join(parts)
        self.size -= len(piece)
        if self.paused and self.size <= self.low:
            self.paused = False
            self._resume()
        return piece

    def clear(self) -> None:
        """Drop every piece (nobody will take them); reading resumes if this queue paused it."""
        self._pieces.clear()
        self.size = 0
        if self.paused:
            self.paused = False
            self._resume()
