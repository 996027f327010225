"""The buffered access log over real files, pipes and sockets (issue 14, access_writer.py).

Lines are written by the loop in batches (a timer, a full buffer, a reload, the stop), each
write only when the descriptor takes it now; a slow reader never blocks the event loop: past
the backlog's bound lines are dropped, counted and reported once; a pipe gets writes of whole
lines of at most PIPE_BUF bytes; SIGUSR1's `reopen` opens the file again by its name. Every
wait has a deadline; nothing here is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.access_writer import PIPE_BUF, AccessLog, AccessLogError
from proxy.config import parse
from proxy.exchange import CacheResult, Outcome
from proxy.server import Proxy
from proxy.view import RequestView

from .conftest import config
from .support import WAIT, FakeUpstream, eventually, open_session

WATCHDOG = 30.0  # seconds: a test that would hang on a blocked loop fails instead


def request(n: int, target_length: int = 0) -> RequestView:
    target = f"/r/{n}" + ("?" + "x" * target_length if target_length else "")
    return RequestView("GET", target, (), peer="127.0.0.1")


OUTCOME = Outcome(200, CacheResult.HIT, "", "anonymous-reads", 2048)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def targets(lines: list[str]) -> list[str]:
    return [line.split('"')[1].split()[1] for line in lines]


async def test_lines_reach_the_file_without_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access = AccessLog(str(path))
    access.open()
    try:
        for n in range(3):
            access.log(request(n), OUTCOME, 0.000187)

        await eventually(lambda: len(lines_of(path)) == 3)  # the timer's flush

        assert targets(lines_of(path)) == ["/r/0", "/r/1", "/r/2"]
        assert all(" INFO sidecache.access 127.0.0.1 " in line for line in lines_of(path))
    finally:
        await access.close()


async def test_close_writes_every_line_in_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("an older line\n", encoding="utf-8")
    access = AccessLog(str(path), batch=35)
    access.open()

    for n in range(2000):
        access.log(request(n), OUTCOME, 0.0)
    await access.close()

    lines = lines_of(path)
    assert lines[0] == "an older line"  # appended, never truncated
    assert targets(lines[1:]) == [f"/r/{n}" for n in range(2000)]


async def test_a_pipe_gets_whole_lines_in_writes_of_at_most_pipe_buf(tmp_path: Path) -> None:
    # Lines of two processes on one pipe never mix when every write is whole lines and at most
    # PIPE_BUF bytes. A SOCK_SEQPACKET pair keeps each write() as one message, so the test can
    # see the writes (it counts as a pipe-like sink: not a regular file).
    # A reader thread takes each message as it comes: poll() says a SEQPACKET socket takes no
    # more once ten messages wait for the reader (net.unix.max_dgram_qlen).
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    writes: list[bytes] = []
    receiving = threading.Thread(target=receive_all, args=(reader, writes), daemon=True)
    receiving.start()
    access = AccessLog(None, stdout=writer.fileno())
    access.open()
    try:
        for n in range(600):  # lines of 150 to 1,300 bytes
            access.log(request(n, target_length=(n * 37) % 1200), OUTCOME, 0.0)
        await access.close()
        writer.shutdown(socket.SHUT_WR)
        await asyncio.to_thread(receiving.join, WAIT)
    finally:
        reader.close()
        writer.close()

    assert len(writes) > 1
    assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in writes)
    lines = b"".join(writes).decode().splitlines()
    assert targets(lines) == [request(n, (n * 37) % 1200).target for n in range(600)]


def receive_all(sock: socket.socket, messages: list[bytes]) -> None:
    """Each message into `messages` until the writer shuts down (or WATCHDOG passes)."""
    sock.settimeout(WATCHDOG)
    with contextlib.suppress(TimeoutError):
        while message := sock.recv(1 << 16):
            messages.append(message)


class Drain:
    """Reads a pipe to its end in a thread, once started (or, if a test would hang, after
    WATCHDOG seconds: then `by_watchdog` is set and the test fails)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.data, self.by_watchdog = fd, bytearray(), False
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        if not self.go.wait(WATCHDOG):
            self.by_watchdog = True
        while chunk := os.read(self.fd, 1 << 16):
            self.data += chunk


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):
            os.close(fd)


def fill(fd: int) -> int:
    """Fill the pipe `fd` writes to with "-" lines, as a reader that stopped reading leaves it."""
    os.set_blocking(fd, False)
    filled = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filled += os.write(fd, b"-\n" * 512)
    os.set_blocking(fd, True)
    return filled


async def test_a_stalled_reader_never_blocks_the_loop_and_lost_lines_are_reported_once(
    pipe: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecache")
    read_end, write_end = pipe
    fill(write_end)  # the writer's first write blocks until the reader reads again
    drain = Drain(read_end)
    access = AccessLog(None, stdout=write_end, batch=80, backlog=32768)
    access.open()
    total = 3000  # ~330 KB, ten times the backlog's bound

    for n in range(total):  # would block here if a write ever waited for the reader
        access.log(request(n, target_length=10), OUTCOME, 0.0)
    access.flush()
    stalled_until_now = not drain.go.is_set() and not drain.by_watchdog
    drain.go.set()
    await eventually(lambda: any("lines lost" in r.getMessage() for r in caplog.records))
    await access.close()
    os.close(write_end)
    await asyncio.to_thread(drain.thread.join, WAIT)

    assert stalled_until_now
    written = targets([line for line in drain.data.decode().splitlines() if line != "-"])
    [warning] = [r.getMessage() for r in caplog.records if "lines lost" in r.getMessage()]
    dropped = total - len(written)
    assert warning == (
        f"access log: lines lost: {dropped} dropped while the writer was more than 32KiB behind"
    )
    # the batches that fitted in the bound were written whole and in order; the rest dropped
    numbers = [int(target[3:].partition("?")[0]) for target in written]
    assert 0 < len(numbers) < total / 5
    assert numbers == sorted(set(numbers)) and numbers[:50] == list(range(50))


async def test_a_write_that_fails_loses_its_lines_with_one_warning(
    pipe: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecache")
    read_end, write_end = pipe
    os.close(read_end)  # EPIPE: nobody reads stdout any more
    access = AccessLog(None, stdout=write_end)
    access.open()

    for n in range(5):
        access.log(request(n), OUTCOME, 0.0)
    access.flush()
    await eventually(lambda: any("lines lost" in r.getMessage() for r in caplog.records))
    await access.close()

    warnings = [r.getMessage() for r in caplog.records if "lines lost" in r.getMessage()]
    assert warnings == ["access log: lines lost: 5 lost in writes that failed (Broken pipe)"]


async def test_reopen_after_a_rename_writes_later_lines_to_a_new_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    access = AccessLog(str(path))
    access.open()
    try:
        access.log(request(1), OUTCOME, 0.0)
        access.flush()
        await eventually(lambda: len(lines_of(path)) == 1)
        path.rename(rotated)  # logrotate
        access.log(request(2), OUTCOME, 0.0)  # still the old file: nobody reopened it yet
        access.reopen()  # postrotate: kill -USR1
        access.log(request(3), OUTCOME, 0.0)
    finally:
        await access.close()

    assert targets(lines_of(rotated)) == ["/r/1", "/r/2"]
    assert targets(lines_of(path)) == ["/r/3"]


async def test_a_reopen_that_fails_keeps_writing_to_the_old_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path, moved = directory / "access.log", tmp_path / "kept.log"
    access = AccessLog(str(path))
    access.open()
    try:
        path.rename(moved)
        directory.rmdir()  # the name cannot be opened again
        access.reopen()
        access.log(request(1), OUTCOME, 0.0)
    finally:
        await access.close()

    assert targets(lines_of(moved)) == ["/r/1"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"access log: cannot reopen {path} (still writing to the old file): "
        f"[Errno 2] No such file or directory: '{path}'"
    ]


# --------------------------------------------------------------------------- the proxy


async def get(port: int, path: str) -> None:
    async with open_session() as session, session.get(f"http://127.0.0.1:{port}{path}") as r:
        await r.read()


async def test_the_proxy_logs_to_the_file_and_a_reload_moves_the_log(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    unwritable = tmp_path / "missing-directory" / "x.log"
    proxy = Proxy(parse(config(upstream.url, server={"access_log": str(first)}), "test.toml"))
    await asyncio.wait_for(proxy.start(), WAIT)
    try:
        await get(proxy.port, "/one")
        moved = await proxy.reload(
            parse(config(upstream.url, server={"access_log": str(second)}), "test.toml")
        )
        await get(proxy.port, "/two")
        refused = await proxy.reload(
            parse(config(upstream.url, server={"access_log": str(unwritable)}), "test.toml")
        )
        await get(proxy.port, "/three")
        off = await proxy.reload(
            parse(config(upstream.url, server={"access_log": False}), "test.toml")
        )
        await get(proxy.port, "/four")
        await eventually(lambda: len(lines_of(second)) == 2)
    finally:
        await proxy.stop()

    assert moved == off == []
    assert targets(lines_of(first)) == ["/one"]  # its last lines, then closed
    assert targets(lines_of(second)) == ["/two", "/three"]  # and nothing once off
    assert refused == [
        f"cannot open the access log {unwritable} ([server] access_log): no such file or "
        f"directory; the access log stays on {second}"
    ]


async def test_a_file_that_cannot_be_opened_stops_the_start(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    unwritable = tmp_path / "missing-directory" / "access.log"
    proxy = Proxy(parse(config(upstream.url, server={"access_log": str(unwritable)}), "t.toml"))
    try:
        with pytest.raises(AccessLogError) as refused:
            await asyncio.wait_for(proxy.start(), WAIT)
    finally:
        await proxy.stop()

    assert str(refused.value) == (
        f"cannot open the access log {unwritable} ([server] access_log): no such file or directory"
    )
    assert proxy.addresses == []
