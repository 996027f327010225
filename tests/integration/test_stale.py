"""Serving stale responses (issue 5; RFC 5861): stale-while-revalidate refreshes in the
background while the stale entry answers, stale-if-error answers when the upstream refuses,
times out or fails with a 5xx. Time moves on the proxy's injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import StartProxy
from .support import Client, FakeClock, FakeUpstream, Got, eventually


async def rule_proxy(sidecache: StartProxy, **rule: Any) -> Client:
    return await sidecache(rules=[{"name": "page", "action": "cache", "ttl": "10s", **rule}])


async def test_stale_while_revalidate_answers_at_once_and_refreshes_behind(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    clock.advance(15)  # stale, within the window
    stale = await client.get("/page")
    await eventually(lambda: len(upstream.to("/page")) == 2)
    await eventually(lambda: upstream.active == 0)
    fresh = await client.get("/page")

    assert (stale.x_cache, stale.body) == ("STALE", b"GET /page #1")
    assert stale.cache_status == 'sidecache; hit; detail="stale-while-revalidate"'
    assert stale.headers["Age"] == "15"
    assert (fresh.x_cache, fresh.body) == ("HIT", b"GET /page #2")


async def test_one_background_refresh_per_key(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on("/page", delay=0.3)
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    clock.advance(15)
    answers = [await client.get("/page") for _ in range(5)]
    await eventually(lambda: upstream.active == 0)
    assert [a.x_cache for a in answers] == ["STALE"] * 5, [a.cache_status for a in answers]
    assert len(upstream.to("/page")) == 2


@pytest.mark.parametrize(
    ("headers", "rule", "later", "stale"),
    [
        pytest.param(
            [("Cache-Control", "max-age=10, stale-while-revalidate=30")],
            {"ttl": "origin"},
            15,
            True,
            id="origin-directive",
        ),
        pytest.param(
            [("Cache-Control", "max-age=10, stale-while-revalidate=30")],
            {"ttl": "origin"},
            45,
            False,
            id="past-the-window",
        ),
        pytest.param(
            [("Cache-Control", "max-age=10, stale-while-revalidate=30, must-revalidate")],
            {"ttl": "origin"},
            15,
            False,
            id="must-revalidate",
        ),
        pytest.param([], {"stale_while_revalidate": "5s"}, 16, False, id="rule-window-past"),
        pytest.param(
            [("Cache-Control", "stale-while-revalidate=300")],
            {"stale_while_revalidate": "5s"},
            12,
            True,
            id="rule-window-wins",
        ),
    ],
)
async def test_stale_while_revalidate_window(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    clock: FakeClock,
    headers: list[tuple[str, str]],
    rule: dict[str, Any],
    later: float,
    stale: bool,
) -> None:
    upstream.on("/page", headers=headers)
    client = await rule_proxy(sidecache, **rule)
    await client.get("/page")
    clock.advance(later)
    got = await client.get("/page")
    await eventually(lambda: upstream.active == 0)
    assert got.x_cache == ("STALE" if stale else "MISS")


FAILURES = {
    "refused": {"reset": True},  # the connection closed before any response byte
    "503": {"status": 503},
    "timeout": {"delay": 5.0},  # past read_timeout (2 s in the test configuration)
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_stale_if_error_answers_when_the_upstream_fails(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock, failure: str
) -> None:
    client = await rule_proxy(sidecache, stale_if_error="1m")
    await client.get("/page")
    clock.advance(30)  # stale, within the window
    upstream.on("/page", **FAILURES[failure])
    stale = await client.get("/page")
    upstream.on("/page")  # the app is back
    back = await client.get("/page")

    assert (stale.status, stale.x_cache, stale.body) == (200, "STALE", b"GET /page #1")
    assert stale.cache_status == 'sidecache; hit; detail="stale-if-error"'
    assert stale.headers["Age"] == "30"
    assert (back.x_cache, back.body) == ("MISS", f"GET /page #{len(upstream.to('/page'))}".encode())


@pytest.mark.parametrize(
    ("rule", "headers", "later", "status"),
    [
        pytest.param({"stale_if_error": "1m"}, [], 75, 502, id="past-the-window"),
        pytest.param({}, [], 30, 502, id="no-window"),
        pytest.param(
            {"ttl": "origin"},
            [("Cache-Control", "max-age=10, stale-if-error=60")],
            30,
            200,
            id="origin-directive",
        ),
        pytest.param(
            {"ttl": "origin", "stale_if_error": "1m"},
            [("Cache-Control", "max-age=10, must-revalidate")],
            30,
            502,
            id="must-revalidate",
        ),
    ],
)
async def test_stale_if_error_window(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    clock: FakeClock,
    rule: dict[str, Any],
    headers: list[tuple[str, str]],
    later: float,
    status: int,
) -> None:
    upstream.on("/page", headers=headers)
    client = await rule_proxy(sidecache, **rule)
    await client.get("/page")
    clock.advance(later)
    upstream.on("/page", reset=True)
    got = await client.get("/page")
    assert got.status == status


async def test_stale_if_error_also_covers_a_failed_revalidation(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    upstream.on("/page", headers=[("ETag", '"a"')])
    client = await rule_proxy(sidecache, stale_if_error="1m")
    await client.get("/page")
    clock.advance(30)
    upstream.on("/page", status=500)
    got = await client.get("/page")
    assert (got.x_cache, got.body) == ("STALE", b"GET /page #1")
    assert upstream.to("/page")[1].header("If-None-Match") == '"a"'


async def test_a_refresh_still_running_at_shutdown_is_cancelled_cleanly(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    # The proxy stops (fixture teardown) with the refresh waiting on a slow upstream: it is
    # cancelled, not left pending (pytest turns a "Task was destroyed" warning into an error).
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    upstream.on("/page", delay=1.5)
    clock.advance(15)
    assert (await client.get("/page")).x_cache == "STALE"
    await eventually(lambda: len(upstream.to("/page")) == 2)
    assert len(client.proxy.handler.refresher.background) == 1


async def refreshed_once(client: Client, upstream: FakeUpstream, clock: FakeClock) -> Got:
    """Store /page, let it go stale within the window, and have one request refresh it."""
    await client.get("/page")
    clock.advance(15)
    stale = await client.get("/page", {"Cookie": "_ga=GA1.2.3"})
    await eventually(lambda: len(upstream.to("/page")) >= 2)
    await eventually(lambda: upstream.active == 0)
    return stale


async def test_a_refresh_answered_with_a_cookie_is_not_stored_and_never_shown(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    upstream.on("/page", body=b"public")
    await client.get("/page")
    upstream.on("/page", headers=[("Set-Cookie", "session=theirs")], body=b"personal")
    stale = await refreshed_once(client, upstream, clock)
    later = await client.get("/page", {"Cookie": "_ga=GA1.2.3"})

    assert (stale.x_cache, stale.body) == ("STALE", b"public")
    assert "Set-Cookie" not in stale.headers
    # The stale entry still answers; the key is marked personal, so no refresh is tried again.
    assert (later.x_cache, later.body) == ("STALE", b"public")
    assert len(upstream.to("/page")) == 2


async def test_a_refresh_too_big_to_store_leaves_the_stale_entry(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    upstream.on("/page", chunks=[b"x" * 40_000, b"y" * 40_000])  # over the 64 KiB item_size
    await refreshed_once(client, upstream, clock)
    later = await client.get("/page")

    assert (later.x_cache, later.body) == ("STALE", b"GET /page #1")
    assert len(upstream.to("/page")) == 2  # marked uncacheable: no second refresh


async def test_a_refresh_started_by_a_head_stores_the_whole_body(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    clock.advance(15)
    stale = await client.head("/page")
    await eventually(lambda: len(upstream.to("/page")) == 2)
    await eventually(lambda: upstream.active == 0)
    fresh = await client.get("/page")

    assert (stale.x_cache, stale.body) == ("STALE", b"")
    assert upstream.to("/page")[1].method == "GET"
    assert (fresh.x_cache, fresh.body) == ("HIT", b"GET /page #2")


async def test_a_failed_refresh_leaves_the_stale_entry_and_is_tried_again(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await rule_proxy(sidecache, stale_while_revalidate="30s")
    await client.get("/page")
    upstream.on("/page", reset=True)
    await refreshed_once(client, upstream, clock)
    upstream.on("/page")  # the app is back
    tried = len(upstream.to("/page"))
    again = await client.get("/page")
    await eventually(lambda: len(upstream.to("/page")) == tried + 1)
    await eventually(lambda: upstream.active == 0)
    fresh = await client.get("/page")

    assert (again.x_cache, again.body) == ("STALE", b"GET /page #1")
    assert (fresh.x_cache, fresh.body) == ("HIT", f"GET /page #{tried + 1}".encode())


# --- stale_if_unreachable: the app gives no answer at all (RFC 9111 §4.2.4) ----------------


async def shared_proxy(sidecache: StartProxy) -> Client:
    return await sidecache(mode="shared", rules=[])


@pytest.mark.parametrize("failure", ["refused", "timeout"])
async def test_shared_mode_serves_stale_when_the_app_cannot_be_reached(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock, failure: str
) -> None:
    """Shared mode's default: a stale entry still kept answers when the app gives no answer
    (a disconnected cache may serve stale), without any stale-if-error window."""
    upstream.on("/page", headers=[("Cache-Control", "max-age=10")])
    client = await shared_proxy(sidecache)
    await client.get("/page")
    clock.advance(300)  # stale for 290 s, within keep (10 minutes)
    upstream.on("/page", **FAILURES[failure])
    stale = await client.get("/page")

    assert (stale.status, stale.x_cache, stale.body) == (200, "STALE", b"GET /page #1")
    assert stale.cache_status == 'sidecache; hit; detail="stale-if-unreachable"'
    assert stale.headers["Age"] == "300"


@pytest.mark.parametrize(
    ("headers", "later", "failure", "status"),
    [
        pytest.param("max-age=10", 30, "503", 503, id="an-answer-is-no-disconnection"),
        pytest.param("max-age=10, must-revalidate", 30, "refused", 502, id="must-revalidate"),
        pytest.param("max-age=10, proxy-revalidate", 30, "refused", 502, id="proxy-revalidate"),
        pytest.param("s-maxage=10", 30, "refused", 502, id="s-maxage"),
        pytest.param("max-age=10, no-cache", 30, "refused", 502, id="no-cache"),
        pytest.param("max-age=10", 700, "refused", 502, id="no-longer-kept"),
    ],
)
async def test_shared_mode_does_not_serve_stale_when_it_may_not(
    sidecache: StartProxy,
    upstream: FakeUpstream,
    clock: FakeClock,
    headers: str,
    later: float,
    failure: str,
    status: int,
) -> None:
    upstream.on("/page", headers=[("Cache-Control", headers), ("ETag", '"a"')])
    client = await shared_proxy(sidecache)
    first = await client.get("/page")
    clock.advance(later)
    upstream.on("/page", **FAILURES[failure])
    got = await client.get("/page")
    assert "stored" in (first.cache_status or "")
    assert (got.status, got.x_cache) == (status, "MISS")  # a 502 says what was tried too


async def test_a_rule_serves_stale_when_unreachable_only_when_it_says_so(
    sidecache: StartProxy, upstream: FakeUpstream, clock: FakeClock
) -> None:
    client = await sidecache(
        rules=[
            {"name": "on", "path": "^/on$", "ttl": "10s", "stale_if_unreachable": True},
            {"name": "off", "path": "^/off$", "ttl": "10s"},
        ]
    )
    await client.get("/on")
    await client.get("/off")
    clock.advance(60)
    upstream.on("/on", reset=True)
    upstream.on("/off", reset=True)
    on, off = await client.get("/on"), await client.get("/off")
    assert (on.x_cache, on.body) == ("STALE", b"GET /on #1")
    assert on.cache_status == 'sidecache; hit; detail="stale-if-unreachable"'
    assert off.status == 502
