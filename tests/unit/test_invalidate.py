"""Pin proxy.invalidate: which stored responses an unsafe request makes unusable (RFC 9111 §4.4)."""

from __future__ import annotations

import pytest

from proxy.invalidate import ENCODINGS, LOCATION, TARGET, invalidates, lookups, targets
from proxy.view import Headers, RequestView

POST = RequestView(
    "POST",
    "/cart?item=1",
    (("Host", "Shop.example"), ("Cookie", "session=abc"), ("Accept-Encoding", "gzip")),
)


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        pytest.param("POST", 200, True, id="post-200"),
        pytest.param("PUT", 204, True, id="put-204"),
        pytest.param("DELETE", 303, True, id="delete-303"),
        pytest.param("PATCH", 201, True, id="patch-201"),
        pytest.param("PROPFIND", 207, True, id="any-unsafe-method"),
        pytest.param("post", 200, True, id="method-case"),
        pytest.param("POST", 404, False, id="client-error"),
        pytest.param("POST", 500, False, id="server-error"),
        pytest.param("POST", 100, False, id="interim"),
        pytest.param("GET", 200, False, id="get-is-safe"),
        pytest.param("HEAD", 200, False, id="head-is-safe"),
        pytest.param("OPTIONS", 200, False, id="options-is-safe"),
    ],
)
def test_invalidates(method: str, status: int, expected: bool) -> None:
    assert invalidates(method, status) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param((), ["/cart?item=1"], id="target-only"),
        pytest.param((("Location", "/cart"),), ["/cart?item=1", "/cart"], id="relative-location"),
        pytest.param(
            (("Location", "http://shop.example/done?x=1"),),
            ["/cart?item=1", "/done?x=1"],
            id="absolute-same-origin",
        ),
        pytest.param(
            (("Location", "https://shop.example/x"),), ["/cart?item=1"], id="other-scheme"
        ),
        pytest.param((("Location", "http://evil.example/"),), ["/cart?item=1"], id="other-host"),
        pytest.param(
            (("Content-Location", "thanks"),), ["/cart?item=1", "/thanks"], id="content-location"
        ),
        pytest.param((("Location", "/cart?item=1"),), ["/cart?item=1"], id="same-as-target-once"),
        pytest.param((("Location", "http://shop.example"),), ["/cart?item=1", "/"], id="no-path"),
    ],
)
def test_targets(headers: Headers, expected: list[str]) -> None:
    found = targets(POST, headers)
    assert [target for target, _ in found] == expected
    assert [named_by for _, named_by in found] == [TARGET] + [LOCATION] * (len(expected) - 1)


def test_lookups_are_anonymous_gets_for_every_encoding() -> None:
    found = lookups(POST, (("Location", "/done"),))
    assert [(v.method, v.target, named_by) for v, named_by in found] == [
        ("GET", target, named_by)
        for target, named_by in (("/cart?item=1", TARGET), ("/done", LOCATION))
        for _ in ENCODINGS
    ]
    assert [v.header("accept-encoding") for v, _ in found[:4]] == list(ENCODINGS)
    for view, _ in found:
        assert view.header("cookie") is None  # the logged-in visitor's cookies are left out
        assert view.host == "shop.example"
