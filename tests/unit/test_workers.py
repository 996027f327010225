"""Pin the decisions about worker processes (workers.py): what `workers` may be, how many
sockets a listener gets, the restart backoff, how an exit is described, what a worker inherits
of the environment, and the master's messages however the pipe cuts them."""

from __future__ import annotations

import os
import pickle
import signal

import pytest

from proxy.config import parse
from proxy.explain import describe
from proxy.server import restart_notes
from proxy.settings import Listen
from proxy.workers import (
    MAX_WORKERS,
    NOT_INHERITED,
    PATH_VARIABLE,
    READY,
    RELOADED,
    Answer,
    Boot,
    Config,
    Query,
    available_cpus,
    encode,
    exit_description,
    failures_after_exit,
    from_master,
    from_worker,
    parse_workers,
    restart_delay,
    sockets_per_listener,
    summed,
    worker_environment,
)


@pytest.mark.parametrize(
    ("value", "cpus", "expected"),
    [
        pytest.param(1, 8, 1, id="one-process"),
        pytest.param(4, 2, 4, id="more-than-cpus-is-allowed"),
        pytest.param("auto", 6, 6, id="auto-is-the-cpu-count"),
        pytest.param("auto", 1000, MAX_WORKERS, id="auto-is-capped"),
        pytest.param("auto", 0, 1, id="auto-at-least-one"),
        pytest.param("3", 8, 3, id="digits-from-the-command-line"),
        pytest.param(MAX_WORKERS, 8, MAX_WORKERS, id="the-most"),
    ],
)
def test_parse_workers(value: object, cpus: int, expected: int) -> None:
    assert parse_workers(value, cpus) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(0, "must be from 1 to 256", id="zero"),
        pytest.param(-2, "must be from 1 to 256", id="negative"),
        pytest.param(MAX_WORKERS + 1, "must be from 1 to 256", id="too-many"),
        pytest.param("0", "must be from 1 to 256", id="zero-as-text"),
        pytest.param(10**5000, "must be from 1 to 256", id="huge-int"),
        pytest.param("9" * 5000, "expected a whole number", id="huge-digits"),
        pytest.param(True, "got True", id="bool"),
        pytest.param(2.0, "got 2.0", id="float"),
        pytest.param("AUTO", "got 'AUTO'", id="auto-is-lower-case"),
        pytest.param(" 2", "got ' 2'", id="spaces"),
        pytest.param("\u0663", "expected a whole number", id="arabic-digit"),
        pytest.param([2], "got [2]", id="list"),
    ],
)
def test_bad_workers_values(value: object, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_workers(value, 4)
    assert problem in str(caught.value)


def test_available_cpus_is_the_affinity_mask() -> None:
    assert available_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_a_tcp_address_gets_a_socket_per_worker_a_unix_socket_one() -> None:
    assert sockets_per_listener(Listen("127.0.0.1", 8080), 4) == 4
    assert sockets_per_listener(Listen(path="/run/s.sock"), 4) == 1


def test_restart_backoff_doubles_to_a_cap() -> None:
    delays = [restart_delay(n) for n in range(0, 12)]
    assert delays[:5] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 10.0 and max(delays) == 10.0
    assert restart_delay(10**6) == 10.0  # no overflow for a worker that never stays up


def test_a_worker_that_served_long_enough_starts_the_count_again() -> None:
    assert failures_after_exit(0, 0.5) == 1
    assert failures_after_exit(3, 0.5) == 4  # died again quickly: a longer wait
    assert failures_after_exit(7, 3600.0) == 1  # served an hour: a fresh failure


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (0, "exited with status 0"),
        (1, "exited with status 1"),
        (-signal.SIGKILL, "killed by signal SIGKILL"),
        (-signal.SIGSEGV, "killed by signal SIGSEGV"),
        (-200, "killed by signal 200"),
    ],
)
def test_exit_description(returncode: int, said: str) -> None:
    assert exit_description(returncode) == said


def test_a_worker_inherits_neither_systemds_socket_nor_its_listen_variables() -> None:
    environ = {name: "x" for name in NOT_INHERITED} | {"PATH": "/bin", "SIDECACHE_TTL": "5s"}
    env = worker_environment(environ, ["/a:b", "/c"])
    assert not set(NOT_INHERITED) & set(env)
    assert env["PATH"] == "/bin" and env["SIDECACHE_TTL"] == "5s"
    assert env[PATH_VARIABLE] == '["/a:b", "/c"]'  # JSON: a path may hold os.pathsep


def test_messages_survive_any_cut_of_the_stream() -> None:
    config = Config({"server": {"listen": ["127.0.0.1:1"]}, "rules": [{"path": "^/$"}]}, "f")
    boot = Boot(2, (5, 6), 7, 20, config)
    query = Query(3, "purge", {"tag": "news"})
    stream = encode(boot) + encode(config) + encode(query) + encode(config)
    for size in (1, 3, 64, len(stream)):
        decoder, found = from_master(), []
        for start in range(0, len(stream), size):
            found += decoder.feed(stream[start : start + size])
        assert found == [boot, config, query, config]


def test_a_workers_messages_survive_any_cut_of_the_stream() -> None:
    answer = Answer(3, {"purged": 2, "detail": ["a" * 70_000]})  # more than a pipe holds
    stream = encode(READY) + encode(answer) + encode(RELOADED)
    for size in (1, 5, 4096, len(stream)):
        decoder, found = from_worker(), []
        for start in range(0, len(stream), size):
            found += decoder.feed(stream[start : start + size])
        assert found == [READY, answer, RELOADED]


def test_only_the_masters_messages_are_accepted() -> None:
    body = pickle.dumps(["not", "a", "message"])
    with pytest.raises(ValueError, match="not a master's message: list"):
        from_master().feed(len(body).to_bytes(4, "big") + body)


def test_a_master_takes_no_masters_message_from_a_worker() -> None:
    with pytest.raises(ValueError, match="not a worker's message: Query"):
        from_worker().feed(encode(Query(1, "purge", {})))


@pytest.mark.parametrize(
    ("answers", "total", "errors"),
    [
        ([{"purged": 2}, {"purged": 3}], 5, []),
        ([], 0, []),
        ([{"purged": 2}, {"error": "boom"}], 2, ["boom"]),
        ([{"purged": 2}, {"purged": 1, "error": "redis down"}], 3, ["redis down"]),  # memory only
        ([{"purged": True}], 0, ["no purged in {'purged': True}"]),  # a bool is not a count
        (["odd"], 0, ["no purged in 'odd'"]),
    ],
)
def test_summed_adds_the_counts_and_keeps_what_went_wrong(
    answers: list[object], total: int, errors: list[str]
) -> None:
    assert summed(answers, "purged") == (total, errors)


def test_check_says_how_many_workers_and_what_their_caches_may_hold() -> None:
    """Each worker has its own caches: `sidecache check` gives the memory they add up to."""
    two = parse({"server": {"workers": 2}, "rules": [{"path": "^/"}]}, "site.toml")
    assert (
        "workers: 2 (a master and 2 worker processes, each with its own caches: "
        "up to 128MiB in all)"
    ) in describe(two).splitlines()
    assert "workers: 1 (one process)" in describe(parse({}, "site.toml")).splitlines()


def test_a_reload_says_that_only_a_restart_changes_the_number_of_workers() -> None:
    old = parse({"server": {"workers": 2}}, "site.toml")
    assert restart_notes(old, parse({"server": {"workers": 2}}, "site.toml")) == []
    assert restart_notes(old, parse({"server": {"workers": 3}}, "site.toml")) == [
        "the number of workers changed: a restart applies it"
    ]
