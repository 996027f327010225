"""`[redis]` (config_redis.py), `--redis` and SIDECACHE_REDIS: the shared tier's settings,
and one error line naming the file, the key and the problem for each bad value (product
rule: a bad config fails at start, clearly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.arguments import apply_environment, parse_arguments
from proxy.cli import load_settings
from proxy.config import ConfigError, parse
from proxy.explain import describe
from proxy.settings import RedisSettings

SOURCE = "site.toml"


def redis(**table: Any) -> RedisSettings | None:
    return parse({"redis": table}, SOURCE).redis


GOOD = [
    pytest.param({}, None, id="off by default"),
    pytest.param({"url": ""}, None, id="an empty url is off"),
    pytest.param(
        {"url": "redis://127.0.0.1:6379/0"},
        RedisSettings("redis://127.0.0.1:6379/0"),
        id="the defaults",
    ),
    pytest.param(
        {"url": "redis://cache.internal"}, RedisSettings("redis://cache.internal"), id="no port"
    ),
    pytest.param(
        {"url": "rediss://:secret@cache.internal:6380/2"},
        RedisSettings("rediss://:secret@cache.internal:6380/2"),
        id="TLS with a password",
    ),
    pytest.param(
        {"url": "redis://[::1]:6379"}, RedisSettings("redis://[::1]:6379"), id="IPv6 literal"
    ),
    pytest.param(
        {"url": "unix:///run/redis/redis.sock?db=1"},
        RedisSettings("unix:///run/redis/redis.sock?db=1"),
        id="a unix socket",
    ),
    pytest.param(
        {
            "url": "redis://r:6379",
            "prefix": "shop-prod:",
            "timeout": "20ms",
            "connect_timeout": "3s",
            "failures": 2,
            "cooldown": "30s",
            "max_connections": 4,
            "coalesce": True,
        },
        RedisSettings("redis://r:6379", "shop-prod:", 0.02, 3.0, 2, 30.0, 4, True),
        id="every key",
    ),
]


@pytest.mark.parametrize(("table", "expected"), GOOD)
def test_good_tables(table: dict[str, Any], expected: RedisSettings | None) -> None:
    assert redis(**table) == expected


BAD = [
    ({"url": "http://r:6379"}, "redis.url", "use redis://host:port/db", "http scheme"),
    ({"url": "redis://"}, "redis.url", "no host", "no host"),
    ({"url": "redis://r:99999"}, "redis.url", "out of range", "port out of range"),
    ({"url": "redis://r:port"}, "redis.url", "bad Redis URL", "port not a number"),
    ({"url": "redis://r:0"}, "redis.url", "port 0", "port zero"),
    ({"url": "redis://r/zero"}, "redis.url", "database number", "db not a number"),
    ({"url": "redis://r?ssl=1"}, "redis.url", "no query parameters", "query"),
    ({"url": "redis://r#x"}, "redis.url", "fragment", "fragment"),
    ({"url": "unix://host/sock"}, "redis.url", "unix:///absolute", "unix with a host"),
    ({"url": "unix:///s.sock?x=1"}, "redis.url", "only query is ?db=N", "unix query"),
    ({"url": 6379}, "redis.url", "expected a string, got int", "not a string"),
    ({"url": "redis://r", "prefix": ""}, "redis.prefix", "must not be empty", "empty prefix"),
    ({"url": "redis://r", "prefix": "a b"}, "redis.prefix", "no spaces", "prefix with space"),
    ({"url": "redis://r", "timeout": "0ms"}, "redis.timeout", "longer than 0", "zero timeout"),
    ({"url": "redis://r", "timeout": "2s"}, "redis.timeout", "more than 1s", "timeout too long"),
    ({"url": "redis://r", "timeout": "fast"}, "redis.timeout", "cannot parse", "timeout word"),
    (
        {"url": "redis://r", "connect_timeout": 0},
        "redis.connect_timeout",
        "longer than 0",
        "zero connect timeout",
    ),
    ({"url": "redis://r", "failures": 0}, "redis.failures", "at least 1", "zero failures"),
    ({"url": "redis://r", "cooldown": "0s"}, "redis.cooldown", "longer than 0", "zero cooldown"),
    (
        {"url": "redis://r", "max_connections": 0},
        "redis.max_connections",
        "at least 1",
        "zero connections",
    ),
    ({"url": "redis://r", "coalesce": "yes"}, "redis.coalesce", "expected bool", "coalesce str"),
    ({"url": "redis://r", "urls": "x"}, "redis.urls", "unknown key", "a typo"),
    ({"prefix": "x:"}, "redis.prefix", "set [redis] url", "settings without a url"),
]


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [pytest.param(t, k, p, id=i) for t, k, p, i in BAD],
)
def test_each_bad_value_is_one_line_naming_file_key_and_problem(
    table: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        redis(**table)
    message = str(refused.value)
    assert message.startswith(f"{SOURCE}: {key}: "), message
    assert problem in message
    assert "\n" not in message


def test_the_password_is_never_shown() -> None:
    settings = redis(url="rediss://user:s3cret@cache.internal:6380/1")
    assert settings is not None
    assert settings.shown_url == "rediss://user:***@cache.internal:6380/1"
    assert "s3cret" not in describe(parse({"redis": {"url": settings.url}}, SOURCE))


def test_check_describes_the_tier() -> None:
    settings = parse({"redis": {"url": "redis://r:6379/0", "timeout": "3ms"}}, SOURCE)
    assert (
        "redis: redis://r:6379/0 behind every cache (keys sidecache:..., timeout 3ms, connect "
        "1s, circuit opens after 5 failures for 5s, 16 connections)"
    ) in describe(settings).splitlines()


def settings_redis(argv: list[str], environ: dict[str, str]) -> RedisSettings | None:
    args = parse_arguments(argv)
    apply_environment(args, environ)
    return load_settings(args).redis


def test_the_flag_the_environment_and_the_file_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[redis]\nurl = "redis://file:6379"\nprefix = "site:"\n', encoding="utf-8")
    environ = {"SIDECACHE_REDIS": "redis://environment:6379"}

    from_file = settings_redis([str(path)], {})
    from_environment = settings_redis([str(path)], environ)
    from_flag = settings_redis([str(path), "--redis", "redis://flag:6379"], environ)
    turned_off = settings_redis([str(path), "--redis", ""], environ)

    assert from_file == RedisSettings("redis://file:6379", "site:")
    assert from_environment == RedisSettings("redis://environment:6379", "site:")
    assert from_flag == RedisSettings("redis://flag:6379", "site:")
    assert turned_off is None


def test_a_bad_flag_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"\+ command line: redis\.url: bad Redis URL"):
        settings_redis(["--redis", "localhost:6379"], {})
