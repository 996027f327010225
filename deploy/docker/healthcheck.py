"""The container image's HEALTHCHECK: GET /health on the admin listener sidecache was given.

It follows the running configuration rather than a fixed address, so a mounted config file
that moves or turns off the admin listener is never overridden by the image. The address is
found as sidecache finds it (flags win over variables, both over the file): an `--admin`
argument of the container's command (PID 1's command line), else SIDECACHE_ADMIN, else the
`[admin] listen` of the file named by `--config` or SIDECACHE_CONFIG, else 127.0.0.1:9180.
Exit 0 when /health answers 200, 1 otherwise, with one line saying why (docker inspect shows it).
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


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv (the last one), else None."""
    found = None
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            found = argv[index + 1]
        elif arg.startswith(name + "="):
            found = arg[len(name) + 1 :]
    return found


def sidecache_argv() -> list[str]:
    """The arguments of the container's PID 1 when it is sidecache (exec-form ENTRYPOINT).

    The console script starts through its shebang, so the command line reads
    `python3 /usr/local/bin/sidecache ARGS`: the arguments follow the script's path.
    """
    try:
        with open("/proc/1/cmdline", "rb") as file:
            argv = file.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return []
    for index, arg in enumerate(argv[:2]):
        if os.path.basename(arg) == "sidecache":
            return argv[index + 1 :]
    return []


def admin_address(environ: dict[str, str], argv: list[str]) -> str:
    """The admin listen address in force: the flag's, the variable's, the file's, or 9180."""
    flag = option(argv, "--admin")
    if flag is not None:
        return flag.strip()
    if "SIDECACHE_ADMIN" in environ:
        return environ["SIDECACHE_ADMIN"].strip()
    path = option(argv, "--config") or environ.get("SIDECACHE_CONFIG", DEFAULT_CONFIG)
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


def check(environ: dict[str, str], argv: list[str]) -> str | None:
    """None when /health answers 200, else why not."""
    try:
        address = admin_address(environ, argv)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return f"cannot read the config file: {exc}"
    if not address:
        return (
            "no admin listener is configured ([admin] listen, SIDECACHE_ADMIN or --admin): "
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
    problem = check(dict(os.environ), sidecache_argv())
    if problem:
        print(f"sidecache healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
