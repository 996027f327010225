"""sidecache's benchmark (issue 3): sidecache and nginx proxy_cache side by side, in one run.

Run it through `bench/run` (see bench/README.md). Python 3.11 standard library only.

Each scenario is measured with wrk against sidecache and against nginx, interleaved (the order
alternates from one scenario to the next), with the server under test pinned to one CPU and wrk
to another. For every run: requests/s, p50 and p99 latency (wrk's own histogram, read by
wrk/report.lua), the server's CPU time per request (utime+stime from /proc/PID/stat, before and
after; for nginx master + worker + cache processes) and how many requests reached the upstream
(bench/upstream.py counts them). Then a unique-key flood against a sidecache with a small
max_bytes, sampling its RSS.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    ) -> subprocess.Popen[bytes]:
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
                stdout=out,
                stderr=subprocess.STDOUT,
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


def script_python(script: str) -> str:
    try:
        first = Path(script).read_bytes()[:200].split(b"\n", 1)[0].decode()
    except OSError:
        return sys.executable
    return first[2:].strip().split()[0] if first.startswith("#!") else sys.executable


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


# --- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str  # sidecache | nginx | direct
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        if self.name == "nginx":  # master + worker + cache manager/loader
            return [self.proc.pid, *children_of(self.proc.pid)]
        return [self.proc.pid]


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


def nginx_config(prefix: Path, port: int, upstream_port: int) -> str:
    text = (BENCH / "nginx.conf").read_text()
    text = text.replace("@PREFIX@", str(prefix)).replace("@LISTEN@", f"127.0.0.1:{port}")
    text = text.replace("@UPSTREAM@", f"127.0.0.1:{upstream_port}")
    if "@" in re.sub(r"#.*", "", text):
        raise BenchError("bench/nginx.conf has a placeholder bench/run does not fill")
    return text


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # hit | pass | miss
    path: str
    conns: int
    cookie: str | None = None
    direct: bool = False  # also run straight against the upstream (the pass baseline)


SCENARIOS = (
    Scenario("hit-2k-c64", "hit 2 KB, 64 conns", "hit", "/2k/hit", 64),
    Scenario("hit-50k-c64", "hit 50 KB, 64 conns", "hit", "/50k/hit", 64),
    Scenario("hit-2k-c1", "hit 2 KB, 1 conn", "hit", "/2k/hit", 1),
    Scenario("hit-50k-c1", "hit 50 KB, 1 conn", "hit", "/50k/hit", 1),
    Scenario("pass-c64", "pass 2 KB, 64 conns", "pass", "/2k/pass", 64, "remember_token=x", True),
    Scenario("pass-c1", "pass 2 KB, 1 conn", "pass", "/2k/pass", 1, "remember_token=x", True),
    Scenario("miss-slow-c32", "miss+store, 250 ms upstream, 32 conns", "miss", "/slow/", 32),
)


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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Sample:
    wall: float
    server: dict[int, int]
    server_core: int


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
        self.sidecache: SidecacheCommand | None = None
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
        if "sidecache" in self.want:
            self.sidecache = find_sidecache(args.sidecache, args.git_ref, self.tmp)
        self.start_upstream()
        if "sidecache" in self.want:
            self.servers["sidecache"] = self.start_sidecache("sidecache", "1GiB", 1_000_000)
        if "nginx" in self.want:
            self.servers["nginx"] = self.start_nginx()

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
        self.upstream = Server("direct", port, proc, log)

    def upstream_served(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=5)
        try:
            conn.request("GET", "/__stats")
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return int(data["served"])

    def start_sidecache(self, name: str, max_bytes: str, items: int) -> Server:
        port = free_port()
        config = self.tmp / f"{name}.toml"
        config.write_text(sidecache_config(port, self.upstream.port, max_bytes, items))
        log = self.tmp / f"{name}.log"
        cmd = self.sidecache
        assert cmd is not None
        proc = self.children.start(
            name,
            [*cmd.argv, "--config", str(config), "--log-level", "INFO"],
            log,
            cpus=self.server_cpus,
            env=cmd.env,
            cwd=cmd.cwd,
        )
        wait_ready(proc, port, "/2k/ready", name, log)
        return Server("sidecache", port, proc, log)

    def start_nginx(self) -> Server:
        assert self.nginx is not None
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, port, self.upstream.port))
        log = self.tmp / "nginx.out"
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
        proc = self.children.start("nginx", argv, log, cpus=self.server_cpus)
        wait_ready(proc, port, "/2k/ready", "nginx", prefix / "error.log")
        return Server("nginx", port, proc, prefix / "error.log")

    # -- wrk

    def run_wrk(
        self,
        port: int,
        path: str,
        conns: int,
        seconds: float,
        cookie: str | None = None,
        unique_prefix: str | None = None,
        poll: Callable[[], bool] | None = None,
    ) -> dict[str, float]:
        self.wrk_count += 1
        script = BENCH / "wrk" / ("unique.lua" if unique_prefix else "report.lua")
        argv = [
            self.wrk,
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(script),
        ]
        if cookie:
            argv += ["-H", f"Cookie: {cookie}"]
        argv.append(f"http://127.0.0.1:{port}{'' if unique_prefix else path}")
        if unique_prefix:
            argv += ["--", unique_prefix]
        out = self.tmp / f"wrk-{self.wrk_count:03d}.txt"
        out.write_text(shlex.join(argv) + "\n")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = self.children.start("wrk", argv, out, cpus=self.wrk_cpus)
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
                proc.wait(timeout=0.2 if poll else 1.0)
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
        headers = {"Cookie": scenario.cookie} if scenario.cookie else {}
        if scenario.kind == "miss":
            # A fresh key twice: MISS then HIT says responses are stored.
            probe = f"{scenario.path}{self.run_id}-probe-{server.name}"
            first = http_get(server.port, probe)[1].get("x-cache", "-")
            second = http_get(server.port, probe)[1].get("x-cache", "-")
            result.x_cache = f"{first}, then {second}"
        else:
            http_get(server.port, scenario.path, headers)  # fills the cache on a hit path
            status, got, _ = http_get(server.port, scenario.path, headers)
            result.x_cache = got.get("x-cache", "-") if server.name != "direct" else "-"
            if status != 200:
                raise BenchError(f"{server.name} {scenario.path}: status {status}")
            self.run_wrk(
                server.port, scenario.path, scenario.conns, self.warm_seconds, scenario.cookie
            )
            time.sleep(0.3)  # what the warm-up left in flight reaches the upstream's counter now
        served = self.upstream_served()
        before = self.sample(server)
        unique = f"{scenario.path}{self.run_id}-{server.name}-" if scenario.kind == "miss" else None
        data = self.run_wrk(
            server.port, scenario.path, scenario.conns, self.seconds, scenario.cookie, unique
        )
        after = self.sample(server)
        time.sleep(0.3)  # requests wrk left in flight reach the upstream's counter
        result.upstream_hits = self.upstream_served() - served
        result.requests = int(data["requests"])
        result.seconds = data["duration_us"] / 1e6
        result.p50_us, result.p99_us = int(data["p50_us"]), int(data["p99_us"])
        result.errors = int(data["connect"] + data["read"] + data["write"] + data["timeout"])
        result.non2xx = int(data["status"])
        wall = after.wall - before.wall
        spent = ticks_delta(before.server, after.server) / CLK_TCK
        if result.requests:
            result.cpu_us = spent * 1e6 / result.requests
        result.server_use_pct = 100 * spent / wall
        if self.server_cpus:
            # Busy time of the server's CPU that was not the server: other processes' load.
            other = (after.server_core - before.server_core) / CLK_TCK - spent
            result.other_server_pct = max(0.0, 100 * other / wall)
        result.wrk_use_pct = 100 * data["wrk_cpu_s"] / wall
        self.check(result)
        return result

    def sample(self, server: Server) -> Sample:
        return Sample(
            wall=time.monotonic(),
            server=ticks_of(server.pids()),
            server_core=cpu_busy_ticks(min(self.server_cpus)) if self.server_cpus else 0,
        )

    def check(self, r: Result) -> None:
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
        if r.scenario.kind in ("pass", "miss"):
            slack = r.scenario.conns + 2
            if not r.requests <= r.upstream_hits <= r.requests + slack:
                self.checks.append(
                    f"{where}: {r.upstream_hits} upstream hits for {r.requests} requests "
                    f"(expected one per request, up to {slack} more in flight)"
                )
        if r.scenario.kind == "miss" and not r.x_cache.upper().endswith("HIT"):
            self.checks.append(f"{where}: a missed key was not stored (X-Cache {r.x_cache})")

    # -- scenarios

    def run_scenarios(self) -> None:
        selected = [s for s in SCENARIOS if not self.args.scenario or s.key in self.args.scenario]
        for number, scenario in enumerate(selected):
            order = [n for n in ("sidecache", "nginx") if n in self.servers]
            if number % 2:
                order.reverse()
            targets = [self.servers[n] for n in order]
            if scenario.direct:
                targets.append(self.upstream)
            for server in targets:
                say(f"{scenario.title}: {server.name} ({self.seconds:g} s)")
                if server.name == "direct" and self.server_cpus:
                    os.sched_setaffinity(self.upstream.proc.pid, self.server_cpus)
                try:
                    result = self.measure(scenario, server)
                finally:
                    if server.name == "direct" and self.upstream_cpus:
                        os.sched_setaffinity(self.upstream.proc.pid, self.upstream_cpus)
                self.results.append(result)
                say(
                    f"  {result.rps:,.0f} req/s, p50 {ms(result.p50_us)}, p99 "
                    f"{ms(result.p99_us)}, {result.cpu_us:.1f} µs CPU/req, "
                    f"{result.upstream_hits} upstream hits"
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
        server = self.start_sidecache("sidecache-flood", "32MiB", 1_000_000)
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
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return
        if name.startswith("sidecache"):
            bad = [ln for ln in lines if re.search(r"Traceback|ERROR|Error|Exception", ln)]
        else:
            bad = [ln for ln in lines if re.search(r"\[(error|crit|alert|emerg)\]", ln)]
        if bad:
            self.checks.append(f"{name} log: {len(bad)} error lines, first: {bad[0][:200]}")

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
    where = subprocess.run(
        [cmd.python, "-c", "import proxy, sys; print(proxy.__file__)"],
        capture_output=True,
        text=True,
        env=cmd.env,
        cwd=cmd.cwd or "/",
    ).stdout.strip()
    pinning = (
        f"server under test on CPU {min(bench.server_cpus)}, wrk on CPU {min(bench.wrk_cpus)}, "
        f"upstream on CPU {min(bench.upstream_cpus)} (moved to the server's CPU for direct runs)"
        if bench.server_cpus and bench.wrk_cpus and bench.upstream_cpus
        else "none (one CPU)"
    )
    lines = [
        f"- machine: {os.cpu_count()} CPUs (nproc {len(bench.cpus)}), {model}, "
        f"kernel {platform.release()}, load average at start {bench.load_at_start}",
        f"- sidecache: commit {commit} ({bench.args.git_ref or 'HEAD'}), measuring {tree}; "
        f"`{shlex.join(cmd.argv)}` ({version_line([*cmd.argv, '--version'])}, "
        f"{version_line([cmd.python, '--version'])}, code from {where or '?'})",
        f"- tools: {version_line([bench.wrk, '-v'])}"
        + (f"; {version_line([bench.nginx, '-v'])}" if bench.nginx else "; no nginx")
        + f"; harness {platform.python_implementation()} {platform.python_version()}",
        f"- pinning: {pinning}; "
        + (f"priority nice {bench.nice} for servers, upstream and wrk" if bench.nice else "nice 0"),
        f"- each run: wrk -t1, {bench.seconds:g} s after a {bench.warm_seconds:g} s warm-up; "
        + (
            "sidecache and nginx interleaved, order alternating per scenario"
            if len(bench.servers) > 1
            else f"{', '.join(bench.servers)} only"
        ),
    ]
    return lines


def report(bench: Bench, command: str, started: float) -> str:
    now = datetime.datetime.now(datetime.UTC)
    out = [f"## {now:%Y-%m-%d %H:%M} UTC: `{command}`", ""]
    out += machine_info(bench)
    out.append(f"- wall time: {time.monotonic() - started:.0f} s")
    out += [
        "",
        "### Scenarios",
        "",
        "| scenario | server | requests/s | p50 | p99 | CPU µs/req | upstream hits | requests "
        "| errors | X-Cache | server CPU use | wrk CPU use | other load on server CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in bench.results:
        errors = f"{r.errors}" + (f" + {r.non2xx} non-2xx" if r.non2xx else "")
        other = "-" if r.other_server_pct is None else f"{r.other_server_pct:.0f}%"
        out.append(
            f"| {r.scenario.title} | {r.target} | {r.rps:,.0f} | {ms(r.p50_us)} | {ms(r.p99_us)} "
            f"| {r.cpu_us:.1f} | {r.upstream_hits:,} | {r.requests:,} | {errors} | {r.x_cache} "
            f"| {r.server_use_pct:.0f}% | {r.wrk_use_pct:.0f}% | {other} |"
        )
    by = {(r.scenario.key, r.target): r for r in bench.results}
    keys = list(dict.fromkeys(r.scenario.key for r in bench.results))
    if "nginx" in bench.servers and "sidecache" in bench.servers:
        out += [
            "",
            "### sidecache / nginx (same run)",
            "",
            "| scenario | requests/s | CPU per request | p99 |",
            "|---|---:|---:|---:|",
        ]
        for key in keys:
            s, n = by.get((key, "sidecache")), by.get((key, "nginx"))
            if s and n:
                out.append(
                    f"| {s.scenario.title} | {ratio(s.rps, n.rps)} | "
                    f"{ratio(s.cpu_us, n.cpu_us)} | {ratio(s.p99_us, n.p99_us)} |"
                )
    out += targets(bench, by)
    if bench.flood:
        out += flood_report(bench.flood)
    out += ["", "### Checks", ""]
    out += [f"- {c}" for c in bench.checks] or [
        "- none failed: hits reached the upstream 0 times "
        "after warm-up, pass and miss once per request; "
        "no error line in the sidecache or nginx logs"
    ]
    out += [f"- note: {n}" for n in bench.notes]
    return "\n".join(out) + "\n"


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


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark sidecache against nginx proxy_cache (issue 3 scenarios).",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10 s")
    parser.add_argument("--duration", type=float, help="seconds per run (overrides --quick)")
    parser.add_argument("--only", choices=("sidecache", "nginx"), help="measure one server")
    parser.add_argument("--out", help="append a dated markdown section to this file")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.key for s in SCENARIOS],
        help="run only these (repeatable)",
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
        raise TimeBudgetExceeded(f"the run took longer than {TOTAL_BUDGET_S} s")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_BUDGET_S)
    bench = Bench(args, tmp)
    status = 1
    try:
        bench.setup()
        bench.run_scenarios()
        if not args.no_flood and "sidecache" in bench.servers:
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
