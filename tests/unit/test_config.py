"""Pin proxy.config: TOML → Settings; every error names the file, the key path and the problem."""

from __future__ import annotations

import os
import re
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from proxy.config import (
    DEFAULT_SOURCE,
    NOTHING_CACHED,
    ConfigError,
    load,
    parse,
    parse_listen,
    parse_upstream,
)
from proxy.explain import describe
from proxy.freshness import TtlMode
from proxy.rules import Action, SetCookieMode
from proxy.rules import Test as Check
from proxy.settings import CacheSettings, Listen

SOURCE = "site.toml"
CACHES = {"default": {}}


def rule_config(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"caches": CACHES, "rules": list(rules)}


ERRORS = [
    # (config, key path, problem, id) - product rule: "a bad config fails at start with one
    # message naming the file, the key and the problem"
    ({"bogus": 1}, "bogus", "unknown key", "unknown-top-level-key"),
    ({"server": {"port": 80}}, "server.port", "unknown key", "unknown-server-key"),
    ({"upstream": {"uri": "x"}}, "upstream.uri", "unknown key", "unknown-upstream-key"),
    ({"identity": {"cookie": []}}, "identity.cookie", "unknown key", "unknown-identity-key"),
    (
        {"caches": {"default": {"size": 1}}},
        "caches.default.size",
        "unknown key",
        "unknown-cache-key",
    ),
    (rule_config({"paht": "^/"}), "rules[1].paht", "unknown key", "unknown-rule-key"),
    (
        rule_config({}, {"cookies": {}}),
        "rules[2].cookies",
        "unknown key",
        "unknown-key-in-second-rule",
    ),
    # bad types
    (
        {"caches": {"default": 5}},
        "caches.default",
        "expected a table, got int",
        "cache-not-a-table",
    ),
    ({"server": "x"}, "server", "expected a table, got a string", "server-not-a-table"),
    ({"rules": {}}, "rules", "expected list, got a table", "rules-not-a-list"),
    ({"rules": ["x"]}, "rules[1]", "expected a table, got a string", "rule-not-a-table"),
    (
        {"caches": {"default": {"items": "many"}}},
        "caches.default.items",
        "expected int, got a string",
        "items-not-int",
    ),
    (
        {"caches": {"default": {"items": True}}},
        "caches.default.items",
        "expected int, got a boolean",
        "items-bool-is-not-int",
    ),
    ({"server": {"x_cache": "yes"}}, "server.x_cache", "expected bool", "x-cache-not-bool"),
    (
        {"server": {"access_log": 1}},
        "server.access_log",
        "expected true, false or a file path, got int",
        "access-log-number",
    ),
    (
        {"server": {"access_log": ""}},
        "server.access_log",
        "expected true, false or a file path, got an empty string",
        "access-log-empty",
    ),
    (
        {"server": {"access_log": "access.log"}},
        "server.access_log",
        "'access.log' is not an absolute path",
        "access-log-relative",
    ),
    (
        {"server": {"access_log": "/var/log/a\0b"}},
        "server.access_log",
        "NUL",
        "access-log-nul",
    ),
    ({"server": {"listen": "127.0.0.1:80"}}, "server.listen", "expected list", "listen-string"),
    ({"server": {"listen": [8080]}}, "server.listen", "list of strings", "listen-not-strings"),
    ({"upstream": {"url": 5000}}, "upstream.url", "expected a string, got int", "url-not-str"),
    (rule_config({"name": 1}), "rules[1].name", "expected str, got int", "rule-name-not-str"),
    (
        rule_config({"anonymous": "yes"}),
        "rules[1].anonymous",
        "expected bool, got a string",
        "anonymous-not-bool",
    ),
    (rule_config({"path": 1}), "rules[1].path", "expected a regex string", "path-not-str"),
    (rule_config({"key": 1}), "rules[1].key", "expected a string, got int", "key-not-str"),
    (
        rule_config({"keep_cookies": "lang"}),
        "rules[1].keep_cookies",
        "expected list, got a string",
        "keep-cookies-not-list",
    ),
    # invalid regex, with its rule number
    (rule_config({}, {"path": "("}), "rules[2].path", "invalid regex '('", "invalid-path-regex"),
    (
        rule_config({"cookie": {"lang": {"matches": "[a-"}}}),
        "rules[1].cookie.lang",
        "invalid regex '[a-'",
        "invalid-cookie-regex",
    ),
    (
        rule_config({}, {}, {"header": {"User-Agent": {"matches": "*bot"}}}),
        "rules[3].header.User-Agent",
        "invalid regex '*bot'",
        "invalid-header-regex",
    ),
    # unknown cache name
    (
        rule_config({"cache": "mycache"}),
        "rules[1].cache",
        "unknown cache 'mycache' (caches: default)",
        "unknown-cache-name",
    ),
    # unparseable sizes and durations
    (
        {"caches": {"default": {"item_size": "lots"}}},
        "caches.default.item_size",
        "cannot parse size 'lots'",
        "bad-item-size",
    ),
    (
        {"caches": {"default": {"max_bytes": "10TB"}}},
        "caches.default.max_bytes",
        "cannot parse size '10TB'",
        "bad-max-bytes",
    ),
    (
        {"caches": {"default": {"ttl": "soon"}}},
        "caches.default.ttl",
        "cannot parse duration 'soon'",
        "bad-cache-ttl",
    ),
    (rule_config({"ttl": "5x"}), "rules[1].ttl", "cannot parse duration '5x'", "bad-rule-ttl"),
    (
        rule_config({"ttl": "forever"}),
        "rules[1].ttl",
        "cannot parse duration 'forever'",
        "rule-ttl-neither-duration-nor-origin",
    ),
    (
        rule_config({"fallback_ttl": "1m"}),
        "rules[1].fallback_ttl",
        'only means something with ttl = "origin"',
        "fallback-ttl-without-origin",
    ),
    (
        rule_config({"statuses": [200, 206]}),
        "rules[1].statuses",
        "206 can never be stored (200-599, not 206 or 304)",
        "partial-status",
    ),
    (
        rule_config({"statuses": ["404"]}),
        "rules[1].statuses",
        "expected a list of status codes",
        "status-as-text",
    ),
    (
        rule_config({"max_ttl": "soon"}),
        "rules[1].max_ttl",
        "cannot parse duration 'soon'",
        "bad-max-ttl",
    ),
    (
        {"caches": {"default": {"keep": "ages"}}},
        "caches.default.keep",
        "cannot parse duration 'ages'",
        "bad-keep",
    ),
    (
        {"server": {"request_cache_control": ["no-cache", "stale-if-error"]}},
        "server.request_cache_control",
        "unknown directive 'stale-if-error' (max-age, max-stale, min-fresh, no-cache, "
        "no-store, only-if-cached)",
        "unknown-request-directive",
    ),
    (
        {"upstream": {"read_timeout": "forever"}},
        "upstream.read_timeout",
        "cannot parse duration 'forever'",
        "bad-read-timeout",
    ),
    (
        {"upstream": {"connect_timeout": -1}},
        "upstream.connect_timeout",
        "cannot be negative",
        "negative-timeout",
    ),
    # bad listen / upstream
    (
        {"server": {"listen": ["localhost:http"]}},
        "server.listen",
        "bad listen address 'localhost:http'",
        "listen-port-not-number",
    ),
    (
        {"server": {"listen": ["127.0.0.1:70000"]}},
        "server.listen",
        "bad listen address '127.0.0.1:70000'",
        "listen-port-out-of-range",
    ),
    ({"server": {"listen": ["unix:"]}}, "server.listen", "needs a socket path", "listen-unix"),
    # a bare IPv6 address has no port: it must not become host ":" port 1
    ({"server": {"listen": ["::1"]}}, "server.listen", "bad listen address '::1'", "listen-v6"),
    ({"server": {"listen": []}}, "server.listen", "at least one address", "listen-empty"),
    (
        {"server": {"trusted_proxies": ["10.0.0.0/33"]}},
        "server.trusted_proxies",
        "10.0.0.0/33",
        "bad-trusted-network",
    ),
    (
        {"upstream": {"url": "https://app:443"}},
        "upstream.url",
        "bad upstream 'https://app:443'",
        "upstream-https",
    ),
    (
        {"upstream": {"url": "http://app:5000/prefix"}},
        "upstream.url",
        "bad upstream 'http://app:5000/prefix'",
        "upstream-with-path",
    ),
    ({"upstream": {"url": "app:5000"}}, "upstream.url", "bad upstream", "upstream-no-scheme"),
    # product rule: a bad config fails at start, not as a 502 on every request
    (
        {"upstream": {"url": "http://app:99999"}},
        "upstream.url",
        "bad upstream 'http://app:99999'",
        "upstream-port-out-of-range",
    ),
    ({"upstream": {"url": "unix:"}}, "upstream.url", "needs a socket path", "upstream-unix"),
    (
        {"upstream": {"max_connections": 0}},
        "upstream.max_connections",
        "must be at least 1",
        "max-connections-zero",
    ),
    # product rule: POST, PUT, PATCH, DELETE are never answered from cache
    (
        rule_config({"methods": ["GET", "POST"]}),
        "rules[1].methods",
        "POST is never answered from cache",
        "cache-rule-with-post",
    ),
    (
        rule_config({"action": "cache", "methods": ["delete"]}),
        "rules[1].methods",
        "DELETE is never answered from cache",
        "cache-rule-with-delete-lowercase",
    ),
    # bad conditions and choices
    (
        rule_config({"cookie": {"lang": "fr"}}),
        "rules[1].cookie.lang",
        'expected "present", "absent", { equals = "text" } or { matches = "regex" }',
        "condition-bare-value",
    ),
    (
        rule_config({"header": {"X-A": {"equals": "1", "matches": "1"}}}),
        "rules[1].header.X-A",
        "expected",
        "condition-two-tests",
    ),
    (
        rule_config({"cookie": {"lang": {"equals": 1}}}),
        "rules[1].cookie.lang",
        "expected",
        "condition-equals-not-string",
    ),
    (
        rule_config({"cookie": "lang"}),
        "rules[1].cookie",
        "expected a table, got a string",
        "conditions-not-a-table",
    ),
    (
        rule_config({"action": "store"}),
        "rules[1].action",
        'expected one of "cache", "pass", got \'store\'',
        "bad-action",
    ),
    (
        rule_config({"set_cookie": "keep"}),
        "rules[1].set_cookie",
        'expected one of "skip", "strip", got \'keep\'',
        "bad-set-cookie",
    ),
    (
        rule_config({"key": "{url}"}),
        "rules[1].key",
        "unknown key variable {url}",
        "bad-key-variable",
    ),
    (rule_config({"key": "{host"}), "rules[1].key", "unbalanced brace", "bad-key-brace"),
    # cache bounds
    (
        {"caches": {"default": {"item_size": "2MiB", "max_bytes": "1MiB"}}},
        "caches.default.item_size",
        "larger than max_bytes",
        "item-size-over-max-bytes",
    ),
    (
        {"caches": {"default": {"items": 0}}},
        "caches.default.items",
        "must be at least 1",
        "items-zero",
    ),
    # product rule: identity settings that would let logged-in users through are refused
    (
        {"identity": {"session_user_keys": []}},
        "identity",
        "session_user_keys must not be empty",
        "identity-no-user-keys",
    ),
    (
        {"identity": {"remember_cookies": [""]}},
        "identity",
        "non-empty strings",
        "identity-empty-cookie-name",
    ),
    (
        {"identity": {"preset": "rails"}},
        "identity.preset",
        "unknown preset 'rails' (use one of: flask, django)",
        "identity-unknown-preset",
    ),
    (
        {"identity": {"preset": "django", "session_cookies": ["s"]}},
        "identity",
        "session_user_keys must not be empty",
        "django-preset-reading-sessions-needs-user-keys",
    ),
    (
        {"identity": {"message_cookies": "messages"}},
        "identity.message_cookies",
        "expected list",
        "identity-message-cookies-string",
    ),  # review of issue 2: aiohttp reads a timeout of 0 as "wait forever"
    ({"upstream": {"read_timeout": "0s"}}, "upstream.read_timeout", "longer than 0", "zero-read"),
    (
        {"upstream": {"connect_timeout": 0}},
        "upstream.connect_timeout",
        "longer than 0",
        "zero-conn",
    ),
    (
        {"caches": {"default": {"ttl": float("nan")}}},
        "caches.default.ttl",
        "finite",
        "nan-ttl",
    ),
    # upstream.host becomes the Host header: CR/LF or a path in it would be header injection
    ({"upstream": {"host": "a\r\nX-Evil: 1"}}, "upstream.host", "invalid host", "crlf-host"),
    ({"upstream": {"host": "a/b"}}, "upstream.host", "invalid host", "slash-host"),
    # issue 14: each worker is a whole process with its own caches
    ({"server": {"workers": 0}}, "server.workers", "must be from 1 to 256", "workers-zero"),
    ({"server": {"workers": 1000}}, "server.workers", "must be from 1 to 256", "workers-many"),
    ({"server": {"workers": "all"}}, "server.workers", "or \"auto\", got 'all'", "workers-all"),
    ({"server": {"workers": 1.5}}, "server.workers", "got 1.5", "workers-float"),
]


@pytest.mark.parametrize(
    ("data", "key", "problem"), [pytest.param(*e[:3], id=e[3]) for e in ERRORS]
)
def test_config_errors(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data, SOURCE)
    error = caught.value
    assert str(error).startswith(f"{SOURCE}: {key}: "), str(error)
    assert problem in str(error)
    assert (error.source, error.key) == (SOURCE, key)
    assert problem in error.problem


def test_config_error_is_a_value_error() -> None:
    # product rule: callers can catch one exception type for bad configuration
    assert issubclass(ConfigError, ValueError)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[server\nlisten = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert str(caught.value).startswith(f"{path}: invalid TOML")


def test_invalid_toml_given_a_path_object(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("a = = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"{path}: invalid TOML")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert str(caught.value).startswith(f"{path}: cannot read file")


def test_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[caches.default]\nttl = "soon"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert str(caught.value).startswith(f"{path}: caches.default.ttl: cannot parse duration")


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[upstream]\nurl = "http://app:8000"\n[caches.pages]\nitems = 5\n'
        '[[rules]]\npath = "^/about$"\ncache = "pages"\n',
        encoding="utf-8",
    )
    settings = load(str(path))
    assert settings.source == str(path)
    assert settings.upstream.url == "http://app:8000"
    assert settings.caches["pages"].items == 5
    assert settings.rules[0].cache == "pages"


def test_embedded_default() -> None:
    # product rule: `sidecache --upstream URL` works with no file; the default caches every
    # anonymous GET/HEAD for a short time
    settings = load(None)
    assert settings.source == DEFAULT_SOURCE
    assert settings.listen == (Listen("127.0.0.1", 8080),)
    assert settings.upstream.url == "http://127.0.0.1:5000"
    assert settings.upstream.socket == ""
    assert (settings.upstream.connect_timeout, settings.upstream.read_timeout) == (5.0, 30.0)
    assert settings.upstream.host == ""
    assert settings.trust.networks == ()
    assert settings.headers.x_cache and settings.headers.cache_status
    assert settings.identity.remember_cookies == ("remember_token",)
    assert settings.identity.session_cookies == ("session",)
    cache = settings.caches["default"]
    assert (cache.items, cache.item_size, cache.max_bytes, cache.ttl) == (
        1000,
        64 * 1024,
        64 * 1024 * 1024,
        10.0,
    )
    assert len(settings.rules) == 1
    rule = settings.rules[0]
    # No anonymous condition: decide passes logged-in visitors for every cache rule, and the
    # default then reports them as "authenticated" rather than "no-rule".
    assert (rule.name, rule.action, rule.anonymous, rule.cache) == (
        "anonymous-reads",
        Action.CACHE,
        None,
        "default",
    )
    assert rule.methods == frozenset({"GET", "HEAD"})
    assert rule.set_cookie is SetCookieMode.SKIP
    assert settings.warnings == ()


def test_identity_presets() -> None:
    # product rule (issue 10): Flask and Django side by side; a list given replaces the preset's
    flask = parse({}, SOURCE).identity
    assert flask == parse({"identity": {"preset": "flask"}}, SOURCE).identity
    assert flask.session_message_keys == ("_flashes",)
    assert (flask.message_cookies, flask.csrf_cookies) == ((), ())
    django = parse({"identity": {"preset": "django"}}, SOURCE).identity
    assert django.remember_cookies == ("sessionid",)
    assert (django.session_cookies, django.session_user_keys) == ((), ())
    assert (django.message_cookies, django.csrf_cookies) == (("messages",), ("csrftoken",))
    renamed = parse({"identity": {"preset": "django", "message_cookies": ["msgs"]}}, SOURCE)
    assert renamed.identity.message_cookies == ("msgs",)
    assert renamed.identity.remember_cookies == ("sessionid",)


def test_rules_know_the_state_cookies_they_may_not_strip() -> None:
    data = {"identity": {"preset": "django"}, "caches": {"default": {}}, "rules": [{}]}
    assert parse(data, SOURCE).rules[0].state_cookies == {"sessionid", "messages", "csrftoken"}


def test_empty_config_defaults() -> None:
    # product rule: no rules means every request passes
    settings = parse({}, SOURCE)
    assert settings.rules == ()
    assert dict(settings.caches) == {}
    assert settings.listen == (Listen("127.0.0.1", 8080),)
    assert settings.source == SOURCE


def test_cache_settings_parsed() -> None:
    settings = parse(
        {
            "caches": {
                "mycache": {"items": 100, "item_size": "64KiB", "max_bytes": "10MB", "ttl": "5m"}
            }
        },
        SOURCE,
    )
    cache = settings.caches["mycache"]
    assert (cache.name, cache.items, cache.item_size, cache.max_bytes, cache.ttl) == (
        "mycache",
        100,
        65536,
        10_000_000,
        300.0,
    )


def test_rule_fields_parsed() -> None:
    settings = parse(
        rule_config(
            {
                "name": "about",
                "path": "^/about$",
                "methods": ["get"],
                "anonymous": False,
                "cookie": {"lang": {"equals": "fr"}, "remember_token": "absent"},
                "header": {"User-Agent": {"matches": "bot"}, "X-A": "present"},
                "ttl": "1m",
                "set_cookie": "strip",
                "keep_cookies": ["lang"],
                "allow_authorization": True,
                "key": "{host}{uri}|{cookie[lang]}",
            },
            {"action": "pass", "path": "^/admin"},
        ),
        SOURCE,
    )
    rule, passing = settings.rules
    assert rule.number == 1 and passing.number == 2
    assert rule.path is not None and rule.path.pattern == "^/about$"
    assert rule.methods == frozenset({"GET"})
    assert rule.anonymous is False
    assert [(c.name, c.test, c.value) for c in rule.cookies] == [
        ("lang", Check.EQUALS, "fr"),
        ("remember_token", Check.ABSENT, ""),
    ]
    assert [(c.name, c.test) for c in rule.headers] == [
        ("User-Agent", Check.MATCHES),
        ("X-A", Check.PRESENT),
    ]
    assert rule.ttl == 60.0
    assert rule.set_cookie is SetCookieMode.STRIP
    assert rule.keep_cookies == ("lang",)
    assert rule.allow_authorization is True
    assert rule.key is not None and rule.key.cookies == frozenset({"lang"})
    # a pass rule has no cache and, without `methods`, matches any method
    assert (passing.action, passing.cache, passing.methods) == (Action.PASS, "", None)
    # `check` warns that allow_authorization shares credentialed responses (RFC 9111 §3.5)
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith("about: allow_authorization shares a response")


@pytest.mark.parametrize(
    ("rule", "warned"),
    [
        # product rule: `sidecache check` warns when a kept cookie is not part of the key
        pytest.param({"keep_cookies": ["lang"]}, ["lang"], id="kept-not-in-default-key"),
        pytest.param(
            {"keep_cookies": ["lang", "theme"], "key": "{uri}{cookie[theme]}"},
            ["lang"],
            id="one-of-two-missing",
        ),
        pytest.param(
            {"keep_cookies": ["lang"], "key": "{uri}{cookie[lang]}"}, [], id="kept-and-keyed"
        ),
        pytest.param({}, [], id="nothing-kept"),
    ],
)
def test_keep_cookies_warning(rule: dict[str, Any], warned: list[str]) -> None:
    settings = parse(rule_config(rule), SOURCE)
    assert len(settings.warnings) == len(warned)
    for warning, name in zip(settings.warnings, warned, strict=True):
        assert warning.startswith(f"rules[1]: keep_cookies {name!r} is sent on fills")
        assert f"{{cookie[{name}]}}" in warning


def test_warning_names_the_rule_by_name() -> None:
    settings = parse(rule_config({"name": "lang-pages", "keep_cookies": ["lang"]}), SOURCE)
    assert settings.warnings[0].startswith("lang-pages: keep_cookies 'lang'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:8080", Listen("127.0.0.1", 8080), id="ipv4"),
        pytest.param("[::1]:8080", Listen("::1", 8080), id="ipv6-bracketed"),
        pytest.param("0.0.0.0:80", Listen("0.0.0.0", 80), id="all-interfaces"),
        pytest.param(":8080", Listen("0.0.0.0", 8080), id="empty-host-every-ipv4-interface"),
        pytest.param("8080", Listen("127.0.0.1", 8080), id="bare-port-is-loopback"),
        pytest.param("unix:/run/sc.sock", Listen(path="/run/sc.sock"), id="unix-socket"),
        pytest.param("localhost:0", Listen("localhost", 0), id="port-zero"),
    ],
)
def test_parse_listen(text: str, expected: Listen) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("http://127.0.0.1:5000", ("http://127.0.0.1:5000", ""), id="ipv4"),
        pytest.param("http://app:5000/", ("http://app:5000", ""), id="trailing-slash"),
        pytest.param("http://app", ("http://app", ""), id="no-port"),
        pytest.param("http://[::1]:5000", ("http://[::1]:5000", ""), id="ipv6"),
        pytest.param("unix:/run/app.sock", ("http://localhost", "/run/app.sock"), id="unix"),
    ],
)
def test_parse_upstream(text: str, expected: tuple[str, str]) -> None:
    assert parse_upstream(text) == expected


def test_upstream_section_parsed() -> None:
    settings = parse(
        {
            "upstream": {
                "url": "unix:/run/app.sock",
                "connect_timeout": "500ms",
                "read_timeout": 2,
                "max_connections": 7,
                "host": "app.internal",
            }
        },
        SOURCE,
    )
    upstream = settings.upstream
    assert (upstream.url, upstream.socket) == ("http://localhost", "/run/app.sock")
    assert (upstream.connect_timeout, upstream.read_timeout) == (0.5, 2.0)
    assert (upstream.max_connections, upstream.host) == (7, "app.internal")


def test_trusted_proxies_parsed() -> None:
    settings = parse({"server": {"trusted_proxies": ["10.0.0.0/8", "::1", "unix"]}}, SOURCE)
    assert settings.trust.networks == (ip_network("10.0.0.0/8"), ip_network("::1/128"))
    assert settings.trust.unix is True
    assert settings.trust.trusts("10.1.2.3") is True
    assert settings.trust.trusts("11.0.0.1") is False
    assert settings.trust.trusts("") is True  # unix-socket peer


@pytest.mark.parametrize(
    ("admin", "allowed", "refused"),
    [
        # product rule: the operator's own machine may ask for a trace, nobody else
        pytest.param({}, ["127.0.0.1", "127.9.9.9", "::1"], ["10.0.0.1", "", "-"], id="default"),
        pytest.param({"debug_from": []}, [], ["127.0.0.1", "::1", ""], id="off"),
        pytest.param(
            {"debug_from": ["10.0.0.0/8", "unix"]}, ["10.1.2.3", ""], ["127.0.0.1"], id="set"
        ),
    ],
)
def test_debug_from(admin: dict[str, Any], allowed: list[str], refused: list[str]) -> None:
    debug_from = parse({"admin": admin}, SOURCE).debug_from
    assert [peer for peer in allowed + refused if debug_from.trusts(peer)] == allowed


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["nope"], "admin.debug_from: 'nope' does not appear to be an IPv4 or IPv6 network"),
        ("127.0.0.1", "admin.debug_from: expected list, got a string"),
    ],
)
def test_debug_from_errors_name_the_key(value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{SOURCE}: {problem}")):
        parse({"admin": {"debug_from": value}}, SOURCE)


def test_several_listeners() -> None:
    settings = parse({"server": {"listen": ["127.0.0.1:8080", "[::1]:8080"]}}, SOURCE)
    assert [str(listen) for listen in settings.listen] == ["127.0.0.1:8080", "[::1]:8080"]


def test_int_accepted_for_durations_and_sizes() -> None:
    settings = parse({"caches": {"c": {"item_size": 100, "max_bytes": 1000, "ttl": 3}}}, SOURCE)
    cache = settings.caches["c"]
    assert (cache.item_size, cache.max_bytes, cache.ttl) == (100, 1000, 3.0)


def test_cache_defaults_when_a_cache_table_is_empty() -> None:
    # product rule: item_size defaults to 64 KiB as uWSGI's cache2 blocksize; the other bounds
    # to what default.toml documents
    cache = parse({"caches": {"pages": {}}}, SOURCE).caches["pages"]
    assert (cache.items, cache.item_size, cache.max_bytes, cache.ttl) == (
        1000,
        64 * 1024,
        64 * 1024 * 1024,
        10.0,
    )


@pytest.mark.parametrize(
    ("keys", "mode", "ttl", "max_ttl", "heuristic", "keep", "statuses"),
    [
        pytest.param({}, TtlMode.FORCE, None, None, False, None, {200}, id="defaults"),
        pytest.param({"ttl": "30s"}, TtlMode.FORCE, 30.0, None, False, None, {200}, id="forced"),
        pytest.param(
            {"ttl": "origin"}, TtlMode.ORIGIN, None, None, False, None, {200}, id="origin"
        ),
        pytest.param(
            {
                "ttl": "origin",
                "fallback_ttl": "2m",
                "max_ttl": "1h",
                "heuristic": True,
                "keep": "30s",
                "statuses": [200, 301, 404],
            },
            TtlMode.ORIGIN,
            120.0,
            3600.0,
            True,
            30.0,
            {200, 301, 404},
            id="everything",
        ),
    ],
)
def test_rule_freshness_keys(
    keys: dict[str, Any],
    mode: TtlMode,
    ttl: float | None,
    max_ttl: float | None,
    heuristic: bool,
    keep: float | None,
    statuses: set[int],
) -> None:
    rule = parse(rule_config(keys), SOURCE).rules[0]
    assert (rule.ttl_mode, rule.ttl, rule.max_ttl, rule.heuristic, rule.keep) == (
        mode,
        ttl,
        max_ttl,
        heuristic,
        keep,
    )
    assert rule.statuses == frozenset(statuses)


def test_request_directives_default_and_configured() -> None:
    assert parse({}, SOURCE).request_directives == frozenset(
        {"no-store", "max-stale", "min-fresh", "only-if-cached"}
    )
    configured = parse({"server": {"request_cache_control": ["no-cache"]}}, SOURCE)
    assert configured.request_directives == frozenset({"no-cache"})
    assert parse({"caches": {"c": {"keep": "1m"}}}, SOURCE).caches["c"].keep == 60.0


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (True, True),
        (False, False),
        ("/var/log/sidecache/access.log", "/var/log/sidecache/access.log"),
    ],
    ids=["stdout", "off", "file"],
)
def test_access_log_is_stdout_off_or_a_file(value: bool | str, parsed: bool | str) -> None:
    assert parse({}, SOURCE).headers.access_log is True  # stdout by default
    assert parse({"server": {"access_log": value}}, SOURCE).headers.access_log == parsed


def test_shared_mode_has_one_rule_that_lets_the_origin_decide() -> None:
    settings = parse({"mode": "shared", "shared": {"heuristic": True, "max_ttl": "1h"}}, SOURCE)
    (rule,) = settings.rules
    assert settings.mode == "shared"
    assert (rule.name, rule.ttl_mode, rule.ttl, rule.heuristic, rule.max_ttl) == (
        "shared",
        TtlMode.ORIGIN,
        0.0,
        True,
        3600.0,
    )
    assert rule.forward_all and rule.allow_authorization
    assert 404 in rule.statuses and 206 not in rule.statuses and 304 not in rule.statuses
    assert "default" in settings.caches  # made when the file has none
    assert settings.warnings == ()


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        pytest.param(
            {"mode": "shared", "rules": [{"path": "^/"}]},
            "rules",
            'mode = "shared" has no rules: the origin\'s headers decide',
            id="rules-in-shared-mode",
        ),
        pytest.param(
            {"shared": {"heuristic": True}},
            "shared",
            'only used with mode = "shared"',
            id="shared-table-in-rules-mode",
        ),
        pytest.param({"mode": "plain"}, "mode", 'expected one of "rules", "shared"', id="mode"),
        pytest.param(
            {"mode": "shared", "shared": {"heuristics": True}},
            "shared.heuristics",
            "unknown key",
            id="typo-in-shared",
        ),
    ],
)
def test_shared_mode_errors(data: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data, SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: {key}: ")
    assert problem in str(caught.value)


def test_stale_windows_per_rule_and_in_shared_mode() -> None:
    rule = parse(rule_config({"stale_while_revalidate": "30s", "stale_if_error": "1h"}), SOURCE)
    assert (rule.rules[0].stale_while_revalidate, rule.rules[0].stale_if_error) == (30.0, 3600.0)
    assert (parse(rule_config({}), SOURCE).rules[0].stale_if_error) is None
    shared = parse({"mode": "shared", "shared": {"stale_if_error": "5m"}}, SOURCE).rules[0]
    assert shared.stale_if_error == 300.0
    cache = parse({"caches": {"c": {"coalesce_wait": "1s", "hit_for_pass": "0s"}}}, SOURCE)
    assert (cache.caches["c"].coalesce_wait, cache.caches["c"].hit_for_pass) == (1.0, 0.0)


def test_workers_default_to_one_process_and_auto_is_the_cpu_count() -> None:
    assert parse({}, SOURCE).workers == 1
    assert parse({"server": {"workers": 3}}, SOURCE).workers == 3
    assert parse({"server": {"workers": "auto"}}, SOURCE).workers == len(os.sched_getaffinity(0))


def test_settings_keep_the_table_they_were_parsed_from() -> None:
    """A master hands its workers the raw table (a parsed Settings does not pickle)."""
    data = {"server": {"workers": 2}, "rules": [{"path": "^/$"}]}
    settings = parse(data, SOURCE)
    assert settings.raw == data
    assert parse(dict(settings.raw), SOURCE).rules[0].path == settings.rules[0].path


def test_limits_and_total_timeout() -> None:
    settings = parse(
        {
            "server": {
                "header_timeout": "2s",
                "keepalive_timeout": "30s",
                "max_body_size": "1MiB",
                "shutdown_timeout": "25s",
            },
            "upstream": {"total_timeout": "1m"},
        },
        SOURCE,
    )
    limits = settings.limits
    assert (limits.header_timeout, limits.keepalive_timeout) == (2.0, 30.0)
    assert (limits.max_body_size, limits.shutdown_timeout) == (1024 * 1024, 25.0)
    assert settings.upstream.total_timeout == 60.0
    defaults = parse({}, SOURCE)
    assert (defaults.limits.max_body_size, defaults.upstream.total_timeout) == (0, 0.0)


@pytest.mark.parametrize("key", ["header_timeout", "keepalive_timeout"])
def test_client_timeouts_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"server": {key: "0s"}}, SOURCE)
    assert str(caught.value) == f"{SOURCE}: server.{key}: a timeout must be longer than 0"


def test_a_rule_without_caches_gets_the_default_cache() -> None:
    """Issue 12 point 6: every key is optional, [caches.default] included."""
    settings = parse({"rules": [{"path": "^/about$"}]}, "test.toml")
    assert settings.caches == {"default": CacheSettings("default")}
    assert settings.rules[0].cache == "default"


def test_the_default_cache_is_made_only_when_a_rule_uses_it() -> None:
    settings = parse(
        {"caches": {"pages": {}}, "rules": [{"cache": "pages"}, {"action": "pass"}]}, "test.toml"
    )
    assert set(settings.caches) == {"pages"}


def test_a_typo_is_reported_before_an_unknown_cache() -> None:
    """Issue 12 point 6: the unknown-cache error hid the rule's other errors."""
    with pytest.raises(ConfigError) as caught:
        parse({"rules": [{"cache": "pages", "tll": "1h"}]}, "test.toml")
    assert caught.value.key == "rules[1].tll"
    with pytest.raises(ConfigError) as caught:
        parse({"rules": [{"cache": "pages"}]}, "test.toml")
    assert (caught.value.key, caught.value.problem) == (
        "rules[1].cache",
        "unknown cache 'pages' (caches: default)",
    )


def test_invalidate_defaults_and_errors() -> None:
    """Issue 12 point 18: rules invalidate nothing unless they say so; shared mode follows
    RFC 9111 §4.4 (target and same-origin Location); anything else is an error."""
    rules = parse({"rules": [{}, {"invalidate": ["target"]}]}, "test.toml").rules
    assert [r.invalidate for r in rules] == [frozenset(), frozenset({"target"})]
    (shared,) = parse({"mode": "shared"}, "test.toml").rules
    assert shared.invalidate == frozenset({"target", "location"})
    (off,) = parse({"mode": "shared", "shared": {"invalidate": []}}, "test.toml").rules
    assert off.invalidate == frozenset()
    with pytest.raises(ConfigError) as caught:
        parse({"rules": [{"invalidate": ["targets"]}]}, "test.toml")
    assert (caught.value.key, caught.value.problem) == (
        "rules[1].invalidate",
        'unknown \'targets\' (use "target", "location")',
    )


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        pytest.param(
            {"rules": [{"name": "about"}, {"name": "home"}, {"name": "about"}]},
            "rules[3].name",
            "'about' is already the name of rules[1]",
            id="duplicate-rule-name",
        ),
        pytest.param(
            {"rules": [{"ttl": "0s"}]},
            "rules[1].ttl",
            'must be more than 0 (a page never to be reused: action = "pass")',
            id="rule-ttl-zero",
        ),
        pytest.param(
            {"caches": {"default": {"ttl": 0}}},
            "caches.default.ttl",
            'must be more than 0 (a page never to be reused: action = "pass")',
            id="cache-ttl-zero",
        ),
    ],
)
def test_validation_gaps(data: dict[str, Any], key: str, problem: str) -> None:
    """Issue 12 point 19: these were accepted."""
    with pytest.raises(ConfigError) as caught:
        parse(data, "test.toml")
    assert (caught.value.key, caught.value.problem) == (key, problem)


def test_unnamed_rules_may_repeat_and_fallback_ttl_may_be_zero() -> None:
    settings = parse(
        {"rules": [{}, {}, {"name": "a", "ttl": "origin", "fallback_ttl": "0s"}]}, "test.toml"
    )
    assert [r.label for r in settings.rules] == ["rules[1]", "rules[2]", "a"]


@pytest.mark.parametrize(
    ("path", "warned"),
    [
        ("/about", True),
        ("about$", True),
        ("^/about$", False),
        ("^/static/", False),
        ("\\A/x", False),
    ],
)
def test_an_unanchored_path_is_warned_about(path: str, warned: bool) -> None:
    """Issue 12 point 19: `path = "/about"` also matches /x/about and /about-old."""
    settings = parse({"rules": [{"name": "p", "path": path}]}, "test.toml")
    anchored = [w for w in settings.warnings if "is not anchored" in w]
    assert len(anchored) == (1 if warned else 0), settings.warnings
    if warned:
        assert anchored[0].startswith(f"p: path {path!r} is not anchored")
        assert f"'^{path}$'" in anchored[0]


def test_catch_all_is_the_embedded_default_plus_its_pass_rule() -> None:
    """Issue 12 point 11: config/catch-all.toml said it was what the default does; it adds a
    pass rule. What it says now must hold: the same caches, then the default's cache rule."""
    default = load(None)
    catch_all = load(str(Path(__file__).resolve().parents[2] / "config" / "catch-all.toml"))
    assert catch_all.caches == default.caches
    first, *rest = catch_all.rules
    assert (first.action, first.path.pattern if first.path else None) == (
        Action.PASS,
        "^/(admin|login|logout|account)(/|$)",
    )
    assert [(r.name, r.action, r.cache, r.methods, r.ttl) for r in rest] == [
        (r.name, r.action, r.cache, r.methods, r.ttl) for r in default.rules
    ]


@pytest.mark.parametrize(
    ("admin", "line"),
    [
        ({}, "Sidecache-Debug traces for: 127.0.0.0/8, ::1/128"),
        ({"debug_from": ["unix"]}, "Sidecache-Debug traces for: unix sockets"),
        ({"debug_from": []}, "Sidecache-Debug traces: off"),
    ],
)
def test_check_says_who_may_ask_for_a_trace(admin: dict[str, Any], line: str) -> None:
    assert line in describe(parse({"admin": admin}, SOURCE)).splitlines()


TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize(
    ("admin", "problem"),
    [
        # product rule: off loopback, the admin listener needs a token, which /purge requires
        ({"listen": "0.0.0.0:9180"}, "admin.listen: 0.0.0.0:9180 is not a loopback address"),
        ({"listen": "10.0.0.5:9180", "token": "short"}, "admin.token: must be 16 to 512"),
        ({"token": "has a space in it....."}, "admin.token: must be 16 to 512"),
        ({"token": 12345678901234567890}, "admin.token: expected str"),
    ],
)
def test_admin_token_errors_name_the_key(admin: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{SOURCE}: {problem}")):
        parse({"admin": admin}, SOURCE)


def test_a_token_lets_the_admin_listener_listen_off_loopback() -> None:
    settings = parse({"admin": {"listen": "0.0.0.0:9180", "token": TOKEN}}, SOURCE)
    assert (str(settings.admin), settings.admin_token) == ("0.0.0.0:9180", TOKEN)
    assert TOKEN not in repr(settings)  # never in a log line or a traceback


@pytest.mark.parametrize(
    ("purge", "tag_headers", "stripped"),
    [
        ({}, {"cache-tag", "surrogate-key", "xkey"}, {"cache-tag", "surrogate-key", "xkey"}),
        ({"tag_headers": ["X-Tags"]}, {"x-tags"}, {"x-tags"}),
        ({"deliver_tags": True}, {"cache-tag", "surrogate-key", "xkey"}, set()),
    ],
)
def test_purge_tag_headers(
    purge: dict[str, Any], tag_headers: set[str], stripped: set[str]
) -> None:
    settings = parse({"purge": purge}, SOURCE).purge
    assert (settings.tag_headers, settings.stripped) == (tag_headers, stripped)


@pytest.mark.parametrize(
    ("purge", "problem"),
    [
        ({"tag_headers": ["X Tags"]}, "purge.tag_headers: 'X Tags' is not a header name"),
        ({"tag_headers": "Cache-Tag"}, "purge.tag_headers: expected list"),
        ({"deliver": True}, "purge.deliver: unknown key"),
    ],
)
def test_purge_errors_name_the_key(purge: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{SOURCE}: {problem}")):
        parse({"purge": purge}, SOURCE)


@pytest.mark.parametrize(
    ("config", "warned"),
    [
        ({}, True),  # every key is optional: a file without [[rules]] caches nothing
        ({"rules": [{"path": "^/admin", "action": "pass"}]}, True),
        ({"rules": [{"path": "^/about$"}]}, False),
        ({"mode": "shared"}, False),  # the origin's headers decide
    ],
)
def test_a_config_that_caches_nothing_says_so(config: dict[str, Any], warned: bool) -> None:
    settings = parse({"upstream": {"url": "http://127.0.0.1:5000"}, **config}, "t.toml")
    assert (NOTHING_CACHED in settings.warnings) is warned
    assert (NOTHING_CACHED in describe(settings)) is warned  # `sidecache check` says it too
