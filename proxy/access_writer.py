"""The buffered access log: lines made on the event loop and written by it, between requests.

nginx's `access_log ... buffer=64k flush=1s` in spirit. `accesslog.Lines` formats a line (about
a microsecond); a batch is encoded and written when the buffer holds `BATCH_LINES` (512 lines,
~64 KiB), when the oldest line is `FLUSH_SECONDS` old (so `tail -f` sees lines at once), on a
reload and at stop. The loop writes, and never waits for a reader:
- A pipe, a socket (journald's stdout) or a terminal gets writes of whole lines of at most
  PIPE_BUF (4096) bytes, which a pipe writes whole, so lines of two processes (workers) sharing
  it never mix; each write is made only when poll() says the descriptor takes it now (a free
  pipe slot takes PIPE_BUF bytes without blocking). Otherwise the loop watches the descriptor
  (`add_writer`) and goes on serving while lines wait.
- At most `BACKLOG_CHARS` (8 MiB) wait. A batch past that is dropped, its lines counted, and
  one warning (stderr) says how many once the reader has caught up; a failed write loses its
  lines the same way (a closed stdout, a full disk).
- A regular file (opened O_APPEND: each write lands at its end, whoever wrote last) and
  /dev/null get each batch in one write at once: the page cache takes it, as it takes nginx's.
  `reopen` opens the file again by name (logrotate's `postrotate` sends SIGUSR1); stdout is
  never reopened nor closed.
Why not a writer thread (the first design): each of its writes handed the GIL over and back on
the loop's CPU. In the compiled build that cost 5.3 µs per request (29.4 against 24.0 µs CPU
per browser hit, medians of 6 `bench/run --repeat` rounds); writing from the loop, 1.3 µs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import stat
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from proxy.accesslog import BATCH_LINES, Batch, Lines, encoded
from proxy.units import format_size

log = logging.getLogger("sidecache")
FLUSH_SECONDS = 0.1  # the oldest line waits at most this long in the loop's buffer
BACKLOG_CHARS = 8 * 1024 * 1024  # most waiting for the reader; past it, lines are dropped
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)  # a pipe writes this much atomically (POSIX: ≥512)
REPORT_SECONDS = 60.0  # while lines keep being dropped, a warning at least this often
STOP_SECONDS = 5.0  # at stop, a slow reader gets this long to take what is left
FILE_MODE = 0o644  # a new log file, less the umask


class AccessLogError(OSError):
    """The access-log file cannot be opened: the message names it and the setting."""

    def __init__(self, sink: Sink, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        reason = reason[:1].lower() + reason[1:]
        problem = f"cannot open the access log {sink} ([server] access_log): {reason}"
        super().__init__(cause.errno, problem)

    def __str__(self) -> str:
        return str(self.strerror)


def piece_end(data: bytes, start: int, most: int | None) -> int:
    """Where the write of `data` from `start` ends: past a line's newline, at most `most` bytes
    on (a line longer than `most` is one write of its own); None: at the end, one write."""
    end = len(data)
    if most is None or end - start <= most:
        return end
    cut = data.rfind(b"\n", start, start + most)
    if cut < 0:  # one line longer than `most`: whole, alone
        cut = data.find(b"\n", start + most)
        return end if cut < 0 else cut + 1
    return cut + 1


class Sink:
    """Where the lines go: stdout (`path` None) or the file at `path`, O_APPEND."""

    def __init__(self, path: str | None, stdout: int = 1) -> None:
        self.path, self.stdout = path, stdout
        self.fd = -1
        self.most: int | None = PIPE_BUF  # the largest write (None: no limit)

    @property
    def watched(self) -> bool:
        """A pipe, socket or terminal: written only when poll() says it takes a write now."""
        return self.most is not None

    def open(self) -> None:
        """Open the file (created if missing) or take stdout; OSError when it cannot be."""
        self.fd = self.stdout if self.path is None else _open_append(self.path)
        self.most = _largest_write(self.fd)

    def reopen(self) -> None:
        """The file again by its name (after logrotate renamed it); stdout stays."""
        if self.path is None:
            return
        fd = _open_append(self.path)
        old, self.fd = self.fd, fd
        self.most = _largest_write(fd)
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        if self.path is not None and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __str__(self) -> str:
        return "stdout" if self.path is None else self.path


def _largest_write(fd: int) -> int | None:
    """PIPE_BUF for a pipe or a socket (journald's stdout), where a longer write may be split
    and mixed with another process's, and for a terminal; else None: a regular file opened
    O_APPEND (and /dev/null) takes each write whole."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd):
        return PIPE_BUF
    return None


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


@dataclass
class Losses:
    """Lines lost since the last warning: dropped while the reader was behind, or in a write
    that failed (with the last error)."""

    behind: int = 0
    failed: int = 0
    error: str = ""
    since: float = 0.0  # when the first of them was lost (monotonic)

    def warning(self, limit: int = BACKLOG_CHARS) -> str:
        parts = []
        if self.behind:
            parts.append(
                f"{self.behind} dropped while the writer was more than {format_size(limit)} behind"
            )
        if self.failed:
            parts.append(f"{self.failed} lost in writes that failed ({self.error})")
        return "access log: lines lost: " + "; ".join(parts)


class Backlog:
    """The encoded batches not yet written, at most `limit` bytes of them (one batch is always
    taken, whatever its size), oldest first: `piece` is the next write, `wrote` and `failed`
    say how it went. Past the bound a batch is dropped and its lines counted; the losses are
    reported once nothing waits (the reader caught up), or every `report_seconds` while they
    go on. No I/O: the loop's AccessLog writes."""

    def __init__(
        self,
        limit: int = BACKLOG_CHARS,
        report_seconds: float = REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.report_seconds, self.clock = limit, report_seconds, clock
        self.waiting = 0  # bytes queued and not yet written
        self.losses = Losses()
        self._batches: deque[bytes] = deque()
        self._start = 0  # how much of the first batch is written

    def offer(self, batch: Batch) -> bool:
        """Queue `batch`, or drop it when too much waits."""
        data = encoded(batch.text)
        if self.waiting and self.waiting + len(data) > self.limit:
            self._start_losses()
            self.losses.behind += batch.lines
            return False
        if data:
            self._batches.append(data)
            self.waiting += len(data)
        return True

    def piece(self, most: int | None) -> memoryview | None:
        """The next write: whole lines of the oldest batch, at most `most` bytes unless one
        line is longer (piece_end); None when nothing waits."""
        if not self._batches:
            return None
        data, start = self._batches[0], self._start
        return memoryview(data)[start : piece_end(data, start, most)]

    def wrote(self, count: int) -> Losses | None:
        """`count` bytes of the last piece were written; the losses to report now, if any."""
        self._start += count
        self.waiting -= count
        if self._start >= len(self._batches[0]):
            self._batches.popleft()
            self._start = 0
        return self._report(force=False)

    def failed(self, error: str) -> Losses | None:
        """The write failed: the rest of the oldest batch is lost, and said why."""
        data = self._batches.popleft()
        self._start_losses()
        self.losses.failed += data.count(b"\n", self._start)
        self.losses.error = error
        self.waiting -= len(data) - self._start
        self._start = 0
        return self._report(force=False)

    def report(self) -> Losses | None:
        """The losses not yet reported (at stop)."""
        return self._report(force=True)

    def _start_losses(self) -> None:
        if not self.losses.behind and not self.losses.failed:
            self.losses.since = self.clock()

    def _report(self, force: bool) -> Losses | None:
        losses = self.losses
        if not losses.behind and not losses.failed:
            return None
        late = self.clock() - losses.since >= self.report_seconds
        if not (force or self.waiting == 0 or late):
            return None
        self.losses = Losses()
        return losses


class AccessLog:
    """The access log of one process. `open()` on the event loop, then `log` is the front's
    `LogAccess`; `flush` (a reload), `reopen` (SIGUSR1), `stop` and `await close()` (the
    proxy's stop)."""

    def __init__(
        self,
        path: str | None,
        *,
        batch: int = BATCH_LINES,
        backlog: int = BACKLOG_CHARS,
        interval: float = FLUSH_SECONDS,
        stdout: int = 1,
    ) -> None:
        self.sink = Sink(path, stdout)
        self.lines = Lines(self._wake, batch)
        self.log = self.lines.add
        self.backlog = Backlog(backlog)
        self.interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._poll = select.poll()
        self._watching = -1  # the descriptor the loop watches for us, if any
        self._written: asyncio.Event | None = None  # close() waits: nothing left to write

    @property
    def path(self) -> str | None:
        return self.sink.path

    def open(self) -> None:
        """Open the file (or take stdout)."""
        loop = asyncio.get_running_loop()
        try:
            self.sink.open()
        except OSError as exc:
            raise AccessLogError(self.sink, exc) from exc
        self._poll.register(self.sink.fd, select.POLLOUT)
        self._loop = loop

    def flush(self) -> None:
        """Write the buffered lines now (as far as the reader takes them)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self.lines):
            self.backlog.offer(self.lines.take())
        if self.sink.fd >= 0:
            self._write()

    def reopen(self) -> None:
        """Lines so far go to the file as it was; later ones to the file opened again by its
        name. Nothing for stdout."""
        if self.sink.path is None or self._loop is None:
            return
        self.flush()
        self._unwatch()
        old = self.sink.fd
        try:
            self.sink.reopen()
        except OSError as exc:
            log.error(
                "access log: cannot reopen %s (still writing to the old file): %s", self.sink, exc
            )
        else:
            self._poll.unregister(old)
            self._poll.register(self.sink.fd, select.POLLOUT)
            log.info("access log reopened: %s", self.sink)
        self._write()  # what the old file did not take yet goes to the new one

    def stop(self) -> None:
        """Write the last lines (as far as the reader takes them); lines logged from now on
        wait in the buffer, and nobody writes them."""
        if self._loop is None:
            return
        self.flush()
        self._loop = None

    async def close(self) -> None:
        """`stop`, then give a reader that is behind at most STOP_SECONDS to take what is left
        (a stuck pipe does not hold the stop up); report lines lost, if any; close the file."""
        self.stop()
        if self.sink.fd < 0:
            return
        if self.backlog.waiting and self._watching >= 0:
            self._written = asyncio.Event()
            try:
                await asyncio.wait_for(self._written.wait(), STOP_SECONDS)
            except TimeoutError:
                log.warning("access log: %s took no more lines for %gs", self.sink, STOP_SECONDS)
        self._unwatch()
        losses = self.backlog.report()
        if losses is not None:
            log.warning("%s", losses.warning(self.backlog.limit))
        self.sink.close()

    def _write(self) -> None:
        """Write what waits, piece by piece while the descriptor takes it; when it does not,
        ask the loop to call again once it does."""
        backlog, sink = self.backlog, self.sink
        while (piece := backlog.piece(sink.most)) is not None:
            if sink.watched and not self._poll.poll(0):
                self._watch()
                return
            try:
                losses = backlog.wrote(os.write(sink.fd, piece))
            except BlockingIOError:  # non-blocking, set so by someone else: wait as for a pipe
                self._watch()
                return
            except OSError as exc:
                losses = backlog.failed(exc.strerror or str(exc))
            if losses is not None:
                log.warning("%s", losses.warning(backlog.limit))
        self._unwatch()
        if self._written is not None:
            self._written.set()

    def _watch(self) -> None:
        if self._watching < 0:
            self._watching = self.sink.fd
            asyncio.get_running_loop().add_writer(self._watching, self._write)

    def _unwatch(self) -> None:
        if self._watching >= 0:
            asyncio.get_running_loop().remove_writer(self._watching)
            self._watching = -1

    def _wake(self, full: bool) -> None:
        """Lines.add's call: a full batch goes now; the first line of one starts the timer."""
        if full:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
