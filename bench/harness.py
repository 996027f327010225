"""sidecache's benchmark (issues 3 and 14): sidecache and nginx proxy_cache side by side.

Run it through `bench/run` (see bench/README.md). Python 3.11 standard library only.

Each scenario is measured with wrk against each of its targets (server variants: sidecache with
the benchmark config or the embedded default, access log on or off, one or two workers; nginx
with its access log off or on), interleaved (the order alternates from one scenario to the
next), with the server under test pinned to one CPU and wrk to another. For every run:
requests/s, p50 and p99 latency (wrk's own histogram, read by wrk/report.lua), the server's CPU
time per request (utime+stime from /proc/PID/stat, before and after, over the process and its
children: nginx's master + worker + cache processes, sidecache's master + workers), how many
requests reached the upstream (bench/upstream.py counts them) and, when an access log is on, how
many lines it got (and from which worker). Then a unique-key flood against a sidecache with a
small max_bytes, sampling its RSS.

Every child process is started here, in its own session, remembered by PID and stopped by PID
(SIGTERM, then SIGKILL) in `finally` and on SIGINT/SIGTERM/SIGHUP. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
HIT_PAGE_SIZES = {"2k": 2048, "50k": 50 * 1024}
FLOOD_BODY = 8192  # bench/upstream.py's /flood page
FLOOD_MAX_BYTES = 32 * MIB
FLAT_MIB = 4.0  # "flat": RSS grows at most this much once the flood cache is full
TOTAL_BUDGET_S = 30 * 60
BUILD_BUDGET_S = 30 * 60  # --compare-builds: the mypyc build, before the run's own budget

# What a browser sends (bench/profile_front.py's BROWSER, header for header): more headers,
# compression, an anonymous visitor's analytics and preference cookies.
BROWSER_COOKIE = "_ga=GA1.1.123456789.1700000000; theme=dark"
BROWSER_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", "www.example.com"),
    ("Connection", "keep-alive"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-GB,en;q=0.9"),
    ("Cookie", BROWSER_COOKIE),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Upgrade-Insecure-Requests", "1"),
)
FRESH_REQUESTS = 10_000  # the workers' share: requests, each over a new connection


class BenchError(Exception):
    pass


class TimeBudgetExceeded(BenchError):
    pass


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- /proc ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()  # fields from "state" (field 3) on


def cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime, clock ticks, all threads


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def start_time(pid: int) -> int | None:
    try:
        return int(_stat_fields(pid)[19])  # field 22: start time, tells a reused PID apart
    except (OSError, IndexError, ValueError):
        return None


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {name}")


def cpu_busy_ticks(cpu: int) -> int:
    """Busy ticks of one CPU (/proc/stat: user, nice, system, irq, softirq): a process's own
    utime+stime include the interrupt work done while it ran, so these are counted too."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in line.split()[1:8])
            return user + nice + system + irq + softirq
    return 0


def process_title(pid: int) -> str:
    """The process's title (its argv as /proc shows it: a worker's "sidecache worker 2")."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def ticks_of(pids: Sequence[int]) -> dict[int, int]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_ticks(pid)
        except OSError:
            continue
    return found


def ticks_delta(before: dict[int, int], after: dict[int, int]) -> int:
    """CPU ticks spent between two samples; a process that appeared counts from zero."""
    return sum(t - before.get(pid, 0) for pid, t in after.items())


# --- child processes ------------------------------------------------------------------------


class Children:
    """Every process this run started, stopped by PID."""

    def __init__(self, nice: int = 0) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.nice = nice  # for what is measured: the servers, the upstream, wrk

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cpus: set[int] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; its stderr (and its stdout unless `stdout`, a descriptor or
        subprocess.DEVNULL, is given) appended to `log_path`."""
        nice = self.nice

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)
            if nice:
                # Each child leads its own session and so, with sched_autogroup, its own
                # scheduling group: the group's nice is what counts against other sessions.
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, 0, nice)
                with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
                    group.write(str(nice))

        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out if stdout is None else stdout,
                stderr=out,
                preexec_fn=pin,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        """Stop one child by PID; its own children (nginx's workers) too if they outlive it."""
        if proc.poll() is None:
            kids = {pid: start_time(pid) for pid in children_of(proc.pid)}
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            for pid, started in kids.items():
                if started is not None and start_time(pid) == started:  # the same process
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                say(f"could not stop pid {proc.pid}: {exc}")


# --- HTTP helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, len(body)
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}; log {log}:\n{tail(log)}")
        try:
            status, _, _ = http_get(port, path, timeout=2)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(
        f"{what} not ready on port {port} after 30 s ({last}); log {log}:\n{tail(log)}"
    )


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- access logs ----------------------------------------------------------------------------


class LogTap:
    """Where a server's access log goes, and how many lines it wrote.

    - "pipe": sidecache's stdout is a pipe this script drains (a thread; what systemd's journal
      or a container runtime do with a service's stdout). Its first 64 KiB are copied to the
      server's log file, the rest is counted and dropped.
    - "file": stdout appended to the server's log file (nginx: its access_log file); lines are
      counted by reading what was appended.
    - "null": stdout is /dev/null; nothing can be counted.
    An access line is one holding `pattern` (sidecache's " rule=", any line for nginx); a
    ` worker=N` field (sidecache's workers) is counted per N.
    """

    KEEP = 64 * 1024

    def __init__(self, sink: str, path: Path, pattern: bytes = b" rule=") -> None:
        self.sink, self.path, self.pattern = sink, path, pattern
        self.lines = 0
        self.workers: dict[int, int] = {}
        self._lock = threading.Lock()
        self._read_fd = self._write_fd = -1
        self._thread: threading.Thread | None = None

    @property
    def countable(self) -> bool:
        return self.sink != "null"

    def stdout(self) -> int | None:
        """What the server's stdout is to be (for Children.start)."""
        if self.sink == "pipe":
            self._read_fd, self._write_fd = os.pipe()  # the default 64 KiB pipe
            return self._write_fd
        return subprocess.DEVNULL if self.sink == "null" else None

    def started(self) -> None:
        """After the server started: keep only the read end here and drain it."""
        if self.sink == "pipe":
            os.close(self._write_fd)
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def _count(self, data: bytes) -> None:
        found = data.count(self.pattern)
        workers: dict[int, int] = {}
        if b" worker=" in data:
            for number in re.findall(rb" worker=(\d+)", data):
                workers[int(number)] = workers.get(int(number), 0) + 1
        with self._lock:
            self.lines += found
            for number, count in workers.items():
                self.workers[number] = self.workers.get(number, 0) + count

    def _drain(self) -> None:
        kept, rest = 0, b""
        with open(self.path, "ab") as copy:
            while True:
                try:
                    chunk = os.read(self._read_fd, 1 << 20)
                except OSError:
                    break
                if not chunk:
                    break
                if kept < self.KEEP:
                    copy.write(chunk[: self.KEEP - kept])
                    copy.flush()
                    kept += len(chunk)
                data = rest + chunk
                end = data.rfind(b"\n") + 1  # whole lines only: a field is never cut in two
                rest = data[end:]
                self._count(data[:end])
                if len(chunk) < 16384:
                    # A busy reader (a journal that parses what it reads) is not waiting in
                    # read() for every line; this one lets a few milliseconds of lines gather.
                    time.sleep(0.005)
        os.close(self._read_fd)

    def mark(self) -> tuple[int, dict[int, int]]:
        """A point to count from (`since`)."""
        if self.sink == "file":
            try:
                return self.path.stat().st_size, {}
            except OSError:
                return 0, {}
        with self._lock:
            return self.lines, dict(self.workers)

    def since(self, mark: tuple[int, dict[int, int]]) -> tuple[int, dict[int, int]]:
        """Access lines written since `mark`, and how many of them each worker wrote."""
        if self.sink == "file":
            with open(self.path, "rb") as f:
                f.seek(mark[0])
                data = f.read()
            data = data[: data.rfind(b"\n") + 1]
            counter = LogTap(self.sink, self.path, self.pattern)
            counter._count(data)
            return counter.lines, counter.workers
        with self._lock:
            lines = self.lines - mark[0]
            workers = {n: c - mark[1].get(n, 0) for n, c in self.workers.items()}
        return lines, {n: c for n, c in sorted(workers.items()) if c}


# --- tools ----------------------------------------------------------------------------------


def apt_install(packages: Sequence[str]) -> bool:
    """apt-get install, never starting a service: a policy-rc.d that refuses every start is in
    place for the install (Debian's own mechanism, also honoured under systemd)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text(
            "#!/bin/sh\n# written by sidecache bench/run during apt-get install\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        for attempt in ("", "update"):
            if attempt:
                subprocess.run(
                    ["apt-get", "update", "-qq"],
                    env=env,
                    timeout=600,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            done = subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                env=env,
                timeout=900,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if done.returncode == 0:
                return True
        return False
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def find_wrk(install: bool) -> str:
    path = shutil.which("wrk")
    if path is None and install:
        say("wrk not found: apt-get install -y wrk")
        apt_install(["wrk"])
        path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk not found and not installable: apt-get install wrk (as root)")
    return path


def find_nginx(install: bool) -> str | None:
    def which() -> str | None:
        return shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
        )

    path = which()
    if path is None and install:
        for package in ("nginx-light", "nginx"):
            say(f"nginx not found: apt-get install -y {package} (its service is not started)")
            if apt_install([package]) and (path := which()):
                break
    return path


def version_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


@dataclass
class SidecacheCommand:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    python: str  # the interpreter that runs it
    origin: str  # where it came from, for the report

    def run(self, *args: str) -> str:
        """What `sidecache ARGS` prints (stdout and stderr)."""
        try:
            done = subprocess.run(
                [*self.argv, *args],
                capture_output=True,
                text=True,
                timeout=60,
                env=self.env,
                cwd=self.cwd,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"? ({exc})"
        return done.stdout + done.stderr

    @property
    def version(self) -> str:
        lines = self.run("--version").strip().splitlines()
        return lines[0].strip() if lines else "?"

    @property
    def build(self) -> str:
        """ "compiled" or "pure" as `sidecache --version` says; "unknown" for a version that
        does not say (before the compiled build existed: pure)."""
        version = self.version
        return (
            "compiled" if "(compiled)" in version else "pure" if "(pure" in version else "unknown"
        )

    def has_workers(self) -> bool:
        return "--workers" in self.run("run", "--help")

    def default_toml(self) -> str:
        """The embedded default configuration of this sidecache (proxy/default.toml)."""
        done = subprocess.run(
            [
                self.python,
                "-c",
                "import importlib.resources as r, sys; "
                "sys.stdout.write(r.files('proxy').joinpath('default.toml').read_text())",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            cwd=self.cwd or "/",
        )
        if done.returncode != 0 or "[server]" not in done.stdout:
            raise BenchError(f"cannot read sidecache's embedded default.toml:\n{done.stderr}")
        return done.stdout


def script_python(script: str) -> str:
    """The interpreter of a script (its #! line); an interpreter itself (`--sidecache
    "PYTHON -m proxy"`) is its own."""
    try:
        first = Path(script).read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    except OSError:
        return sys.executable
    if first.startswith("#!"):
        return first[2:].strip().split()[0]
    return script if Path(script).name.startswith("python") else sys.executable


def find_sidecache(explicit: str | None, git_ref: str | None, tmp: Path) -> SidecacheCommand:
    env = dict(os.environ)
    if explicit:
        argv = shlex.split(explicit)
        return SidecacheCommand(
            argv,
            env,
            None,
            script_python(shutil.which(argv[0]) or argv[0]),
            f"--sidecache {explicit}",
        )
    path = shutil.which("sidecache")
    if path and "/shims/" in path and shutil.which("pyenv"):  # pyenv: run the real script
        real = subprocess.run(["pyenv", "which", "sidecache"], capture_output=True, text=True)
        if real.returncode == 0 and real.stdout.strip():
            path = real.stdout.strip()
    venv = REPO / ".venv" / "bin" / "sidecache"
    python = script_python(path) if path else sys.executable
    if git_ref:
        tree = tmp / "sidecache-src"
        tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", git_ref, "proxy"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        if not path and venv.exists():
            python = script_python(str(venv))
        env["PYTHONPATH"] = str(tree)
        return SidecacheCommand(
            [python, "-m", "proxy"],
            env,
            tmp,
            python,
            f"git archive {git_ref} (python -m proxy with {python})",
        )
    if path:
        return SidecacheCommand([path], env, None, python, path)
    if venv.exists():
        return SidecacheCommand([str(venv)], env, None, script_python(str(venv)), str(venv))
    probe = subprocess.run(
        [sys.executable, "-c", "import aiohttp, cachetools"], capture_output=True
    )
    if probe.returncode == 0:
        env["PYTHONPATH"] = str(REPO)
        return SidecacheCommand(
            [sys.executable, "-m", "proxy"],
            env,
            REPO,
            sys.executable,
            f"{sys.executable} -m proxy (from {REPO})",
        )
    say("no sidecache on PATH: creating .venv with scripts/_venv.sh (pip install -e .)")
    subprocess.run(
        ["bash", "-c", ". scripts/_venv.sh"],
        cwd=REPO,
        check=True,
        timeout=900,
        env={**os.environ, "EXTRAS": ""},
    )
    return SidecacheCommand([str(venv)], env, None, script_python(str(venv)), str(venv))


def source_tree(git_ref: str | None, tmp: Path) -> Path:
    """A copy of what a wheel is built from (the working tree's, or `git_ref`'s), so that a
    build leaves nothing in the checkout."""
    tree = tmp / "build-src"
    if tree.exists():
        return tree
    tree.mkdir()
    if git_ref:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", git_ref], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        return tree
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info", "build")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, tree / name)
    for name in ("proxy", "build_support"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, tree / name, ignore=skip)
    return tree


def other_build(found: SidecacheCommand, git_ref: str | None, tmp: Path) -> SidecacheCommand:
    """The build `found` is not, from the source measured (the working tree or `git_ref`),
    run by the same interpreter (it has the dependencies): the compiled one is a
    `SIDECACHE_COMPILE=1 pip wheel` (mypyc; needs gcc and the Python headers, and PyPI for the
    build's own requirements), installed with `pip install --no-deps --target` into the run's
    temporary directory; the pure one is `python -m proxy` from the source, which is pure."""
    src = source_tree(git_ref, tmp)
    if found.build == "compiled":
        return SidecacheCommand(
            [found.python, "-m", "proxy"],
            {**os.environ, "PYTHONPATH": str(src)},
            tmp,
            found.python,
            f"pure: python -m proxy from a copy of {git_ref or 'the working tree'}",
        )
    wheels, site = tmp / "wheel", tmp / "compiled-site"
    pip = [found.python, "-m", "pip", "--disable-pip-version-check"]
    say(
        f"building the compiled wheel from {git_ref or 'the working tree'} "
        "(SIDECACHE_COMPILE=1 pip wheel: mypyc, a few minutes)"
    )
    started = time.monotonic()

    def step(argv: list[str]) -> None:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=BUILD_BUDGET_S,
                env={**os.environ, "SIDECACHE_COMPILE": "1"},
                cwd=tmp,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"the compiled build took longer than {BUILD_BUDGET_S} s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise BenchError(f"the compiled build failed: {shlex.join(argv)}\n{output}")

    step([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)])
    wheel = next(wheels.glob("sidecache-*.whl"))
    step([*pip, "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel)])
    say(f"  built in {time.monotonic() - started:.0f} s")
    built = SidecacheCommand(
        [found.python, "-m", "proxy"],
        {**os.environ, "PYTHONPATH": str(site)},
        site,
        found.python,
        f"compiled: SIDECACHE_COMPILE=1 pip wheel of {git_ref or 'the working tree'}, "
        f"installed in {site}",
    )
    if built.build != "compiled":
        raise BenchError(f"the compiled build does not run compiled: {built.version}")
    return built


# --- servers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One server variant measured: a scenario lists the targets it runs against."""

    key: str
    family: str  # sidecache | nginx | direct
    about: str  # for the report's legend
    config: str = "bench"  # sidecache: "bench" (bench/run's), "default" or "default-nolog"
    log: bool = False  # access log on
    workers: int | None = None  # sidecache started with --workers N
    twin: bool = False  # the other build (--compare-builds) of a sidecache target


TARGETS = {
    t.key: t
    for t in (
        Target(
            "sidecache",
            "sidecache",
            "bench/run's benchmark config (cache bench, 1 h, access_log = false): the issue 3 "
            "rows, kept for continuity",
        ),
        Target(
            "sidecache-default",
            "sidecache",
            "the embedded default config (proxy/default.toml) as a user gets it, only "
            "--listen, --upstream and --ttl 1h given: access log on",
            config="default",
            log=True,
        ),
        Target(
            "sidecache-default-nolog",
            "sidecache",
            "the embedded default config with `access_log = false`, otherwise the same as "
            "sidecache-default",
            config="default-nolog",
        ),
        Target("nginx", "nginx", "bench/nginx.conf with `access_log off`"),
        Target(
            "nginx-log",
            "nginx",
            "bench/nginx.conf as deployed: `access_log FILE combined buffer=64k flush=1s`",
            log=True,
        ),
        Target(
            "sidecache-default-w1",
            "sidecache",
            "sidecache-default started with --workers 1 (one process)",
            config="default",
            log=True,
            workers=1,
        ),
        Target(
            "sidecache-default-w2",
            "sidecache",
            "sidecache-default started with --workers 2 (a master and 2 worker processes)",
            config="default",
            log=True,
            workers=2,
        ),
        Target("direct", "direct", "wrk straight to bench/upstream.py (the pass baseline)"),
    )
}


def twin_of(target: Target, build: str) -> Target:
    """`target` run by the other build (--compare-builds): key "sidecache-default+compiled"."""
    return Target(
        f"{target.key}+{build}",
        target.family,
        f"{target.key} run by the {build} build",
        target.config,
        target.log,
        target.workers,
        twin=True,
    )


def base_key(key: str) -> str:
    return key.split("+", 1)[0]


@dataclass
class Server:
    target: Target
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    tap: LogTap | None = None  # its access log, when on
    cpus: set[int] | None = None  # where it runs

    @property
    def name(self) -> str:  # the target's key
        return self.target.key

    @property
    def family(self) -> str:
        return self.target.family

    def pids(self) -> list[int]:
        """The server's processes: nginx's master, worker and cache manager/loader;
        sidecache's master and its workers (or the one process)."""
        return [self.proc.pid, *children_of(self.proc.pid)]


def sidecache_config(port: int, upstream_port: int, max_bytes: str, items: int) -> str:
    return f"""# written by bench/run: every anonymous GET/HEAD is cached for an hour (like
# bench/nginx.conf); logged-in visitors (remember_token cookie, ...) pass, as always.
[server]
listen = ["127.0.0.1:{port}"]
access_log = false

[upstream]
url = "http://127.0.0.1:{upstream_port}"
max_connections = 100

[caches.bench]
items = {items}
item_size = "64KiB"      # the 50 KB page is stored
max_bytes = "{max_bytes}"
ttl = "1h"

[[rules]]
name = "bench-anonymous-reads"
action = "cache"
cache = "bench"
"""


def default_nolog_config(default_toml: str) -> str:
    """The embedded default with its access log off, nothing else changed."""
    text, count = re.subn(
        r"^access_log\s*=\s*true\b", "access_log = false", default_toml, count=1, flags=re.M
    )
    if count != 1:
        raise BenchError("the embedded default.toml has no `access_log = true` line to turn off")
    return "# the embedded default (proxy/default.toml), access_log off (bench/run)\n" + text


def nginx_config(prefix: Path, port: int, upstream_port: int, access_log: bool = False) -> str:
    text = (BENCH / "nginx.conf").read_text()
    text = text.replace("@PREFIX@", str(prefix)).replace("@LISTEN@", f"127.0.0.1:{port}")
    text = text.replace("@UPSTREAM@", f"127.0.0.1:{upstream_port}")
    text = text.replace(
        "@ACCESS_LOG@",
        f"access_log {prefix}/access.log combined buffer=64k flush=1s"
        if access_log
        else "access_log off",
    )
    if "@" in re.sub(r"#.*", "", text):
        raise BenchError("bench/nginx.conf has a placeholder bench/run does not fill")
    return text


# --- scenarios ------------------------------------------------------------------------------


PLAIN = ("sidecache", "nginx")  # the issue 3 pairs: benchmark config, no access logs
BROWSER = (
    "sidecache-default",
    "sidecache-default-nolog",
    "sidecache",
    "nginx-log",
    "nginx",
)
WORKERS = ("sidecache-default-w1", "sidecache-default-w2")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # hit | pass | miss
    path: str
    conns: int
    cookie: str | None = None
    direct: bool = False  # also run straight against the upstream (the pass baseline)
    targets: tuple[str, ...] = PLAIN
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (wrk -H)
    fresh: int = 0  # > 0: this many requests, each over a new connection (Connection: close)
    group: str = "plain"  # plain | browser | workers (--scenario GROUP)

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.cookie:
            headers["Cookie"] = self.cookie  # in the browser's Cookie header's place
        if self.fresh:
            headers["Connection"] = "close"
        return headers


SCENARIOS = (
    Scenario("hit-2k-c64", "hit 2 KB, 64 conns", "hit", "/2k/hit", 64),
    Scenario("hit-50k-c64", "hit 50 KB, 64 conns", "hit", "/50k/hit", 64),
    Scenario("hit-2k-c1", "hit 2 KB, 1 conn", "hit", "/2k/hit", 1),
    Scenario("hit-50k-c1", "hit 50 KB, 1 conn", "hit", "/50k/hit", 1),
    Scenario("pass-c64", "pass 2 KB, 64 conns", "pass", "/2k/pass", 64, "remember_token=x", True),
    Scenario("pass-c1", "pass 2 KB, 1 conn", "pass", "/2k/pass", 1, "remember_token=x", True),
    Scenario("miss-slow-c32", "miss+store, 250 ms upstream, 32 conns", "miss", "/slow/", 32),
    Scenario(
        "browser-hit-2k-c64",
        "browser hit 2 KB, 64 conns",
        "hit",
        "/2k/browser",
        64,
        BROWSER_COOKIE,
        targets=BROWSER,
        headers=BROWSER_HEADERS,
        group="browser",
    ),
    Scenario(
        "browser-hit-50k-c64",
        "browser hit 50 KB, 64 conns",
        "hit",
        "/50k/browser",
        64,
        BROWSER_COOKIE,
        targets=BROWSER,
        headers=BROWSER_HEADERS,
        group="browser",
    ),
    Scenario(
        "browser-pass-c64",
        "browser pass 2 KB (+ remember_token), 64 conns",
        "pass",
        "/2k/browser-pass",
        64,
        f"{BROWSER_COOKIE}; remember_token=x",
        targets=BROWSER,
        headers=BROWSER_HEADERS,
        group="browser",
    ),
    Scenario(
        "workers-hit-2k-c64",
        "workers: browser hit 2 KB, 64 conns",
        "hit",
        "/2k/workers",
        64,
        BROWSER_COOKIE,
        targets=WORKERS,
        headers=BROWSER_HEADERS,
        group="workers",
    ),
    Scenario(
        "workers-fresh-2k",
        f"workers: browser hit 2 KB, {FRESH_REQUESTS // 1000}k requests, a new connection each, "
        "64 at a time",
        "hit",
        "/2k/workers",
        64,
        BROWSER_COOKIE,
        targets=WORKERS,
        headers=BROWSER_HEADERS,
        fresh=FRESH_REQUESTS,
        group="workers",
    ),
)
GROUPS = ("plain", "browser", "workers")


@dataclass
class Result:
    scenario: Scenario
    target: str
    requests: int = 0
    seconds: float = 0.0
    p50_us: int = 0
    p99_us: int = 0
    cpu_us: float = 0.0
    upstream_hits: int = 0
    errors: int = 0
    non2xx: int = 0
    x_cache: str = ""
    server_use_pct: float = 0.0  # the server's CPU time, % of the run's wall time
    other_server_pct: float | None = None  # other processes on the server's CPU, % of the run
    wrk_use_pct: float = 0.0  # wrk's CPU time, % of the run
    log_lines: int | None = None  # access-log lines written during the run (None: not counted)
    worker_lines: dict[int, int] = field(default_factory=dict)  # worker=N -> lines
    processes: list[tuple[str, float]] = field(default_factory=list)  # (title, CPU s), workers
    runs: int = 1  # how many runs this is the median of (medians)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def medians(results: Sequence[Result]) -> dict[tuple[str, str], Result]:
    """One result per (scenario, server): with --repeat N, the median of its N runs (requests/s,
    latencies and CPU per request each the median of their own; the rest from the run whose
    CPU per request is the median), so one noisy run moves no figure."""
    runs: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        runs.setdefault((r.scenario.key, r.target), []).append(r)
    found: dict[tuple[str, str], Result] = {}
    for key, group in runs.items():
        if len(group) == 1:
            found[key] = group[0]
            continue
        middle = sorted(group, key=lambda r: r.cpu_us)[(len(group) - 1) // 2]
        rps = statistics.median(r.rps for r in group)
        found[key] = replace(
            middle,
            requests=round(rps * middle.seconds),
            p50_us=round(statistics.median(r.p50_us for r in group)),
            p99_us=round(statistics.median(r.p99_us for r in group)),
            cpu_us=statistics.median(r.cpu_us for r in group),
            runs=len(group),
        )
    return found


@dataclass
class Sample:
    wall: float
    server: dict[int, int]
    server_core: int
    titles: dict[int, str] = field(default_factory=dict)


@dataclass
class Flood:
    max_bytes: int
    requests: int = 0
    seconds: float = 0.0
    upstream_hits: int = 0
    capacity: int = 0
    rss_start_kib: int = 0
    rss_full_kib: int | None = None
    rss_end_kib: int = 0
    hwm_kib: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (s, upstream, rss)
    oldest: str = ""
    newest: str = ""
    errors: int = 0

    @property
    def growth_mib(self) -> float | None:
        if self.rss_full_kib is None:
            return None
        return (self.rss_end_kib - self.rss_full_kib) / 1024


# --- the run --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        # Root may raise the priority of what is measured above whatever else runs here.
        self.nice = 0 if args.no_renice or os.geteuid() != 0 else -10
        self.children = Children(self.nice)
        self.seconds = args.duration or (3.0 if args.quick else 10.0)
        self.warm_seconds = 1.0
        self.run_id = f"r{os.getpid()}x{int(time.time()) % 100000}"
        self.wrk_count = 0
        self.notes: list[str] = []
        self.checks: list[str] = []
        self.results: list[Result] = []
        self.flood: Flood | None = None
        self.servers: dict[str, Server] = {}
        self.scenarios: list[Scenario] = []
        self.sidecache: SidecacheCommand | None = None
        self.twin: SidecacheCommand | None = None  # --compare-builds: the other build
        self.builds: dict[str, str] = {}  # "" (the found sidecache) or "+pure"... -> its build
        self.nginx: str | None = None
        self.load_at_start = Path("/proc/loadavg").read_text().split()[0]
        self.source_state = source_state(args.git_ref)  # before sidecache loads its code
        cpus = sorted(os.sched_getaffinity(0))
        self.cpus = cpus
        if len(cpus) >= 2:
            self.server_cpus: set[int] | None = {cpus[0]}
            self.wrk_cpus: set[int] | None = {cpus[1]}
            self.upstream_cpus: set[int] | None = {cpus[2]} if len(cpus) >= 3 else {cpus[1]}
            os.sched_setaffinity(0, set(cpus[1:]))  # keep this script off the server's CPU
        else:
            self.server_cpus = self.wrk_cpus = self.upstream_cpus = None
            self.notes.append("one CPU: nothing pinned, wrk and the servers share it")
        # --workers N: "same" keeps the master and every worker on the server's CPU (what
        # a worker costs, not what it scales to); "spread" gives them every CPU but wrk's, or
        # with two CPUs both, wrk's included (see bench/README.md).
        self.workers_cpus = self.server_cpus
        if self.server_cpus and args.workers_cpus == "spread":
            assert self.wrk_cpus is not None
            spread = set(cpus) - self.wrk_cpus if len(cpus) >= 3 else set(cpus)
            self.workers_cpus = spread

    # -- setup

    def setup(self) -> None:
        args = self.args
        self.wrk = find_wrk(not args.no_install)
        self.want = ["sidecache", "nginx"] if args.only is None else [args.only]
        self.nginx = find_nginx(not args.no_install) if "nginx" in self.want else None
        if "nginx" in self.want and self.nginx is None:
            self.notes.append(
                "nginx not found and not installable (apt-get install nginx-light, as root): "
                "sidecache only, no ratios"
            )
            say(self.notes[-1])
            self.want.remove("nginx")
        if not self.want:
            raise BenchError("nothing to measure")
        self.scenarios = self.select_scenarios()
        if "sidecache" in self.want:
            self.sidecache = find_sidecache(args.sidecache, args.git_ref, self.tmp)
            if not self.sidecache.version.startswith("sidecache"):
                raise BenchError(
                    f"`{shlex.join(self.sidecache.argv)} --version` fails "
                    f"({self.sidecache.origin}):\n{self.sidecache.run('--version')[-2000:]}"
                )
            self.builds[""] = self.sidecache.build
            if any(s.group == "workers" for s in self.scenarios) and not (
                self.sidecache.has_workers()
            ):
                self.notes.append(
                    "workers scenarios skipped: `sidecache run --help` lists no --workers "
                    f"({self.sidecache.version}; the measured code has no worker processes)"
                )
                say(self.notes[-1])
                self.scenarios = [s for s in self.scenarios if s.group != "workers"]
            if args.compare_builds and any(s.group == "browser" for s in self.scenarios):
                signal.alarm(2 * BUILD_BUDGET_S + 60)  # wheel + install, each capped
                self.twin = other_build(self.sidecache, args.git_ref, self.tmp)
                build = self.twin.build
                if build == self.sidecache.build:
                    raise BenchError(f"--compare-builds: both builds are {build}")
                self.builds[f"+{build}"] = build
                signal.alarm(TOTAL_BUDGET_S)  # the build had its own time limit
        if not self.scenarios:
            raise BenchError("no scenario left to run")
        self.start_upstream()
        needed = dict.fromkeys(k for s in self.scenarios for k in self.targets_of(s))
        for key in needed:
            if key != "direct":
                self.servers[key] = self.start_server(self.target(key))

    def select_scenarios(self) -> list[Scenario]:
        """--scenario KEY or GROUP (repeatable), less those with no target left."""
        asked = self.args.scenario or []
        chosen = [s for s in SCENARIOS if not asked or s.key in asked or s.group in asked]
        return [s for s in chosen if any(self.wanted(k) for k in s.targets)]

    def wanted(self, key: str) -> bool:
        target = TARGETS[base_key(key)]
        if target.family != "direct" and target.family not in self.want:
            return False
        return not self.args.target or base_key(key) in self.args.target

    def targets_of(self, scenario: Scenario) -> list[str]:
        """The target keys a scenario runs against, the other build's twins included."""
        keys: list[str] = []
        for key in scenario.targets:
            if not self.wanted(key):
                continue
            keys.append(key)
            twin = next((suffix for suffix in self.builds if suffix), None)
            if twin and scenario.group == "browser" and TARGETS[key].family == "sidecache":
                keys.append(key + twin)
        if scenario.direct:
            keys.append("direct")
        return keys

    def target(self, key: str) -> Target:
        base = TARGETS[base_key(key)]
        return twin_of(base, key.split("+", 1)[1]) if "+" in key else base

    def build_of(self, key: str) -> str:
        """pure | compiled | unknown: the build a sidecache target ran."""
        return self.builds.get(key[key.index("+") :] if "+" in key else "", "unknown")

    def start_server(self, target: Target) -> Server:
        if target.family == "nginx":
            return self.start_nginx(target)
        return self.start_sidecache(target, target.key, "1GiB", 1_000_000)

    def start_upstream(self) -> None:
        port = free_port()
        log = self.tmp / "upstream.log"
        proc = self.children.start(
            "upstream",
            [sys.executable, str(BENCH / "upstream.py"), str(port)],
            log,
            cpus=self.upstream_cpus,
        )
        wait_ready(proc, port, "/__stats", "bench/upstream.py", log)
        self.upstream = Server(TARGETS["direct"], port, proc, log, cpus=self.server_cpus)

    def upstream_served(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=5)
        try:
            conn.request("GET", "/__stats")
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return int(data["served"])

    def start_sidecache(self, target: Target, name: str, max_bytes: str, items: int) -> Server:
        port = free_port()
        log = self.tmp / f"{name}.log"
        cmd = self.twin if target.twin else self.sidecache
        assert cmd is not None
        upstream = f"http://127.0.0.1:{self.upstream.port}"
        # The default config as a user runs it: `sidecache --upstream URL --listen ADDR
        # --ttl 1h`; the bench config is a file of its own (sidecache_config).
        flags = ["--listen", f"127.0.0.1:{port}", "--upstream", upstream, "--ttl", "1h"]
        config = self.tmp / f"{name}.toml"
        if target.config == "bench":
            config.write_text(sidecache_config(port, self.upstream.port, max_bytes, items))
            argv = [*cmd.argv, "--config", str(config)]
        elif target.config == "default-nolog":
            config.write_text(default_nolog_config(cmd.default_toml()))
            argv = [*cmd.argv, "--config", str(config), *flags]
        else:
            argv = [*cmd.argv, *flags]
        if target.workers is not None:
            argv += ["--workers", str(target.workers)]
        argv += ["--log-level", "INFO"]
        tap = LogTap(self.args.access_log_sink, log) if target.log else None
        cpus = self.workers_cpus if target.workers is not None else self.server_cpus
        # No SIDECACHE_* from this shell (SIDECACHE_WORKERS, SIDECACHE_TTL, ...): the target
        # says what runs, and "the default config" means the default.
        env = {k: v for k, v in cmd.env.items() if not k.startswith("SIDECACHE_")}
        proc = self.children.start(
            name,
            argv,
            log,
            cpus=cpus,
            env=env,
            cwd=cmd.cwd,
            stdout=tap.stdout() if tap else None,
        )
        if tap:
            tap.started()
        wait_ready(proc, port, "/2k/ready", name, log)
        server = Server(target, port, proc, log, tap, cpus)
        if target.workers and target.workers > 1:
            self.wait_workers(server, target.workers)
        return server

    def wait_workers(self, server: Server, count: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = children_of(server.proc.pid)
            if len(kids) >= count:
                say(f"  {server.name}: " + ", ".join(process_title(pid) for pid in sorted(kids)))
                return
            time.sleep(0.1)
        raise BenchError(f"{server.name}: {count} worker processes expected; log {server.log}")

    def start_nginx(self, target: Target) -> Server:
        assert self.nginx is not None
        prefix = self.tmp / target.key
        prefix.mkdir(exist_ok=True)  # started again by --repeat: its cache stays
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, port, self.upstream.port, target.log))
        log = self.tmp / f"{target.key}.out"
        argv = [
            self.nginx,
            "-c",
            str(conf),
            "-p",
            f"{prefix}/",
            "-e",
            str(prefix / "error.log"),
            "-g",
            "daemon off;",
        ]
        test = subprocess.run([*argv[:-2], "-t"], capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            raise BenchError(f"nginx -t failed:\n{test.stderr}")
        proc = self.children.start(target.key, argv, log, cpus=self.server_cpus)
        wait_ready(proc, port, "/2k/ready", target.key, prefix / "error.log")
        tap = LogTap("file", prefix / "access.log", b"\n") if target.log else None
        return Server(target, port, proc, prefix / "error.log", tap, self.server_cpus)

    # -- wrk

    def run_wrk(
        self,
        port: int,
        path: str,
        conns: int,
        seconds: float,
        headers: dict[str, str] | None = None,
        unique_prefix: str | None = None,
        poll: Callable[[], bool] | None = None,
        limit: int = 0,
    ) -> dict[str, float]:
        """wrk against 127.0.0.1:`port`; with `limit`, it stops after that many responses
        (wrk/count.lua), `seconds` being then only a cap."""
        self.wrk_count += 1
        script = "unique.lua" if unique_prefix else "count.lua" if limit else "report.lua"
        argv = [
            self.wrk,
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(BENCH / "wrk" / script),
        ]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(f"http://127.0.0.1:{port}{'' if unique_prefix else path}")
        if unique_prefix:
            argv += ["--", unique_prefix]
        elif limit:
            argv += ["--", str(limit)]
        out = self.tmp / f"wrk-{self.wrk_count:03d}.txt"
        out.write_text(shlex.join(argv) + "\n")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = self.children.start("wrk", argv, out, cpus=self.wrk_cpus)

        def counted() -> bool:  # count.lua's line: wrk has its responses and waits for SIGINT
            return b"BENCHCOUNT done" in out.read_bytes()

        if limit:
            poll = counted
        deadline = time.monotonic() + seconds + 30
        interrupted = False
        while proc.poll() is None:
            if time.monotonic() > deadline:
                self.children.stop(proc, signal.SIGKILL)
                raise BenchError(f"wrk did not finish in time: {out}")
            if poll is not None and not interrupted and poll():
                os.kill(proc.pid, signal.SIGINT)  # wrk stops and reports what it did
                interrupted = True
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=(0.02 if limit else 0.2) if poll else 1.0)
        self.children.stop(proc)
        text = out.read_text(errors="replace")
        found = re.search(r"^BENCHJSON (\{.*\})$", text, re.M)
        if proc.returncode != 0 or found is None:
            raise BenchError(f"wrk failed (exit {proc.returncode}), output {out}:\n{text[-2000:]}")
        data: dict[str, float] = json.loads(found.group(1))
        done = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the one child reaped since
        data["wrk_cpu_s"] = done.ru_utime + done.ru_stime - usage.ru_utime - usage.ru_stime
        return data

    # -- one measurement

    def measure(self, scenario: Scenario, server: Server) -> Result:
        result = Result(scenario, server.name)
        headers = scenario.request_headers()
        if scenario.kind == "miss":
            # A fresh key twice: MISS then HIT says responses are stored.
            probe = f"{scenario.path}{self.run_id}-probe-{server.name}"
            first = http_get(server.port, probe)[1].get("x-cache", "-")
            second = http_get(server.port, probe)[1].get("x-cache", "-")
            result.x_cache = f"{first}, then {second}"
        else:
            status, _, _ = http_get(server.port, scenario.path, headers)  # fills the cache
            if status != 200:
                raise BenchError(f"{server.name} {scenario.path}: status {status}")
            # With workers, each has its own cache: the warm-up's connections fill them all,
            # and only then can a probe on a new connection expect a HIT from any of them.
            self.run_wrk(server.port, scenario.path, scenario.conns, self.warm_seconds, headers)
            status, got, _ = http_get(server.port, scenario.path, headers)
            result.x_cache = got.get("x-cache", "-") if server.family != "direct" else "-"
            if status != 200:
                raise BenchError(f"{server.name} {scenario.path}: status {status}")
            time.sleep(0.3)  # what the warm-up left in flight reaches the upstream's counter now
        served = self.upstream_served()
        mark = server.tap.mark() if server.tap and server.tap.countable else None
        before = self.sample(server)
        unique = f"{scenario.path}{self.run_id}-{server.name}-" if scenario.kind == "miss" else None
        data = self.run_wrk(
            server.port,
            scenario.path,
            scenario.conns,
            60.0 if scenario.fresh else self.seconds,
            headers,
            unique,
            limit=scenario.fresh,
        )
        after = self.sample(server)
        time.sleep(0.3)  # requests wrk left in flight reach the upstream's counter
        result.upstream_hits = self.upstream_served() - served
        result.requests = int(data["requests"])
        result.seconds = data["duration_us"] / 1e6
        result.p50_us, result.p99_us = int(data["p50_us"]), int(data["p99_us"])
        result.errors = int(data["connect"] + data["read"] + data["write"] + data["timeout"])
        result.non2xx = int(data["status"])
        if server.tap and mark is not None:
            # A buffered log (nginx's flush=1s) writes its last lines a little later.
            deadline = time.monotonic() + 2.5
            lines, workers = server.tap.since(mark)
            while lines < result.requests and time.monotonic() < deadline:
                time.sleep(0.1)
                lines, workers = server.tap.since(mark)
            result.log_lines, result.worker_lines = lines, workers
        wall = after.wall - before.wall
        spent = ticks_delta(before.server, after.server) / CLK_TCK
        if result.requests:
            result.cpu_us = spent * 1e6 / result.requests
        result.server_use_pct = 100 * spent / wall
        if server.cpus and self.wrk_cpus and not server.cpus & self.wrk_cpus:
            # Busy time of the server's CPUs that was not the server: other processes' load.
            other = (after.server_core - before.server_core) / CLK_TCK - spent
            result.other_server_pct = max(0.0, 100 * other / wall)
        if server.target.workers:
            result.processes = [
                (after.titles.get(pid, str(pid)), (t - before.server.get(pid, 0)) / CLK_TCK)
                for pid, t in sorted(after.server.items())
            ]
        result.wrk_use_pct = 100 * data["wrk_cpu_s"] / wall
        self.check(result, server)
        return result

    def sample(self, server: Server) -> Sample:
        pids = server.pids()
        return Sample(
            wall=time.monotonic(),
            server=ticks_of(pids),
            server_core=sum(cpu_busy_ticks(cpu) for cpu in server.cpus or ()),
            titles={pid: process_title(pid) for pid in pids} if server.target.workers else {},
        )

    def check(self, r: Result, server: Server) -> None:
        where = f"{r.scenario.key} / {r.target}"
        if r.errors or r.non2xx:
            self.checks.append(f"{where}: {r.errors} socket errors, {r.non2xx} non-2xx answers")
        if r.requests == 0:
            self.checks.append(f"{where}: no request completed")
            return
        busy = r.scenario.kind != "miss"  # at 125 requests/s a neighbour matters little
        if busy and (r.other_server_pct or 0) > 10:
            self.checks.append(
                f"{where}: other processes used {r.other_server_pct:.0f}% of the server's CPU "
                "during the run (a noisy machine: compare CPU per request, or repeat)"
            )
        if r.scenario.conns > 1 and r.wrk_use_pct > 90 and r.server_use_pct < 90:
            self.checks.append(
                f"{where}: wrk used {r.wrk_use_pct:.0f}% of its CPU and the server "
                f"{r.server_use_pct:.0f}%: requests/s is the load generator's limit here"
            )
        if r.scenario.kind == "hit" and r.upstream_hits:
            self.checks.append(f"{where}: {r.upstream_hits} upstream hits on a warm hit path")
        if r.scenario.kind == "hit" and r.x_cache.upper() != "HIT":
            self.checks.append(f"{where}: warm probe answered X-Cache {r.x_cache!r}, not HIT")
        passed = r.x_cache.upper() in ("PASS", "BYPASS")  # nginx says BYPASS
        if r.scenario.kind == "pass" and server.family != "direct" and not passed:
            self.checks.append(f"{where}: probe answered X-Cache {r.x_cache!r}, not a pass")
        if r.scenario.kind in ("pass", "miss"):
            slack = r.scenario.conns + 2
            if not r.requests <= r.upstream_hits <= r.requests + slack:
                self.checks.append(
                    f"{where}: {r.upstream_hits} upstream hits for {r.requests} requests "
                    f"(expected one per request, up to {slack} more in flight)"
                )
        if r.scenario.kind == "miss" and not r.x_cache.upper().endswith("HIT"):
            self.checks.append(f"{where}: a missed key was not stored (X-Cache {r.x_cache})")
        if r.log_lines is not None and r.log_lines < r.requests:
            self.checks.append(
                f"{where}: the access log has {r.log_lines} lines for {r.requests} requests"
            )
        workers = server.target.workers or 0
        if workers > 1 and r.log_lines is not None and len(r.worker_lines) < workers:
            self.checks.append(
                f"{where}: only worker(s) {sorted(r.worker_lines) or 'none'} wrote access-log "
                f"lines (of {workers}): no worker=N field, or a worker that served nothing"
            )

    # -- scenarios

    def run_scenarios(self) -> None:
        for turn in range(self.args.repeat):
            if turn:
                self.restart_servers()
            for number, scenario in enumerate(self.scenarios):
                self.run_scenario(scenario, number + turn)

    def restart_servers(self) -> None:
        """Each server again, as a new process (--repeat): a process's own memory layout
        (addresses, hash seeds, what shares a cache line) moves its CPU per request by several
        percent for as long as it runs, so medians over runs of one process keep that offset."""
        for key, server in list(self.servers.items()):
            self.children.stop(server.proc)
            self.servers[key] = self.start_server(server.target)

    def run_scenario(self, scenario: Scenario, number: int) -> None:
        """One run of `scenario` on each of its servers, in turn; an odd `number` runs them in
        the reverse order (so no server always goes first, nor always right after another)."""
        keys = self.targets_of(scenario)
        servers = [k for k in keys if k != "direct"]
        if number % 2:
            servers.reverse()
        targets = [self.servers[k] for k in servers]
        if "direct" in keys:
            targets.append(self.upstream)
        for server in targets:
            what = f"{FRESH_REQUESTS} requests" if scenario.fresh else f"{self.seconds:g} s"
            say(f"{scenario.title}: {server.name} ({what})")
            if server.family == "direct" and self.server_cpus:
                os.sched_setaffinity(self.upstream.proc.pid, self.server_cpus)
            try:
                result = self.measure(scenario, server)
            finally:
                if server.family == "direct" and self.upstream_cpus:
                    os.sched_setaffinity(self.upstream.proc.pid, self.upstream_cpus)
            self.results.append(result)
            share = worker_share(result)
            say(
                f"  {result.rps:,.0f} req/s, p50 {ms(result.p50_us)}, p99 "
                f"{ms(result.p99_us)}, {result.cpu_us:.1f} µs CPU/req, "
                f"{result.upstream_hits} upstream hits, X-Cache {result.x_cache}"
                + ("" if result.log_lines is None else f", {result.log_lines} log lines")
                + (f", {share}" if share else "")
            )

    def run_flood(self) -> None:
        quick = self.args.quick
        flood = Flood(FLOOD_MAX_BYTES)
        # An entry: body + stored headers + the store's per-entry overhead (~300 bytes).
        flood.capacity = FLOOD_MAX_BYTES // (FLOOD_BODY + 300)
        target = flood.capacity * (3 if quick else 6)
        cap_seconds = 20.0 if quick else 60.0
        say(
            f"unique-key flood: sidecache with max_bytes 32 MiB, ~{flood.capacity} entries of "
            f"8 KiB fit; sending {target} unique keys (at most {cap_seconds:g} s)"
        )
        server = self.start_sidecache(TARGETS["sidecache"], "sidecache-flood", "32MiB", 1_000_000)
        pid = server.proc.pid
        flood.rss_start_kib = status_kib(pid, "VmRSS")
        start_served = self.upstream_served()
        started = time.monotonic()

        def poll() -> bool:
            done = self.upstream_served() - start_served
            rss = status_kib(pid, "VmRSS")
            elapsed = time.monotonic() - started
            flood.samples.append((elapsed, done, rss))
            if flood.rss_full_kib is None and done >= 1.5 * flood.capacity:
                flood.rss_full_kib = rss
            return done >= target or elapsed >= cap_seconds

        prefix = f"/flood/{self.run_id}-"
        data = self.run_wrk(server.port, "", 64, cap_seconds + 5, None, prefix, poll)
        time.sleep(0.3)
        flood.requests = int(data["requests"])
        flood.seconds = data["duration_us"] / 1e6
        flood.errors = int(
            data["connect"] + data["read"] + data["write"] + data["timeout"] + data["status"]
        )
        flood.upstream_hits = self.upstream_served() - start_served
        flood.rss_end_kib = status_kib(pid, "VmRSS")
        flood.hwm_kib = status_kib(pid, "VmHWM")
        # wrk numbers its keys prefix + "1-" + counter: the first must be gone, a late one kept.
        flood.oldest = http_get(server.port, f"{prefix}1-1")[1].get("x-cache", "-")
        late = max(1, flood.requests - 100)
        flood.newest = http_get(server.port, f"{prefix}1-{late}")[1].get("x-cache", "-")
        self.flood = flood
        self.children.stop(server.proc)
        self.scan_log("sidecache-flood", server.log)
        if flood.errors:
            self.checks.append(f"flood: {flood.errors} socket errors or non-2xx answers")
        if flood.upstream_hits < 2 * flood.capacity:
            self.checks.append(
                f"flood: only {flood.upstream_hits} keys sent, the cache did not "
                "fill twice (raise the time cap)"
            )
        say(
            f"  {flood.requests} requests, RSS {flood.rss_start_kib // 1024} → "
            f"{flood.rss_end_kib // 1024} MiB, peak {flood.hwm_kib // 1024} MiB"
        )

    def scan_log(self, name: str, path: Path) -> None:
        """Error lines in a server's log (read line by line: with --access-log-sink file it
        holds the access log too)."""
        if name.startswith("sidecache"):
            pattern = re.compile(r"Traceback|ERROR|Error|Exception")
        else:
            pattern = re.compile(r"\[(error|crit|alert|emerg)\]")
        count, first = 0, ""
        try:
            with open(path, errors="replace") as lines:
                for line in lines:
                    if pattern.search(line):
                        count += 1
                        first = first or line.rstrip()
        except OSError:
            return
        if count:
            self.checks.append(f"{name} log: {count} error lines, first: {first[:200]}")

    def stop_servers(self) -> None:
        for name, server in list(self.servers.items()):
            self.children.stop(server.proc)
            self.scan_log(name, server.log)


# --- report ---------------------------------------------------------------------------------


def ms(us: float) -> str:
    return f"{us / 1000:.3f} ms" if us < 10_000 else f"{us / 1000:.1f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def source_state(ref: str | None = None) -> tuple[str, str]:
    """(short commit of `ref` or HEAD, `git status` of proxy/ unless `ref`); read-only (no
    index refresh is written)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", ref or "HEAD"], capture_output=True, text=True, env=env
    ).stdout.strip()
    if ref:
        return commit or "?", ""
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=all", "--", "proxy"],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    return commit or "?", dirty


def code_of(cmd: SidecacheCommand) -> str:
    """Where `cmd`'s interpreter imports the proxy package from."""
    return (
        subprocess.run(
            [cmd.python, "-c", "import proxy, sys; print(proxy.__file__)"],
            capture_output=True,
            text=True,
            env=cmd.env,
            cwd=cmd.cwd or "/",
        ).stdout.strip()
        or "?"
    )


SINKS = {
    "pipe": "stdout into a pipe bench/run drains (as under systemd or a container runtime; "
    "the reader runs on wrk's CPU)",
    "file": "stdout appended to a file in the run's temporary directory (like nginx's log)",
    "null": "stdout to /dev/null (the write calls without a reader or a file)",
}


def machine_info(bench: Bench) -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit, dirty = bench.source_state
    if bench.source_state != source_state(bench.args.git_ref):
        bench.checks.append("the sidecache commit or proxy/ changed during the run")
    cmd = bench.sidecache
    if cmd is None:
        return [
            f"- machine: {os.cpu_count()} CPUs, {model}, kernel {platform.release()}",
            f"- commit {commit}; nginx only",
        ]
    tree = (
        "the commit"
        if bench.args.git_ref
        else (
            "the working tree, with uncommitted changes in proxy/"
            if dirty
            else "the working tree (clean)"
        )
    )
    pinning = (
        f"server under test on CPU {min(bench.server_cpus)}, wrk on CPU {min(bench.wrk_cpus)}, "
        f"upstream on CPU {min(bench.upstream_cpus)} (moved to the server's CPU for direct runs)"
        if bench.server_cpus and bench.wrk_cpus and bench.upstream_cpus
        else "none (one CPU)"
    )
    if bench.workers_cpus and any(s.group == "workers" for s in bench.scenarios):
        pinning += (
            f"; --workers runs: master and workers on CPU(s) "
            f"{','.join(map(str, sorted(bench.workers_cpus)))} (--workers-cpus "
            f"{bench.args.workers_cpus})"
        )
    lines = [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(bench.cpus)}), {model}, "
        f"kernel {platform.release()}, load average at start {bench.load_at_start}",
        f"- sidecache: commit {commit} ({bench.args.git_ref or 'HEAD'}), measuring {tree}; "
        f"`{shlex.join(cmd.argv)}` ({cmd.version}, "
        f"{version_line([cmd.python, '--version'])}, code from {code_of(cmd)})",
        f"- sidecache build: **{bench.builds.get('', '?')}** (`sidecache --version`: "
        f"{cmd.version}"
        + (
            ", which does not say: a version before the compiled build, pure)"
            if bench.builds.get("") == "unknown"
            else ")"
        ),
    ]
    if bench.twin:
        lines.append(
            f"- the other build (--compare-builds, targets `…+{bench.twin.build}`): "
            f"**{bench.twin.build}**, {bench.twin.origin} (`{bench.twin.version}`, code from "
            f"{code_of(bench.twin)})"
        )
    if any(bench.target(k).log and bench.target(k).family == "sidecache" for k in bench.servers):
        sink = SINKS[bench.args.access_log_sink]
        lines.append(f"- sidecache's access log (targets with the log on): {sink}")
    lines += [
        f"- tools: {version_line([bench.wrk, '-v'])}"
        + (f"; {version_line([bench.nginx, '-v'])}" if bench.nginx else "; no nginx")
        + f"; harness {platform.python_implementation()} {platform.python_version()}",
        f"- pinning: {pinning}; "
        + (f"priority nice {bench.nice} for servers, upstream and wrk" if bench.nice else "nice 0"),
        f"- each run: wrk -t1, {bench.seconds:g} s after a {bench.warm_seconds:g} s warm-up; "
        + (
            "servers interleaved, order alternating per scenario"
            if len(bench.servers) > 1
            else f"{', '.join(bench.servers)} only"
        ),
    ]
    return lines


def short_title(title: str) -> str:
    """ "sidecache worker 2" -> "worker 2"; "sidecache master ..." -> "master"; a lone
    process (--workers 1) -> "process"."""
    found = re.search(r"worker \d+", title)
    return found.group(0) if found else "master" if "master" in title else "process"


def shares(r: Result) -> dict[str, float]:
    """Who served a run's requests, worker -> share: by the access log's worker=N field when
    it was counted, else by the worker processes' CPU time."""
    if r.worker_lines:
        lines = sum(r.worker_lines.values())
        return {f"worker {n}": c / lines for n, c in sorted(r.worker_lines.items())}
    workers = [(short_title(t), s) for t, s in r.processes if short_title(t).startswith("w")]
    seconds = sum(s for _, s in workers)
    return {name: s / seconds for name, s in workers} if seconds else {}


def worker_share(r: Result) -> str:
    found = shares(r)
    if not found:
        return ""
    how = "requests (access log)" if r.worker_lines else "CPU time (no access log counted)"
    return f"{how}: " + ", ".join(f"{name} {share:.0%}" for name, share in found.items())


def report(bench: Bench, command: str, started: float) -> str:
    now = datetime.datetime.now(datetime.UTC)
    out = [f"## {now:%Y-%m-%d %H:%M} UTC: `{command}`", ""]
    out += machine_info(bench)
    out.append(f"- wall time: {time.monotonic() - started:.0f} s")
    keys_seen = list(dict.fromkeys(r.target for r in bench.results))
    out += ["", "### Servers", ""]
    for key in keys_seen:
        target = bench.target(key)
        build = f" ({bench.build_of(key)} build)" if target.family == "sidecache" else ""
        out.append(f"- `{key}`{build}: {target.about}")
    out += ["", "### Scenarios", ""]
    if any(s.headers for s in bench.scenarios):
        out += [
            "Browser and workers scenarios send bench/profile_front.py's BROWSER headers (Host "
            "www.example.com, User-Agent, Accept, Accept-Encoding `gzip, deflate, br, zstd`, "
            f"Accept-Language, `Cookie: {BROWSER_COOKIE}`, Sec-Fetch-*, "
            "Upgrade-Insecure-Requests); the others wrk's Host only (and the pass cookie).",
            "",
        ]
    out += [
        "| scenario | server | requests/s | p50 | p99 | CPU µs/req | upstream hits | requests "
        "| errors | X-Cache | access-log lines | server CPU use | wrk CPU use "
        "| other load on server CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    by = medians(bench.results)
    for r in by.values():
        errors = f"{r.errors}" + (f" + {r.non2xx} non-2xx" if r.non2xx else "")
        other = "-" if r.other_server_pct is None else f"{r.other_server_pct:.0f}%"
        lines = "-" if r.log_lines is None else f"{r.log_lines:,}"
        out.append(
            f"| {r.scenario.title} | {r.target} | {r.rps:,.0f} | {ms(r.p50_us)} | {ms(r.p99_us)} "
            f"| {r.cpu_us:.1f} | {r.upstream_hits:,} | {r.requests:,} | {errors} | {r.x_cache} "
            f"| {lines} | {r.server_use_pct:.0f}% | {r.wrk_use_pct:.0f}% | {other} |"
        )
    out += runs_report(bench)
    out += ratios(bench, by)
    out += workers_report(bench, by)
    out += targets(bench, by)
    out += targets14(bench, by)
    if bench.flood:
        out += flood_report(bench.flood)
    out += ["", "### Checks", ""]
    out += [f"- {c}" for c in bench.checks] or [
        "- none failed: hits reached the upstream 0 times "
        "after warm-up, pass and miss once per request; every access log that was on and "
        "counted has a line per request; no error line in the sidecache or nginx logs"
    ]
    out += [f"- note: {n}" for n in bench.notes]
    return "\n".join(out) + "\n"


def runs_report(bench: Bench) -> list[str]:
    """With --repeat N: every run, in the order run (the table above has their medians)."""
    if bench.args.repeat < 2:
        return []
    out = [
        "",
        f"### Runs (--repeat {bench.args.repeat}; the other tables show their medians)",
        "",
        "| scenario | server | requests/s | p99 | CPU µs/req | other load on server CPU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in bench.results:
        other = "-" if r.other_server_pct is None else f"{r.other_server_pct:.0f}%"
        out.append(
            f"| {r.scenario.title} | {r.target} | {r.rps:,.0f} | {ms(r.p99_us)} "
            f"| {r.cpu_us:.1f} | {other} |"
        )
    return out


def ratios(bench: Bench, by: dict[tuple[str, str], Result]) -> list[str]:
    """Each sidecache target over the nginx with the same logging (log on: nginx-log, log
    off: nginx), scenario by scenario; the workers targets are compared in their own table."""
    rows = []
    for scenario in bench.scenarios:
        results = [r for r in by.values() if r.scenario.key == scenario.key]
        nginx = {r.target: r for r in results if bench.target(r.target).family == "nginx"}
        for s in results:
            target = bench.target(s.target)
            if target.family != "sidecache" or target.workers is not None:
                continue
            n = nginx.get("nginx-log" if target.log else "nginx")
            if n:
                rows.append(
                    f"| {scenario.title} | {s.target} | {n.target} | {ratio(s.rps, n.rps)} | "
                    f"{ratio(s.cpu_us, n.cpu_us)} | {ratio(s.p99_us, n.p99_us)} |"
                )
    if not rows:
        return []
    return [
        "",
        "### sidecache / nginx (same run)",
        "",
        "Each sidecache against the nginx that logs as it does: access log on against "
        "`nginx-log`, off against `nginx`.",
        "",
        "| scenario | sidecache | nginx | requests/s | CPU per request | p99 |",
        "|---|---|---|---:|---:|---:|",
        *rows,
    ]


def workers_report(bench: Bench, by: dict[tuple[str, str], Result]) -> list[str]:
    rows = []
    for r in by.values():
        target = bench.target(r.target)
        if target.workers is None:
            continue
        total = sum(s for _, s in r.processes)
        cpu = ", ".join(
            f"{short_title(t)} {s:.2f} s ({s / total:.0%})" for t, s in r.processes if total
        )
        rows.append(
            f"| {r.scenario.title} | {target.workers} | {r.rps:,.0f} | {r.cpu_us:.1f} | "
            f"{ms(r.p99_us)} | {worker_share(r) or '-'} | {cpu or '-'} |"
        )
    if not rows:
        return []
    return [
        "",
        "### Workers (--workers 1 against --workers 2)",
        "",
        "CPU µs/hit: the master's and every worker's CPU time together, per request. Requests "
        "per worker: from the access log's `worker=N` field (CPU time per process when the log "
        "was not counted, and said so). See bench/README.md for what this machine's CPUs can "
        "show.",
        "",
        "| scenario | workers | requests/s | CPU µs/hit (all processes) | p99 "
        "| requests per worker | CPU per process |",
        "|---|---:|---:|---:|---:|---|---|",
        *rows,
    ]


def targets(bench: Bench, by: dict[tuple[str, str], Result]) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    def both(key: str) -> tuple[Result, Result] | None:
        s, n = by.get((key, "sidecache")), by.get((key, "nginx"))
        return (s, n) if s and n else None

    for key, label in (("hit-2k-c64", "hit 2 KB"), ("hit-50k-c64", "hit 50 KB")):
        if pair := both(key):
            s, n = pair
            rows.append(
                (f"{label}, 64 conns: requests/s ≥ nginx", ratio(s.rps, n.rps), s.rps >= n.rps)
            )
            rows.append(
                (
                    f"{label}, 64 conns: CPU per hit ≤ nginx",
                    ratio(s.cpu_us, n.cpu_us),
                    s.cpu_us <= n.cpu_us,
                )
            )
            rows.append(
                (
                    f"{label}, 64 conns: p99 ≤ 1.5x nginx",
                    ratio(s.p99_us, n.p99_us),
                    s.p99_us <= 1.5 * n.p99_us,
                )
            )
    for key in ("pass-c64", "pass-c1", "miss-slow-c32"):
        if pair := both(key):
            s, n = pair
            rows.append(
                (
                    f"{s.scenario.title}: CPU per request ≤ 2x nginx",
                    ratio(s.cpu_us, n.cpu_us),
                    s.cpu_us <= 2 * n.cpu_us,
                )
            )
    direct = by.get(("pass-c1", "direct"))
    for name in ("sidecache", "nginx"):
        r = by.get(("pass-c1", name))
        if direct and r:
            added = (r.p50_us - direct.p50_us) / 1000
            rows.append(
                (
                    f"pass, 1 conn, {name}: added p50 over direct ≤ 0.3 ms",
                    f"{added:+.2f} ms",
                    added <= 0.3 if name == "sidecache" else None,
                )
            )
    if f := bench.flood:
        limit = (f.max_bytes + 60 * MIB) / 1024
        rows.append(
            (
                "flood: peak RSS ≤ max_bytes + 60 MiB",
                f"{f.hwm_kib / 1024:.1f} MiB (limit {limit / 1024:.0f} MiB)",
                f.hwm_kib <= limit,
            )
        )
        growth = f.growth_mib
        rows.append(
            (
                "flood: RSS flat once the cache is full",
                "not full" if growth is None else f"{growth:+.1f} MiB after full",
                None if growth is None else growth <= FLAT_MIB,
            )
        )
    if not rows:
        return []
    out = ["", "### Targets (issue 3)", "", "| target | measured | met |", "|---|---:|---|"]
    for label, value, met in rows:
        out.append(f"| {label} | {value} | {'yes' if met else 'no' if met is False else '-'} |")
    return out


def targets14(bench: Bench, by: dict[tuple[str, str], Result]) -> list[str]:
    """Issue 14's acceptance: the default config (access log on) with a browser's request
    against nginx as deployed (nginx-log), the log's cost, and the workers."""
    rows: list[tuple[str, str, bool | None]] = []
    for suffix, build in bench.builds.items():
        on, off = f"sidecache-default{suffix}", f"sidecache-default-nolog{suffix}"
        who = f"default config, {build}"
        for key, label in (
            ("browser-hit-2k-c64", "browser hit 2 KB"),
            ("browser-hit-50k-c64", "browser hit 50 KB"),
        ):
            s, n = by.get((key, on)), by.get((key, "nginx-log"))
            if s and n:
                rows.append(
                    (
                        f"{who}: {label}, 64 conns: requests/s ≥ 1.0x nginx-log",
                        ratio(s.rps, n.rps),
                        s.rps >= n.rps,
                    )
                )
                rows.append(
                    (
                        f"{who}: {label}, 64 conns: p99 ≤ 1.5x nginx-log",
                        ratio(s.p99_us, n.p99_us),
                        s.p99_us <= 1.5 * n.p99_us,
                    )
                )
                rows.append(
                    (
                        f"{who}: {label}, 64 conns: CPU per hit / nginx-log (information)",
                        ratio(s.cpu_us, n.cpu_us),
                        None,
                    )
                )
        s, n = by.get(("browser-pass-c64", on)), by.get(("browser-pass-c64", "nginx-log"))
        if s and n:
            rows.append(
                (
                    f"{who}: browser pass, 64 conns: CPU per request ≤ 2x nginx-log",
                    ratio(s.cpu_us, n.cpu_us),
                    s.cpu_us <= 2 * n.cpu_us,
                )
            )
        for key, label in (
            ("browser-hit-2k-c64", "browser hit 2 KB"),
            ("browser-hit-50k-c64", "browser hit 50 KB"),
            ("browser-pass-c64", "browser pass"),
        ):
            s, n = by.get((key, on)), by.get((key, off))
            if s and n:
                added = s.cpu_us - n.cpu_us
                rows.append(
                    (
                        f"{who}: {label}, access log on - off ≤ 1 µs CPU per request",
                        f"{added:+.2f} µs ({s.cpu_us:.1f} - {n.cpu_us:.1f})",
                        added <= 1.0,
                    )
                )
    for key, label in (("browser-hit-2k-c64", "browser hit 2 KB"),):
        s, n = by.get((key, "nginx-log")), by.get((key, "nginx"))
        if s and n:
            rows.append(
                (
                    f"nginx: {label}, access log on - off (information)",
                    f"{s.cpu_us - n.cpu_us:+.2f} µs ({s.cpu_us:.1f} - {n.cpu_us:.1f})",
                    None,
                )
            )
    two = by.get(("workers-fresh-2k", "sidecache-default-w2"))
    if two and (found := shares(two)):
        how = "access log" if two.worker_lines else "CPU time: the access log was not counted"
        total = sum(two.worker_lines.values()) if two.worker_lines else two.requests
        rows.append(
            (
                f"--workers 2: each worker ≥ 35% of {FRESH_REQUESTS:,} requests over fresh "
                f"connections (by {how})",
                ", ".join(f"{name} {share:.0%}" for name, share in found.items())
                + f" of {total:,}",
                len(found) >= 2 and min(found.values()) >= 0.35,
            )
        )
    one, two = (by.get(("workers-hit-2k-c64", f"sidecache-default-w{n}")) for n in (1, 2))
    if one and two:
        rows.append(
            (
                "--workers 2: total CPU per hit ≤ 1.1x --workers 1 (browser hit 2 KB, 64 conns)",
                f"{ratio(two.cpu_us, one.cpu_us)} ({two.cpu_us:.1f} / {one.cpu_us:.1f} µs)",
                two.cpu_us <= 1.1 * one.cpu_us,
            )
        )
        rows.append(
            (
                "--workers 2 / --workers 1: requests/s (information; see bench/README.md)",
                ratio(two.rps, one.rps),
                None,
            )
        )
        if found := shares(two):
            rows.append(
                (
                    "--workers 2, 64 kept-alive connections: share per worker (information)",
                    ", ".join(f"{name} {share:.0%}" for name, share in found.items()),
                    None,
                )
            )
    if not rows:
        return []
    out = ["", "### Targets (issue 14)", "", "| target | measured | met |", "|---|---:|---|"]
    for label, value, met in rows:
        out.append(f"| {label} | {value} | {'yes' if met else 'no' if met is False else '-'} |")
    return out


def flood_report(f: Flood) -> list[str]:
    full = f"{f.rss_full_kib / 1024:.1f} MiB" if f.rss_full_kib else "never full"
    out = [
        "",
        "### Memory: unique-key flood (sidecache only)",
        "",
        f"max_bytes 32 MiB, items 1,000,000, 8 KiB pages, 64 connections: {f.requests:,} requests "
        f"in {f.seconds:.1f} s ({f.requests / f.seconds if f.seconds else 0:,.0f}/s), "
        f"{f.upstream_hits:,} upstream hits, ~{f.capacity:,} entries fit "
        f"(filled {f.upstream_hits / f.capacity:.1f}x). After the flood the first key answered "
        f"X-Cache {f.oldest} (evicted) and a late one {f.newest}.",
        "",
        "| RSS at start | RSS when full (1.5x capacity sent) | RSS at end | peak (VmHWM) "
        "| growth after full |",
        "|---:|---:|---:|---:|---:|",
        f"| {f.rss_start_kib / 1024:.1f} MiB | {full} | {f.rss_end_kib / 1024:.1f} MiB | "
        f"{f.hwm_kib / 1024:.1f} MiB | "
        + ("-" if f.growth_mib is None else f"{f.growth_mib:+.1f} MiB")
        + " |",
        "",
        "RSS over the flood (keys sent → RSS): "
        + ", ".join(f"{n:,} → {rss / 1024:.0f} MiB" for _, n, rss in thin(f.samples, 10)),
    ]
    return out


def thin(samples: list[tuple[float, int, int]], count: int) -> list[tuple[float, int, int]]:
    if len(samples) <= count:
        return samples
    step = (len(samples) - 1) / (count - 1)
    return [samples[round(i * step)] for i in range(count)]


# --- main -----------------------------------------------------------------------------------


def positive(text: str) -> int:
    """--repeat's value: a whole number, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark sidecache against nginx proxy_cache (the scenarios of issues 3 "
        "and 14).",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument(
        "--repeat",
        type=positive,
        default=1,
        metavar="N",
        help="run every scenario N times (each server started again every time, their order "
        "alternating) and report the medians (and each run); a difference of a microsecond "
        "needs N of 6 or more",
    )
    parser.add_argument("--duration", type=float, help="seconds per run (overrides --quick)")
    parser.add_argument("--only", choices=("sidecache", "nginx"), help="measure one server")
    parser.add_argument("--out", help="append a dated markdown section to this file")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*GROUPS, *(s.key for s in SCENARIOS)],
        metavar="KEY|GROUP",
        help="run only these (repeatable): a scenario's key, or a group: "
        + ", ".join(GROUPS)
        + "; keys: "
        + ", ".join(s.key for s in SCENARIOS),
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=list(TARGETS),
        metavar="KEY",
        help="run only these servers (repeatable): " + ", ".join(TARGETS),
    )
    parser.add_argument(
        "--access-log-sink",
        choices=tuple(SINKS),
        default="pipe",
        help="where sidecache's access log (stdout) goes when it is on: a pipe this script "
        "drains (default, as under systemd or docker), a file, or /dev/null",
    )
    parser.add_argument(
        "--compare-builds",
        action="store_true",
        help="also run the browser scenarios with the other build of the same source: the "
        "compiled one (SIDECACHE_COMPILE=1 pip wheel into the temporary directory; needs gcc) "
        "when the sidecache measured is pure, else the pure one",
    )
    parser.add_argument(
        "--workers-cpus",
        choices=("same", "spread"),
        default="same",
        help="--workers runs: master and workers on the server's CPU (same, the default: what "
        "workers cost) or on every CPU but wrk's, both CPUs on a 2-CPU machine (spread)",
    )
    parser.add_argument("--no-flood", action="store_true", help="skip the memory flood")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    parser.add_argument("--sidecache", help="command that runs sidecache (default: from PATH)")
    parser.add_argument("--git-ref", help="measure proxy/ as committed at this ref (git archive)")
    parser.add_argument(
        "--no-renice", action="store_true", help="as root, do not run what is measured at nice -10"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    command = shlex.join([os.environ.get("BENCH_ARGV0", "bench/run"), *argv])
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sidecache-bench-"))
    tmp.chmod(0o755)  # nginx's worker (nobody) must reach its cache and temp directories

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeBudgetExceeded(f"the run took longer than {TOTAL_BUDGET_S * args.repeat} s")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_BUDGET_S * args.repeat)
    bench = Bench(args, tmp)
    status = 1
    try:
        bench.setup()
        bench.run_scenarios()
        if not args.no_flood and bench.sidecache and bench.wanted("sidecache"):
            bench.run_flood()
        bench.stop_servers()
        status = 0
    except BenchError as exc:
        say(f"failed: {exc}")
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    except SystemExit as exc:  # SIGTERM or SIGHUP
        say("stopped by a signal")
        status = int(exc.code or 1)
    finally:
        signal.alarm(0)
        bench.children.stop_all()
    if status:
        say(f"every child stopped; logs kept in {tmp}")
        return status
    text = report(bench, command, started)
    print(text)
    if args.out:
        out = Path(args.out)
        if not out.exists():
            out.write_text(
                "# sidecache benchmark results\n\nWritten by `bench/run --out` "
                "(see bench/README.md); newest last.\n"
            )
        with out.open("a") as f:
            f.write("\n" + text)
        say(f"appended to {out}")
    if args.keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
