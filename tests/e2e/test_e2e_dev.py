"""`sidecache dev` (issue 6): a banner with the URLs, one coloured line per request saying
HIT/MISS/PASS and why, and the config file reloaded when it is saved. The real process."""

from __future__ import annotations

import pytest
from sidecache_e2e import fetch, free_port, spawn, wait_ready


def dev_config(*paths: str) -> str:
    rules = "".join(f'[[rules]]\nname = "{p}"\npath = "^{p}$"\n\n' for p in paths)
    return '[caches.default]\nttl = "1h"\n\n' + rules


# Issue 12 point 20: colour only on a terminal (stdout here is a pipe), or when forced;
# NO_COLOR wins over FORCE_COLOR. (environment, colour expected)
COLOUR = {
    "pipe": ({}, False),
    "force-color": ({"FORCE_COLOR": "1"}, True),
    "no-color": ({"NO_COLOR": "1"}, False),
    "no-color-wins": ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),
}


@pytest.mark.parametrize("case", COLOUR)
async def test_dev_proxy_log_banner_and_reload_on_save(upstream, client, tmp_path, case):
    environment, colour = COLOUR[case]
    config = tmp_path / "dev.toml"
    config.write_text(dev_config("/a"), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await spawn(
        [
            "dev",
            "--config",
            str(config),
            "--upstream",
            upstream.url,
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            "",
        ],
        base,
        cwd=tmp_path,
        extra_env={"NO_COLOR": "", "FORCE_COLOR": "", **environment},
    )
    try:
        await wait_ready(proc)
        banner = await proc.wait_for_line("sidecache dev")
        reload_hint = await proc.wait_for_line("HIT/MISS/PASS per request below")
        await fetch(client, "GET", base + "/a")
        await fetch(client, "GET", base + "/a")
        await fetch(client, "GET", base + "/b", headers={})
        lines = await proc.wait_for_lines(" GET /", 3)
        config.write_text(dev_config("/a", "/b"), encoding="utf-8")  # saved in an editor
        await proc.wait_for_line("reloaded ", within=5.0)
        after = await fetch(client, "GET", base + "/b")
    finally:
        await proc.stop()

    assert f"{base}  →  {upstream.url}" in banner
    assert reload_hint.endswith(f"save {config} to reload it\n")
    hit, miss, passed = ("\x1b[32mHIT  \x1b[0m", "\x1b[33mMISS \x1b[0m", "\x1b[36mPASS \x1b[0m")
    if not colour:
        hit, miss, passed = "HIT  ", "MISS ", "PASS "
    assert f"{miss} 200 GET /a  rule=/a stored" in lines[0]
    assert f"{hit} 200 GET /a  rule=/a" in lines[1]
    assert f"{passed} 200 GET /b  no-rule" in lines[2]
    assert after.x_cache == "MISS"  # /b is cached now: the saved config was loaded
    assert ("\x1b[" in proc.output()) is colour


def dev_command(config: str | None, upstream: str, port: int) -> list[str]:
    named = [config] if config else []
    return ["dev", *named, "--upstream", upstream, "--listen", f"127.0.0.1:{port}"]


async def test_dev_without_a_file_does_not_offer_to_reload_one(upstream, tmp_path):
    # Issue 12 point 20: the banner said "save the config file to reload it" with no file.
    port = free_port()
    proc = await spawn(dev_command(None, upstream.url, port), "", cwd=tmp_path)
    try:
        await wait_ready(proc)
        hint = await proc.wait_for_line("HIT/MISS/PASS per request below")
    finally:
        await proc.stop()

    assert hint == "  HIT/MISS/PASS per request below; no config file: restart to change it\n"
    assert "  config: <embedded default.toml> + command line\n" in proc.stdout


async def test_dev_watcher_survives_a_file_that_is_not_utf8_and_reloads_after(
    upstream, client, tmp_path
):
    # Issue 12 point 2: after saving a non-UTF-8 file the watcher died silently and never
    # reloaded again. Also: `sidecache dev FILE` watches FILE (point 3).
    config = tmp_path / "dev.toml"
    config.write_text(dev_config("/a"), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await spawn(dev_command(str(config), upstream.url, port), base, cwd=tmp_path)
    try:
        await wait_ready(proc)
        before = await fetch(client, "GET", base + "/b")
        config.write_bytes(b"# caf\xe9\n" + dev_config("/a", "/b").encode())
        failed = await proc.wait_for_line("reload failed", stderr=True)
        still = await fetch(client, "GET", base + "/b")
        config.write_text(dev_config("/a", "/b"), encoding="utf-8")
        await proc.wait_for_line("reloaded ")
        after = await fetch(client, "GET", base + "/b")
    finally:
        code = await proc.stop()

    assert f"{config}: not UTF-8 text (TOML is UTF-8), at byte 5" in failed
    assert (before.x_cache, still.x_cache, after.x_cache) == ("PASS", "PASS", "MISS")
    assert code == 0
    assert "Traceback" not in proc.output()
