"""Streaming, measured: 1 GiB through the real process must not grow its memory by more than
a few MiB (issue: "a 1 GiB upload or download through the proxy must not grow its memory by more
than a few MiB").

The proxy's peak resident size (VmHWM, /proc/PID/status) is read once it is ready, after a
16 MiB warm-up of the same exchange, and after the 1 GiB one. A proxy that buffered a body whole
would grow by about a GiB. Measured here: under 2 MiB overall, about 1.5-2 s per GiB.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from sidecache_e2e import Seen, Sidecache, Upstream, generated, new_session, proc_status

MIB = 1024 * 1024
STREAM_BYTES = 1024 * MIB
WARM_UP_BYTES = 16 * MIB
MAX_GROWTH = 8 * MIB  # measured ~1 MiB; the issue allows "a few MiB"
MAX_SECONDS = 30.0  # per transfer; ~1.6 s here
PATTERN = os.urandom(256 * 1024 + 7)  # odd size: proxy chunks never line up with it


def pattern_digest(total: int) -> str:
    digest = hashlib.sha256()
    whole, rest = divmod(total, len(PATTERN))
    for _ in range(whole):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


@dataclass
class Transfer:
    name: str
    upload: bool
    framing: str  # "content-length" or "chunked"
    headers: dict[str, str]
    expected_cache: str


TRANSFERS = [
    # A logged-in download is a pass; an anonymous one is a miss whose recorder must overflow
    # and let go (chunked: the size is unknown until the end).
    Transfer("download-pass", False, "content-length", {"Cookie": "remember_token=t"}, "PASS"),
    Transfer("download-miss", False, "chunked", {}, "MISS"),
    Transfer("upload-chunked", True, "chunked", {}, "PASS"),
    Transfer("upload-content-length", True, "content-length", {}, "PASS"),
]


def streaming_routes(upstream: Upstream, framing: str) -> None:
    async def download(request: web.Request, seen: Seen) -> web.StreamResponse:
        total = int(request.query["bytes"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if framing == "chunked":
            response.enable_chunked_encoding()
        else:
            response.content_length = total
        await response.prepare(request)
        async for piece in generated(total, PATTERN):
            await response.write(piece)
        await response.write_eof()
        return response

    async def sink(request: web.Request, seen: Seen) -> web.StreamResponse:
        return web.Response(text=f"{seen.body_length} {seen.body_sha256}")

    upstream.route("/download", download)
    upstream.route("/sink", sink)


async def transfer(
    session: aiohttp.ClientSession, proxy: Sidecache, case: Transfer, total: int
) -> tuple[int, str, str | None, bytes]:
    """Run one exchange; return (status, digest of what the client read, X-Cache, reply body)."""
    headers = dict(case.headers)
    if case.upload:
        if case.framing == "content-length":
            headers["Content-Length"] = str(total)
        url = f"{proxy.base_url}/sink"
        async with session.post(url, data=generated(total, PATTERN), headers=headers) as response:
            body = await response.read()
            return response.status, "", response.headers.get("X-Cache"), body
    digest = hashlib.sha256()
    async with session.get(f"{proxy.base_url}/download?bytes={total}", headers=headers) as response:
        async for chunk in response.content.iter_any():
            digest.update(chunk)
        return response.status, digest.hexdigest(), response.headers.get("X-Cache"), b""


@pytest.mark.parametrize("case", TRANSFERS, ids=[t.name for t in TRANSFERS])
async def test_a_gibibyte_streams_through_in_bounded_memory(upstream, start_sidecache, case):
    streaming_routes(upstream, case.framing)
    proxy = await start_sidecache(upstream=upstream.url)

    async with new_session(timeout=MAX_SECONDS) as session:
        start = proc_status(proxy.pid)
        warm = await transfer(session, proxy, case, WARM_UP_BYTES)
        before = proc_status(proxy.pid)
        started = time.monotonic()
        status, digest, x_cache, body = await transfer(session, proxy, case, STREAM_BYTES)
        elapsed = time.monotonic() - started
        after = proc_status(proxy.pid)

    growth = after["VmHWM"] - start["VmHWM"]
    print(
        f"\n{case.name}: {STREAM_BYTES // MIB} MiB in {elapsed:.2f} s; VmHWM at start "
        f"{start['VmHWM'] / MIB:.1f} MiB, after {WARM_UP_BYTES // MIB} MiB warm-up "
        f"{before['VmHWM'] / MIB:.1f}, after 1 GiB {after['VmHWM'] / MIB:.1f} "
        f"(+{growth / MIB:.2f} MiB overall, +{(after['VmHWM'] - before['VmHWM']) / MIB:.2f} "
        f"for the GiB); VmRSS {start['VmRSS'] / MIB:.1f} -> {after['VmRSS'] / MIB:.1f} MiB"
    )
    assert warm[0] == status == 200
    assert x_cache == case.expected_cache
    if case.upload:
        expected = f"{STREAM_BYTES} {pattern_digest(STREAM_BYTES)}".encode()
        assert body == expected
        last = upstream.seen[-1]
        assert (last.method, last.body_length) == ("POST", STREAM_BYTES)
        if case.framing == "content-length":
            assert last.headers["Content-Length"] == str(STREAM_BYTES)
        else:
            assert last.headers["Transfer-Encoding"] == "chunked"
    else:
        assert digest == pattern_digest(STREAM_BYTES)
        assert upstream.count(f"/download?bytes={STREAM_BYTES}") == 1
    assert growth < MAX_GROWTH, f"{case.name}: peak memory grew by {growth / MIB:.1f} MiB"
