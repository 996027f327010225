"""systemd integration of the real process (issue 6): sd_notify messages on a real
NOTIFY_SOCKET datagram socket, and requests served on a listening socket passed by socket
activation (LISTEN_FDS / LISTEN_PID), as systemd would pass it."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sidecache_e2e import Sidecache, fetch, free_port, spawn, wait_ready


def notify_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    return sock


async def spawn_activated(passed: socket.socket, args: list[str], cwd: Path) -> Sidecache:
    """`sidecache ARGS` started as systemd starts a socket-activated service: the listening
    socket `passed` at fd 3 (SD_LISTEN_FDS_START), LISTEN_PID the process that reads it (execv
    keeps the pid), then the real command."""
    fd, port = passed.fileno(), passed.getsockname()[1]
    argv = [sys.executable, "-m", "proxy", *args]
    launcher = (
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        f"os.close({fd})\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        f"os.execv(sys.executable, {argv!r})\n"
    )
    return await spawn(
        [],
        f"http://127.0.0.1:{port}",
        cwd=cwd,
        command=[sys.executable, "-c", launcher],
        pass_fds=[fd],
    )


async def messages(sock: socket.socket, count: int, within: float = 5.0) -> list[str]:
    loop = asyncio.get_running_loop()
    found: list[str] = []
    async with asyncio.timeout(within):
        while len(found) < count:
            found.append((await loop.sock_recv(sock, 4096)).decode())
    return found


async def test_notify_ready_reloading_and_stopping(upstream, client, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    listener = notify_socket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    port = free_port()
    proc = await spawn(
        ["--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", "--admin", ""],
        f"http://127.0.0.1:{port}",
        cwd=tmp_path,
    )
    try:
        await wait_ready(proc)
        ready = await messages(listener, 1)
        proc.process.send_signal(signal.SIGHUP)
        reload = await messages(listener, 2)
        proc.process.send_signal(signal.SIGTERM)
        stopping = await messages(listener, 1)
        code = await proc.wait_exit(5.0)
    finally:
        await proc.stop()
        listener.close()

    assert ready[0].startswith("READY=1\nSTATUS=serving on http://127.0.0.1:")
    assert f"MAINPID={proc.pid}" in ready[0]
    assert reload[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert reload[1].startswith("READY=1\nSTATUS=reloaded ")
    assert stopping == ["STOPPING=1"]
    assert code == 0


async def test_requests_are_served_on_a_socket_passed_by_systemd(upstream, client, tmp_path):
    passed = socket.socket()
    passed.bind(("127.0.0.1", 0))
    passed.listen(16)
    port = passed.getsockname()[1]
    proc = await spawn_activated(passed, ["--upstream", upstream.url, "--admin", ""], tmp_path)
    try:
        await wait_ready(proc)
        first = await fetch(client, "GET", f"http://127.0.0.1:{port}/")
        second = await fetch(client, "GET", f"http://127.0.0.1:{port}/")
    finally:
        await proc.stop()
        passed.close()

    assert (first.x_cache, second.x_cache) == ("MISS", "HIT")
    assert f"listening on http://127.0.0.1:{port}" in proc.output()
    assert "127.0.0.1:8080" not in proc.output()  # the config's listen address was not bound


ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
# Where the README's install steps put the command: a venv, since Debian 12's pip refuses to
# install into the system Python (PEP 668, externally-managed-environment).
INSTALLED = "/opt/sidecache/bin/sidecache"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_the_unit_files_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's sidecache command.
    command = shutil.which("sidecache") or f"{sys.executable} -m proxy"
    for unit in ("sidecache.service", "sidecache.socket"):
        text = (UNITS / unit).read_text(encoding="utf-8")
        (tmp_path / unit).write_text(text.replace(INSTALLED, command))
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "sidecache.socket"),
            str(tmp_path / "sidecache.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_the_service_unit_has_what_the_issue_asks():
    service = (UNITS / "sidecache.service").read_text(encoding="utf-8")
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
    ):
        assert line in service.splitlines(), line


def test_the_readme_installs_the_command_where_exec_start_runs_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    service = (UNITS / "sidecache.service").read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED} --config /etc/sidecache/sidecache.toml" in service
    assert "sudo python3 -m venv /opt/sidecache" in readme
    assert "sudo /opt/sidecache/bin/pip install ." in readme
    commands = [line.strip() for line in readme.splitlines()]
    assert not [line for line in commands if line.startswith("sudo pip ")]


def test_documentation_points_at_the_readme_the_install_steps_copy():
    service = (UNITS / "sidecache.service").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    urls = [line for line in service.splitlines() if line.startswith("Documentation=")]
    assert urls == ["Documentation=file:/opt/sidecache/share/doc/sidecache/README.md"]
    assert "README.md /opt/sidecache/share/doc/sidecache/README.md" in readme


def test_a_unix_socket_has_somewhere_writable_and_an_app_socket_a_group():
    # ProtectSystem=strict leaves no writable directory but the RuntimeDirectory; a
    # DynamicUser is in no group of the app's socket without SupplementaryGroups.
    service = (UNITS / "sidecache.service").read_text(encoding="utf-8")
    assert "RuntimeDirectory=sidecache" in service.splitlines()
    assert "unix:/run/sidecache/" in service
    assert "SupplementaryGroups=" in service
    assert "journalctl -u sidecache" in service


def test_the_socket_unit_says_it_listens_on_every_interface():
    socket_unit = (UNITS / "sidecache.socket").read_text(encoding="utf-8")
    assert "ListenStream=80" in socket_unit.splitlines()
    assert "every interface" in socket_unit
    assert "#   ListenStream=127.0.0.1:" in socket_unit
