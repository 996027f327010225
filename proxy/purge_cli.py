"""`sidecache purge (--url U | --prefix P | --tag T) [--admin ADDR] [--token T] [CONFIG]`:
ask a running sidecache to remove pages, through its admin listener's `POST /purge`.

The address and the token: --admin and --token, else SIDECACHE_ADMIN and
SIDECACHE_ADMIN_TOKEN (arguments.py applies them), else the config file's `[admin]` (the one
the server runs on: `sidecache purge --tag news /etc/sidecache/site.toml`). The config is
read only when one of them is missing. Exit status: 0 purged, 1 the server refused or failed
(or only part of it purged), 2 a bad argument or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp

from proxy.config import ConfigError, parse, parse_listen, read_toml
from proxy.purge import PurgeError, parse_purge
from proxy.settings import Listen

TIMEOUT = 30.0  # seconds: a prefix purge may SCAN a large Redis
_EVERYWHERE = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def run_purge(args: argparse.Namespace) -> int:
    wanted = {kind: value for kind in ("url", "prefix", "tag") if (value := getattr(args, kind))}
    try:
        purge = parse_purge(wanted)
        admin, token = _admin(args)
    except (PurgeError, ConfigError) as exc:
        print(f"sidecache: purge: {exc}", file=sys.stderr)
        return 2
    try:
        status, body = asyncio.run(_post(admin, token, purge.args))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"sidecache: purge: cannot reach the admin listener {admin}: {exc}", file=sys.stderr)
        return 1
    if status == 200 and isinstance(body.get("purged"), int):
        print(f"purged {body['purged']} ({purge.described()})")
        return 0
    error = body.get("error", body)
    print(f"sidecache: purge: {admin} answered {status}: {error}", file=sys.stderr)
    return 1


def _admin(args: argparse.Namespace) -> tuple[Listen, str]:
    """The admin listener to ask and the token to show it; a ConfigError when none is set."""
    address, token = args.admin, args.admin_token or ""
    if not address or not token:
        data, source = read_toml(args.config)
        settings = parse(data, source)
        if not address and settings.admin is None:
            raise ConfigError(
                source, "admin.listen", "not set: give --admin ADDR (or SIDECACHE_ADMIN)"
            )
        listen = parse_listen(address) if address else settings.admin
        assert listen is not None
        return listen, token or settings.admin_token
    try:
        return parse_listen(address), token
    except ValueError as exc:
        raise ConfigError("command line", "--admin", str(exc)) from None


async def _post(admin: Listen, token: str, args: dict[str, str]) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.UnixConnector(path=admin.path) if admin.path else None
    here = _EVERYWHERE.get(admin.host, admin.host)  # listening everywhere: ask it here
    url = "http://localhost/purge" if admin.path else f"http://{Listen(here, admin.port)}/purge"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.post(url, params=args, headers=headers) as response,
    ):
        text = await response.text()
    try:
        body = json.loads(text)
    except ValueError:
        body = {"error": text.strip()[:200]}
    return response.status, body if isinstance(body, dict) else {"error": body}
