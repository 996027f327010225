"""One access-log line per request on the "sidecache.access" logger (issue 2, accesslog.py).

Format: CLIENT "METHOD TARGET HTTP/x.y" STATUS CACHE BYTES TIMEus rule=RULE detail=DETAIL, with
space-separated fields and DETAIL one reason token.
"""

from __future__ import annotations

import logging
import re

import pytest

from .conftest import StartProxy
from .support import Client, FakeUpstream

ACCESS_LINE = re.compile(
    r'(?P<client>\S+) "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<cache>[A-Z]+) (?P<bytes>\d+) '
    r"\d+us rule=(?P<rule>\S+) detail=(?P<detail>\S+)"
)


async def test_one_access_log_line_per_request_names_cache_status_and_rule(
    client: Client, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    upstream.on("/private", headers=[("Cache-Control", "private")])

    await client.get("/log?x=1")
    await client.get("/log?x=1")
    await client.get("/private")
    await client.fetch("POST", "/form", data=b"a=1")
    await client.get("/log?x=1", {"Cookie": "remember_token=1"})

    lines = [r.getMessage() for r in caplog.records if r.name == "sidecache.access"]
    parsed = [ACCESS_LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    fields = [
        (m["client"], m["request"], m["status"], m["cache"], m["bytes"], m["rule"], m["detail"])
        for m in parsed
        if m
    ]
    assert fields == [
        ("127.0.0.1", "GET /log?x=1 HTTP/1.1", "200", "MISS", "15", "anonymous-reads", "stored"),
        ("127.0.0.1", "GET /log?x=1 HTTP/1.1", "200", "HIT", "15", "anonymous-reads", "-"),
        ("127.0.0.1", "GET /private HTTP/1.1", "200", "MISS", "15", "anonymous-reads", "private"),
        ("127.0.0.1", "POST /form HTTP/1.1", "200", "PASS", "13", "-", "no-rule"),
        (
            "127.0.0.1",
            "GET /log?x=1 HTTP/1.1",
            "200",
            "PASS",
            "15",
            "anonymous-reads",
            "authenticated",
        ),
    ]


async def test_a_failed_upstream_is_logged_as_an_error(
    sidecache: StartProxy, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    client = await sidecache(upstream_url=f"http://127.0.0.1:{closed_port}")

    await client.get("/down")

    lines = [r.getMessage() for r in caplog.records if r.name == "sidecache.access"]
    assert len(lines) == 1
    # accesslog.py: space-separated fields, DETAIL one reason token (DESIGN: one enum per "why").
    match = ACCESS_LINE.fullmatch(lines[0])
    assert match is not None, lines
    body = b"502 Bad Gateway: upstream refused the connection\n"
    assert (match["status"], match["cache"], match["bytes"]) == ("502", "ERROR", str(len(body)))
    assert match["rule"] == "anonymous-reads"
    assert re.fullmatch(r"[a-z][a-z-]*", match["detail"]), match["detail"]


async def test_access_log_can_be_turned_off(
    sidecache: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecache.access")
    client = await sidecache(server={"access_log": False})

    answer = await client.get("/quiet")

    assert answer.status == 200
    assert [r for r in caplog.records if r.name == "sidecache.access"] == []
