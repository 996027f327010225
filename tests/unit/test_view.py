"""RequestView and request_problem: what the front rejects with 400 before anything else."""

from __future__ import annotations

import pytest

from proxy.view import RequestView, request_problem


def view(target: str, *hosts: str, version: tuple[int, int] = (1, 1)) -> RequestView:
    return RequestView("GET", target, tuple(("Host", h) for h in hosts), version=version)


@pytest.mark.parametrize(
    ("request_view", "problem"),
    [
        pytest.param(view("/", "example.com"), None, id="plain-host"),
        pytest.param(view("/", "example.com:8080"), None, id="host-with-port"),
        pytest.param(view("/", "[::1]:8080"), None, id="ipv6-literal"),
        pytest.param(view("/", "127.0.0.1"), None, id="ipv4"),
        pytest.param(view("/", version=(1, 0)), None, id="http10-may-omit-host"),
        # RFC 9112 §3.2: HTTP/1.1 without Host, several Hosts, or an invalid Host → 400
        pytest.param(view("/"), "missing Host header", id="http11-needs-host"),
        pytest.param(view("/", "a.com", "b.com"), "more than one Host header", id="two-hosts"),
        # product rule: a Host holding "/" or "?" could imitate another page's cache key
        pytest.param(view("/", "example.com/evil"), "invalid Host header", id="slash-in-host"),
        pytest.param(view("/", "example.com?x"), "invalid Host header", id="query-in-host"),
        pytest.param(view("/", "a b"), "invalid Host header", id="space-in-host"),
        pytest.param(view("/", "user@example.com"), "invalid Host header", id="userinfo"),
        # RFC 9112 §3.2.1: a reverse proxy serves origin-form targets only
        pytest.param(
            view("http://example.com/", "example.com"),
            "the request target must be a path (origin-form)",
            id="absolute-form",
        ),
        pytest.param(
            view("*", "example.com"),
            "the request target must be a path (origin-form)",
            id="asterisk-form",
        ),
    ],
)
def test_request_problem(request_view: RequestView, problem: str | None) -> None:
    assert request_problem(request_view) == problem


def test_view_splits_raw_target_without_decoding() -> None:
    # DESIGN: keep the raw path and query as received, so nothing is re-quoted
    v = RequestView("get", "/a%2Fb?x=%41&y", (("HOST", "Example.COM"),))
    assert (v.method, v.path, v.query, v.host) == ("GET", "/a%2Fb", "x=%41&y", "example.com")


def test_repeated_headers_are_joined_and_case_insensitive() -> None:
    # RFC 9110 §5.3: field lines of one name combine with ", "
    v = RequestView("GET", "/", (("Accept", "a"), ("accept", "b"), ("Cookie", "x=1")))
    assert v.header("ACCEPT") == "a, b"
    assert v.header("missing") is None
    assert dict(v.cookies) == {"x": "1"}
