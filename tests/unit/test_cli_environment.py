"""Pin proxy.cli's SIDECACHE_* variables: a container sidecar is configured without a file,
and flags given on the command line win."""

from __future__ import annotations

import os
from argparse import Namespace

import pytest

from proxy.arguments import apply_environment, parse_arguments
from proxy.cli import load_settings, log_level
from proxy.settings import Settings
from proxy.tomltable import ConfigError


def settings_for(argv: list[str], environ: dict[str, str]) -> tuple[Namespace, Settings]:
    args = parse_arguments(argv)
    apply_environment(args, environ)
    return args, load_settings(args)


def test_a_sidecar_without_any_file() -> None:
    args, settings = settings_for(
        [],
        {
            "SIDECACHE_UPSTREAM": "http://127.0.0.1:5000",
            "SIDECACHE_LISTEN": "0.0.0.0:8080, [::]:8080",
            "SIDECACHE_ADMIN": "127.0.0.1:9999",
            "SIDECACHE_TTL": "30s",
            "SIDECACHE_STALE_IF_ERROR": "5m",
            "SIDECACHE_LOG_LEVEL": "WARNING",
        },
    )
    assert settings.upstream.url == "http://127.0.0.1:5000"
    assert [str(listen) for listen in settings.listen] == ["0.0.0.0:8080", "[::]:8080"]
    assert settings.admin is not None and settings.admin.port == 9999
    assert settings.caches["default"].ttl == 30.0
    assert all(rule.stale_if_error == 300.0 for rule in settings.rules if rule.cache)
    assert args.log_level == "WARNING"


def test_flags_win_over_the_environment() -> None:
    _, settings = settings_for(
        ["--upstream", "http://127.0.0.1:7000"], {"SIDECACHE_UPSTREAM": "http://127.0.0.1:5000"}
    )
    assert settings.upstream.url == "http://127.0.0.1:7000"


def test_shared_mode_from_the_environment() -> None:
    for value, shared in (("1", True), ("true", True), ("no", False)):
        _, settings = settings_for([], {"SIDECACHE_SHARED": value})
        assert (settings.mode == "shared") is shared


def test_workers_from_the_flag_the_environment_or_the_file(tmp_path) -> None:
    """The same precedence as every setting: flag, then SIDECACHE_WORKERS, then the file."""
    path = tmp_path / "w.toml"
    path.write_text("[server]\nworkers = 3\n", encoding="utf-8")
    assert settings_for([str(path)], {})[1].workers == 3
    assert settings_for([str(path)], {"SIDECACHE_WORKERS": "2"})[1].workers == 2
    assert settings_for([str(path), "--workers", "4"], {"SIDECACHE_WORKERS": "2"})[1].workers == 4
    assert settings_for(["--workers", "auto"], {})[1].workers == len(os.sched_getaffinity(0))
    assert settings_for([], {})[1].workers == 1


def test_dev_and_demo_have_no_workers_option() -> None:
    """`sidecache dev` and `demo` are one process: SIDECACHE_WORKERS is not theirs either."""
    for command in ("dev", "demo"):
        args = parse_arguments([command])
        apply_environment(args, {"SIDECACHE_WORKERS": "4"})
        assert not hasattr(args, "workers")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            [],
            {"SIDECACHE_TTL": "bogus"},
            "<embedded default.toml> + SIDECACHE_TTL: caches.default.ttl: cannot parse",
        ),
        (
            ["--ttl", "bogus"],
            {},
            "<embedded default.toml> + command line: caches.default.ttl: cannot parse",
        ),
        (
            [],
            {"SIDECACHE_WORKERS": "x"},
            "<embedded default.toml> + SIDECACHE_WORKERS: server.workers: expected",
        ),
        (
            ["--upstream", "http://127.0.0.1:5000"],  # a flag too: the variable is still named
            {"SIDECACHE_STALE_IF_ERROR": "zz"},
            "<embedded default.toml> + SIDECACHE_STALE_IF_ERROR: rules[1].stale_if_error:",
        ),
        (
            [],
            {"SIDECACHE_REDIS": "nope://"},
            "<embedded default.toml> + SIDECACHE_REDIS: redis.url: bad Redis URL",
        ),
    ],
)
def test_a_bad_value_names_the_variable_that_set_it(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    """A container's operator sets SIDECACHE_* and passes no flag: the config error names
    the variable, not "command line"; a flag's own error still names the command line."""
    with pytest.raises(ConfigError) as caught:
        settings_for(argv, environ)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_bad_log_level_names_its_variable() -> None:
    args = parse_arguments([])
    apply_environment(args, {"SIDECACHE_LOG_LEVEL": "bogus"})
    with pytest.raises(ConfigError) as caught:
        log_level(args)
    assert str(caught.value) == (
        "environment: SIDECACHE_LOG_LEVEL: unknown level 'bogus' (use DEBUG, INFO, WARNING, ERROR)"
    )
    flagged = parse_arguments(["--log-level", "bogus"])
    apply_environment(flagged, {"SIDECACHE_LOG_LEVEL": "INFO"})  # the flag wins, and is named
    with pytest.raises(ConfigError, match=r"^command line: --log-level: unknown level"):
        log_level(flagged)
