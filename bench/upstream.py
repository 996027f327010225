"""A minimal origin for benchmarks: every GET returns a fixed body of SIZE bytes."""

import sys

from aiohttp import web

SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
BODY = b"x" * SIZE


async def page(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="text/html")


app = web.Application()
app.router.add_get("/{path:.*}", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
