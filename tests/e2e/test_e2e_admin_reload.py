"""The admin token across a reload, with the real command: the admin listener stays bound
where it was until a restart, so a reload that drops `[admin] token` must not leave it open
on every address without one (one process, and a master, which runs the admin listener for
its workers). Only ever reached over 127.0.0.1, although bound on 0.0.0.0."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest
from sidecache_e2e import Upstream, free_port

TOKEN = "e2e-admin-0123456789abcdef"


async def statuses(client: aiohttp.ClientSession, admin: int, token: str | None) -> list[int]:
    """POST /purge and GET /metrics on the admin listener, with `token` or without."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    base = f"http://127.0.0.1:{admin}"
    async with client.post(f"{base}/purge?url=/page", headers=headers) as purged:
        await purged.read()
    async with client.get(f"{base}/metrics", headers=headers) as metrics:
        await metrics.read()
    return [purged.status, metrics.status]


@pytest.mark.parametrize(
    ("workers", "reloaded"),
    [
        ("1", ""),  # no [admin] at all any more
        ("1", '[admin]\nlisten = "127.0.0.1:{admin}"\n'),  # loopback now, so no token needed
        ("2", '[admin]\nlisten = "127.0.0.1:{admin}"\n'),
    ],
)
async def test_a_reload_without_the_token_keeps_it_while_bound_off_loopback(
    upstream: Upstream, client, start_sidecache, tmp_path: Path, workers: str, reloaded: str
) -> None:
    admin = free_port()
    config = f'[admin]\nlisten = "0.0.0.0:{admin}"\ntoken = "{TOKEN}"\n'
    proc = await start_sidecache(
        upstream=upstream.url, config=config, args=["--workers", workers, "--cache", "^/"]
    )
    before = await statuses(client, admin, None)

    (tmp_path / "sidecache-0.toml").write_text(reloaded.format(admin=admin), encoding="utf-8")
    proc.process.send_signal(signal.SIGHUP)
    await proc.wait_for_line("reloaded ")
    without = await statuses(client, admin, None)
    wrong = await statuses(client, admin, "not-the-token")
    old = await statuses(client, admin, TOKEN)

    assert before == without == wrong == [401, 401]
    assert old == [200, 200]
    assert "[admin] token removed, but the admin listener is bound on 0.0.0.0:" in proc.output()


async def test_a_changed_token_applies_at_once(
    upstream: Upstream, client, start_sidecache, tmp_path: Path
) -> None:
    admin = free_port()
    config = '[admin]\nlisten = "0.0.0.0:{admin}"\ntoken = "{token}"\n'
    proc = await start_sidecache(
        upstream=upstream.url,
        config=config.format(admin=admin, token=TOKEN),
        args=["--workers", "2"],
    )
    changed = TOKEN[::-1]

    (tmp_path / "sidecache-0.toml").write_text(
        config.format(admin=admin, token=changed), encoding="utf-8"
    )
    proc.process.send_signal(signal.SIGHUP)
    await proc.wait_for_line("reloaded ")

    assert await statuses(client, admin, TOKEN) == [401, 401]
    assert await statuses(client, admin, changed) == [200, 200]
