"""Requests on the admin listener as clients really send them, over raw sockets: bytes that
are not UTF-8 in a header, and a URL purge written the way curl's --data-urlencode writes it."""

from __future__ import annotations

from urllib.parse import urlsplit

from .conftest import StartProxy
from .support import Client, FakeUpstream, RawConnection, RawResponse

TOKEN = "0123456789abcdef-token"


async def admin_raw(client: Client, head: bytes) -> RawResponse:
    """`head` (a request without a body) on a fresh connection to the admin listener."""
    port = urlsplit(client.proxy.admin.addresses[0]).port
    assert port is not None
    async with RawConnection(port) as connection:
        await connection.send(head)
        return await connection.response()


def request(method: str, target: str, *headers: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: admin.test", *headers]
    return b"\r\n".join([*lines, b"Content-Length: 0", b"Connection: close", b"", b""])


async def test_an_authorization_that_is_not_utf8_is_401_and_the_listener_serves_on(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin={"listen": "127.0.0.1:0", "token": TOKEN})
    await client.get("/a")
    refused = [
        await admin_raw(client, request("POST", "/purge?url=/a", b"Authorization: Bearer \xff")),
        await admin_raw(client, request("GET", "/metrics", b"Authorization: Bearer \xc3\x28")),
        await admin_raw(client, request("POST", "/purge?url=/a", b"Authorization: \xff " + b"x")),
    ]
    right = await admin_raw(
        client, request("POST", "/purge?url=/a", f"Authorization: Bearer {TOKEN}".encode())
    )

    assert [r.status for r in refused] == [401, 401, 401]
    assert right.status == 200 and right.body == b'{"purged": 1}\n'


# What `curl -X POST -G --data-urlencode 'url=/search?q=a%20b' http://127.0.0.1:PORT/purge`
# sends (curl 7.88, captured): the value percent-encoded once more, as the query's parser
# decodes it once. The form without -G (`?url=/search?q=a%20b`) names `/search?q=a b`.
CURL = (
    b"POST /purge?url=%2fsearch%3fq%3da%2520b HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
)


async def test_a_url_purge_written_as_curl_data_urlencode_writes_it(
    sidecache: StartProxy, upstream: FakeUpstream
) -> None:
    client = await sidecache(admin={"listen": "127.0.0.1:0"})
    filled = [(await client.get("/search?q=a%20b")).x_cache for _ in range(2)]
    unencoded = await admin_raw(client, request("POST", "/purge?url=/search?q=a%20b"))
    still = (await client.get("/search?q=a%20b")).x_cache
    purged = await admin_raw(client, CURL)
    after = (await client.get("/search?q=a%20b")).x_cache

    assert filled == ["MISS", "HIT"]
    assert (unencoded.status, unencoded.body) == (200, b'{"purged": 0}\n')  # `q=a b`: none
    assert still == "HIT"
    assert (purged.status, purged.body) == (200, b'{"purged": 1}\n')
    assert after == "MISS"
