"""`sidecache dev` (issue 6): a banner with the URLs, one coloured line per request saying
HIT/MISS/PASS and why, and the config file reloaded when it is saved. The real process."""

from __future__ import annotations

import pytest
from sidecache_e2e import fetch, free_port, spawn, wait_ready


def dev_config(*paths: str) -> str:
    rules = "".join(f'[[rules]]\nname = "{p}"\npath = "^{p}$"\n\n' for p in paths)
    return '[caches.default]\nttl = "1h"\n\n' + rules


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no-color"])
async def test_dev_proxy_log_banner_and_reload_on_save(
    upstream, client, tmp_path, monkeypatch, colour
):
    if not colour:
        monkeypatch.setenv("NO_COLOR", "1")
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
    )
    try:
        await wait_ready(proc)
        banner = await proc.wait_for_line("sidecache dev")
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
    hit, miss, passed = ("\x1b[32mHIT  \x1b[0m", "\x1b[33mMISS \x1b[0m", "\x1b[36mPASS \x1b[0m")
    if not colour:
        hit, miss, passed = "HIT  ", "MISS ", "PASS "
    assert f"{miss} 200 GET /a  rule=/a stored" in lines[0]
    assert f"{hit} 200 GET /a  rule=/a" in lines[1]
    assert f"{passed} 200 GET /b  no-rule" in lines[2]
    assert after.x_cache == "MISS"  # /b is cached now: the saved config was loaded
    assert ("\x1b[" in proc.output()) is colour
