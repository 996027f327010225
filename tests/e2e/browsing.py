"""Real visitors of a real app, for the end-to-end tests of the example sites (examples/):
the app under gunicorn with its access log as the oracle of what reached it, and browsers with a
cookie jar each, following redirects and posting forms with the CSRF token their page carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from multidict import CIMultiDictProxy
from sidecache_e2e import free_port, spawn, wait_for_port
from yarl import URL

GREETING = re.compile(r'<p class="greeting">Hello, ([^<]*)</p>')
FLASHES = re.compile(r'<ul class="flashes">(.*?)</ul>', re.S)
REQUEST_LINE = re.compile(r'"([A-Z]+ \S+) HTTP/[0-9.]+"')
SYNC = "?access-log-sync="
REDIRECTS = 10  # most redirects followed in a row, as browsers cap them


@dataclass
class Site:
    """The example app under gunicorn (one sync worker) and its access log."""

    url: str
    access_log: Path
    sync_path: str  # a cheap page of the app, asked for with ?access-log-sync=N
    _markers: itertools.count[int]

    async def reached(self) -> list[str]:
        """Every request the app has answered so far ("GET /about", ...), markers left out.

        A marker request goes to gunicorn directly; its line is written after those of every
        request answered before it, so once it is in the file, the file is complete."""
        marker = f"{self.sync_path}{SYNC}{next(self._markers)}"
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url + marker) as response,
        ):
            assert response.status == 200, f"marker request: {response.status}"
            await response.read()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            lines = REQUEST_LINE.findall(self.access_log.read_text(encoding="utf-8"))
            if f"GET {marker}" in lines:
                return [line for line in lines if SYNC not in line]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no access-log line for {marker} within 5 s")


@contextlib.asynccontextmanager
async def gunicorn_site(
    app_dir: Path,
    app: str,
    log_dir: Path,
    sync_path: str,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Site]:
    """`python -m gunicorn --chdir APP_DIR -b 127.0.0.1:PORT -w 1 APP`, its access log in a
    file; stopped by its PID whatever the test did."""
    port = free_port()
    log = log_dir / "gunicorn-access.log"
    log.touch()
    command = [sys.executable, "-m", "gunicorn", "--chdir", str(app_dir)]
    args: Sequence[str] = ["-b", f"127.0.0.1:{port}", "-w", "1", "--access-logfile", str(log), app]
    server = await spawn(args, f"http://127.0.0.1:{port}", command=command, extra_env=env)
    try:
        await wait_for_port(port, within=30.0)
        found = Site(server.base_url, log, sync_path, itertools.count(1))
        try:
            await found.reached()  # the worker is up and answers
        except (AssertionError, aiohttp.ClientError, TimeoutError) as exc:
            raise AssertionError(f"the app does not answer: {exc}\n{server.output()}") from exc
        yield found
    finally:
        await server.stop()


@dataclass
class Page:
    """One response as a browser got it."""

    status: int
    target: str  # path and query asked for
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def x_cache(self) -> str | None:
        return self.headers.get("X-Cache")

    @property
    def cache_status(self) -> str:
        return self.headers.get("Cache-Status", "")

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def greeting(self) -> str | None:
        """Who the layout greets: a user name, "visitor", or None on a page without it."""
        found = GREETING.search(self.text)
        return html.unescape(found.group(1)) if found else None

    @property
    def messages(self) -> list[str]:
        """The flashed messages the page shows."""
        found = FLASHES.search(self.text)
        items = re.findall(r"<li>(.*?)</li>", found.group(1), re.S) if found else []
        return [html.unescape(item) for item in items]

    def describe(self) -> str:
        return (
            f"{self.status} {self.target} X-Cache={self.x_cache} Cache-Status={self.cache_status}"
        )


class Browser:
    """One visitor: a cookie jar of its own, redirects followed, forms posted with the CSRF
    token of the page they were on."""

    def __init__(self, base: str, cookies: Mapping[str, str], token_field: str) -> None:
        self.base = base
        self.token = re.compile(f'name="{token_field}" value="([^"]+)"')
        self.token_field = token_field
        self.jar = aiohttp.CookieJar(unsafe=True)  # unsafe: cookies for an IP address host
        if cookies:
            self.jar.update_cookies(cookies, URL(base))
        self.session = aiohttp.ClientSession(
            cookie_jar=self.jar, timeout=aiohttp.ClientTimeout(total=10)
        )

    async def request(
        self, method: str, target: str, data: Mapping[str, str] | None = None
    ) -> Page:
        """One exchange, no redirect followed."""
        url = URL(self.base + target, encoded=True)
        async with self.session.request(method, url, data=data, allow_redirects=False) as response:
            text = await response.text()
            return Page(response.status, target, response.headers, text)

    async def follow(self, page: Page) -> list[Page]:
        """The redirects from `page` on, as a browser follows a 302 (a GET each; the app sends
        no other kind)."""
        chain: list[Page] = []
        while page.status in (301, 302, 303, 307, 308) and page.location:
            assert len(chain) < REDIRECTS, f"more than {REDIRECTS} redirects: {chain}"
            page = await self.request("GET", self._target(page.location))
            chain.append(page)
        return chain

    async def open(self, target: str) -> list[Page]:
        """GET `target` and follow its redirects: every response, the landing page last."""
        first = await self.request("GET", target)
        return [first, *await self.follow(first)]

    async def get(self, target: str) -> Page:
        """The page a browser lands on after opening `target`."""
        return (await self.open(target))[-1]

    async def submit(
        self, form: Page, fields: Mapping[str, str], action: str | None = None
    ) -> list[Page]:
        """Post `fields` and the page's CSRF token to `action` (default: the form's own URL, as
        an empty action does), then follow the redirects: the POST's response first, the
        landing page last."""
        token = self.token.search(form.text)
        assert token is not None, f"no CSRF token in the form of {form.describe()}:\n{form.text}"
        fields = {self.token_field: token.group(1), **fields}
        posted = await self.request("POST", action or form.target, fields)
        return [posted, *await self.follow(posted)]

    def cookie_names(self) -> set[str]:
        return set(self.jar.filter_cookies(URL(self.base)).keys())

    def cookie(self, name: str) -> str | None:
        """The value of cookie `name` in this browser's jar, None when it has none."""
        morsel = self.jar.filter_cookies(URL(self.base)).get(name)
        return morsel.value if morsel is not None else None

    def _target(self, location: str) -> str:
        if location.startswith(self.base):
            location = location[len(self.base) :]
        assert location.startswith("/"), f"a redirect off the site: {location}"
        return location


OpenBrowser = Callable[..., Browser]


@contextlib.asynccontextmanager
async def open_browsers(token_field: str) -> AsyncIterator[OpenBrowser]:
    """open_browser(base, **cookies): a new visitor with these cookies set before any request,
    posting forms with the token named `token_field`; every session closed at the end."""
    opened: list[Browser] = []

    def open_browser(base: str, **cookies: str) -> Browser:
        browser = Browser(base, cookies, token_field)
        opened.append(browser)
        return browser

    try:
        yield open_browser
    finally:
        for browser in opened:
            await browser.session.close()
