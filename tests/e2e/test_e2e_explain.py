"""`sidecache explain URL`, the real command: the decision trace of one request, no server.

The cache, pass and Authorization cases against the uWSGI example config and the embedded
default; exit status 0, and 2 (one line on stderr) for a bad request or a config error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sidecache_e2e import RUN_TIMEOUT, run_sidecache, sidecache_command

from proxy.trace import key_hash

UWSGI = str(Path(__file__).resolve().parents[2] / "config" / "uwsgi-flask.toml")


def explain(*args: str, cwd: Path) -> list[str]:
    result = run_sidecache("explain", *args, cwd=cwd)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.splitlines()


def test_an_anonymous_visitor_of_the_about_page_is_a_lookup(tmp_path: Path) -> None:
    lines = explain("-c", UWSGI, "http://www.example.com/about", cwd=tmp_path)

    assert lines[:2] == ["request: GET /about", "  Host: www.example.com"]
    assert "visitor: anonymous: no Cookie header" in lines
    assert "  1. about-for-anonymous: matched" in lines
    assert lines[lines.index("  1. about-for-anonymous: matched") + 1].startswith(
        "decision: lookup in cache 'mycache'"
    )
    assert "  key: www.example.com/about\\0identity" in lines
    key = key_hash("www.example.com/about\x00identity")
    assert f"  key-hash: {key} (what Sidecache-Trace shows instead of the key)" in lines
    assert (
        "  cache: mycache: items=100 item_size=64KiB max_bytes=16MiB ttl=60s keep=600s, "
        "coalesce_wait=5s, hit_for_pass=10s"
    ) in lines
    fill = lines.index(
        "a fill (on a miss) sends what a new visitor would (no cookies, an allowlist):"
    )
    assert lines[fill + 1 : fill + 3] == ["  GET /about", "  Host: www.example.com"]
    assert "  Accept-Encoding: identity" in lines[fill:]


def test_a_remember_token_fails_the_rules_cookie_condition(tmp_path: Path) -> None:
    lines = explain(
        "-c", UWSGI, "/about", "--cookie", "remember_token=abc", "-H", "Host: example.com",
        cwd=tmp_path,
    )  # fmt: skip

    assert (
        "visitor: logged-in: cookie remember_token is present ([identity] remember_cookies: "
        "any value, even empty, means logged in)"
    ) in lines
    assert (
        "  1. about-for-anonymous: no match: cookie remember_token is present "
        "(the rule wants it absent)"
    ) in lines
    assert "decision: pass (no-rule): no rule matched: what no rule caches goes to the app" in lines
    forwarded = lines.index(
        "a pass forwards the request as it came (cookies and all), nothing stored:"
    )
    assert "  Cookie: remember_token=abc" in lines[forwarded:]


def test_the_default_config_passes_a_logged_in_visitor_with_its_reason(tmp_path: Path) -> None:
    lines = explain("http://example.com/", "--cookie", "remember_token=1", cwd=tmp_path)

    assert "  1. anonymous-reads: matched" in lines
    assert (
        "decision: pass (authenticated): a logged-in visitor is never answered from a cache, "
        "and their page is never stored"
    ) in lines


def test_the_default_config_passes_authorization(tmp_path: Path) -> None:
    lines = explain("http://example.com/api", "-H", "Authorization: Bearer t", cwd=tmp_path)

    assert "  Authorization is sent: logged in, unless a rule allows it" in lines
    assert (
        "decision: pass (authorization): the request carries Authorization and the rule does "
        "not allow it (RFC 9111 §3.5)"
    ) in lines
    assert "  Authorization: Bearer t" in lines


def test_the_default_config_caches_an_anonymous_read(tmp_path: Path) -> None:
    lines = explain(
        "/", "-H", "Accept-Encoding: gzip, br", "-H", "Sidecache-Debug: 1",
        "--cookie", "theme=dark", cwd=tmp_path,
    )  # fmt: skip

    assert "decision: lookup in cache 'default'" in " ".join(lines)
    assert "  key: http://127.0.0.1:8080/\\0br, gzip" in lines
    assert "  not sent: Cookie, Sidecache-Debug" in lines


def test_shared_mode_says_the_origin_decides(tmp_path: Path) -> None:
    lines = explain("--shared", "http://example.com/", cwd=tmp_path)

    assert lines[lines.index("  1. shared: matched") - 1].startswith(
        "mode: shared (no rules: the origin's headers decide"
    )
    assert "a fill (on a miss) forwards the request as it came (shared mode):" in lines


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["/x", "-H", "NoColon"], "explain: bad header 'NoColon' (write -H 'Name: value')"),
        (["/x", "--cookie", "x"], "explain: bad cookie 'x' (write --cookie 'name=value', no ';')"),
        (
            ["ftp://x/"],
            "explain: bad URL 'ftp://x/': write http://host/path?query or /path?query (no spaces)",
        ),
        (
            ["/x", "-H", "Host: a/b"],
            "explain: sidecache would answer 400 (invalid Host header) to this request",
        ),
        (
            ["/x", "-c", "/nonexistent.toml"],
            "config error: /nonexistent.toml: cannot read file: No such file or directory",
        ),
    ],
)
def test_a_bad_request_or_config_is_one_line_and_status_2(
    tmp_path: Path, args: list[str], error: str
) -> None:
    result = run_sidecache("explain", *args, cwd=tmp_path)

    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"sidecache: {error}\n")


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`sidecache explain URL | head -1`: the reader is gone before the report is written
    (here from the start: a pipe whose read end is closed); exit 0 and nothing on stderr, as
    `check` and `import-uwsgi` do."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            sidecache_command("explain", "-c", UWSGI, "http://www.example.com/about"),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=tmp_path,
            check=False,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (0, "")
