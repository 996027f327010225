"""systemd integration without a dependency: sd_notify(3) and socket activation (sd_listen_fds(3)).

- `notify("READY=1")` sends one datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
  namespace); without the variable it does nothing, so the same binary runs anywhere.
- `passed_sockets()` returns the listening sockets systemd passed (`LISTEN_FDS` from fd 3 on,
  for this process: `LISTEN_PID`), and unsets the variables so children do not take them too.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("sidecache")

FIRST_FD = 3  # SD_LISTEN_FDS_START


def notify(state: str) -> bool:
    """Tell systemd `state` (e.g. "READY=1\\nSTATUS=..."); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", address, exc)
        return False
    return True


def passed_sockets() -> list[socket.socket]:
    """The listening sockets passed by socket activation, or [] when there are none."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    found = []
    for fd in range(FIRST_FD, FIRST_FD + count):
        os.set_inheritable(fd, False)
        found.append(socket.socket(fileno=fd))
    return found
