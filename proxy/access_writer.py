"""The buffered access log: lines made on the event loop, written by a thread of their own.

nginx's `access_log ... buffer=` in spirit. The loop only formats a line into `accesslog.Lines`
(about a microsecond); a batch goes to the writer thread when the buffer holds 2,048 lines
(~256 KiB), when the oldest line is `FLUSH_SECONDS` old (so `tail -f` sees lines at once), on
a reload and at stop. The thread may block on a slow pipe or disk; the loop never does:
- At most `BACKLOG_CHARS` (8 MiB) wait for the thread. A batch past that is dropped, its lines
  counted, and one warning (stderr) says how many once the writer has caught up; a failed
  write loses its lines the same way (a closed stdout, a full disk).
- Several processes (workers) may share stdout or the file: every write() ends on a line
  boundary, and on a pipe or a socket holds at most PIPE_BUF (4096) bytes, which a pipe writes
  whole, so lines of two processes never mix. A file is opened O_APPEND (each
  write lands at its end, whoever wrote last); `reopen` opens it again by name (logrotate's
  `postrotate` sends SIGUSR1); stdout is never reopened nor closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import SimpleQueue

from proxy.accesslog import BATCH_LINES, Batch, Lines, encoded
from proxy.units import format_size

log = logging.getLogger("sidecache")
FLUSH_SECONDS = 0.1  # the oldest line waits at most this long in the loop's buffer
BACKLOG_CHARS = 8 * 1024 * 1024  # most waiting for the writer; past it, lines are dropped
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)  # a pipe writes this much atomically (POSIX: ≥512)
REPORT_SECONDS = 60.0  # while lines keep being dropped, a warning at least this often
STOP_SECONDS = 5.0  # at stop, the writer gets this long to write what is left
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


class _Control:
    """An order to the writer thread, queued after the batches before it."""

    def __init__(self, name: str) -> None:
        self.name = name


REOPEN, STOP = _Control("reopen"), _Control("stop")


def pieces(data: bytes, most: int | None) -> Iterator[bytes]:
    """`data` (whole lines) cut into writes of at most `most` bytes that each end on a line
    boundary (a line longer than `most` is one write of its own); None: one write."""
    if most is None or len(data) <= most:
        yield data
        return
    start, end = 0, len(data)
    while start < end:
        if end - start <= most:
            yield data[start:]
            return
        cut = data.rfind(b"\n", start, start + most)
        if cut < 0:  # one line longer than `most`: whole, alone
            cut = data.find(b"\n", start + most)
            cut = end - 1 if cut < 0 else cut
        yield data[start : cut + 1]
        start = cut + 1


class Sink:
    """Where the lines go: stdout (`path` None) or the file at `path`, O_APPEND."""

    def __init__(self, path: str | None, stdout: int = 1) -> None:
        self.path, self.stdout = path, stdout
        self.fd = -1
        self.most: int | None = PIPE_BUF  # the largest write (None: no limit)

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

    def write(self, piece: bytes) -> None:
        """One write of `piece` (see `pieces`), and more only if the fd takes part of it (a
        non-blocking one, set so by someone else, may also refuse for a while: wait)."""
        view = memoryview(piece)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                select.select([], [self.fd], [], 1.0)

    def close(self) -> None:
        if self.path is not None and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __str__(self) -> str:
        return "stdout" if self.path is None else self.path


def _largest_write(fd: int) -> int | None:
    """PIPE_BUF for a pipe or a socket (journald's stdout), where a longer write may be split
    and mixed with another process's; else None: a regular file opened O_APPEND and a
    terminal write each write() whole."""
    mode = os.fstat(fd).st_mode
    return PIPE_BUF if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None


def _open_append(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


@dataclass
class Losses:
    """Lines lost since the last warning: dropped while the writer was behind, or in a write
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
    """The batches waiting for the writer thread, at most `limit` characters of them (one
    batch is always taken, whatever its size). Past it a batch is dropped and its lines
    counted; `written` reports the losses once nothing waits (the writer caught up), or every
    `report_seconds` while losses go on."""

    def __init__(
        self,
        limit: int = BACKLOG_CHARS,
        report_seconds: float = REPORT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.report_seconds, self.clock = limit, report_seconds, clock
        self.waiting = 0  # characters queued and not yet written
        self.losses = Losses()
        self._queue: SimpleQueue[Batch | _Control] = SimpleQueue()
        self._lock = threading.Lock()  # waiting and losses change on both threads

    def offer(self, batch: Batch) -> bool:
        """Queue `batch` for the writer (the loop's side), or drop it when too much waits."""
        with self._lock:
            size = len(batch.text)
            if self.waiting and self.waiting + size > self.limit:
                self._start_losses()
                self.losses.behind += batch.lines
                return False
            self.waiting += size
        self._queue.put(batch)
        return True

    def order(self, control: _Control) -> None:
        """Queue an order for the writer, after the batches already queued; never dropped."""
        self._queue.put(control)

    def next(self) -> Batch | _Control:
        """The next batch or order (the writer's side): waits for one."""
        return self._queue.get()

    def written(self, batch: Batch, lost: int = 0, error: str = "") -> Losses | None:
        """`batch` is done (`lost` of its lines were not written, for `error`); the losses to
        report now, if any: the writer has caught up, or they have gone on long enough."""
        with self._lock:
            self.waiting -= len(batch.text)
            if lost:
                self._start_losses()
                self.losses.failed += lost
                self.losses.error = error
            return self._report(force=False)

    def report(self) -> Losses | None:
        """The losses not yet reported (at stop)."""
        with self._lock:
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


def write_batches(backlog: Backlog, sink: Sink) -> None:
    """The writer thread: each batch in order, as whole lines, until STOP."""
    while True:
        item = backlog.next()
        if item is STOP:
            return
        if item is REOPEN:
            _reopen(sink)
            continue
        assert isinstance(item, Batch)
        data = encoded(item.text)
        lost, error, done = 0, "", 0
        try:
            for piece in pieces(data, sink.most):
                sink.write(piece)
                done += len(piece)
        except OSError as exc:
            lost, error = data.count(b"\n", done), exc.strerror or str(exc)
        losses = backlog.written(item, lost, error)
        if losses is not None:
            log.warning("%s", losses.warning(backlog.limit))


def _reopen(sink: Sink) -> None:
    try:
        sink.reopen()
    except OSError as exc:
        log.error("access log: cannot reopen %s (still writing to the old file): %s", sink, exc)
    else:
        log.info("access log reopened: %s", sink)


class AccessLog:
    """The access log of one process. `open()` on the event loop, then `log` is the front's
    `LogAccess`; `flush` (a reload), `reopen` (SIGUSR1), `await close()` (the proxy's stop)."""

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
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()  # the writer thread has ended

    @property
    def path(self) -> str | None:
        return self.sink.path

    def open(self) -> None:
        """Open the file (or take stdout) and start the writer thread."""
        loop = asyncio.get_running_loop()
        try:
            self.sink.open()
        except OSError as exc:
            raise AccessLogError(self.sink, exc) from exc
        self._loop = loop
        self._thread = threading.Thread(
            target=self._write, args=(loop,), name="access-log", daemon=True
        )
        self._thread.start()

    def flush(self) -> None:
        """Hand the buffered lines to the writer now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self.lines):
            self.backlog.offer(self.lines.take())

    def reopen(self) -> None:
        """Lines so far go to the file as it was; later ones to the file opened again by its
        name. Nothing for stdout."""
        if self.sink.path is not None and self._loop is not None:
            self.flush()
            self.backlog.order(REOPEN)

    def stop(self) -> None:
        """Hand the last lines to the writer and tell it to end; lines logged from now on
        wait in the buffer, and nobody writes them."""
        if self._loop is None:
            return
        self.flush()
        self._loop = None
        self.backlog.order(STOP)

    async def close(self) -> None:
        """`stop`, then wait for the writer to write what it has (at most STOP_SECONDS: a
        stuck pipe does not hold the stop up); report lines lost, if any; close the file."""
        self.stop()
        if self._thread is None:
            return
        self._thread = None
        try:
            await asyncio.wait_for(self._stopped.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("access log: %s took no more lines for %gs", self.sink, STOP_SECONDS)
            return
        losses = self.backlog.report()
        if losses is not None:
            log.warning("%s", losses.warning(self.backlog.limit))
        self.sink.close()

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread; `loop` is told when it ends."""
        try:
            write_batches(self.backlog, self.sink)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(self._stopped.set)

    def _wake(self, full: bool) -> None:
        """Lines.add's call: a full batch goes now; the first line of one starts the timer."""
        if full:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
