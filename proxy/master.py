"""The master of `[server] workers` > 1: the listeners, the admin listener, and N workers.

The master binds every listener (listeners.py) and starts each worker as a fresh interpreter
(`python -c BOOT`, never a fork of a process running an event loop) that inherits its sockets
and two pipes: the master writes the worker's `Boot` and each reload's `Config` to one, the
worker writes READY, RELOADED and its answers to the master's queries to the other (workers.py
says the format). The worker runs
the same `Proxy` a single process runs, with its own caches, no admin listener and no word to
systemd: the master speaks for all of them. Its rules:
- ready once every worker is (`start`); a worker that dies before that stops the start;
- a worker that dies later is started again after `workers.restart_delay`, logged with its exit;
- a reload goes to every worker, and returns once each has applied it (or died);
- a query (`ask`: the admin listener's purge, metrics) goes to every serving worker, and returns
  the answers that came within its wait (a purge's is longer: admin_rules.purge_wait);
- `stop` asks every worker to drain (SIGTERM: the graceful stop of a single process) and waits
  for them; one still alive after shutdown_timeout and STOP_GRACE is killed.
A worker whose master is gone sees its control pipe close and stops by itself (worker.py).
Signals are lifecycle.py's: it calls `start`, `reload` and `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from proxy.admin import Admin
from proxy.admin_rules import ASK_WAIT, Asked, purge_outcome, purge_wait
from proxy.counters import Snapshot, WorkerTotals, as_snapshot
from proxy.listeners import Listeners, bind_listeners
from proxy.purge import Purge
from proxy.server import ADMIN_LISTENER, bind, restart_notes
from proxy.settings import ADMIN_PATHS, Settings
from proxy.workers import (
    READY,
    RELOADED,
    Answer,
    Boot,
    Config,
    Query,
    State,
    encode,
    exit_description,
    failures_after_exit,
    from_worker,
    restart_delay,
    worker_environment,
)

log = logging.getLogger("sidecache")
STOP_GRACE = 5.0  # seconds past shutdown_timeout before a worker that does not exit is killed
RELOAD_WAIT = 10.0  # seconds a reload waits for every worker to say it applied the config
# A worker's first code: import the package the master runs (its sys.path, passed in the
# environment), then proxy.worker's main with the control pipe's descriptor.
BOOT = (
    "import json, os, sys; "
    "sys.path[:] = json.loads(os.environ.pop('SIDECACHE_WORKER_PATH')); "
    "from proxy.worker import main; sys.exit(main(int(sys.argv[1])))"
)


class WorkerFailed(Exception):
    """A worker died before it served once: the start fails (exit status 1)."""


@dataclass
class Worker:
    """One worker slot: the process now running in it, and what the master knows of it."""

    number: int  # 1..N, as the process title and the access log's worker= field say
    process: asyncio.subprocess.Process | None = None
    control: asyncio.WriteTransport | None = None
    serving: bool = False
    since: float = 0.0  # when it said READY (monotonic)
    failures: int = 0
    reloaded: asyncio.Event = field(default_factory=asyncio.Event)
    asked: dict[int, asyncio.Future[object]] = field(default_factory=dict)  # by Query.number

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0


class Master:
    """`await start()` (the listeners bound, every worker serving), `reload`, `stop`."""

    def __init__(self, settings: Settings, level: int, passed: Sequence[socket.socket] = ()):
        self.settings = settings
        self.level = level  # the log level the workers get
        self.passed = list(passed)
        self.workers = [Worker(number) for number in range(1, settings.workers + 1)]
        self.admin = Admin(
            lambda: self.settings,
            lambda: self.addresses,
            self.serving,
            purge=self.purge,
            metrics=self.metrics,
        )
        self.totals = WorkerTotals()  # /metrics: the workers' counts, never going down
        self.addresses: list[str] = []
        self.started = False
        self._listeners: Listeners | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()  # a worker said READY, or died
        self._stopping = asyncio.Event()
        self._failed: WorkerFailed | None = None
        self._queries = 0

    def serving(self) -> tuple[int, int]:
        """How many workers serve, of how many."""
        return sum(w.serving for w in self.workers), len(self.workers)

    def serving_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.serving]

    async def ask(
        self, what: str, args: Mapping[str, str] | None = None, wait: float = ASK_WAIT
    ) -> Asked:
        """Put a query to every serving worker; the answers that came within `wait` seconds,
        by the worker's pid, and how many asked were late or died (the caller says so)."""
        number = self._queries = self._queries + 1  # another ask may start while this waits
        message = encode(Query(number, what, dict(args or {})))
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future[object]] = {}
        for worker in self.workers:
            if worker.serving and worker.control is not None:
                waiting[worker.pid] = worker.asked[number] = loop.create_future()
                worker.control.write(message)
        try:
            if waiting:
                await asyncio.wait(waiting.values(), timeout=wait)
        finally:
            for worker in self.workers:
                worker.asked.pop(number, None)
            late = [answer for answer in waiting.values() if not answer.done()]
            for answer in late:
                answer.cancel()
        answers = {
            pid: answer.result()
            for pid, answer in waiting.items()
            if answer.done() and not answer.cancelled()
        }
        return Asked(answers, len(late), len(waiting) - len(answers) - len(late))

    async def metrics(self) -> Snapshot:
        """Every serving worker's counters, summed; a worker that did not answer this time
        counts with its last snapshot, one that is gone with its counters (WorkerTotals)."""
        answers = (await self.ask("metrics")).answers
        snapshots = {pid: s for pid, a in answers.items() if (s := as_snapshot(a)) is not None}
        return self.totals.update(snapshots, self.serving_pids())

    async def purge(self, purge: Purge) -> tuple[int, dict[str, object]]:
        """Every serving worker removes what `purge` names from its caches: 200 and the
        entries removed in all; 502 when one asked did not answer (or failed), or none
        serves (admin_rules.purge_outcome). With [redis] it waits as long as a Redis purge."""
        return purge_outcome(await self.ask("purge", purge.args, purge_wait(self.settings)))

    async def start(self) -> None:
        """Bind the listeners (a ListenError when one cannot be), the admin listener, start
        every worker and wait until each serves (WorkerFailed when one dies first)."""
        self._listeners = bind_listeners(self.settings.listen, len(self.workers), self.passed)
        self.addresses = list(self._listeners.addresses)
        try:
            admin = self.settings.admin
            if admin is not None:
                await bind(self.admin.start(admin), str(admin), ADMIN_LISTENER)
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._supervise(w)) for w in self.workers]
            await self._every_worker_serving()
        except BaseException:
            await self.stop()
            raise
        self.started = True
        for address in self.addresses:
            log.info("listening on %s", address)
        for address in self.admin.addresses:
            log.info("admin (%s) on %s", ADMIN_PATHS, address)

    async def _every_worker_serving(self) -> None:
        while not all(w.serving for w in self.workers):
            if self._failed is not None:
                raise self._failed
            self._changed.clear()
            await self._changed.wait()

    async def reload(self, settings: Settings) -> list[str]:
        """Hand `settings` (checked by the caller) to every worker, and to workers started
        later; return once each running worker has applied it. What only a restart applies
        is returned, as `Proxy.reload` does."""
        later = restart_notes(self.settings, settings)
        self.settings = settings
        if (note := self.admin.reload(settings)) is not None:
            later.append(note)
        message = encode(Config(settings.raw, settings.source))
        told = [w for w in self.workers if w.control is not None]
        for worker in told:
            worker.reloaded.clear()
            assert worker.control is not None
            worker.control.write(message)
        waits = [asyncio.ensure_future(w.reloaded.wait()) for w in told]
        if waits:
            _, late = await asyncio.wait(waits, timeout=RELOAD_WAIT)
            for wait in late:
                wait.cancel()
            if late:
                log.warning(
                    "reload: %d worker(s) did not confirm it in %gs", len(late), RELOAD_WAIT
                )
        return later

    def reopen_access_log(self) -> None:
        """SIGUSR1: each worker writes its own access log (to the file, O_APPEND, or to the
        stdout it shares with the master): each opens the file again by its name. Only workers
        that said READY (their handler is installed: SIGUSR1 would end one still starting);
        one starting now opens the file by its name anyway."""
        for worker in self.workers:
            if worker.serving:
                _signal(worker, signal.SIGUSR1)

    async def stop(self) -> None:
        """Every worker drains (SIGTERM) and exits; then the listeners close."""
        self._stopping.set()
        for worker in self.workers:
            _signal(worker, signal.SIGTERM)
        if self._tasks:
            grace = self.settings.limits.shutdown_timeout + STOP_GRACE
            _, late = await asyncio.wait(self._tasks, timeout=grace)
            if late:
                for worker in self.workers:
                    _signal(worker, signal.SIGKILL)
                await asyncio.wait(late)
        self._tasks = []
        await self.admin.stop()
        if self._listeners is not None:
            self._listeners.close()
            self._listeners = None

    async def _supervise(self, worker: Worker) -> None:
        """Run a worker in this slot until the stop, starting it again when it dies."""
        while not self._stopping.is_set():
            try:
                pid, returncode = await self._run(worker)
                status = f"(pid {pid}) {exit_description(returncode)}"
            except OSError as exc:
                status = f"could not be started: {exc}"
            if self._stopping.is_set():
                log.debug("worker %d %s", worker.number, status)
                return
            if not self.started:
                self._failed = WorkerFailed(f"worker {worker.number} {status} before it served")
                self._changed.set()
                return
            served = time.monotonic() - worker.since if worker.since else 0.0
            worker.failures = failures_after_exit(worker.failures, served)
            delay = restart_delay(worker.failures)
            log.warning("worker %d %s; starting it again in %gs", worker.number, status, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run(self, worker: Worker) -> tuple[int, int]:
        """Start a worker in `worker`'s slot and wait for it to exit: its pid and returncode."""
        assert self._listeners is not None
        loop = asyncio.get_running_loop()
        sockets = [s.fileno() for s in self._listeners.for_worker(worker.number - 1)]
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        config = Config(self.settings.raw, self.settings.source)
        boot = Boot(worker.number, tuple(sockets), status_w, self.level, config)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                BOOT,
                str(control_r),
                pass_fds=(control_r, status_w, *sockets),
                env=worker_environment(os.environ, sys.path),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's ^C and hangup are the master's to pass on
            )
        except BaseException:
            os.close(control_w)
            os.close(status_r)
            raise
        finally:
            os.close(control_r)
            os.close(status_w)
        worker.process = process
        try:
            control, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe_end(control_w, "w"))
            status, _ = await loop.connect_read_pipe(
                lambda: _StatusReader(self, worker), pipe_end(status_r, "r")
            )
        except BaseException:
            process.kill()
            await process.wait()
            raise
        worker.control = control
        control.write(encode(boot))
        if self._stopping.is_set():
            _signal(worker, signal.SIGTERM)
        try:
            return process.pid, await process.wait()
        finally:
            worker.process, worker.control, worker.serving, worker.since = None, None, False, 0.0
            worker.reloaded.set()  # a reload waiting for it waits no longer
            for answer in worker.asked.values():  # nor a query
                answer.cancel()
            worker.asked.clear()
            control.close()
            status.close()
            self._changed.set()

    def _said(self, worker: Worker, message: State | Answer) -> None:
        """A worker's message: READY once it serves, RELOADED after each reload, answers."""
        if message == READY:
            worker.serving, worker.since = True, time.monotonic()
            log.info("worker %d (pid %d) serving", worker.number, worker.pid)
            self._changed.set()
        elif message == RELOADED:
            worker.reloaded.set()
        elif isinstance(message, Answer):
            answer = worker.asked.get(message.number)
            if answer is not None and not answer.done():
                answer.set_result(message.data)


class _StatusReader(asyncio.Protocol):
    def __init__(self, master: Master, worker: Worker) -> None:
        self.master, self.worker = master, worker
        self.decoder = from_worker()

    def data_received(self, data: bytes) -> None:
        for message in self.decoder.feed(data):
            self.master._said(self.worker, message)


def pipe_end(fd: int, mode: str) -> io.FileIO:
    """A pipe's end ("r" or "w") as the file object asyncio's pipe transports take; closing
    the transport closes it."""
    return io.FileIO(fd, mode)


def _signal(worker: Worker, number: signal.Signals) -> None:
    process = worker.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(number)
