"""What an operator trips over on the command line (issue 12): the config file named as an
argument, its precedence over SIDECACHE_CONFIG, each command's own help, and the log (levels,
stdout and stderr, the access log's own switch). The real `sidecache` command."""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import pytest
from sidecache_e2e import (
    fetch,
    free_port,
    run_sidecache,
    spawn,
    wait_for_port,
    wait_ready,
)

GOOD = '[caches.default]\nttl = "1h"\n\n[[rules]]\nname = "only-a"\npath = "^/a$"\n'
BROKEN = '[caches.default]\n[[rules]]\npath = "^/(b$"\n'


run = run_sidecache


def files(tmp_path: Path) -> tuple[Path, Path]:
    good, broken = tmp_path / "good.toml", tmp_path / "broken.toml"
    good.write_text(GOOD)
    broken.write_text(BROKEN)
    return good, broken


# --------------------------------------------------------------------------- the config file


@pytest.mark.parametrize("command", [["run"], ["dev"], []], ids=["run", "dev", "no-command"])
def test_a_broken_file_named_as_an_argument_stops_the_start(tmp_path, command):
    # Point 3: `sidecache run FILE` and `sidecache dev FILE` served the embedded default.
    _, broken = files(tmp_path)

    result = run(*command, str(broken), "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith(
        f"sidecache: config error: {broken} + command line: rules[1].path: invalid regex"
    )


async def test_run_serves_with_the_file_named_as_an_argument(upstream, client, tmp_path):
    good, _ = files(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["run", str(good), "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}"]
    proc = await spawn(args, base, cwd=tmp_path)
    try:
        await wait_ready(proc)
        a = [await fetch(client, "GET", base + "/a") for _ in range(2)]
        b = await fetch(client, "GET", base + "/b")
    finally:
        await proc.stop()

    assert [r.x_cache for r in a] == ["MISS", "HIT"]  # the file's one rule
    assert b.cache_status == 'sidecache; fwd=bypass; detail="no-rule"'


def test_two_different_config_files_are_refused(tmp_path):
    good, broken = files(tmp_path)

    result = run("check", str(good), "--config", str(broken), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == (
        f"sidecache: config error: command line: CONFIG: two config files ({good} and "
        f"--config {broken}): name one\n"
    )


@pytest.mark.parametrize("named", ["argument", "flag"])
def test_the_file_named_to_check_wins_over_sidecache_config(tmp_path, named):
    # Point 4: `check new.toml` reported the environment's file as valid.
    good, broken = files(tmp_path)
    given = [str(broken)] if named == "argument" else ["--config", str(broken)]

    result = run("check", *given, cwd=tmp_path, env={"SIDECACHE_CONFIG": str(good)})
    fallback = run("check", cwd=tmp_path, env={"SIDECACHE_CONFIG": str(good)})

    assert result.returncode == 2
    assert f"config error: {broken}: rules[1].path: invalid regex" in result.stderr
    assert fallback.returncode == 0
    assert fallback.stdout.splitlines()[0] == f"config: {good}"


async def test_the_file_named_to_run_wins_over_sidecache_config(upstream, client, tmp_path):
    good, broken = files(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [str(good), "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}"]
    proc = await spawn(args, base, cwd=tmp_path, extra_env={"SIDECACHE_CONFIG": str(broken)})
    try:
        await wait_ready(proc)
        reply = await fetch(client, "GET", base + "/a")
    finally:
        await proc.stop()

    assert reply.x_cache == "MISS"


# --------------------------------------------------------------------------- help


def test_each_command_has_its_own_help(tmp_path):
    # Point 14: run, check, demo and dev --help all printed the same text.
    helps = {name: run(name, "--help", cwd=tmp_path) for name in ("run", "check", "dev", "demo")}
    top = run("--help", cwd=tmp_path)

    assert all(result.returncode == 0 for result in [*helps.values(), top])
    texts = {name: result.stdout for name, result in helps.items()}
    assert len(set(texts.values())) == 4
    for name, text in texts.items():
        assert text.startswith(f"usage: sidecache {name} "), text
    assert "--demo-port" in texts["demo"] and "--upstream URL" not in texts["demo"]
    assert "--log-level" not in texts["check"]
    assert "embedded default" in texts["check"]
    assert all("--admin" in text for text in texts.values())
    assert all(name in top.stdout for name in texts)


def test_demo_refuses_an_upstream(tmp_path):
    result = run("demo", "--upstream", "http://127.0.0.1:5000", cwd=tmp_path)

    assert result.returncode == 2
    assert "unrecognized arguments: --upstream" in result.stderr


# --------------------------------------------------------------------------- the log

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<name>\S+) (?P<m>.*)")


async def test_log_lines_carry_their_level_and_warnings_go_to_stderr(
    upstream, client, tmp_path, start_sidecache
):
    # Point 15: no level on the lines, errors on stdout, the name doubled.
    config = tmp_path / "sidecache-0.toml"
    proxy = await start_sidecache(upstream=upstream.url, config=GOOD)
    await fetch(client, "GET", proxy.base_url + "/a")
    await proxy.wait_for_line(" sidecache.access ")
    config.write_text(BROKEN)
    proxy.process.send_signal(signal.SIGHUP)
    await proxy.wait_for_line("reload failed", stderr=True)
    await proxy.stop()

    out = [LINE.fullmatch(line.rstrip("\n")) for line in proxy.stdout]
    err = [LINE.fullmatch(line.rstrip("\n")) for line in proxy.stderr]
    assert all(out) and all(err), proxy.output()
    ready = next(m for m in out if m and "ready" in m["m"])
    assert (ready["level"], ready["name"]) == ("INFO", "sidecache")
    # "0.1.0 (pure Python) ready, upstream ...", or "(compiled)" for the optional build
    assert re.match(r"0\.1\.0 \((pure Python|compiled)\) ready, upstream ", ready["m"])
    assert {m["level"] for m in out if m} == {"INFO"}
    assert any(m["name"] == "sidecache.access" for m in out if m)
    assert [(m["level"], m["name"]) for m in err if m] == [("ERROR", "sidecache")]


@pytest.mark.parametrize("how", ["flag", "environment"])
async def test_log_level_warning_keeps_the_access_log(upstream, client, tmp_path, how):
    # Point 15: --log-level WARNING silenced the access log; it has its own switch.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    level = ["--log-level", "WARNING"] if how == "flag" else []
    env = {"SIDECACHE_LOG_LEVEL": "warning"} if how == "environment" else {}
    args = ["--upstream", upstream.url, "--listen", f"127.0.0.1:{port}", *level]
    proc = await spawn(args, base, cwd=tmp_path, extra_env=env)
    try:
        await wait_for_port(port)
        await fetch(client, "GET", base + "/page")
        line = await proc.wait_for_line('"GET /page HTTP/1.1"')
    finally:
        await proc.stop()

    assert " INFO sidecache.access 127.0.0.1 " in line
    assert not any(" ready" in out or "listening" in out for out in proc.stdout)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_an_unknown_log_level_is_refused(tmp_path, how):
    level = ["--log-level", "LOUD"] if how == "flag" else []
    env = {"SIDECACHE_LOG_LEVEL": "LOUD"} if how == "environment" else {}

    result = run("--listen", f"127.0.0.1:{free_port()}", *level, cwd=tmp_path, env=env)

    where = "command line: --log-level" if how == "flag" else "environment: SIDECACHE_LOG_LEVEL"
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"sidecache: config error: {where}: unknown level 'LOUD' "
        "(use DEBUG, INFO, WARNING, ERROR)\n"
    )


async def test_access_log_quotes_a_rule_name_with_a_space(upstream, client, start_sidecache):
    # Point 16: `rule=--cache ^/about$` broke field splitting.
    proxy = await start_sidecache(upstream=upstream.url, args=["--cache", "^/about$"])
    await fetch(client, "GET", proxy.base_url + "/about")
    line = await proxy.wait_for_line('"GET /about HTTP/1.1"')

    fields = shlex.split(line)
    assert fields[2:4] == ["INFO", "sidecache.access"]
    assert fields[4:8] == ["127.0.0.1", "GET /about HTTP/1.1", "200", "MISS"]
    assert fields[10:] == ["rule=--cache ^/about$", "detail=stored"]
    assert line.rstrip("\n").endswith(' rule="--cache ^/about$" detail=stored')
