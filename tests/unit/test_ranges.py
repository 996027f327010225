"""Pin proxy.ranges: single byte ranges from a stored response (RFC 9110 §14, §13.1.5)."""

from __future__ import annotations

import pytest

from proxy.ranges import UNSATISFIABLE, byte_range, if_range_holds

LENGTH = 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("bytes=0-9", (0, 9), id="first-ten"),
        pytest.param("bytes=10-", (10, 99), id="open-ended"),
        pytest.param("bytes=-10", (90, 99), id="suffix"),
        pytest.param("bytes=-1000", (0, 99), id="suffix-longer-than-body"),
        pytest.param("bytes=90-1000", (90, 99), id="last-clipped"),  # §14.1.2
        pytest.param(" BYTES = 5 - 6 ", (5, 6), id="case-and-spaces"),
        pytest.param("bytes=99-99", (99, 99), id="last-byte"),
        pytest.param("bytes=100-", UNSATISFIABLE, id="starts-past-the-end"),  # §15.5.17
        pytest.param("bytes=-0", UNSATISFIABLE, id="empty-suffix"),
        pytest.param("bytes=9-0", None, id="invalid-reversed"),  # §14.2: ignored
        pytest.param("bytes=0-1,5-6", None, id="several-ranges-go-to-the-app"),
        pytest.param("items=0-1", None, id="other-unit"),
        pytest.param("bytes=-", None, id="no-numbers"),
        pytest.param("bytes=a-b", None, id="not-numbers"),
    ],
)
def test_byte_range(value: str, expected: tuple[int, int] | None) -> None:
    assert byte_range(value, LENGTH) == expected


def test_any_range_of_an_empty_body_is_unsatisfiable() -> None:
    assert byte_range("bytes=0-", 0) == UNSATISFIABLE
    assert byte_range("bytes=-5", 0) == UNSATISFIABLE


LAST_MODIFIED = "Tue, 15 Nov 1994 08:12:31 GMT"


@pytest.mark.parametrize(
    ("if_range", "etag", "holds"),
    [
        pytest.param(None, '"a"', True, id="no-if-range"),
        pytest.param('"a"', '"a"', True, id="same-strong-tag"),
        pytest.param('"b"', '"a"', False, id="other-tag"),
        pytest.param('W/"a"', 'W/"a"', False, id="weak-never-matches"),  # strong comparison
        pytest.param('"a"', 'W/"a"', False, id="stored-weak"),
        pytest.param('"a"', None, False, id="no-stored-tag"),
        pytest.param(LAST_MODIFIED, None, True, id="same-date"),
        pytest.param("Wed, 16 Nov 1994 08:12:31 GMT", None, False, id="other-date"),
        pytest.param("not a date", None, False, id="junk"),
    ],
)
def test_if_range(if_range: str | None, etag: str | None, holds: bool) -> None:
    assert if_range_holds(if_range, etag, LAST_MODIFIED) is holds
