"""The lifecycle of the real `sidecache` process (issue 5): SIGHUP reloads the config file
(a bad one is reported and the running one kept), SIGTERM lets a request in flight finish."""

from __future__ import annotations

import asyncio
import signal
import time

from aiohttp import web
from sidecache_e2e import Seen, fetch


def config(*paths: str, x_cache: bool = True) -> str:
    rules = "".join(
        f'[[rules]]\nname = "{path}"\npath = "^{path}$"\nttl = "1h"\n\n' for path in paths
    )
    return f'[server]\nx_cache = {str(x_cache).lower()}\n\n[caches.default]\nttl = "1h"\n\n' + rules


async def test_sighup_applies_a_good_config_and_keeps_unchanged_caches(
    upstream, client, start_sidecache, tmp_path
):
    proxy = await start_sidecache(upstream=upstream.url, config=config("/a"))
    path = tmp_path / "sidecache-0.toml"
    first_a = await fetch(client, "GET", proxy.base_url + "/a")
    before_b = await fetch(client, "GET", proxy.base_url + "/b")

    path.write_text(config("/a", "/b"), encoding="utf-8")
    proxy.process.send_signal(signal.SIGHUP)
    await proxy.wait_for_line("reloaded ")
    after_a = await fetch(client, "GET", proxy.base_url + "/a")
    after_b = [await fetch(client, "GET", proxy.base_url + "/b") for _ in range(2)]

    assert (first_a.x_cache, before_b.x_cache) == ("MISS", "PASS")
    assert after_a.x_cache == "HIT"  # the cache's definition did not change: its entries stay
    assert [r.x_cache for r in after_b] == ["MISS", "HIT"]  # the new rule serves new requests
    assert proxy.process.returncode is None


async def test_sighup_with_a_bad_config_keeps_the_running_one(
    upstream, client, start_sidecache, tmp_path
):
    proxy = await start_sidecache(upstream=upstream.url, config=config("/a"))
    path = tmp_path / "sidecache-0.toml"
    await fetch(client, "GET", proxy.base_url + "/a")

    path.write_text(config("/a") + '[[rules]]\npath = "("\n', encoding="utf-8")
    proxy.process.send_signal(signal.SIGHUP)
    line = await proxy.wait_for_line("reload failed", stderr=True)  # an ERROR: stderr
    hit = await fetch(client, "GET", proxy.base_url + "/a")

    assert "the running configuration stays" in line
    assert "rules[2].path: invalid regex" in line
    assert hit.x_cache == "HIT"
    assert proxy.process.returncode is None


async def test_sighup_with_a_config_that_is_not_utf8_keeps_the_running_one(
    upstream, client, start_sidecache, tmp_path
):
    """Issue 11 (config fuzzing) / issue 12 point 2: a Latin-1 byte in the file stopped the
    process on SIGHUP with a UnicodeDecodeError traceback."""
    proxy = await start_sidecache(upstream=upstream.url, config=config("/a"))
    path = tmp_path / "sidecache-0.toml"
    await fetch(client, "GET", proxy.base_url + "/a")

    path.write_bytes(b"# caf\xe9\n" + config("/a").encode())
    proxy.process.send_signal(signal.SIGHUP)
    line = await proxy.wait_for_line("reload failed", stderr=True)  # an ERROR: stderr
    hit = await fetch(client, "GET", proxy.base_url + "/a")

    assert f"{path}: not UTF-8 text (TOML is UTF-8), at byte 5" in line
    assert hit.x_cache == "HIT"
    assert proxy.process.returncode is None


async def test_sigterm_lets_a_request_in_flight_finish_then_exits_0(
    upstream, client, start_sidecache
):
    async def slow(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return web.Response(text="slow but whole")

    upstream.route("/slow", slow)
    proxy = await start_sidecache(upstream=upstream.url)
    pending = asyncio.create_task(fetch(client, "GET", proxy.base_url + "/slow"))
    await asyncio.sleep(0.3)  # the request is with the upstream
    started = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    reply = await asyncio.wait_for(pending, 5.0)
    code = await proxy.wait_exit(5.0)

    assert (reply.status, reply.body) == (200, b"slow but whole")
    assert code == 0
    assert time.monotonic() - started < 4.0
    assert any("requests in flight get 10s" in line for line in proxy.stdout)


async def test_shutdown_timeout_cuts_a_request_that_takes_too_long(
    upstream, client, start_sidecache
):
    async def stuck(request: web.Request, seen: Seen) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(text="never")

    upstream.route("/stuck", stuck)
    proxy = await start_sidecache(
        upstream=upstream.url, config='[server]\nshutdown_timeout = "500ms"\n'
    )
    pending = asyncio.create_task(fetch(client, "GET", proxy.base_url + "/stuck"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    code = await proxy.wait_exit(5.0)
    elapsed = time.monotonic() - started
    outcome = await asyncio.gather(pending, return_exceptions=True)

    assert code == 0
    assert elapsed < 3.0
    assert isinstance(outcome[0], Exception) or outcome[0].status >= 500


async def test_stale_if_error_covers_an_upstream_that_is_stopped_and_restarted(
    upstream, client, start_sidecache
):
    # The app goes down for a deploy: the stale page answers (X-Cache: STALE); once it is back,
    # the next request fetches a fresh one.
    proxy = await start_sidecache(
        upstream=upstream.url, args=["--ttl", "1s", "--stale-if-error", "1m"]
    )
    port = int(upstream.url.rsplit(":", 1)[1])
    first = await fetch(client, "GET", proxy.base_url + "/")
    await upstream.stop()
    await asyncio.sleep(1.2)  # the entry goes stale (ttl 1 s, real time)
    down = await fetch(client, "GET", proxy.base_url + "/")
    await upstream.start(port=port)
    back = await fetch(client, "GET", proxy.base_url + "/")

    assert (first.x_cache, first.body) == ("MISS", b"/ #1")
    assert (down.status, down.x_cache, down.body) == (200, "STALE", b"/ #1")
    assert 'detail="stale-if-error"' in down.cache_status
    assert int(down.headers["Age"]) >= 1
    assert (back.x_cache, back.status) == ("MISS", 200)


async def test_the_admin_listener_of_the_real_process(upstream, client, start_sidecache):
    from sidecache_e2e import free_port

    port = free_port()
    proxy = await start_sidecache(upstream=upstream.url, args=["--admin", f"127.0.0.1:{port}"])
    await proxy.wait_for_line(
        f"admin (/health, /ready, /metrics, /purge) on http://127.0.0.1:{port}"
    )
    health = await fetch(client, "GET", f"http://127.0.0.1:{port}/health")
    ready = await fetch(client, "GET", f"http://127.0.0.1:{port}/ready")
    assert (health.status, health.body) == (200, b"ok\n")
    assert ready.status == 200 and b'"ready": true' in ready.body
