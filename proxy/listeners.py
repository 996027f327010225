"""The master's listening sockets: bound once, by the master, and handed to the workers.

- A TCP address gets one SO_REUSEPORT socket per worker slot (`workers.sockets_per_listener`):
  the kernel spreads new connections over them evenly. The master keeps every one, so a worker
  that dies leaves its socket open: connections queued on it wait for the replacement, which
  inherits the same socket, instead of being reset.
- SO_REUSEPORT lets any process of the same user bind the port too, so a second sidecache on
  the same address would share it silently. Each address is first bound by a plain socket, as
  a probe, and closed: a port someone listens on is refused as it is without workers.
- A unix socket, and each socket passed by systemd's socket activation, is one socket every
  worker serves.
- A bind error is the `ListenError` a single process reports, said once, by the master.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.server import PUBLIC_LISTENER, ListenError, addresses, remove_stale_socket
from proxy.settings import Listen
from proxy.workers import sockets_per_listener

BACKLOG = 100  # asyncio's default for create_server, which binds the single process's sockets


@dataclass
class Listeners:
    """Each worker slot's own sockets, the sockets every worker serves, and the addresses."""

    own: list[list[socket.socket]]
    shared: list[socket.socket] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    def for_worker(self, slot: int) -> list[socket.socket]:
        """The sockets of worker slot `slot` (0-based): its own and the shared ones."""
        return [*self.own[slot], *self.shared]

    def close(self) -> None:
        for sock in [*(s for own in self.own for s in own), *self.shared]:
            sock.close()


def bind_listeners(
    listen: Sequence[Listen], workers: int, passed: Sequence[socket.socket] = ()
) -> Listeners:
    """Bind every public address for `workers` slots; systemd's sockets, when it passed some,
    replace the configured addresses (as in a single process). On failure nothing stays open."""
    bound = Listeners([[] for _ in range(workers)])
    try:
        if passed:
            bound.shared.extend(passed)
            bound.addresses.extend(_passed_addresses(passed))
            return bound
        for item in listen:
            try:
                _bind(bound, item, workers)
            except OSError as exc:
                raise ListenError(str(item), PUBLIC_LISTENER, exc) from exc
    except BaseException:
        bound.close()
        raise
    return bound


def _bind(bound: Listeners, listen: Listen, workers: int) -> None:
    if listen.path:
        bound.shared.append(_unix_socket(listen.path))
        bound.addresses.append(f"unix:{listen.path}")
        return
    for family, address in _resolve(listen):
        port = _probe(family, address)
        found = [_tcp_socket(family, (address[0], port, *address[2:]), True)]
        for _ in range(1, sockets_per_listener(listen, workers)):
            found.append(_tcp_socket(family, found[0].getsockname(), True))
        for slot, sock in enumerate(found):
            bound.own[slot].append(sock)
        bound.addresses.extend(addresses(found[:1], listen))


def _resolve(listen: Listen) -> list[tuple[int, tuple[object, ...]]]:
    """The addresses `loop.create_server(host, port)` would bind (each family a host has)."""
    infos = socket.getaddrinfo(
        listen.host or None, listen.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    unique: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, address in infos:
        if (family, address) not in unique:
            unique.append((family, tuple(address)))
    return unique


def _probe(family: int, address: tuple[object, ...]) -> int:
    """Bind `address` without SO_REUSEPORT and let go: EADDRINUSE when anyone listens there,
    a group of SO_REUSEPORT sockets included. The port, which the kernel picks for port 0."""
    with _tcp_socket(family, address, reuse_port=False, listen=False) as probe:
        return int(probe.getsockname()[1])


def _tcp_socket(
    family: int, address: tuple[object, ...], reuse_port: bool, listen: bool = True
) -> socket.socket:
    """A socket as asyncio's create_server makes one (SO_REUSEADDR, IPv6 only on AF_INET6)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if listen:
            sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_socket(path: str) -> socket.socket:
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _passed_addresses(passed: Sequence[socket.socket]) -> list[str]:
    found = []
    for sock in passed:
        if sock.family == socket.AF_UNIX:
            found.append(f"unix:{sock.getsockname()}")
        else:
            found.extend(addresses([sock], Listen()))
    return found
