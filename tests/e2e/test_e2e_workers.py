"""Worker processes (issue 14) of the real `sidecache` command: a master and `--workers 2`
sharing the listeners (TCP, a unix socket, a socket passed by systemd), a killed worker
replaced, SIGHUP and SIGTERM reaching every worker, systemd told READY once all serve.

Which worker served a request is read from the access log's `worker=N` field, the processes
from /proc (a worker is a child of the master whose title is `sidecache worker N`). Every
request here goes over a fresh connection, as the kernel spreads connections, not requests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sidecache_e2e import (
    Seen,
    Sidecache,
    fetch,
    free_port,
    new_session,
    parse_response,
    spawn,
    wait_ready,
)
from test_e2e_systemd import messages, notify_socket, spawn_activated

WORKER = re.compile(r" worker=(\d+)$")
CONCURRENCY = 32  # connections open at once while driving many requests


# --------------------------------------------------------------------------- helpers


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their titles (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            named = title(int(entry.name))
        except OSError:  # gone meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid
        if parent == pid:
            found[int(entry.name)] = named
    return found


def workers_of(proc: Sidecache) -> dict[int, int]:
    """Worker number → pid, for the master `proc`."""
    found = {}
    for pid, title in children(proc.pid).items():
        if match := re.fullmatch(r"sidecache worker (\d+)", title):
            found[int(match.group(1))] = pid
    return found


def title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def environment(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the state is another process's
            await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def get(port: int, path: str = "/", within: float = 10.0) -> tuple[int, dict[str, list[str]]]:
    """GET over a fresh TCP connection (Connection: close); status and headers."""
    request = f"GET {path} HTTP/1.1\r\nHost: w.test\r\nConnection: close\r\n\r\n".encode()
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    status, headers, _ = parse_response(raw)
    return status, headers


async def drive(count: int, request: Callable[[], Awaitable[object]]) -> list[object]:
    """`count` requests, CONCURRENCY at a time."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one() -> object:
        async with limit:
            return await request()

    return list(await asyncio.gather(*(one() for _ in range(count))))


def served_by(proc: Sidecache, lines: list[str] | None = None) -> collections.Counter[int]:
    """How many access-log lines each worker wrote."""
    counted: collections.Counter[int] = collections.Counter()
    for line in proc.access_lines() if lines is None else lines:
        if match := WORKER.search(line.rstrip("\n")):
            counted[int(match.group(1))] += 1
    return counted


async def until_both_served(proc: Sidecache, request: Callable[[], Awaitable[object]]) -> None:
    """Requests, a few at a time, until each of the two workers has served one (10 s at most)."""
    before = len(proc.access_lines())
    async with asyncio.timeout(10.0):
        while len(served_by(proc, proc.access_lines()[before:])) < 2:
            await drive(8, request)
            await asyncio.sleep(0.05)  # let the access lines arrive


# --------------------------------------------------------------------------- the tests


async def test_two_workers_share_10000_fresh_connections(upstream, client, start_sidecache):
    admin = free_port()
    proc = await start_sidecache(
        upstream=upstream.url,
        args=["--workers", "2", "--cache", "^/", "--admin", f"127.0.0.1:{admin}"],
    )
    port = int(proc.base_url.rsplit(":", 1)[1])
    workers = workers_of(proc)

    statuses = await drive(10_000, lambda: get(port, "/page"))
    lines = await proc.wait_for_lines(" sidecache.access ", 10_000, within=30.0)
    ready = await fetch(client, "GET", f"http://127.0.0.1:{admin}/ready")

    assert sorted(workers) == [1, 2]
    assert children(proc.pid) == {
        workers[1]: "sidecache worker 1",
        workers[2]: "sidecache worker 2",
    }
    assert title(proc.pid).startswith("sidecache master ")
    assert {status for status, _ in statuses} == {200}  # type: ignore[misc]
    shares = served_by(proc, lines)
    print(f"requests per worker: {dict(shares)}")
    assert sum(shares.values()) == 10_000
    assert min(shares[1], shares[2]) >= 3_500, shares  # each at least 35 %
    assert upstream.count("/page") == 2  # each worker has its own cache: one miss each
    assert ready.status == 200
    assert json.loads(ready.body)["workers"] == {"serving": 2, "wanted": 2}
    assert sum("listening on" in line for line in proc.stdout) == 1  # said once, by the master


async def test_a_killed_worker_is_replaced_and_serves_within_2_seconds(upstream, start_sidecache):
    proc = await start_sidecache(upstream=upstream.url, args=["--workers", "2"])
    port = int(proc.base_url.rsplit(":", 1)[1])
    before = workers_of(proc)
    lines_before = len(proc.access_lines())

    os.kill(before[2], signal.SIGKILL)
    killed = time.monotonic()
    requests: list[asyncio.Task[tuple[int, dict[str, list[str]]]]] = []
    replaced_at = None
    while time.monotonic() - killed < 2.0:
        requests.append(asyncio.create_task(get(port, f"/r{len(requests)}")))
        if served_by(proc, proc.access_lines()[lines_before:])[2]:
            replaced_at = time.monotonic() - killed
            break
        await asyncio.sleep(0.05)
    replies = await asyncio.gather(*requests)
    after = workers_of(proc)
    warning = await proc.wait_for_line("killed by signal SIGKILL", stderr=True)

    assert replaced_at is not None, f"worker 2 did not serve again within 2 s\n{proc.output()}"
    print(f"worker 2 served again {replaced_at:.2f} s after kill -9")
    assert after[2] != before[2] and after[1] == before[1]
    assert not alive(before[2])
    # No connection is lost: those that came to the dead worker's socket waited for the new one.
    assert [status for status, _ in replies] == [200] * len(replies)
    assert f"worker 2 (pid {before[2]}) killed by signal SIGKILL; starting it again in" in warning


async def test_workers_stop_by_themselves_when_the_master_is_killed(upstream, start_sidecache):
    proc = await start_sidecache(upstream=upstream.url, args=["--workers", "2"])
    pids = list(workers_of(proc).values())

    proc.process.kill()  # SIGKILL: the master cannot tell anyone
    await proc.wait_exit(5.0)
    await until(lambda: not any(alive(pid) for pid in pids), within=15.0)

    assert len(pids) == 2
    assert sum("the master is gone: this worker stops" in line for line in proc.stderr) == 2


def reloading_config(x_cache: bool, extra: str = "") -> str:
    return f'[server]\nx_cache = {str(x_cache).lower()}\n\n[[rules]]\npath = "^/"\n{extra}'


async def test_sighup_reaches_every_worker(upstream, start_sidecache, tmp_path):
    proc = await start_sidecache(
        upstream=upstream.url, config=reloading_config(True), args=["--workers", "2"]
    )
    port = int(proc.base_url.rsplit(":", 1)[1])
    path = tmp_path / "sidecache-0.toml"
    await until_both_served(proc, lambda: get(port))

    path.write_text(reloading_config(False), encoding="utf-8")
    proc.process.send_signal(signal.SIGHUP)
    await proc.wait_for_line("reloaded ")
    lines_before = len(proc.access_lines())
    replies = await drive(200, lambda: get(port))
    await proc.wait_for_lines(" sidecache.access ", lines_before + 200)

    assert all("x-cache" not in headers for _, headers in replies)  # type: ignore[misc]
    assert set(served_by(proc, proc.access_lines()[lines_before:])) == {1, 2}


async def test_an_invalid_config_on_sighup_keeps_every_worker_serving(
    upstream, start_sidecache, tmp_path
):
    proc = await start_sidecache(
        upstream=upstream.url, config=reloading_config(True), args=["--workers", "2"]
    )
    port = int(proc.base_url.rsplit(":", 1)[1])
    path = tmp_path / "sidecache-0.toml"

    path.write_text(reloading_config(False, 'ttl = "soon"\n'), encoding="utf-8")
    proc.process.send_signal(signal.SIGHUP)
    line = await proc.wait_for_line("reload failed", stderr=True)
    lines_before = len(proc.access_lines())
    replies = await drive(200, lambda: get(port))
    await proc.wait_for_lines(" sidecache.access ", lines_before + 200)

    assert "the running configuration stays" in line and "rules[1].ttl" in line
    assert sum("reload failed" in err for err in proc.stderr) == 1  # the master's, once
    assert all(headers["x-cache"] for _, headers in replies)  # type: ignore[misc]
    assert set(served_by(proc, proc.access_lines()[lines_before:])) == {1, 2}
    assert len(workers_of(proc)) == 2


async def test_sigterm_drains_every_worker_and_the_master_exits_0(upstream, start_sidecache):
    async def slow(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return web.Response(text="slow but whole")

    upstream.route("/slow", slow)
    proc = await start_sidecache(upstream=upstream.url, args=["--workers", "2"])
    port = int(proc.base_url.rsplit(":", 1)[1])
    pids = workers_of(proc)
    # 16 connections: the chance that all went to one worker is 2 in 65536.
    # Distinct targets: concurrent misses of one key would wait for one fill.
    pending = [asyncio.create_task(get(port, f"/slow?{n}")) for n in range(16)]
    await until(lambda: upstream.count() == 16)  # every request is with the upstream

    proc.process.send_signal(signal.SIGTERM)
    replies = await asyncio.gather(*pending)
    code = await proc.wait_exit(10.0)

    assert [status for status, _ in replies] == [200] * 16
    assert set(served_by(proc)) == {1, 2}  # both workers had requests in flight, and drained
    assert code == 0
    assert not [pid for pid in pids.values() if alive(pid)]
    assert any("requests in flight get 10s" in line for line in proc.stdout)


async def test_a_unix_socket_listener_is_served_by_every_worker(upstream, start_sidecache):
    with tempfile.TemporaryDirectory(prefix="sc-", dir="/tmp") as directory:
        path = f"{directory}/p.sock"
        proc = await start_sidecache(
            upstream=upstream.url, listen=f"unix:{path}", args=["--workers", "2"]
        )

        async def over_unix() -> int:
            connector = aiohttp.UnixConnector(path=path, force_close=True)
            async with new_session(connector) as session:
                return (await fetch(session, "GET", "http://w.test/")).status

        await until_both_served(proc, over_unix)

    assert f"listening on unix:{path}" in proc.output()
    assert {line.split()[4] for line in proc.access_lines()} == {"unix"}


# --------------------------------------------------------------------------- systemd


async def test_systemd_hears_the_master_only_ready_once_every_worker_serves(
    upstream, tmp_path, monkeypatch
):
    path = str(tmp_path / "notify.sock")
    listener = notify_socket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    port = free_port()
    proc = await spawn(
        ["--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--workers", "2"],
        f"http://127.0.0.1:{port}",
        cwd=tmp_path,
    )
    try:
        ready = await messages(listener, 1, within=15.0)
        await wait_ready(proc)
        environments = [environment(pid) for pid in workers_of(proc).values()]
        proc.process.send_signal(signal.SIGHUP)
        reload = await messages(listener, 2)
        proc.process.send_signal(signal.SIGTERM)
        stopping = await messages(listener, 1)
        code = await proc.wait_exit(10.0)
        with pytest.raises(BlockingIOError):  # nothing more: the workers never spoke
            listener.recv(4096)
    finally:
        await proc.stop()
        listener.close()

    log = [line for line in proc.stdout if " sidecache " in line]
    first_ready = next(i for i, line in enumerate(log) if " ready, upstream " in line)
    serving = [i for i, line in enumerate(log) if re.search(r"worker \d \(pid \d+\) serving", line)]
    assert len(serving) == 2 and max(serving) < first_ready  # READY follows both workers
    assert ready[0].startswith("READY=1\nSTATUS=serving on http://127.0.0.1:")
    assert "with 2 workers" in ready[0] and f"MAINPID={proc.pid}" in ready[0]
    assert len(environments) == 2 and not any(
        item.startswith(b"NOTIFY_SOCKET=") for env in environments for item in env
    )
    assert reload[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert reload[1].startswith("READY=1\nSTATUS=reloaded ")
    assert stopping == ["STOPPING=1"]
    assert code == 0


async def test_a_socket_passed_by_systemd_is_served_by_both_workers(upstream, client, tmp_path):
    passed = socket.socket()
    passed.bind(("127.0.0.1", 0))
    passed.listen(64)
    port = passed.getsockname()[1]
    proc = await spawn_activated(passed, ["--upstream", upstream.url, "--workers", "2"], tmp_path)
    try:
        await wait_ready(proc)
        await until_both_served(proc, lambda: get(port))
    finally:
        await proc.stop()
        passed.close()

    assert f"listening on http://127.0.0.1:{port}" in proc.output()
    assert "127.0.0.1:8080" not in proc.output()  # the config's listen address was not bound


async def test_sigusr1_to_the_master_reopens_every_workers_access_log(
    upstream, start_sidecache, tmp_path
):
    # One file, written by both workers (O_APPEND, whole lines); logrotate signals the master.
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    proc = await start_sidecache(
        upstream=upstream.url,
        config=reloading_config(True, extra="").replace(
            "[server]\n", f'[server]\naccess_log = "{log}"\n'
        ),
        args=["--workers", "2"],
    )
    port = int(proc.base_url.rsplit(":", 1)[1])

    def written(path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    async with asyncio.timeout(10.0):  # both workers have written to the first file
        while len(served_by(proc, written(log))) < 2:
            await drive(8, lambda: get(port, "/before"))
            await asyncio.sleep(0.3)  # batches are written within 0.2 s
    log.rename(rotated)
    proc.process.send_signal(signal.SIGUSR1)
    await until(lambda: sum("access log reopened" in line for line in proc.stdout) == 2)
    async with asyncio.timeout(10.0):
        while len(served_by(proc, written(log))) < 2:
            await drive(8, lambda: get(port, "/after"))
            await asyncio.sleep(0.3)
    assert await proc.stop() == 0

    before, after = written(rotated), written(log)
    assert before and all('"GET /before HTTP/1.1"' in line for line in before), before[:3]
    assert after and all('"GET /after HTTP/1.1"' in line for line in after), after[:3]
    assert set(served_by(proc, after)) == {1, 2}
    assert proc.access_lines() == []  # the file, not stdout
