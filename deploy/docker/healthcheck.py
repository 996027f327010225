"""The container image's HEALTHCHECK: GET /health on the admin listener sidecache was given.

It follows the running configuration rather than a fixed address, so a mounted config file
that moves or turns off the admin listener is never overridden by the image: the address
comes from SIDECACHE_ADMIN when set (it stands for --admin), else from the `[admin] listen`
of the file SIDECACHE_CONFIG names, else 127.0.0.1:9180. Exit 0 when /health answers 200,
1 otherwise, with one line saying why (docker inspect shows it).
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import tomllib

DEFAULT_CONFIG = "/etc/sidecache/sidecache.toml"
FALLBACK = "127.0.0.1:9180"
TIMEOUT = 2.0


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (`[admin] listen = "unix:/path"`)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.socket_path)
        self.sock = sock


def admin_address(environ: dict[str, str]) -> str:
    """The admin listen address in force: the environment's, the file's, or the fallback."""
    if "SIDECACHE_ADMIN" in environ:
        return environ["SIDECACHE_ADMIN"].strip()
    path = environ.get("SIDECACHE_CONFIG", DEFAULT_CONFIG)
    with open(path, "rb") as file:
        admin = tomllib.load(file).get("admin", {})
    listen = admin.get("listen", FALLBACK) if isinstance(admin, dict) else FALLBACK
    return str(listen).strip()


def connection(address: str) -> http.client.HTTPConnection:
    """A connection to `host:port`, `[v6]:port`, a bare port (127.0.0.1) or `unix:/path`."""
    if address.startswith("unix:"):
        return UnixConnection(address[5:])
    host, _, port = address.rpartition(":")
    return http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port), timeout=TIMEOUT)


def check(environ: dict[str, str]) -> str | None:
    """None when /health answers 200, else why not."""
    try:
        address = admin_address(environ)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return f"cannot read the config file: {exc}"
    if not address:
        return (
            "no admin listener is configured ([admin] listen or SIDECACHE_ADMIN): "
            "nothing answers /health"
        )
    try:
        conn = connection(address)
        conn.request("GET", "/health")
        status = conn.getresponse().status
        conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"admin listener {address}: {exc}"
    return None if status == 200 else f"admin listener {address}: /health answered {status}"


def main() -> int:
    problem = check(dict(os.environ))
    if problem:
        print(f"sidecache healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
