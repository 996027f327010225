"""A byte-capped tee: collects a streaming body for the store until it grows past the cap.

The client gets every chunk either way; the recorder only decides whether a copy is kept. Once
it overflows it drops what it holds, so an oversized body never sits in memory whole.
"""

from __future__ import annotations


class Recorder:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.overflowed = False
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        if self.overflowed:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflowed = True
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    def body(self) -> bytes:
        if self.overflowed:
            raise ValueError("the recorder overflowed; it holds no body")
        return b"".join(self._chunks)
