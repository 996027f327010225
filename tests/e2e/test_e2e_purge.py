"""Purge with the real commands (issue 15): `sidecache purge` against a running `sidecache`,
one process and a master with `--workers 2` (whose admin listener asks every worker: each has
its own cache), with the token the server requires, found in the config file or in
SIDECACHE_ADMIN_TOKEN."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from sidecache_e2e import Seen, Upstream, free_port, run_sidecache
from test_e2e_workers import drive, get, served_by

TOKEN = "e2e-0123456789abcdef"


async def purge(tmp_path: Path, *args: str, token: str | None = None) -> tuple[int, str]:
    """`sidecache purge ARGS` run to its end, in a thread: the test's upstream runs on this
    loop, and a fill the purge causes must not wait for it."""
    env = {"SIDECACHE_ADMIN_TOKEN": token} if token is not None else {}
    done = await asyncio.to_thread(run_sidecache, "purge", *args, cwd=tmp_path, env=env)
    return done.returncode, done.stdout + done.stderr


async def test_purge_reaches_every_worker(upstream: Upstream, start_sidecache, tmp_path) -> None:
    admin = free_port()
    config = f'[admin]\nlisten = "127.0.0.1:{admin}"\ntoken = "{TOKEN}"\n'
    proc = await start_sidecache(
        upstream=upstream.url, config=config, args=["--workers", "2", "--cache", "^/"]
    )
    port = int(proc.base_url.rsplit(":", 1)[1])
    before = len(proc.access_lines())
    await drive(40, lambda: get(port, "/page"))
    await proc.wait_for_lines(" sidecache.access ", before + 40)
    both = served_by(proc, proc.access_lines()[before:])
    filled = upstream.count("/page")

    refused = await purge(tmp_path, "--url", "/page", "--admin", f"127.0.0.1:{admin}", token="x")
    purged = await purge(tmp_path, "--url", "/page", "--admin", f"127.0.0.1:{admin}", token=TOKEN)
    await drive(40, lambda: get(port, "/page"))

    assert len(both) == 2 and filled == 2  # both workers served it, each filled its cache once
    assert refused[0] == 1 and "401" in refused[1]
    assert purged == (0, "purged 2 (url=/page)\n")  # one entry in each worker's memory
    assert upstream.count("/page") == 4  # after the purge: one miss per worker again


async def test_purge_by_tag_with_the_config_files_admin_and_token(
    upstream: Upstream, start_sidecache, tmp_path: Path
) -> None:
    async def tagged(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(
            text=f"{seen.target} #{upstream.count(seen.target)}", headers={"Cache-Tag": "catalog"}
        )

    upstream.route("/product", tagged)
    admin = tmp_path / "admin.sock"
    config = f'[admin]\nlisten = "unix:{admin}"\ntoken = "{TOKEN}"\n[[rules]]\npath = "^/"\n'
    proc = await start_sidecache(upstream=upstream.url, config=config)
    port = int(proc.base_url.rsplit(":", 1)[1])
    _, first = await get(port, "/product")
    await get(port, "/product")
    config_file = tmp_path / "sidecache-0.toml"  # where start_sidecache wrote `config`

    purged = await purge(tmp_path, "--tag", "catalog", str(config_file))
    _, after = await get(port, "/product")

    assert "cache-tag" not in {name.lower() for name in first}  # no visitor sees the tags
    assert purged == (0, "purged 1 (tag=catalog)\n")
    assert after["x-cache"] == ["MISS"] and upstream.count("/product") == 2


async def test_purge_without_an_admin_listener_says_how_to_name_one(tmp_path: Path) -> None:
    code, said = await purge(tmp_path, "--tag", "x")
    assert code == 2 and "admin.listen: not set: give --admin ADDR" in said
