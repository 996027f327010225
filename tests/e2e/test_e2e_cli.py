"""The `sidecache` command itself: check, bad configs at start, signals, the demo."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from sidecache_e2e import (
    RUN_TIMEOUT,
    fetch,
    free_port,
    run_sidecache,
    spawn,
    wait_ready,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEMO_SCRIPT = CONFIG_DIR.parent / "scripts" / "demo"


run = run_sidecache


def test_check_good_config_prints_the_compiled_rules(tmp_path):
    path = CONFIG_DIR / "uwsgi-flask.toml"

    result = run("check", str(path), cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == f"config: {path}"
    assert "  mycache: items=100 item_size=64KiB max_bytes=16MiB ttl=60s keep=600s" in lines
    assert (
        "  1. about-for-anonymous: when path ~ '^/about$' and method in GET,HEAD and anonymous "
        "and cookie remember_token absent → cache in 'mycache' "
        "(ttl=cache default, set_cookie=skip, key={host}{uri})"
    ) in lines


def test_check_shows_the_settings_that_matter_for_safety(tmp_path):
    """Issue 12 point 10: the admin address, trusted proxies, [identity]'s cookie names and the
    timeouts were not shown; sizes printed as 67108864B. Point 19: a warning printed twice."""
    path = tmp_path / "site.toml"
    path.write_text(
        '[server]\ntrusted_proxies = ["10.0.0.0/8"]\nheader_timeout = "5s"\n'
        'max_body_size = "10MB"\n\n[admin]\nlisten = "127.0.0.1:9181"\n\n'
        '[identity]\npreset = "django"\n\n'
        '[[rules]]\nname = "lang"\npath = "^/$"\nkeep_cookies = ["lang"]\n',
        encoding="utf-8",
    )

    result = run("check", str(path), cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert (
        "admin: 127.0.0.1:9181 (/health, /ready, /metrics, /purge); "
        "token: none (loopback or unix only); "
        "purge tags from cache-tag, surrogate-key, xkey (removed from responses)"
    ) in lines
    assert "trusted proxies (their X-Forwarded-* believed): 10.0.0.0/8" in lines
    assert (
        "clients: head 5s, keep-alive 75s, body idle 60s, request bodies up to 10MB, "
        "4096 connections; shutdown waits 10s"
    ) in lines
    assert "logged in (passed): Authorization, cookie sessionid" in lines
    assert "messages waiting (passed): cookie messages" in lines
    assert "CSRF cookies (never stripped from a fill's answer): csrftoken" in lines
    assert "  default: items=1000 item_size=64KiB max_bytes=64MiB ttl=10s keep=600s" in lines
    warnings = [line for line in lines if "keep_cookies 'lang'" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: lang: keep_cookies")


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.toml")))
def test_every_example_config_passes_check(tmp_path, name):
    result = run("check", str(CONFIG_DIR / name), cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "rules (first match wins; no match: pass):" in result.stdout


def test_check_without_a_file_shows_the_embedded_default(tmp_path):
    result = run("check", cwd=tmp_path)

    assert result.returncode == 0
    # Issue 12 point 14: it says that no file was given and what it checked instead.
    assert result.stdout.splitlines()[:2] == [
        "no config file given (CONFIG, --config or SIDECACHE_CONFIG): "
        "checking the embedded default, what sidecache runs without one",
        "config: <embedded default.toml>",
    ]
    assert "  default: items=1000 item_size=64KiB max_bytes=64MiB ttl=10s" in result.stdout
    assert "1. anonymous-reads: when method in GET,HEAD → cache in 'default'" in result.stdout


# (config text, the key the message must name, the problem it must state)
BAD_CONFIGS = {
    "invalid-regex": (
        '[caches.default]\n[[rules]]\npath = "^/a$"\n[[rules]]\npath = "^/(b$"\n',
        "rules[2].path",
        "invalid regex '^/(b$'",
    ),
    "invalid-cookie-regex": (
        '[caches.default]\n[[rules]]\ncookie.lang = { matches = "[" }\n',
        "rules[1].cookie.lang",
        "invalid regex '['",
    ),
    "unknown-cache": (
        '[caches.default]\n[[rules]]\npath = "^/$"\ncache = "mycahce"\n',
        "rules[1].cache",
        "unknown cache 'mycahce' (caches: default)",
    ),
    "unknown-key": (
        '[caches.default]\nitems = 10\nitem_sise = "1KiB"\n',
        "caches.default.item_sise",
        "unknown key",
    ),
    "unknown-rule-key": (
        '[caches.default]\n[[rules]]\npaht = "^/$"\n',
        "rules[1].paht",
        "unknown key",
    ),
    "bad-size": (
        '[caches.default]\nitem_size = "64 KiBB"\n',
        "caches.default.item_size",
        "cannot parse size '64 KiBB'",
    ),
    "bad-duration": (
        '[caches.default]\nttl = "5 parsecs"\n',
        "caches.default.ttl",
        "cannot parse duration '5 parsecs'",
    ),
    "bad-type": (
        '[caches.default]\nitems = "many"\n',
        "caches.default.items",
        "expected int, got a string",
    ),
    "relative-access-log": (
        '[server]\naccess_log = "logs/access.log"\n',
        "server.access_log",
        "'logs/access.log' is not an absolute path (e.g. /var/log/sidecache/access.log)",
    ),
    "cache-rule-for-post": (
        '[caches.default]\n[[rules]]\nmethods = ["GET", "POST"]\n',
        "rules[1].methods",
        "POST is never answered from cache",
    ),
}


def _expected_error(path: Path, key: str, problem: str) -> str:
    return f"sidecache: config error: {path}: {key}: {problem}"


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_check_bad_config_names_file_key_and_problem(tmp_path, case):
    text, key, problem = BAD_CONFIGS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)

    result = run("check", str(path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(_expected_error(path, key, problem)), line


def test_check_unparseable_toml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[caches.default\n")

    bad_toml = run("check", str(broken), cwd=tmp_path)
    missing = run("check", str(tmp_path / "missing.toml"), cwd=tmp_path)

    assert bad_toml.returncode == 2
    assert bad_toml.stderr.startswith(f"sidecache: config error: {broken}: invalid TOML: ")
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        f"sidecache: config error: {tmp_path / 'missing.toml'}: cannot read file: "
    )


@pytest.mark.parametrize("case", ["invalid-regex", "unknown-cache", "unknown-key", "bad-size"])
def test_run_with_bad_config_fails_at_start(tmp_path, case):
    text, key, problem = BAD_CONFIGS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    port = free_port()

    started = time.monotonic()
    result = run(
        "--config", str(path), "--upstream", "http://127.0.0.1:9", "--listen", f"127.0.0.1:{port}",
        cwd=tmp_path,
    )  # fmt: skip

    assert time.monotonic() - started < RUN_TIMEOUT
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    # The command line was merged in, so the source says so; key and problem are the same.
    assert line.startswith(f"sidecache: config error: {path} + command line: {key}: {problem}")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_bad_flag_values_fail_at_start(tmp_path):
    regex = run("--cache", "^/(a$", "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path)
    ttl = run("--ttl", "soon", "--listen", f"127.0.0.1:{free_port()}", cwd=tmp_path)

    assert regex.returncode == ttl.returncode == 2
    assert "invalid regex '^/(a$'" in regex.stderr
    assert "caches.default.ttl: cannot parse duration 'soon'" in ttl.stderr


async def test_two_proxies_on_one_host_start_with_default_settings(upstream, tmp_path):
    # Issue 12 point 1: the admin listener's fixed default port (127.0.0.1:9180) made the
    # second one fail; the admin listener is off unless configured.
    started = []
    try:
        for _ in range(2):
            port = free_port()
            args = ["--upstream", upstream.url, "--listen", f"127.0.0.1:{port}"]
            started.append(await spawn(args, f"http://127.0.0.1:{port}", cwd=tmp_path))
            await wait_ready(started[-1])
    finally:
        codes = [await proc.stop() for proc in started]

    assert codes == [0, 0]
    assert not any("admin" in proc.output() for proc in started)


# Issue 12 point 1: a bind error names the address, the listener and the settings that change
# it. (listener's arguments with {port} the port taken, the listener's words in the message)
LISTENERS = {
    "public": (
        ["--listen", "127.0.0.1:{port}"],
        "the public listener ([server] listen, --listen, SIDECACHE_LISTEN)",
    ),
    "public-with-workers": (  # the master binds: one line, and no worker starts
        ["--listen", "127.0.0.1:{port}", "--workers", "2"],
        "the public listener ([server] listen, --listen, SIDECACHE_LISTEN)",
    ),
    "admin": (
        ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:{port}"],
        "the admin listener ([admin] listen, --admin, SIDECACHE_ADMIN)",
    ),
    "demo-site": (
        ["demo", "--listen", "127.0.0.1:0", "--demo-port", "{port}"],
        "the demo site (--demo-port)",
    ),
    "demo-proxy": (
        ["demo", "--listen", "127.0.0.1:{port}", "--demo-port", "0"],
        "the public listener ([server] listen, --listen, SIDECACHE_LISTEN)",
    ),
}


@pytest.mark.parametrize("listener", LISTENERS)
async def test_port_already_in_use_names_the_listener_and_its_setting(upstream, tmp_path, listener):
    template, words = LISTENERS[listener]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [arg.format(port=port) for arg in template]
        if args[0] != "demo":
            args += ["--upstream", upstream.url]
        proc = await spawn(args, "", cwd=tmp_path)
        try:
            code = await proc.wait_exit(RUN_TIMEOUT)
        finally:
            await proc.stop()

    assert code == 1
    assert proc.stderr == [
        f"sidecache: cannot listen on 127.0.0.1:{port} for {words}: address already in use\n"
    ]
    assert "Traceback" not in proc.output()
    assert "serving" not in proc.output()  # nothing started: no worker, no listener


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_the_proxy_with_exit_0(upstream, client, start_sidecache, signum):
    proxy = await start_sidecache(upstream=upstream.url)
    reply = await fetch(client, "GET", proxy.base_url + "/")  # leaves a keep-alive connection
    assert reply.status == 200

    started = time.monotonic()
    proxy.process.send_signal(signum)
    code = await proxy.wait_exit(5.0)
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < 3.0, f"exit took {elapsed:.2f} s"
    assert any("sidecache stopped" in line for line in proxy.stdout)
    assert "Traceback" not in proxy.output()
    port = int(proxy.base_url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_demo_serves_hits_and_passes_logged_in_visitors(client, tmp_path):
    port, demo_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await spawn(
        ["demo", "--listen", f"127.0.0.1:{port}", "--demo-port", str(demo_port)], base, tmp_path
    )
    try:
        await wait_ready(proc, needle="sidecache demo:")
        first = await fetch(client, "GET", base + "/")
        second = await fetch(client, "GET", base + "/")
        me = await fetch(client, "GET", base + "/me", headers={"Cookie": "remember_token=alice|x"})
        me_again = await fetch(
            client, "GET", base + "/me", headers={"Cookie": "remember_token=bob|x"}
        )
        direct = await fetch(client, "GET", f"http://127.0.0.1:{demo_port}/")
        os.kill(proc.pid, signal.SIGUSR1)  # logrotate's signal: the demo goes on serving
        after_usr1 = await fetch(client, "GET", base + "/")
    finally:
        code = await proc.stop()

    assert (first.status, first.x_cache) == (200, "MISS")
    assert (second.status, second.x_cache) == (200, "HIT")
    assert second.body == first.body
    assert b"<h1>Home</h1>" in first.body
    assert (me.status, me.x_cache) == (200, "PASS")
    assert b"<h1>Hello, alice</h1>" in me.body
    assert (me_again.x_cache, b"<h1>Hello, bob</h1>" in me_again.body) == ("PASS", True)
    assert direct.status == 200
    assert "X-Cache" not in direct.headers
    assert (after_usr1.status, after_usr1.x_cache) == (200, "HIT")
    assert f"sidecache in front on {base}" in "".join(proc.stdout)
    assert code == 0


def fake_venv(root: Path) -> Path:
    """A venv whose python is the tests' own, except that `python -m pip` only writes down
    that it was called: scripts/demo run by the suite must install nothing (issue 12)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$*" >> "{root}/pip-calls"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    return root


async def test_the_readme_demo_command_runs_with_arguments_and_installs_nothing(client, tmp_path):
    # README: `./scripts/demo` sets up .venv if needed, then runs the demo; its extra arguments
    # go to `sidecache demo` (they once reached pip as an "extras" name instead). Issue 12
    # point 21: where the package already imports, it installs nothing (the suite once ran
    # `pip install -e .` into .venv mid-run).
    venv = fake_venv(tmp_path / "venv")
    port, demo_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["--listen", f"127.0.0.1:{port}", "--demo-port", str(demo_port)]
    proc = await spawn(
        args, base, tmp_path, command=[str(DEMO_SCRIPT)], extra_env={"SIDECACHE_VENV": str(venv)}
    )
    try:
        await proc.wait_for_line("sidecache demo:", within=30)
        first = await fetch(client, "GET", base + "/about")
        second = await fetch(client, "GET", base + "/about")
    finally:
        code = await proc.stop()

    assert not (venv / "pip-calls").exists(), (venv / "pip-calls").read_text()
    assert [first.x_cache, second.x_cache] == ["MISS", "HIT"]
    assert code == 0


def test_check_prints_the_kept_cookie_warning(tmp_path):
    # Issue 2: "`sidecache check` warns when a kept cookie is not part of the key".
    path = tmp_path / "lang.toml"
    path.write_text('[caches.default]\n[[rules]]\nname = "pages"\nkeep_cookies = ["lang"]\n')

    result = run("check", str(path), cwd=tmp_path)

    assert (result.returncode, result.stderr) == (0, "")  # once, in the summary (issue 12/19)
    assert result.stdout.count("warning: pages: keep_cookies 'lang'") == 1


def test_cache_bound_flags_reach_the_default_cache(tmp_path):
    # Issue 2: --ttl, --items, --item-size, --max-bytes set the bounds of the flags' cache.
    result = run(
        "check",
        "--items",
        "5",
        "--item-size",
        "1KiB",
        "--max-bytes",
        "1MiB",
        "--ttl",
        "2m",
        cwd=tmp_path,
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert "  default: items=5 item_size=1KiB max_bytes=1MiB ttl=120s" in result.stdout


def test_check_shared_shows_the_mode_and_refuses_rules_from_the_command_line(tmp_path):
    shared = run("check", "--shared", cwd=tmp_path)
    both = run("check", "--shared", "--cache", "^/$", cwd=tmp_path)

    assert shared.returncode == 0
    assert "mode: shared (no rules: the origin's headers decide, RFC 9111)" in shared.stdout
    assert "1. shared: when method in GET,HEAD → cache in 'default' (ttl=origin" in shared.stdout
    assert both.returncode == 2
    assert both.stderr.strip() == (
        "sidecache: config error: command line: --shared: has no rules: leave out --cache"
    )


def test_stale_flags_apply_to_the_cache_rules(tmp_path):
    result = run(
        "check",
        "--cache",
        "^/$",
        "--stale-while-revalidate",
        "30s",
        "--stale-if-error",
        "1h",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert "stale_while_revalidate=30s, stale_if_error=3600s" in result.stdout
    bad = run("check", "--stale-if-error", "soon", cwd=tmp_path)
    assert bad.returncode == 2
    assert "stale_if_error: cannot parse duration 'soon'" in bad.stderr
