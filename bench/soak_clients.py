"""bench/soak's clients: each kind is a few concurrent loops, each loop one connection's worth.

Well-behaved kinds (every deviation is an error): `hit` (anonymous GETs of the cached pages and
of the cookie page), `miss` (anonymous GETs of ever new keys), `pass` (`remember_token=x`:
uploads that must come back byte for byte, GETs of pages), `slow` (a 4 MiB page read at a
trickle through a small receive buffer). The others are counted, not judged: `vanish` (clients
that close the socket mid-request or mid-response) and `bad` (requests for the origin's
misbehaving paths; outcomes outside bench/soak_common.BAD_EXPECTED are listed separately).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from soak_common import BAD_EXPECTED, BIG_SIZE, KIB, MIB, PAGES, body_path, page_body

WELL_BEHAVED = ("hit", "miss", "pass", "slow")
KINDS = (*WELL_BEHAVED, "vanish", "bad")
EXAMPLES = 40  # error examples kept


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # per kind (attempts)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, what)
    x_cache: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, X-Cache)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # bad/vanish
    unexpected: Counter[tuple[str, str]] = field(default_factory=Counter)  # bad path, outcome
    slow_requests: Counter[str] = field(default_factory=Counter)  # over 1 s (well-behaved)
    bytes_up: int = 0
    bytes_down: int = 0
    examples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def error(self, kind: str, what: str, detail: str) -> None:
        self.errors[(kind, what)] += 1
        if len(self.examples) < EXAMPLES:
            at = time.monotonic() - self.started
            self.examples.append(f"t={at:.1f}s {kind}: {what}: {detail}")

    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class Plan:
    """How many loops of each kind, and their pause between requests (seconds)."""

    loops: dict[str, int] = field(
        default_factory=lambda: {"hit": 4, "miss": 3, "pass": 2, "slow": 2, "vanish": 2, "bad": 3}
    )
    pause: dict[str, float] = field(
        default_factory=lambda: {
            "hit": 0.004,
            "miss": 0.01,
            "pass": 0.02,
            "slow": 0.2,
            "vanish": 0.05,
            "bad": 0.05,
        }
    )
    slow_rate: int = 512 * KIB  # bytes/s a slow reader reads
    churn_keys: int = 1_000_000  # /churn/N for N in this range: almost every one a miss


class Load:
    def __init__(self, port: int, stats: Stats, plan: Plan, deadline: float, budget: int):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.stats = stats
        self.plan = plan
        self.deadline = deadline  # time.monotonic() at which every loop stops
        self.budget = budget  # most requests over all kinds
        self.stop = asyncio.Event()
        self.unique = itertools.count()

    def running(self) -> bool:
        if self.stop.is_set() or time.monotonic() >= self.deadline:
            return False
        if sum(self.stats.requests.values()) >= self.budget:
            self.stop.set()
            return False
        return True

    async def run(self) -> None:
        loops: list[Awaitable[None]] = []
        sessions: list[aiohttp.ClientSession] = []

        def session(kind: str, timeout: float) -> aiohttp.ClientSession:
            s = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.plan.loops[kind]),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=timeout),
            )
            s._retry_connection = False  # see every cut: no silent retry of a GET
            sessions.append(s)
            return s

        bodies: dict[str, Callable[[aiohttp.ClientSession, random.Random], Awaitable[None]]] = {
            "hit": self.hit,
            "miss": self.miss,
            "pass": self.pass_,
            "bad": self.bad,
        }
        for kind, work in bodies.items():
            s = session(kind, 20.0)
            for n in range(self.plan.loops[kind]):
                loops.append(self._loop(kind, n, work, s))
        for n in range(self.plan.loops["slow"]):
            loops.append(self._raw_loop("slow", n, self.slow))
        for n in range(self.plan.loops["vanish"]):
            loops.append(self._raw_loop("vanish", n, self.vanish))
        try:
            await asyncio.gather(*loops)
        finally:
            for s in sessions:
                await s.close()

    async def _loop(
        self,
        kind: str,
        n: int,
        work: Callable[[aiohttp.ClientSession, random.Random], Awaitable[None]],
        session: aiohttp.ClientSession,
    ) -> None:
        rng = random.Random(f"{kind}-{n}")
        pause = self.plan.pause[kind]
        while self.running():
            await work(session, rng)
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))

    async def _raw_loop(
        self, kind: str, n: int, work: Callable[[random.Random], Awaitable[None]]
    ) -> None:
        rng = random.Random(f"{kind}-{n}")
        pause = self.plan.pause[kind]
        while self.running():
            await work(rng)
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))

    # --- well-behaved -------------------------------------------------------------------

    async def _get_check(
        self,
        kind: str,
        session: aiohttp.ClientSession,
        path: str,
        query: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.stats.requests[kind] += 1
        url = self.base + path + query
        begun = time.monotonic()
        try:
            async with session.get(url, headers=headers) as response:
                body = await response.read()
                status, x_cache = response.status, response.headers.get("X-Cache", "-")
                cache_status = response.headers.get("Cache-Status", "-")
        except Exception as exc:
            self.stats.error(kind, _exc_name(exc), f"GET {path}{query}: {exc!r}"[:300])
            return
        self._judge(kind, "GET", path + query, status, x_cache, cache_status, body, path, begun)

    def _judge(
        self,
        kind: str,
        method: str,
        target: str,
        status: int,
        x_cache: str,
        cache_status: str,
        body: bytes,
        expected_path: str,
        begun: float,
        expected: bytes | None = None,
    ) -> None:
        took = time.monotonic() - begun
        if took > 1.0:
            self.stats.slow_requests[kind] += 1
        self.stats.bytes_down += len(body)
        self.stats.x_cache[(kind, x_cache)] += 1
        where = f"{method} {target} -> {status} X-Cache={x_cache} Cache-Status={cache_status}"
        if status != 200:
            self.stats.error(kind, f"status {status}", f"{where} body={body[:80]!r}")
            return
        want = page_body(expected_path) if expected is None else expected
        if body == want:
            return
        if expected is None and body_path(body) not in ("", expected_path):
            self.stats.error(kind, "body from another URL", f"{where} body is {body_path(body)}")
        else:
            self.stats.error(kind, "wrong body", f"{where} {len(body)} bytes, {len(want)} wanted")

    async def hit(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        if rng.random() < 0.1:
            await self._get_check("hit", session, "/cookie")
        else:
            await self._get_check("hit", session, f"/page/{rng.randrange(PAGES)}")

    async def miss(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        await self._get_check("miss", session, f"/churn/{rng.randrange(self.plan.churn_keys)}")

    async def pass_(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        cookie = {"Cookie": "remember_token=x"}
        roll = rng.random()
        if roll < 0.15:
            await self._get_check("pass", session, f"/page/{rng.randrange(PAGES)}", "", cookie)
            return
        if roll < 0.25:
            await self._get_check("pass", session, "/cookie", "", cookie)
            return
        size = _upload_size(rng)
        data = rng.randbytes(size)
        chunked = rng.random() < 0.3
        self.stats.requests["pass"] += 1
        self.stats.bytes_up += size
        target = f"/upload?n={next(self.unique)}"
        begun = time.monotonic()
        payload: bytes | AsyncIterator[bytes] = _chunks(data) if chunked else data
        try:
            async with session.post(self.base + target, data=payload, headers=cookie) as r:
                body = await r.read()
                status, x_cache = r.status, r.headers.get("X-Cache", "-")
                cache_status = r.headers.get("Cache-Status", "-")
        except Exception as exc:
            framing = "chunked" if chunked else "length"
            self.stats.error("pass", _exc_name(exc), f"POST {target} {size} B {framing}: {exc!r}")
            return
        self._judge(
            "pass", "POST", target, status, x_cache, cache_status, body, "", begun, expected=data
        )

    async def slow(self, rng: random.Random) -> None:
        """GET /big (4 MiB; one time in five a new /churn/N page, a fill that is stored) through
        a 16 KiB receive buffer at plan.slow_rate, on one connection kept alive for a few
        requests."""
        requests = rng.randint(1, 3)
        conn = None
        try:
            conn = await _connect(self.port, rcvbuf=16 * KIB)
            reader, writer = conn
            for i in range(requests):
                if not self.running():
                    break
                self.stats.requests["slow"] += 1
                last = i == requests - 1
                path = "/big"
                if rng.random() < 0.2:
                    path = f"/churn/{rng.randrange(self.plan.churn_keys)}"
                want = page_body(path)
                head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                head += "Connection: close\r\n\r\n" if last else "\r\n"
                writer.write(head.encode())
                begun = time.monotonic()
                async with asyncio.timeout(BIG_SIZE / self.plan.slow_rate * 3 + 10):
                    status, headers = await _read_head(reader)
                    length = int(headers.get("content-length", "-1"))
                    if status != 200 or length != len(want):
                        self.stats.error(
                            "slow", f"status {status}", f"GET {path}: Content-Length {length}"
                        )
                        return
                    digest = hashlib.sha256()
                    left = length
                    while left:
                        chunk = await reader.read(min(16 * KIB, left))
                        if not chunk:
                            self.stats.error(
                                "slow", "cut mid-body", f"GET {path}: {length - left} of {length}"
                            )
                            return
                        digest.update(chunk)
                        left -= len(chunk)
                        self.stats.bytes_down += len(chunk)
                        await asyncio.sleep(len(chunk) / self.plan.slow_rate)
                self.stats.x_cache[("slow", headers.get("x-cache", "-").upper())] += 1
                if digest.digest() != hashlib.sha256(want).digest():
                    self.stats.error("slow", "wrong body", f"GET {path}: digest differs")
                    return
                if time.monotonic() - begun > 1.0:
                    self.stats.slow_requests["slow"] += 1
        except Exception as exc:
            self.stats.error("slow", _exc_name(exc), f"GET (slow reader): {exc!r}"[:300])
        finally:
            if conn is not None:
                conn[1].close()

    # --- counted, not judged --------------------------------------------------------------

    async def vanish(self, rng: random.Random) -> None:
        mode = rng.choice(VANISH_MODES)
        self.stats.requests["vanish"] += 1
        self.stats.outcomes[("vanish", mode)] += 1
        try:
            reader, writer = await _connect(self.port)
        except OSError as exc:
            self.stats.outcomes[("vanish", f"connect failed: {_exc_name(exc)}")] += 1
            return
        n = next(self.unique)
        reset = mode.endswith("-rst")
        try:
            if mode == "idle":
                pass
            elif mode == "half-head":
                writer.write(b"GET /page/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */")
                await writer.drain()
                await asyncio.sleep(0.01)
            elif mode in ("miss-before-answer", "miss-before-answer-rst"):
                writer.write(f"GET /churn/{n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                await writer.drain()
            elif mode == "slow-before-answer":
                writer.write(b"GET /bad/slow?v=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n)
                await writer.drain()
                await asyncio.sleep(0.1)
            elif mode in ("big-mid-response", "big-mid-response-rst"):
                writer.write(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await reader.readexactly(64 * KIB)
            elif mode in ("upload-mid-body", "upload-mid-body-rst"):
                writer.write(
                    b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: remember_token=x\r\n"
                    b"Content-Length: %d\r\n\r\n" % MIB
                )
                writer.write(os.urandom(128 * KIB))
                await writer.drain()
                await asyncio.sleep(0.02)
            elif mode == "pipelined":
                writer.write(
                    b"".join(
                        b"GET /page/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % i for i in range(3)
                    )
                    + b"GET /churn/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n
                )
                await writer.drain()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await reader.read(2 * KIB)
        except OSError:
            pass
        finally:
            if reset:
                _reset(writer)
            else:
                writer.close()

    async def bad(self, session: aiohttp.ClientSession, rng: random.Random) -> None:
        kind = rng.choice(list(BAD_EXPECTED))
        query = f"?b={next(self.unique)}" if rng.random() < 0.5 else ""
        target = f"/bad/{kind}{query}"
        self.stats.requests["bad"] += 1
        begun = time.monotonic()
        try:
            async with session.get(self.base + target) as response:
                body = await response.read()
                outcome = str(response.status)
                if response.status == 200 and body != page_body("/bad/slow") and kind == "slow":
                    outcome = "200 wrong body"
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            outcome = "cut"
        except aiohttp.ClientOSError as exc:
            outcome = "cut" if isinstance(exc.__cause__ or exc, ConnectionError) else _exc_name(exc)
        except Exception as exc:
            outcome = _exc_name(exc)
        took = time.monotonic() - begun
        self.stats.outcomes[(f"/bad/{kind}", outcome)] += 1
        if outcome not in BAD_EXPECTED[kind]:
            self.stats.unexpected[(f"/bad/{kind}", outcome)] += 1
            if len(self.stats.examples) < EXAMPLES:
                self.stats.examples.append(
                    f"t={time.monotonic() - self.stats.started:.1f}s bad (not counted as an "
                    f"error): GET {target} -> {outcome} after {took:.2f}s"
                )


VANISH_MODES = (
    "idle",
    "half-head",
    "miss-before-answer",
    "miss-before-answer-rst",
    "slow-before-answer",
    "big-mid-response",
    "big-mid-response-rst",
    "upload-mid-body",
    "upload-mid-body-rst",
    "pipelined",
)


def _upload_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.7:
        return rng.randint(1, 64 * KIB)
    if roll < 0.95:
        return rng.randint(64 * KIB, MIB)
    return rng.randint(MIB, 4 * MIB)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    step = 32 * KIB
    for start in range(0, len(data), step):
        yield data[start : start + step]


def _exc_name(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "client timeout"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "cut mid-body"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    return type(exc).__name__


async def _connect(port: int, rcvbuf: int = 0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock, limit=rcvbuf or 64 * KIB)
    except BaseException:
        sock.close()
        raise


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
