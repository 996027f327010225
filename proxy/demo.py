"""`sidecache demo`: a small site behind the proxy, to see hit / miss / pass by hand.

The site plays a Flask-Login app: anonymous pages, a login that sets `remember_token`, a
personalised page, a slow page (250 ms, the seed's figure) and a page too big to store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import time

from aiohttp import web

from proxy.lifecycle import until_stopped
from proxy.server import Proxy, bind
from proxy.settings import Settings

SLOW_SECONDS = 0.25
DEMO_SITE = "the demo site (--demo-port)"


def _page(title: str, body: str) -> web.Response:
    text = (
        f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
        f"{body}<p>rendered at {time.strftime('%H:%M:%S')} ({time.time():.3f})</p>"
    )
    return web.Response(text=text, content_type="text/html")


async def home(request: web.Request) -> web.Response:
    return _page("Home", "<p>Everyone sees this page. Reload it: the time stays put.</p>")


async def about(request: web.Request) -> web.Response:
    return _page("About", "<p>A caching proxy demo.</p>")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(SLOW_SECONDS)
    return _page("Slow", f"<p>This page takes {SLOW_SECONDS * 1000:.0f} ms to render.</p>")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (1024 * 1024), content_type="application/octet-stream")


async def login_form(request: web.Request) -> web.Response:
    form = '<form method="post"><input name="user" value="alice"><button>Log in</button></form>'
    return _page("Log in", form)


async def login(request: web.Request) -> web.Response:
    user = str((await request.post()).get("user", "alice"))
    response = web.HTTPFound("/me")
    response.set_cookie("remember_token", f"{user}|demo-signature", httponly=True)
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/")
    response.del_cookie("remember_token")
    raise response


async def me(request: web.Request) -> web.Response:
    token = request.cookies.get("remember_token")
    if token is None:
        return _page("Me", '<p>You are not logged in. <a href="/login">Log in</a>.</p>')
    user = html.escape(token.split("|", 1)[0])
    return _page(f"Hello, {user}", '<p>Only you see this page. <a href="/logout">Log out</a>.</p>')


def demo_app() -> web.Application:
    app = web.Application()
    app.add_routes(
        [
            web.get("/", home),
            web.get("/about", about),
            web.get("/slow", slow),
            web.get("/big", big),
            web.get("/login", login_form),
            web.post("/login", login),
            web.get("/logout", logout),
            web.get("/me", me),
        ]
    )
    return app


async def run_demo(settings: Settings, port: int) -> None:
    """Start the demo site on 127.0.0.1:`port` and sidecache in front of it, until a signal."""
    runner = web.AppRunner(demo_app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await bind(site.start(), f"127.0.0.1:{port}", DEMO_SITE)
        upstream = dataclasses.replace(settings.upstream, url=f"http://127.0.0.1:{port}", socket="")
        proxy = Proxy(dataclasses.replace(settings, upstream=upstream))
        await proxy.start()
        try:
            print(_instructions(proxy.addresses[0], port), flush=True)
            await until_stopped(proxy.reopen_access_log)
        finally:
            await proxy.stop()
    finally:
        await runner.cleanup()


def _instructions(base: str, port: int) -> str:
    return f"""
sidecache demo: the demo site runs on http://127.0.0.1:{port}, sidecache in front on {base}
Try (watch the X-Cache header and the access log below):
  curl -si {base}/ | grep -iE '^(x-cache|cache-status|age):'  # MISS, then HIT on the second try
  curl -s  {base}/slow -o /dev/null -w '%{{time_total}}s\\n'   # 0.25 s once, then fast
  curl -si {base}/me -H 'Cookie: remember_token=alice|x'       # always PASS: logged in
  curl -si {base}/login -d user=bob                           # POST: PASS, sets remember_token
  curl -s  {base}/big -o /dev/null -w '%{{size_download}}\\n'  # 1 MiB: streamed, not stored
Stop with Ctrl-C.
"""
