"""The admin listener (issue 6): /health and /ready on a listener of its own; the public
listener serves no internal path."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from proxy.admin import Admin
from proxy.config import parse
from proxy.settings import Listen
from proxy.tomltable import ConfigError

from .conftest import StartProxy
from .support import Client, FakeUpstream


async def admin_get(client: Client, path: str) -> tuple[int, str]:
    address = client.proxy.admin.addresses[0]
    async with aiohttp.ClientSession() as session, session.get(address + path) as response:
        return response.status, await response.text()


async def test_health_and_ready_on_the_admin_listener(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin={"listen": "127.0.0.1:0"})
    health = await admin_get(client, "/health")
    status, text = await admin_get(client, "/ready")
    ready = json.loads(text)

    assert health == (200, "ok\n")
    assert status == 200
    assert ready["ready"] is True
    assert ready["listening"] == client.proxy.addresses
    assert ready["config"] == "test.toml"
    assert ready["upstream"] == "upstream reachable"
    assert upstream.seen == []  # the check opens a connection, it sends no request


async def test_ready_is_503_when_the_upstream_is_unreachable(
    sidecache: StartProxy, closed_port: int
) -> None:
    client = await sidecache(
        admin={"listen": "127.0.0.1:0"}, upstream_url=f"http://127.0.0.1:{closed_port}"
    )
    status, text = await admin_get(client, "/ready")
    assert status == 503
    assert json.loads(text)["upstream"] == "upstream not reachable: ConnectionRefusedError"
    assert (await admin_get(client, "/health"))[0] == 200


async def test_the_public_listener_serves_no_internal_path(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin={"listen": "127.0.0.1:0"})
    for path in ("/health", "/ready"):
        got = await client.get(path)
        assert got.body == f"GET {path} #1".encode()  # the app's answer, through the proxy
    assert [s.path for s in upstream.seen] == ["/health", "/ready"]


async def test_admin_on_a_unix_socket(sidecache: StartProxy, tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")
    client = await sidecache(admin={"listen": f"unix:{path}"})
    assert client.proxy.admin.addresses == [f"unix:{path}"]
    connector = aiohttp.UnixConnector(path=path)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://admin/health") as response,
    ):
        assert (response.status, await response.text()) == (200, "ok\n")


def test_admin_is_off_unless_configured() -> None:
    # Issue 12: a fixed default port made a second proxy on the same host fail to start.
    assert parse({}, "t.toml").admin is None
    assert parse({"admin": {"listen": ""}}, "t.toml").admin is None
    configured = parse({"admin": {"listen": "127.0.0.1:9180"}}, "t.toml").admin
    assert configured is not None and (configured.host, configured.port) == ("127.0.0.1", 9180)


# Product rule: the admin listener has no authentication, so it listens on loopback or a unix
# socket only (README: "a public listen address is refused").
ADMIN_ADDRESSES = [
    pytest.param("127.0.0.1:9181", None, id="ipv4-loopback"),
    pytest.param("127.0.0.2:9181", None, id="all-of-127/8"),
    pytest.param("[::1]:9181", None, id="ipv6-loopback"),
    pytest.param("localhost:9181", None, id="localhost"),
    pytest.param("9181", None, id="bare-port-is-127.0.0.1"),
    pytest.param("unix:/run/sidecache-admin.sock", None, id="unix-socket"),
    pytest.param("0.0.0.0:9181", "0.0.0.0:9181 is not a loopback address", id="all-ipv4"),
    pytest.param(":9181", "0.0.0.0:9181 is not a loopback address", id="empty-host"),
    pytest.param("[::]:9181", "[::]:9181 is not a loopback address", id="all-ipv6"),
    pytest.param("10.1.2.3:9181", "10.1.2.3:9181 is not a loopback address", id="private-ip"),
    pytest.param("example.com:9181", "example.com:9181 is not a loopback", id="hostname"),
]


@pytest.mark.parametrize(("address", "refused"), ADMIN_ADDRESSES)
def test_admin_listens_on_loopback_or_unix_only(address: str, refused: str | None) -> None:
    if refused is None:
        assert parse({"admin": {"listen": address}}, "t.toml").admin is not None
        return
    with pytest.raises(ConfigError) as caught:
        parse({"admin": {"listen": address}}, "t.toml")
    assert str(caught.value).startswith(f"t.toml: admin.listen: {refused}")


def test_admin_refusals() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(
            {"server": {"listen": ["127.0.0.1:9000"]}, "admin": {"listen": "127.0.0.1:9000"}},
            "t.toml",
        )
    assert str(caught.value) == (
        "t.toml: admin.listen: 127.0.0.1:9000 is also a public listen address ([server] listen): "
        "the admin listener needs an address of its own"
    )
    with pytest.raises(ConfigError) as bad:
        parse({"admin": {"listen": "nonsense:port"}}, "t.toml")
    assert str(bad.value).startswith("t.toml: admin.listen: bad listen address")


async def test_a_masters_ready_waits_for_every_worker(upstream: FakeUpstream) -> None:
    """Issue 14: with worker processes, /ready is 503 while one of them is not serving."""
    settings = parse({"upstream": {"url": upstream.url}}, "test.toml")
    serving = [1, 2]
    admin = Admin(lambda: settings, lambda: ["http://127.0.0.1:1"], lambda: (serving[0], 2))
    await admin.start(Listen("127.0.0.1", 0))
    try:
        async with aiohttp.ClientSession() as session:
            for up, status in ((1, 503), (2, 200)):
                serving[0] = up
                async with session.get(admin.addresses[0] + "/ready") as response:
                    body = json.loads(await response.text())
                    assert response.status == status
                    assert body["workers"] == {"serving": up, "wanted": 2}
                    assert body["ready"] is (status == 200)
    finally:
        await admin.stop()
