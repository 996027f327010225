"""Pin proxy.vary: secondary keys for responses that vary (RFC 9111 §4.1)."""

from __future__ import annotations

import pytest

from proxy.vary import normalise, variant_key
from proxy.view import Headers, RequestView


def view(*headers: tuple[str, str]) -> RequestView:
    fields: Headers = (("Host", "a"), *headers)
    return RequestView("GET", "/", fields)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        pytest.param((("Accept-Language", "en"),), (("Accept-Language", "en"),), True, id="same"),
        pytest.param((("Accept-Language", "en"),), (("Accept-Language", "fr"),), False, id="other"),
        # §4.1: whitespace around list members does not make another variant
        pytest.param(
            (("Accept-Language", "en, fr"),), (("Accept-Language", "en,fr "),), True, id="space"
        ),
        # the order of members does: it can change what the origin chooses
        pytest.param(
            (("Accept-Language", "en,fr"),), (("Accept-Language", "fr,en"),), False, id="order"
        ),
        # two field lines are one list (RFC 9110 §5.3)
        pytest.param(
            (("Accept-Language", "en"), ("Accept-Language", "fr")),
            (("Accept-Language", "en, fr"),),
            True,
            id="lines-joined",
        ),
        # absent is not empty
        pytest.param((), (("Accept-Language", ""),), False, id="absent-vs-empty"),
        # header names are case-insensitive
        pytest.param((("accept-language", "en"),), (("ACCEPT-LANGUAGE", "en"),), True, id="case"),
    ],
)
def test_variant_key(
    one: tuple[tuple[str, str], ...], other: tuple[tuple[str, str], ...], same: bool
) -> None:
    names = ("accept-language",)
    first, second = (
        variant_key("k", names, view(*one), 1),
        variant_key("k", names, view(*other), 1),
    )
    assert (first == second) is same


def test_variant_key_starts_with_the_primary_key_and_names_every_header() -> None:
    key = variant_key("k", ("accept", "user-agent"), view(("Accept", "a/b")), 7)
    assert key.startswith("k\x00vary7\x00")
    assert "accept=a/b" in key and "user-agent\x01" in key


def test_another_generation_is_another_key() -> None:
    names = ("accept",)
    assert variant_key("k", names, view(), 1) != variant_key("k", names, view(), 2)


def test_normalise() -> None:
    assert normalise("  a ,b,  c  ") == "a,b,c"
    assert normalise("\ta\t,\tb") == "a,b"


def test_normalise_keeps_what_is_not_http_whitespace() -> None:
    # RFC 9110 §5.6.3: OWS is SP and HTAB; the app sees an NBSP or a vertical tab as data.
    assert normalise("\u00a0fr\u00a0") == "\u00a0fr\u00a0"
    assert normalise("fr\x0b") == "fr\x0b"
