"""A scripted transport for the socket-free unit tests of the upstream side (pool, connection,
handler): records writes, reading paused or not, and an abort that reports connection_lost
on the next loop turn, as a real transport's does."""

from __future__ import annotations

import asyncio
from typing import Any


class ScriptedTransport:
    """Just enough of asyncio.Transport: records writes, reading paused or not, and an abort
    (which, as a real transport's, reports connection_lost on the next loop turn)."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.wrote = asyncio.Event()  # set by each write: a scripted peer may wait for bytes
        self.reading = True
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data
        self.wrote.set()

    def writelines(self, data: Any) -> None:
        for piece in data:
            self.write(piece)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
