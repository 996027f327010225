"""The only code that touches aiohttp's client: one pooled keep-alive session per process.

Traps this module exists to avoid (each has bitten real aiohttp proxies):
- a shared cookie jar would carry one visitor's cookies on another's request: DummyCookieJar;
- decompression would corrupt compressed bodies passed through: auto_decompress=False;
- following redirects would hide them from the client: allow_redirects=False;
- the default 300 s total timeout would cut long streams: total=None, connect and sock_read only;
- aiohttp adds Accept, Accept-Encoding and User-Agent when missing: an added "gzip" would make the
  upstream compress for a client that never asked. skip_auto_headers turns that off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
from yarl import URL

from proxy.settings import Upstream
from proxy.view import Headers, header_text

_SKIP_AUTO = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
CHUNK = 64 * 1024


class UpstreamError(Exception):
    """A failed upstream exchange, carrying the status to answer with (RFC 9110 §15.6.3/§15.6.5)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # a one-word token for logs: upstream-timeout, -refused, -error


def _error(exc: BaseException) -> UpstreamError:
    """Map a client exception: timeouts are 504 Gateway Timeout, everything else 502."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, "upstream timed out", "upstream-timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(502, "upstream refused the connection", "upstream-refused")
    return UpstreamError(502, f"upstream failed: {type(exc).__name__}", "upstream-error")


class UpstreamResponse:
    """Status line and headers of an upstream answer; the body is read with `chunks()`."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.reason = response.reason or ""
        self.headers: Headers = tuple(
            (header_text(n), header_text(v)) for n, v in response.raw_headers
        )
        self.content_length = response.content_length
        chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
        # Close-delimited bodies cannot be told apart from truncated ones (RFC 9112 §6.3).
        self.framed = chunked or self.content_length is not None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises UpstreamError when it does not arrive whole."""
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _error(exc) from exc

    def close(self) -> None:
        """Drop the connection: the body was not read to its end."""
        self._response.close()

    def release(self) -> None:
        """Return the connection to the pool (the body was read whole)."""
        self._response.release()


class UpstreamClient:
    """Sends requests to the one configured upstream over a pooled session."""

    def __init__(self, settings: Upstream) -> None:
        self.settings = settings
        self._base = settings.url
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        s = self.settings
        connector: aiohttp.BaseConnector
        if s.socket:
            connector = aiohttp.UnixConnector(path=s.socket, limit=s.max_connections)
        else:
            connector = aiohttp.TCPConnector(limit=s.max_connections, use_dns_cache=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=s.connect_timeout, sock_read=s.read_timeout
            ),
            skip_auto_headers=_SKIP_AUTO,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
        content_length: int | None = None,
    ) -> UpstreamResponse:
        """Send the request (streaming `body`); return once the status and headers are in."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        url = URL(self._base + target, encoded=True)
        send = list(headers)
        if content_length is not None:
            send.append(("Content-Length", str(content_length)))
        try:
            response = await self._session.request(
                method,
                url,
                headers=send,
                data=body,
                allow_redirects=False,
                compress=None,
                chunked=None,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _error(exc) from exc
        return UpstreamResponse(response)
