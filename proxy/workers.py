"""Worker processes, the decisions: how many, how many sockets a listener gets, when a dead
worker is started again, what its exit said, and the messages between master and worker.

No I/O here (master.py, listeners.py and worker.py do it), so each rule is a plain function with
a unit test. The messages, length-prefixed pickles of our own dataclasses on pipes only the two
processes hold: the master writes `Boot` (once, first), `Config` (on each reload) and `Query`
(the admin listener's questions: purge, metrics) to a worker's control pipe; the worker writes
`READY` once it serves, `RELOADED` after each `Config` and an `Answer` to each `Query` to its
status pipe.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from proxy.settings import Listen
from proxy.tomltable import shown

# Each worker is a whole process with its own caches (max_bytes each): a typo of 10000 should
# be an error, not ten thousand interpreters.
MAX_WORKERS = 256

# Restarts: 0.1 s after the first death, doubling to 10 s for a worker that keeps dying; a
# worker that served for STABLE_SECONDS starts the count again (supervisord's idea, shorter).
FIRST_DELAY, MAX_DELAY, STABLE_SECONDS = 0.1, 10.0, 10.0

# What a worker must not inherit: systemd's notify socket (the master alone speaks to
# systemd) and socket activation's variables (the master hands the sockets on itself).
NOT_INHERITED = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
PATH_VARIABLE = "SIDECACHE_WORKER_PATH"


def parse_workers(value: object, cpus: int) -> int:
    """`[server] workers`: a whole number from 1 to MAX_WORKERS (written as a TOML integer, or
    as digits: --workers and SIDECACHE_WORKERS give text), or "auto" for `cpus` (the CPUs this
    process may run on); a ValueError says what is wrong."""
    if value == "auto":
        return max(1, min(cpus, MAX_WORKERS))
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'expected a whole number or "auto", got {shown(value)}')
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f'must be from 1 to {MAX_WORKERS}, or "auto" (the CPU count)')
    return value


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, `taskset`),
    which is what os.process_cpu_count (Python 3.13) returns; the machine's count elsewhere."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def sockets_per_listener(listen: Listen, workers: int) -> int:
    """A TCP address gets one SO_REUSEPORT socket per worker: the kernel spreads new
    connections evenly over them, where processes sharing one socket take turns unevenly (the
    idle one wins). A unix socket cannot be bound twice: it is one socket every worker serves."""
    return 1 if listen.path else workers


def restart_delay(failures: int) -> float:
    """Seconds before a dead worker is started again, after `failures` deaths in a row."""
    if failures <= 0:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(failures - 1, 30))


def failures_after_exit(failures: int, served_seconds: float) -> int:
    """The count `restart_delay` reads after a death: one more, unless the worker had served
    long enough to call it a new failure (then the count starts again)."""
    return 1 if served_seconds >= STABLE_SECONDS else failures + 1


def exit_description(returncode: int) -> str:
    """`exited with status 3`, `killed by signal SIGKILL` (a negative returncode, as
    subprocess reports a signal)."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"killed by signal {name}"


def worker_environment(environ: Mapping[str, str], path: Sequence[str]) -> dict[str, str]:
    """A worker's environment: the master's without NOT_INHERITED, plus the master's sys.path
    (the worker imports the very package the master runs, as multiprocessing's spawn does)."""
    env = {name: value for name, value in environ.items() if name not in NOT_INHERITED}
    env[PATH_VARIABLE] = json.dumps(list(path))
    return env


@dataclass(frozen=True, slots=True)
class Config:
    """A configuration to run: the raw table the master parsed and checked, and its source."""

    data: Mapping[str, Any]
    source: str


@dataclass(frozen=True, slots=True)
class Boot:
    """What a worker needs to start: its number, its listening sockets' and status pipe's file
    descriptors (inherited as they are numbered here), the log level and the configuration."""

    number: int
    sockets: tuple[int, ...]
    status: int
    level: int
    config: Config


@dataclass(frozen=True, slots=True)
class Query:
    """A question the master puts to each worker for the admin listener (`what`: "purge",
    "metrics"...; `args`: its parameters); `number` pairs the answers with it."""

    number: int
    what: str
    args: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """A worker's answer to Query `number`: plain JSON-able data."""

    number: int
    data: object


@dataclass(frozen=True, slots=True)
class State:
    """What a worker says of itself: READY once it serves, RELOADED after each Config."""

    name: str


READY, RELOADED = State("ready"), State("reloaded")
ToWorker = Boot | Config | Query
ToMaster = State | Answer
_LENGTH = struct.Struct("!I")
M = TypeVar("M")


def encode(message: ToWorker | ToMaster) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


class Decoder(Generic[M]):
    """Messages of the types `kinds` out of a byte stream, however it is cut; anything else
    is a ValueError naming `sender` (a pipe's two ends are ours: it would be a bug)."""

    def __init__(self, kinds: tuple[type[M], ...], sender: str) -> None:
        self._kinds, self._sender = kinds, sender
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[M]:
        self._buffer += data
        found: list[M] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            message = pickle.loads(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            if not isinstance(message, self._kinds):
                raise ValueError(f"not a {self._sender}'s message: {type(message).__name__}")
            found.append(message)
        return found


def from_master() -> Decoder[ToWorker]:
    return Decoder((Boot, Config, Query), "master")


def from_worker() -> Decoder[ToMaster]:
    return Decoder((State, Answer), "worker")


def summed(answers: Iterable[object], field: str) -> tuple[int, list[str]]:
    """The total of `field` over the workers' answers ({"purged": 3}...), and the errors
    they gave ({"error": "..."}, with a count too when a purge was incomplete: Redis could
    not be purged, memory was) or what was no answer at all."""
    total, errors = 0, []
    for answer in answers:
        value = answer.get(field) if isinstance(answer, dict) else None
        error = answer.get("error") if isinstance(answer, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
        elif not error:
            error = f"no {field} in {answer!r:.80}"
        if error:
            errors.append(str(error))
    return total, errors
