"""Pin proxy.conditional: when a cached response lets the proxy answer a client's conditional
GET/HEAD with 304 (RFC 9110 §13.1.2 If-None-Match, §13.1.3 If-Modified-Since, §13.2.2 order)."""

from __future__ import annotations

import pytest

from proxy.conditional import entity_tags, not_modified
from proxy.view import RequestView

LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
A_SECOND_BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
A_DAY_AFTER = "Mon, 07 Nov 1994 08:49:37 GMT"


# --- If-None-Match lists (RFC 9110 §8.8.3, §13.1.2) ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"x"', ['"x"'], id="one-tag"),
        pytest.param('"a", "b"', ['"a"', '"b"'], id="list"),
        pytest.param('"a","b"', ['"a"', '"b"'], id="list-without-spaces"),
        pytest.param('  "a"  ,  "b"  ', ['"a"', '"b"'], id="list-with-ows"),
        # §8.8.3: etagc includes ",": a comma inside quotes is part of the tag
        pytest.param('"a,b", "c"', ['"a,b"', '"c"'], id="comma-inside-tag"),
        pytest.param('"a, b"', ['"a, b"'], id="comma-and-space-inside-tag"),
        # §8.8.3.2 weak comparison: the W/ indicator is dropped
        pytest.param('W/"a", "b"', ['"a"', '"b"'], id="weak-prefix-dropped"),
        pytest.param('W/"a", W/"b"', ['"a"', '"b"'], id="all-weak"),
        pytest.param('""', ['""'], id="empty-opaque-tag"),
        # §13.1.2: "*" matches any current representation (None: no list)
        pytest.param("*", None, id="star"),
        pytest.param(" * ", None, id="star-with-ows"),
        # not an entity-tag: nothing (or only what parsed before the junk) to match
        pytest.param("", [], id="empty"),
        pytest.param("x", [], id="unquoted"),
        pytest.param('"a"x', [], id="junk-after-tag"),
        pytest.param('"a", junk', ['"a"'], id="junk-after-list-member"),
        pytest.param('w/"a"', [], id="lower-case-weak-indicator"),  # %s"W/": case-sensitive
        pytest.param('"a', [], id="unterminated-tag"),
        pytest.param('"a",', ['"a"'], id="trailing-comma"),
    ],
)
def test_entity_tags(value: str, expected: list[str] | None) -> None:
    assert entity_tags(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"a", , "b"', ['"a"', '"b"'], id="empty-element-in-middle"),
        pytest.param(', "a"', ['"a"'], id="empty-element-first"),
    ],
)
def test_entity_tags_ignores_empty_list_elements(value: str, expected: list[str]) -> None:
    assert entity_tags(value) == expected


# --- not_modified --------------------------------------------------------------------------------


def request(*headers: tuple[str, str], method: str = "GET") -> RequestView:
    return RequestView(method, "/", (("Host", "a"), *headers))


def inm(value: str) -> tuple[str, str]:
    return ("If-None-Match", value)


def ims(value: str) -> tuple[str, str]:
    return ("If-Modified-Since", value)


@pytest.mark.parametrize(
    ("view", "etag", "last_modified", "expected"),
    [
        pytest.param(request(), '"x"', LAST_MODIFIED, False, id="unconditional"),
        # §13.1.2 If-None-Match, by weak comparison (§8.8.3.2)
        pytest.param(request(inm('"x"')), '"x"', None, True, id="inm-match"),
        pytest.param(request(inm('"y"')), '"x"', None, False, id="inm-no-match"),
        pytest.param(request(inm('"a", "x"')), '"x"', None, True, id="inm-match-in-list"),
        pytest.param(request(inm('"a", "b"')), '"x"', None, False, id="inm-no-match-in-list"),
        pytest.param(request(inm('"a,x"')), '"x"', None, False, id="inm-comma-inside-tag"),
        pytest.param(request(inm('"a,x", "b"')), '"a,x"', None, True, id="inm-tag-with-comma"),
        pytest.param(request(inm('W/"x"')), '"x"', None, True, id="inm-weak-request-side"),
        pytest.param(request(inm('"x"')), 'W/"x"', None, True, id="inm-weak-stored-side"),
        pytest.param(request(inm('W/"x"')), 'W/"x"', None, True, id="inm-weak-both-sides"),
        pytest.param(request(inm('"X"')), '"x"', None, False, id="inm-case-sensitive"),
        pytest.param(request(inm('"x"')), '"x" ', None, True, id="inm-stored-tag-stripped"),
        pytest.param(
            request(inm('"a"'), inm('"x"')), '"x"', None, True, id="inm-two-fields-joined"
        ),
        pytest.param(request(("if-none-match", '"x"')), '"x"', None, True, id="inm-name-case"),
        # §13.1.2: "*" matches whenever there is a current representation
        pytest.param(request(inm("*")), '"x"', None, True, id="inm-star"),
        pytest.param(request(inm("*")), 'W/"x"', None, True, id="inm-star-weak-etag"),
        pytest.param(request(inm("junk")), '"x"', None, False, id="inm-junk-matches-nothing"),
        # nothing stored to compare with
        pytest.param(request(inm('"x"')), None, LAST_MODIFIED, False, id="inm-no-stored-etag"),
        # §13.1.3: If-Modified-Since is ignored when If-None-Match is present (§13.2.2)
        pytest.param(
            request(inm('"y"'), ims(LAST_MODIFIED)),
            '"x"',
            LAST_MODIFIED,
            False,
            id="inm-present-ims-ignored",
        ),
        pytest.param(
            request(inm('"x"'), ims(A_SECOND_BEFORE)),
            '"x"',
            LAST_MODIFIED,
            True,
            id="inm-decides-over-failing-ims",
        ),
        pytest.param(
            request(inm('"x"'), ims(A_DAY_AFTER)),
            None,
            LAST_MODIFIED,
            False,
            id="inm-present-without-etag-ims-ignored",
        ),
        # §13.1.3 If-Modified-Since: 304 when Last-Modified is earlier than or equal to it
        pytest.param(request(ims(LAST_MODIFIED)), None, LAST_MODIFIED, True, id="ims-equal"),
        pytest.param(request(ims(A_DAY_AFTER)), None, LAST_MODIFIED, True, id="ims-later"),
        pytest.param(
            request(ims(A_SECOND_BEFORE)), None, LAST_MODIFIED, False, id="ims-modified-since"
        ),
        pytest.param(request(ims(A_DAY_AFTER)), '"x"', LAST_MODIFIED, True, id="ims-with-etag"),
        pytest.param(
            request(ims("Sunday, 06-Nov-94 08:49:37 GMT")),
            None,
            LAST_MODIFIED,
            True,
            id="ims-rfc850-date",
        ),
        pytest.param(
            request(("if-modified-since", LAST_MODIFIED)), None, LAST_MODIFIED, True, id="ims-case"
        ),
        # §13.1.3: an invalid HTTP-date is ignored
        pytest.param(request(ims("yesterday")), None, LAST_MODIFIED, False, id="ims-invalid"),
        pytest.param(request(ims("0")), None, LAST_MODIFIED, False, id="ims-zero"),
        pytest.param(
            request(ims(LAST_MODIFIED)), None, "yesterday", False, id="last-modified-invalid"
        ),
        pytest.param(request(ims(LAST_MODIFIED)), '"x"', None, False, id="ims-no-last-modified"),
        # §13.1.2, §13.1.3: 304 only for GET and HEAD
        pytest.param(request(inm('"x"'), method="HEAD"), '"x"', None, True, id="head-inm"),
        pytest.param(
            request(ims(LAST_MODIFIED), method="HEAD"), None, LAST_MODIFIED, True, id="head-ims"
        ),
        pytest.param(request(inm('"x"'), method="POST"), '"x"', None, False, id="post-inm"),
        pytest.param(request(inm("*"), method="PUT"), '"x"', None, False, id="put-inm-star"),
        pytest.param(request(inm('"x"'), method="DELETE"), '"x"', None, False, id="delete-inm"),
        pytest.param(
            request(ims(LAST_MODIFIED), method="POST"), None, LAST_MODIFIED, False, id="post-ims"
        ),
    ],
)
def test_not_modified(
    view: RequestView, etag: str | None, last_modified: str | None, expected: bool
) -> None:
    assert not_modified(view, etag, last_modified) is expected


def test_if_modified_since_with_two_members_is_ignored() -> None:
    view = request(ims(A_DAY_AFTER), ims(A_SECOND_BEFORE))
    assert not_modified(view, None, LAST_MODIFIED) is False


def test_if_none_match_empty_list_element_is_skipped() -> None:
    assert not_modified(request(inm('"a", , "x"')), '"x"', None) is True


def test_if_none_match_star_without_stored_etag() -> None:
    assert not_modified(request(inm("*")), None, LAST_MODIFIED) is True
