"""Framing and keep-alive (proxy/framing.py), driven with plain values. Rules: RFC 9112 §6.1
(Transfer-Encoding), §6.3 (message body length), §9.3 (persistence), RFC 9110 §6.4.1 and §8.6
(which responses have content and a Content-Length), and our product rules where noted."""

from __future__ import annotations

import pytest

from proxy.framing import (
    CHUNKED,
    CLOSE,
    LENGTH,
    NO_BODY,
    NO_BODY_STATUSES,
    BodyFraming,
    body_is_framed,
    coding_refused,
    connection_header,
    request_framing,
    response_has_body,
    response_length,
    status_has_body,
    streamed_framing,
    valid_length,
)

V11, V10, V09 = (1, 1), (1, 0), (0, 9)


@pytest.mark.parametrize(
    ("version", "fields", "expected"),
    [
        pytest.param(V11, {}, (True, None, False, None), id="11-persists-no-body"),
        pytest.param(V11, {"connection": "close"}, (False, None, False, None), id="11-close"),
        pytest.param(
            V11,
            {"connection": "keep-alive, Close"},
            (False, None, False, None),
            id="11-close-token",
        ),
        pytest.param(V10, {}, (False, None, False, None), id="10-closes-by-default"),
        pytest.param(
            V10, {"connection": "Keep-Alive"}, (True, None, False, None), id="10-keep-alive"
        ),
        pytest.param(V11, {"content-length": "5"}, (True, 5, True, None), id="length"),
        pytest.param(V11, {"content-length": "0"}, (True, 0, False, None), id="length-0-no-body"),
        pytest.param(
            V11, {"content-length": " 7\t"}, (True, 7, True, None), id="length-with-whitespace"
        ),
        pytest.param(V11, {"transfer-encoding": "chunked"}, (True, None, True, None), id="chunked"),
        pytest.param(
            V11,
            {"transfer-encoding": "chunked", "content-length": "5"},
            (True, None, True, None),
            id="chunked-wins-over-length",  # §6.3 item 3
        ),
        pytest.param(
            V11,
            {"content-length": "5, 5"},
            (False, None, False, (400, "invalid Content-Length")),
            id="two-lengths-400",
        ),
        pytest.param(
            V11,
            {"content-length": "x"},
            (False, None, False, (400, "invalid Content-Length")),
            id="junk-length-400",
        ),
        pytest.param(
            V11,
            {"content-length": str(2**63)},
            (False, None, False, (400, "invalid Content-Length")),
            id="length-2-63-400",  # nginx's bound
        ),
        pytest.param(
            V10,
            {"connection": "keep-alive", "transfer-encoding": "chunked"},
            (False, None, True, (400, "Transfer-Encoding in an HTTP/1.0 request")),
            id="10-transfer-encoding-400",  # §6.1: smuggling
        ),
        pytest.param(
            V09, {}, (False, None, False, (400, "HTTP/0.9 is not supported")), id="09-400"
        ),
        pytest.param(
            V11,
            {"proxy-connection": "close"},
            (False, None, False, None),
            id="proxy-connection-close",  # llhttp closes on it: say so (§9.6)
        ),
    ],
)
def test_request_framing(
    version: tuple[int, int], fields: dict[str, str], expected: tuple[object, ...]
) -> None:
    assert request_framing(version, fields) == expected


@pytest.mark.parametrize(
    ("length", "valid"),
    [("0", True), ("123", True), (str(2**63 - 1), True), (str(2**63), False), ("-1", False),
     ("1e3", False), ("", False), ("٣", False), ("1 2", False), ("00000000000000000001", False)],
)  # fmt: skip
def test_valid_length(length: str, valid: bool) -> None:
    assert valid_length(length) is valid


@pytest.mark.parametrize(
    ("status", "has_body"),
    [(100, False), (103, False), (200, True), (204, False), (206, True), (304, False),
     (404, True), (500, True)],
)  # fmt: skip
def test_status_has_body(status: int, has_body: bool) -> None:
    assert status_has_body(status) is has_body
    assert (status in NO_BODY_STATUSES) is not has_body
    assert response_has_body("GET", status) is has_body
    assert response_has_body("HEAD", status) is False  # RFC 9110 §9.3.2


@pytest.mark.parametrize(
    ("method", "status", "version", "length", "until_close", "expected"),
    [
        pytest.param("GET", 200, V11, 10, False, LENGTH, id="length-known"),
        pytest.param("HEAD", 200, V11, 10, False, LENGTH, id="head-keeps-get-length"),
        pytest.param("GET", 304, V11, 10, False, LENGTH, id="304-keeps-length"),
        pytest.param("GET", 204, V11, 0, False, NO_BODY, id="204-never-length"),  # §8.6
        pytest.param("GET", 103, V11, 0, False, NO_BODY, id="1xx-never-length"),
        pytest.param("GET", 200, V11, None, False, CHUNKED, id="unknown-length-11-chunked"),
        pytest.param("GET", 200, V10, None, False, CLOSE, id="unknown-length-10-close"),
        pytest.param("GET", 200, V11, None, True, CLOSE, id="upstream-close-delimited"),
        pytest.param("HEAD", 200, V11, None, False, NO_BODY, id="head-unknown-length"),
        pytest.param("GET", 304, V11, None, True, NO_BODY, id="304-no-body"),
    ],
)
def test_streamed_framing(
    method: str,
    status: int,
    version: tuple[int, int],
    length: int | None,
    until_close: bool,
    expected: BodyFraming,
) -> None:
    assert streamed_framing(method, status, version, length, until_close) is expected


@pytest.mark.parametrize(
    ("chunked", "length", "status", "framed"),
    [
        pytest.param(True, None, 200, True, id="chunked"),
        pytest.param(False, 0, 200, True, id="length"),
        pytest.param(False, None, 200, False, id="close-delimited"),  # a cut one looks whole
        pytest.param(False, None, 204, True, id="204-no-body"),
        pytest.param(False, None, 304, True, id="304-no-body"),
    ],
)
def test_body_is_framed(chunked: bool, length: int | None, status: int, framed: bool) -> None:
    assert body_is_framed(chunked, length, status) is framed


@pytest.mark.parametrize(
    ("value", "length"), [(b"12", 12), (b" 3 ", 3), (b"x", None), (b"-1", None)]
)
def test_response_length(value: bytes, length: int | None) -> None:
    assert response_length(value) == length


@pytest.mark.parametrize(
    ("already", "value", "refused"),
    [
        pytest.param(False, b"chunked", False, id="one-chunked"),
        pytest.param(False, b" Chunked ", False, id="any-case"),
        pytest.param(False, b"gzip, chunked", True, id="another-coding"),  # §6.1
        pytest.param(True, b"chunked", True, id="second-field"),
    ],
)
def test_coding_refused(already: bool, value: bytes, refused: bool) -> None:
    assert coding_refused(already, value) is refused


@pytest.mark.parametrize(
    ("version", "close", "header"),
    [
        (V11, False, b""),
        (V11, True, b"Connection: close\r\n"),
        (V10, False, b"Connection: keep-alive\r\n"),
        (V10, True, b""),
    ],
)
def test_connection_header(version: tuple[int, int], close: bool, header: bytes) -> None:
    assert connection_header(version, close) == header
