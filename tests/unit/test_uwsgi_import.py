"""Pin proxy.uwsgi_import: a uWSGI router-cache ini in, sidecache rules out, each untranslated
line said. Every output must load with the code `sidecache check` runs (config.parse)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import parse
from proxy.uwsgi_import import ImportProblem, import_uwsgi
from proxy.uwsgi_setup import http_url, size_text
from proxy.uwsgi_terms import toml_string

DATA = Path(__file__).resolve().parents[1] / "data" / "uwsgi"
CACHE = "cache2 = name=c,items=10\n"
ANON = "route-if = empty:${cookie[remember_token]} goto:cacheme\nroute-run = continue:\n"
ANON += "route-label = cacheme\n"
PAIR = "route = {regex} cache:key=${{REQUEST_URI}},name=c\n"
PAIR += "route = {regex} cachestore:key=${{REQUEST_URI}},name=c\n"
NO_REMEMBER = {"remember_token": "absent"}


def translated(ini: str) -> tuple[list[dict[str, Any]], str]:
    """The rules (names left out) of the translation of `[uwsgi]` + `ini`, and its text."""
    text = import_uwsgi("[uwsgi]\n" + ini, "test.ini")
    data = tomllib.loads(text)
    parse(data, "test.ini")  # what `sidecache check` runs: the output must load
    return [{k: v for k, v in r.items() if k != "name"} for r in data.get("rules", [])], text


def cached(path: str | None = None, **more: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"path": path} if path else {}
    rule.update(more)
    rule.setdefault("cookie", NO_REMEMBER)
    if rule["cookie"] is None:
        del rule["cookie"]
    return {**rule, "anonymous": True, "action": "cache", "cache": "c", "key": "{host}{uri}"}


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        # the seed: the Flask site's front and about pages for visitors without remember_token
        pytest.param(
            CACHE + ANON + PAIR.format(regex="^/$") + PAIR.format(regex="^/about$"),
            [cached("^/$"), cached("^/about$")],
            id="seed-goto-label",
        ),
        # the same gate written the other way: route-if-not jumps past the cache routes
        pytest.param(
            CACHE
            + "route-if-not = empty:${cookie[remember_token]} goto:done\n"
            + PAIR.format(regex="^/about$")
            + "route-label = done\n",
            [cached("^/about$")],
            id="route-if-not-goto-past",
        ),
        pytest.param(
            CACHE + "route-if-not = empty:${cookie[remember_token]} last:\n"
            "route-run = cache:key=${REQUEST_URI}\nroute-run = cachestore:key=${REQUEST_URI}\n",
            [cached()],
            id="catch-all-first-cache-by-default",
        ),
        # no gate at all: anonymous = true is all that keeps logged-in visitors out
        pytest.param(CACHE + PAIR.format(regex="^/$"), [cached("^/$", cookie=None)], id="no-gate"),
        # an exit before a catch-all cache: a pass rule where it stands (first match wins)
        pytest.param(
            CACHE + "route = ^/login last:\n"
            "route-run = cache:key=${REQUEST_URI}\nroute-run = cachestore:key=${REQUEST_URI}\n",
            [{"path": "^/login", "action": "pass"}, cached(cookie=None)],
            id="exit-becomes-pass-rule",
        ),
        # an exit no cache rule below could meet needs no rule
        pytest.param(
            CACHE + "route = ^/old/ redirect:/new/\n" + PAIR.format(regex="^/$"),
            [cached("^/$", cookie=None)],
            id="exit-disjoint-needs-no-rule",
        ),
        pytest.param(
            CACHE + "route = ^/news/ cache:key=${REQUEST_URI},name=c\n"
            "route = ^/news/ cachestore:key=${REQUEST_URI},name=c,expires=60\n",
            [cached("^/news/", cookie=None, ttl="60s")],
            id="expires-is-ttl",
        ),
        # a header test and a query-string key
        pytest.param(
            CACHE + "route-if = equal:${HTTP_X_REQUESTED_WITH};XMLHttpRequest continue:\n"
            "route = ^/items cache:key=${PATH_INFO}?${QUERY_STRING},name=c\n"
            "route = ^/items cachestore:key=${PATH_INFO}?${QUERY_STRING},name=c\n",
            [
                {"header": {"X-Requested-With": {"equals": "XMLHttpRequest"}}, "action": "pass"},
                {**cached("^/items", cookie=None), "key": "{host}{path}?{query}"},
            ],
            id="header-exit-and-query-key",
        ),
        # a key that reads a cookie: the fill must send it, as the app got it under uWSGI
        pytest.param(
            CACHE + "route = ^/$ cache:key=${REQUEST_URI}${cookie[lang]},name=c\n"
            "route = ^/$ cachestore:key=${REQUEST_URI}${cookie[lang]},name=c\n",
            [
                {
                    **cached("^/$", cookie=None),
                    "key": "{host}{uri}{cookie[lang]}",
                    "keep_cookies": ["lang"],
                }
            ],
            id="cookie-in-key-is-kept-on-fills",
        ),
        # $1 is a part of the path: the whole path keys at least as finely
        pytest.param(
            CACHE + "route = ^/img/(.*)\\.jpg$ cache:key=$1.jpg,name=c\n"
            "route = ^/img/(.*)\\.jpg$ cachestore:key=$1.jpg,name=c\n",
            [{**cached("^/img/(.*)\\.jpg$", cookie=None), "key": "{host}{path}.jpg"}],
            id="regex-group-key",
        ),
        pytest.param(
            CACHE + "route-user-agent = bot cache:key=${REQUEST_URI}\n"
            "route-user-agent = bot cachestore:key=${REQUEST_URI}\n",
            [cached(cookie=None, header={"User-Agent": {"matches": "bot"}})],
            id="user-agent-route",
        ),
        # a cookie test uWSGI holds for an absent cookie and sidecache can say exactly
        pytest.param(
            CACHE
            + "route-if-not = regexp:${cookie[ab]};^b$ goto:skip\n"
            + PAIR.format(regex="^/$")
            + "route-label = skip\n",
            [cached("^/$", cookie={"ab": {"matches": "^b$"}})],
            id="cookie-regexp-jumped-on",
        ),
        # two caches, each rule in its own
        pytest.param(
            "cache2 = name=a,items=5\ncache2 = name=b,items=5\n"
            "route = ^/a cache:key=${REQUEST_URI},name=a\n"
            "route = ^/a cachestore:key=${REQUEST_URI},name=a\n"
            "route = ^/b cache:key=${REQUEST_URI},name=b\n"
            "route = ^/b cachestore:key=${REQUEST_URI},name=b\n",
            [
                {**cached("^/a", cookie=None), "cache": "a"},
                {**cached("^/b", cookie=None), "cache": "b"},
            ],
            id="several-caches",
        ),
        # an action that goes on to the next route leaves no trace on the rules below it
        pytest.param(
            CACHE + "route = ^/a addheader:X-A: 1\n" + PAIR.format(regex="\\.html$"),
            [cached("\\.html$", cookie=None)],
            id="next-action-condition-merges-away",
        ),
        # a whole path decides the other path tests: written alone
        pytest.param(
            CACHE + "route = ^/blog/ goto:end\n" + PAIR.format(regex="^/$") + "route-label = end\n",
            [cached("^/$", cookie=None)],
            id="whole-path-alone",
        ),
        # ^/about$ cannot be ^/blog/: the jump's negation is not needed, and no rule is
        # written for a cache line whose store line tests another whole path
        pytest.param(
            CACHE
            + "route = ^/about$ cache:key=x,name=c\nroute = ^/$ cachestore:key=x,name=c\n"
            + PAIR.format(regex="^/blog/"),
            [cached("^/blog/", cookie=None)],
            id="exclusive-paths-make-no-rule",
        ),
        # the old-style cache is named "default"
        pytest.param(
            "cache = 50\n" + PAIR.format(regex="^/$").replace(",name=c", ""),
            [{**cached("^/$", cookie=None), "cache": "default"}],
            id="old-style-default-cache",
        ),
    ],
)
def test_rules(ini: str, expected: list[dict[str, Any]]) -> None:
    rules, _ = translated(ini)
    assert rules == expected


@pytest.mark.parametrize(
    ("ini", "said"),
    [
        pytest.param(
            CACHE + "route = ^/feed$ cache:key=feed,name=c\n",
            "line 3: route = ^/feed$ cache:key=feed,name=c — no cachestore: line stores",
            id="lookup-without-store",
        ),
        pytest.param(
            CACHE + "route = ^/stats$ cachestore:key=stats,name=c\n",
            "line 3: route = ^/stats$ cachestore:key=stats,name=c — it stores under a key no",
            id="store-without-lookup",
        ),
        pytest.param(
            CACHE + "route = ^/ cache:key=a,name=c\nroute = ^/ cachestore:key=b,name=c\n",
            "no cachestore: line stores key=a in cache 'c'",
            id="store-of-another-key",
        ),
        # two prefixes that differ: no request is both looked up and stored
        pytest.param(
            CACHE + "route = ^/a/ cache:key=x,name=c\nroute = ^/b/ cachestore:key=x,name=c\n",
            "no cachestore: line stores key=x in cache 'c'",
            id="store-on-other-prefix",
        ),
        # $1 of one regex is not $1 of another
        pytest.param(
            CACHE
            + "route = ^/a/(.*) cache:key=$1,name=c\nroute = ^/b/(.*) cachestore:key=$1,name=c\n",
            "no cachestore: line stores key=$1 in cache 'c'",
            id="groups-of-different-regexes",
        ),
        pytest.param(
            CACHE + "route = ^/me cache:key=${REMOTE_ADDR},name=c\n"
            "route = ^/me cachestore:key=${REMOTE_ADDR},name=c\n",
            "${REMOTE_ADDR} has no sidecache key variable",
            id="key-without-template",
        ),
        pytest.param(
            CACHE + "route = ^/ cache:key=x,name=c@10.0.0.1:4040\n",
            "is not a local cache sidecache can name",
            id="remote-cache",
        ),
        pytest.param(
            CACHE + "route = ^/ cache:key=x,name=other\n",
            "no cache2 named 'other' in the ini",
            id="unknown-cache",
        ),
        pytest.param("route = ^/ cache:key=x\n", "no cache in the ini", id="no-cache-at-all"),
        # the gate sidecache cannot test stays out of the rule: the rule is not written
        pytest.param(
            CACHE + "route-if = isfile:/srv/cache-on goto:c\nroute-run = last:\n"
            "route-label = c\n" + PAIR.format(regex="^/$"),
            "'isfile' test has no sidecache equivalent (line 3: isfile:/srv/cache-on)",
            id="untestable-gate",
        ),
        # regexp:${cookie[x]};.* holds without the cookie (uWSGI reads it as ""): no test says so
        pytest.param(
            CACHE + "route-if = regexp:${cookie[x]};^a? goto:c\nroute-run = last:\n"
            "route-label = c\n" + PAIR.format(regex="^/$"),
            "holds for a request without cookie x too",
            id="cookie-test-true-when-absent",
        ),
        pytest.param(
            CACHE + "route = \\.php$ rewrite:/index.php\n" + PAIR.format(regex="^/x"),
            "PATH_INFO was rewritten at line 3",
            id="path-rewritten-above",
        ),
        pytest.param(
            CACHE + "route = .* addheader:X-Served-By: uwsgi\n",
            "line 3: route = .* addheader:X-Served-By: uwsgi — not a cache route: keep it",
            id="not-a-cache-route",
        ),
        pytest.param(
            CACHE + "route-run = continue:\n" + PAIR.format(regex="^/$"),
            "line 4: route = ^/$ cache:key=${REQUEST_URI},name=c — no request reaches it",
            id="unreached",
        ),
        pytest.param(
            CACHE + "route-remote-addr = ^10\\. last:\nroute-run = cache:key=x\n"
            "route-run = cachestore:key=x\n",
            "sidecache rules do not test the client's address (line 3: route-remote-addr ^10\\.)"
            ": the rules below may also answer requests it ends",
            id="untestable-exit",
        ),
        pytest.param(
            CACHE + "final-route = ^/ log:done\n", "another routing table", id="final-route"
        ),
        pytest.param(
            "cache2 = name=c,items=10,keysize=4096,store=/var/c\n" + PAIR.format(regex="^/$"),
            "# not translated: store=/var/c — sidecache keeps its caches in memory only",
            id="cache2-option",
        ),
        pytest.param(
            "cache2 = name=c\n", "uWSGI refuses a cache2 without name= and items=", id="no-items"
        ),
        pytest.param(
            "cache2 = name=c,items=64k\n", "items=64k is not a positive whole number", id="64k"
        ),
        pytest.param(
            CACHE + "master = true\n",
            "line 3: master = true — the app server's own setting",
            id="app-setting",
        ),
    ],
)
def test_what_is_not_translated_is_said(ini: str, said: str) -> None:
    _, text = translated(ini)
    assert said in text


def test_every_line_of_the_ini_is_in_the_output() -> None:
    # a reader can follow each line of the ini into the output, translated or not
    for path in sorted(DATA.glob("*.ini")):
        ini = path.read_text()
        _, text = translated(ini.split("[uwsgi]\n", 1)[1])
        for number, line in enumerate(("[uwsgi]\n" + ini.split("[uwsgi]\n", 1)[1]).split("\n"), 1):
            if line.strip() and not line.startswith((";", "[", "route-label")):
                assert f"line {number}: {line.strip()}" in text, (path.name, line)


def test_the_seed_file() -> None:
    # tests/data/uwsgi/flask-site.ini: the hand translation is config/uwsgi-flask.toml
    text = import_uwsgi((DATA / "flask-site.ini").read_text(), "flask-site.ini")
    data = tomllib.loads(text)
    settings = parse(data, "flask-site.toml")
    assert data["upstream"] == {"url": "http://127.0.0.1:5000"}
    assert data["caches"] == {
        "mycache": {"items": 100, "item_size": "64KiB", "max_bytes": "6400KiB"}
    }
    assert [(r.name, r.path.pattern if r.path else None) for r in settings.rules] == [
        ("line-20", "^/$"),
        ("line-22", "^/about$"),
    ]


@pytest.mark.parametrize(
    ("ini", "paths", "matches"),
    [
        # goto past a part of the table: the rules below it carry the goto's negation
        pytest.param(
            CACHE + "route = ^/static/ goto:end\nroute-run = cache:key=${REQUEST_URI}\n"
            "route-run = cachestore:key=${REQUEST_URI}\nroute-label = end\n",
            ["/", "/about", "/static/a.css", "/x/static/", "/static"],
            [True, True, False, True, True],
            id="negated-path",
        ),
        pytest.param(
            CACHE + "route = ^/blog/ goto:end\nroute = \\.html$ cache:key=${REQUEST_URI}\n"
            "route = \\.html$ cachestore:key=${REQUEST_URI}\nroute-label = end\n",
            ["/a.html", "/blog/a.html", "/a.htm", "/x/blog/a.html"],
            [True, False, False, True],
            id="negated-and-positive-path",
        ),
    ],
)
def test_path_tests_combined(ini: str, paths: list[str], matches: list[bool]) -> None:
    rules, _ = translated(ini)
    [rule] = rules
    assert [re.search(rule["path"], path) is not None for path in paths] == matches


def test_a_negated_cookie_test_that_holds_without_the_cookie() -> None:
    # uWSGI jumps past the cache routes when lang is "en", empty or absent; the rule below
    # must hold for any other value, and never without the cookie: sidecache's `matches`
    # fails on an absent cookie, so the negation alone is exact
    rules, _ = translated(
        CACHE + "route-if = regexp:${cookie[lang]};^(en)?$ goto:skip\n"
        "route-run = cache:key=${REQUEST_URI}\nroute-run = cachestore:key=${REQUEST_URI}\n"
        "route-label = skip\n"
    )
    [rule] = rules
    pattern = rule["cookie"]["lang"]["matches"]
    assert [re.search(pattern, v) is not None for v in ("fr", "english", "en", "")] == [
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        (":9090", "http://127.0.0.1:9090"),  # every interface: sidecache runs beside the app
        ("0.0.0.0:8000", "http://127.0.0.1:8000"),
        ("[::]:8000", "http://[::1]:8000"),
        ("app.internal:8000", "http://app.internal:8000"),
        ("/run/app.sock", "unix:/run/app.sock"),
        ("@app", ""),  # an abstract unix socket: not a path sidecache can open
        (":%(port)", ""),
        ("=0", ""),  # a shared socket, by number
        ("127.0.0.1:99999", ""),
    ],
)
def test_http_url(address: str, url: str) -> None:
    assert http_url(address) == url


@pytest.mark.parametrize(
    ("ini", "url"),
    [
        ("http-socket = :9090\nhttp = :8000\n", "http://127.0.0.1:9090"),
        ("http = :8000\n", "http://127.0.0.1:8000"),  # uWSGI's HTTP router speaks HTTP too
        ("socket = /run/app.sock\n", "http://127.0.0.1:5000"),  # uwsgi protocol: placeholder
        ("", "http://127.0.0.1:5000"),
    ],
)
def test_upstream(ini: str, url: str) -> None:
    text = import_uwsgi("[uwsgi]\n" + ini, "t.ini")
    assert tomllib.loads(text)["upstream"]["url"] == url


@pytest.mark.parametrize(
    ("size", "text"),
    [(65536, '"64KiB"'), (6553600, '"6400KiB"'), (1048576, '"1MiB"'), (1000, "1000")],
)
def test_size_text(size: int, text: str) -> None:
    assert size_text(size) == text


@pytest.mark.parametrize(
    "value", ["^/about$", "\\.php$", "it's", 'say "hi"', "tab\there", "nul\x00", "del\x7f", "é"]
)
def test_toml_string_reads_back(value: str) -> None:
    assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value


def test_a_missing_section_is_a_problem() -> None:
    with pytest.raises(ImportProblem, match=r"t.ini: no \[uwsgi\] section \(sections: \[app\]\)"):
        import_uwsgi("[app]\nmaster = true\n", "t.ini")


# Property: whatever a routing table made of these pieces says, the output loads and every
# route line is accounted for (a rule, a comment, or a "not translated" line).
_COOKIES = st.sampled_from(["remember_token", "lang", "a.b", "x y"])
_REGEXES = st.sampled_from(["^/$", "^/about$", "^/blog/", "\\.html$", ".*", "(", "^/a|^/b"])
_LABELS = st.sampled_from(["one", "two", "3", "nowhere"])
_CONDITIONS = st.one_of(
    st.builds("empty:${{cookie[{}]}}".format, _COOKIES),
    st.builds("equal:${{cookie[{}]}};{}".format, _COOKIES, st.sampled_from(["", "x", "a;b"])),
    st.builds("regexp:${{HTTP_X_A}};{}".format, _REGEXES),
    st.builds("startswith:${{PATH_INFO}};{}".format, st.sampled_from(["/", "/blog", ""])),
    st.sampled_from(["isfile:/x", "equal:${REQUEST_URI};/", "empty:${qs[a]}", "bogus"]),
)
_ACTIONS = st.one_of(
    st.sampled_from(["continue:", "last:", "break:404", "addheader:X: y", "rewrite:/x", "log:"]),
    st.builds("goto:{}".format, _LABELS),
    st.builds(
        "{}:key={}{}".format,
        st.sampled_from(["cache", "cachestore"]),
        st.sampled_from(["${REQUEST_URI}", "$1", "k", "${REMOTE_ADDR}", "${cookie[lang]}"]),
        st.sampled_from(["", ",name=c", ",name=d", ",expires=30", ",gzip=g"]),
    ),
)
_LINES = st.one_of(
    st.builds("route = {} {}".format, _REGEXES, _ACTIONS),
    st.builds("route-if = {} {}".format, _CONDITIONS, _ACTIONS),
    st.builds("route-if-not = {} {}".format, _CONDITIONS, _ACTIONS),
    st.builds("route-run = {}".format, _ACTIONS),
    st.builds("route-label = {}".format, _LABELS),
    st.builds("route-host = {} {}".format, _REGEXES, _ACTIONS),
    st.sampled_from(
        ["cache2 = name=d,items=3,blocksize=1000", "route = x", "cache = 5", "cache-blocksize = 9"]
    ),
)


@settings(
    max_examples=int(os.environ.get("SIDECACHE_FUZZ_EXAMPLES", 200)), deadline=None, database=None
)
@given(st.lists(_LINES, max_size=12))
def test_any_table_translates_into_a_config_that_loads(lines: list[str]) -> None:
    ini = CACHE + "".join(f"{line}\n" for line in lines)
    _, text = translated(ini)
    for number, line in enumerate(ini.splitlines(), 2):
        if not line.startswith("route-label"):
            assert f"line {number}: " in text, line
