"""The purge tags (`Cache-Tag`, `Surrogate-Key`, `xkey`: the site's own, [purge]) are dropped
from an interim `103 Early Hints` as from the final response, on a fill and on a pass, unless
`[purge] deliver_tags` (raw sockets at both ends, test_interim.py's scripted origin)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import StartProxy
from .support import RawConnection
from .test_interim import HOST, LINK, PAGE, ScriptedOrigin, names, start

TAGGED_HINTS = (
    b"HTTP/1.1 103 Early Hints\r\nLink: " + LINK.encode() + b"\r\n"
    b"Cache-Tag: catalog\r\nSurrogate-Key: p-42\r\nxkey: home\r\n\r\n"
)
TAGS = {"cache-tag", "surrogate-key", "xkey"}
POST = b"POST /page HTTP/1.1\r\n" + HOST + b"Content-Length: 1\r\n\r\nx"
GET = b"GET /page HTTP/1.1\r\n" + HOST + b"\r\n"


@pytest.mark.parametrize(("request_bytes"), [GET, POST], ids=["fill", "pass"])
@pytest.mark.parametrize(
    ("purge", "shown"), [({}, set()), ({"deliver_tags": True}, TAGS)], ids=["strip", "deliver"]
)
async def test_an_early_hints_purge_tags_are_the_sites_own(
    sidecache: StartProxy, request_bytes: bytes, purge: dict[str, Any], shown: set[str]
) -> None:
    sent_hints = asyncio.Event()
    async with ScriptedOrigin({"/page": [[TAGGED_HINTS, sent_hints, PAGE]]}) as origin:
        port = await start(sidecache, origin, purge=purge)
        async with RawConnection(port) as connection:
            await connection.send(request_bytes)
            hints = await connection.response()
            sent_hints.set()
            final = await connection.response()

    assert hints.status == 103 and "link" in names(hints)
    assert names(hints) & TAGS == shown
    assert final.status == 200 and final.body == b"page"
