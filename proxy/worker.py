"""A worker process: what master.py starts with `python -c BOOT CONTROL_FD`.

It reads its `Boot` from the control pipe (its number, its inherited sockets, its status pipe,
the log level, the configuration the master checked), then runs the same `Proxy` a single
process runs, through lifecycle.serve_worker, without an admin listener. Later `Config`s on the
control pipe are reloads, `Query`s are answered by the Proxy (`Proxy.answer`); the pipe's end
means the master is gone, and the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import sys

from setproctitle import setproctitle

from proxy import accesslog, lifecycle, logs
from proxy.config import ConfigError, parse
from proxy.master import pipe_end
from proxy.settings import Settings
from proxy.workers import (
    RELOADED,
    Answer,
    Boot,
    Config,
    Decoder,
    Query,
    State,
    ToWorker,
    encode,
    from_master,
)

log = logging.getLogger("sidecache")


def main(control: int) -> int:
    """The worker's life; its exit status (0 after a stop, 2 when its configuration fails)."""
    decoder = from_master()
    messages = read_first(control, decoder)
    boot = messages.pop(0)
    if not isinstance(boot, Boot):
        print("sidecache worker: the master sent no Boot first", file=sys.stderr)
        return 2
    logs.setup(boot.level)
    setproctitle(f"sidecache worker {boot.number}")
    accesslog.set_worker(boot.number)
    try:
        settings = worker_settings(boot.config)
    except ConfigError as exc:
        print(f"sidecache worker {boot.number}: config error: {exc}", file=sys.stderr)
        return 2
    link = MasterLink(boot, control, decoder, messages)
    sockets = [socket.socket(fileno=fd) for fd in boot.sockets]
    return lifecycle.run(lambda: lifecycle.serve_worker(settings, sockets, link))


def read_first(control: int, decoder: Decoder[ToWorker]) -> list[ToWorker]:
    """Block until the control pipe has given the first message (and any that came with it)."""
    while True:
        data = os.read(control, 65536)
        if not data:
            raise SystemExit("sidecache worker: the master closed the control pipe")
        if found := decoder.feed(data):
            return list(found)


def worker_settings(config: Config) -> Settings:
    """The master's configuration, parsed again; the admin listener is the master's."""
    return dataclasses.replace(parse(config.data, config.source), admin=None)


class MasterLink(asyncio.Protocol):
    """The worker's side of its two pipes: configurations from the master (None once the
    master is gone), READY and RELOADED to it, and an answer to each of its queries."""

    def __init__(
        self, boot: Boot, control: int, decoder: Decoder[ToWorker], pending: list[ToWorker]
    ) -> None:
        self.number, self._control, self._status = boot.number, control, boot.status
        self._decoder = decoder
        self._configs: asyncio.Queue[Config | None] = asyncio.Queue()
        self._answerer: lifecycle.Answerer | None = None
        self._answering: set[asyncio.Task[None]] = set()
        for message in pending:
            self._take(message)

    def answer_with(self, answerer: lifecycle.Answerer) -> None:
        """Who answers the master's queries (the Proxy, once it serves)."""
        self._answerer = answerer

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: self, pipe_end(self._control, "r"))

    def data_received(self, data: bytes) -> None:
        for message in self._decoder.feed(data):
            self._take(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._configs.put_nowait(None)

    def _take(self, message: ToWorker) -> None:
        if isinstance(message, Config):
            self._configs.put_nowait(message)
        elif isinstance(message, Query):
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, query: Query) -> None:
        data: object = {"error": f"worker {self.number} is not serving yet"}
        if self._answerer is not None:
            data = await self._answerer(query.what, query.args)
        self._send(encode(Answer(query.number, data)))

    async def next_settings(self) -> Settings | None:
        """The next configuration the master sends, parsed; None when the master is gone."""
        while (config := await self._configs.get()) is not None:
            try:
                return worker_settings(config)
            except ConfigError as exc:  # the master checked it: not expected, but say so
                log.error("worker %d: reload failed: config error: %s", self.number, exc)
                self.tell(RELOADED)
        return None

    def tell(self, state: State) -> None:
        self._send(encode(state))

    def _send(self, message: bytes) -> None:
        """One whole message on the status pipe (a blocking pipe: the master always reads it;
        a write cut by a signal goes on where it stopped)."""
        view = memoryview(message)
        with contextlib.suppress(OSError):  # a master that is gone hears nothing
            while view:
                view = view[os.write(self._status, view) :]
