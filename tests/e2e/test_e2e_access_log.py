"""The buffered access log of the real `sidecache` command (issue 14): a file that logrotate
renames and SIGUSR1 reopens, every line written by the time SIGTERM's stop ends and after a
SIGHUP, stdout read as a pipe while the process runs, two processes sharing one pipe without
mixing their lines, and `check` and a refused start naming the file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from pathlib import Path

from sidecache_e2e import (
    Sidecache,
    fetch,
    free_port,
    new_session,
    run_sidecache,
    sidecache_command,
    wait_for_port,
)

WITHIN = 10.0  # seconds: the deadline of every wait below
ACCESS_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO sidecache\.access 127\.0\.0\.1 "
    r'"GET (?P<target>/\S*) HTTP/1\.1" 200 (?:MISS|HIT) \d+ \d+us rule=\S+ detail=\S+'
)


def config(access_log: Path | bool) -> str:
    where = f'"{access_log}"' if isinstance(access_log, Path) else str(access_log).lower()
    return (
        f'[server]\naccess_log = {where}\n\n[caches.default]\nttl = "1h"\n\n'
        '[[rules]]\nname = "all"\n'
    )


def targets(path: Path) -> list[str]:
    """The targets of the access-log lines in `path`, each line checked whole."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ACCESS_LINE.fullmatch(line)
        assert match is not None, line
        found.append(match["target"])
    return found


async def until(check, what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WITHIN} s: {what}")
        await asyncio.sleep(0.02)


async def get_all(client, proxy: Sidecache, paths: list[str]) -> None:
    for path in paths:
        reply = await fetch(client, "GET", proxy.base_url + path)
        assert reply.status == 200


async def test_sigusr1_reopens_the_renamed_file_and_sigterm_writes_every_line(
    upstream, client, start_sidecache, tmp_path
):
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    proxy = await start_sidecache(upstream=upstream.url, config=config(log))
    before = [f"/before/{n}" for n in range(5)]
    after = [f"/after/{n}" for n in range(7)]

    await get_all(client, proxy, before)
    await until(lambda: targets(log) == before, "the first lines in the file")
    log.rename(rotated)  # logrotate, then its postrotate: kill -USR1
    proxy.process.send_signal(signal.SIGUSR1)
    await until(log.exists, "the file opened again by its name")
    await get_all(client, proxy, after)
    assert await proxy.stop() == 0  # SIGTERM right after the last answer: the stop writes it

    assert targets(rotated) == before
    assert targets(log) == after
    assert proxy.access_lines() == []  # the file, not stdout
    assert any(f"access log reopened: {log}" in line for line in proxy.stdout)


async def test_sighup_writes_the_lines_so_far_and_can_move_the_log(
    upstream, client, start_sidecache, tmp_path
):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    proxy = await start_sidecache(upstream=upstream.url, config=config(first))
    config_file = tmp_path / "sidecache-0.toml"

    await get_all(client, proxy, ["/a", "/b"])
    config_file.write_text(config(second), encoding="utf-8")
    proxy.process.send_signal(signal.SIGHUP)
    await proxy.wait_for_line("reloaded ", within=WITHIN)
    await until(lambda: targets(first) == ["/a", "/b"], "the lines before the reload")
    await get_all(client, proxy, ["/c"])
    await until(lambda: targets(second) == ["/c"], "the line after it, in the new file")
    assert await proxy.stop() == 0

    assert (targets(first), targets(second)) == (["/a", "/b"], ["/c"])


async def test_stdout_as_a_pipe_gets_every_line_while_the_process_runs(
    upstream, client, start_sidecache
):
    proxy = await start_sidecache(upstream=upstream.url, config=config(True))
    paths = [f"/p/{n % 50}?{'q' * (1 + n % 300)}" for n in range(600)]

    await get_all(client, proxy, paths)
    lines = await proxy.wait_for_lines(" sidecache.access ", len(paths), within=WITHIN)

    assert proxy.process.returncode is None  # read from the pipe, not flushed by a stop
    matches = [ACCESS_LINE.fullmatch(line.rstrip("\n")) for line in lines]
    assert [m["target"] for m in matches if m] == paths


async def test_two_processes_on_one_pipe_never_mix_their_lines(upstream, tmp_path):
    # Workers will share stdout: a batch is written in pieces of whole lines, each at most
    # PIPE_BUF bytes, which a pipe writes whole; longer pieces could interleave mid-line.
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=read_to_end, args=(read_end, received), daemon=True)
    reader.start()
    ports = [free_port(), free_port()]
    config_file = tmp_path / "site.toml"
    config_file.write_text(config(True), encoding="utf-8")
    processes = []
    try:
        for port in ports:
            processes.append(await start_on(port, config_file, upstream.url, write_end))
        os.close(write_end)
        for port in ports:
            await wait_for_port(port, within=WITHIN)
        await asyncio.gather(*(flood(port, name) for port, name in zip(ports, "ab", strict=True)))
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
            await asyncio.wait_for(process.wait(), WITHIN)
    await asyncio.to_thread(reader.join, WITHIN)

    lines = received.decode().splitlines()
    access = [line for line in lines if " sidecache.access " in line]
    assert all(ACCESS_LINE.fullmatch(line) for line in access), "a line was cut or mixed"
    for name in "ab":
        assert sum(f'"GET /{name}?' in line for line in access) == FLOOD
    assert [p.returncode for p in processes] == [0, 0]


async def start_on(port: int, config_file: Path, upstream: str, stdout: int):
    """`sidecache` on 127.0.0.1:`port` with `stdout` as its standard output."""
    command = sidecache_command(
        "--config", str(config_file), "--upstream", upstream, "--listen", f"127.0.0.1:{port}"
    )
    return await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=None
    )


FLOOD = 400  # requests to each process, with targets of 0.5 to 3 KB


async def flood(port: int, name: str) -> None:
    async with new_session() as session:
        for n in range(FLOOD):
            target = f"/{name}?" + "x" * (500 + (n * 997) % 2500)
            reply = await fetch(session, "GET", f"http://127.0.0.1:{port}{target}")
            assert reply.status == 200


def read_to_end(fd: int, into: bytearray) -> None:
    """A slow reader (as a busy log collector is): the pipe stays full, so both processes'
    writes wait for room, which is when a write over PIPE_BUF is split and others get in."""
    try:
        while chunk := os.read(fd, 1000):
            into += chunk
            time.sleep(0.0002)
    finally:
        os.close(fd)


def test_check_says_where_the_access_log_goes(tmp_path):
    path = tmp_path / "site.toml"
    for where, shown in [
        (tmp_path / "access.log", f"access log: {tmp_path / 'access.log'} (SIGUSR1 reopens it)"),
        (True, "access log: stdout"),
        (False, "access log: off"),
    ]:
        path.write_text(config(where), encoding="utf-8")

        result = run_sidecache("check", str(path), cwd=tmp_path)

        assert (result.returncode, result.stderr) == (0, "")
        assert f"; {shown}; " in result.stdout


def test_a_file_that_cannot_be_opened_stops_the_start_with_one_line(upstream, tmp_path):
    path = tmp_path / "site.toml"
    unwritable = tmp_path / "no-such-directory" / "access.log"
    path.write_text(config(unwritable), encoding="utf-8")

    result = run_sidecache(
        "--config", str(path), "--upstream", upstream.url, "--listen", f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr == (
        f"sidecache: cannot start: cannot open the access log {unwritable} "
        "([server] access_log): no such file or directory\n"
    )
