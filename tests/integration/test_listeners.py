"""The master's listening sockets (listeners.py), bound for real on 127.0.0.1 and unix sockets:
one SO_REUSEPORT socket per worker on each TCP address, one shared unix socket, systemd's
sockets passed on as they are, and an address someone listens on refused as without workers."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.listeners import bind_listeners
from proxy.server import ListenError
from proxy.settings import Listen


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sc-", dir="/tmp") as path:
        yield Path(path)


def test_each_worker_gets_its_own_socket_on_the_same_port() -> None:
    bound = bind_listeners([Listen("127.0.0.1", 0)], 3)
    try:
        own = [bound.for_worker(slot) for slot in range(3)]
        assert [len(sockets) for sockets in own] == [1, 1, 1]
        ports = {sockets[0].getsockname()[1] for sockets in own}
        assert len(ports) == 1 and len({s[0].fileno() for s in own}) == 3
        for [sock] in own:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert bound.addresses == [f"http://127.0.0.1:{ports.pop()}"]
    finally:
        bound.close()


def test_connections_reach_every_workers_socket() -> None:
    """The kernel spreads new connections over the group; none waits on a socket alone."""
    bound = bind_listeners([Listen("127.0.0.1", 0)], 2)
    try:
        port = bound.for_worker(0)[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = []
        for slot in range(2):
            [sock] = bound.for_worker(slot)
            sock.setblocking(False)
            count = 0
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                count += 1
            accepted.append(count)
        for client in clients:
            client.close()
        assert sum(accepted) == 64 and min(accepted) > 0, accepted
    finally:
        bound.close()


def test_an_address_another_process_listens_on_is_refused() -> None:
    """SO_REUSEPORT would let a second sidecache of the same user join the group: the probe
    (a plain bind) refuses it, as a single process would."""
    first = bind_listeners([Listen("127.0.0.1", 0)], 2)
    port = first.for_worker(0)[0].getsockname()[1]
    try:
        with pytest.raises(ListenError) as caught:
            bind_listeners([Listen("127.0.0.1", port)], 2)
        assert str(caught.value) == (
            f"cannot listen on 127.0.0.1:{port} for the public listener ([server] listen, "
            "--listen, SIDECACHE_LISTEN): address already in use"
        )
    finally:
        first.close()


def test_a_failed_bind_leaves_nothing_open() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ListenError):
            bind_listeners([Listen("127.0.0.1", 0), Listen("127.0.0.1", port)], 2)
    finally:
        holder.close()
    # the first address's sockets were closed: binding the same listen list now works
    again = bind_listeners([Listen("127.0.0.1", port)], 2)
    again.close()


def test_a_unix_socket_is_one_socket_every_worker_serves(socket_dir: Path) -> None:
    path = str(socket_dir / "p.sock")
    bound = bind_listeners([Listen("127.0.0.1", 0), Listen(path=path)], 2)
    try:
        first, second = bound.for_worker(0), bound.for_worker(1)
        assert first[1] is second[1] and first[1].family == socket.AF_UNIX
        assert first[0] is not second[0]
        assert bound.addresses[1] == f"unix:{path}"
    finally:
        bound.close()


def test_sockets_passed_by_systemd_replace_the_configured_addresses() -> None:
    passed = socket.socket()
    passed.bind(("127.0.0.1", 0))
    passed.listen()
    port = passed.getsockname()[1]
    bound = bind_listeners([Listen("127.0.0.1", 1)], 2, passed=[passed])
    try:
        assert bound.for_worker(0) == bound.for_worker(1) == [passed]
        assert bound.addresses == [f"http://127.0.0.1:{port}"]
    finally:
        bound.close()
