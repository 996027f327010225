"""Pin proxy.encoding: Accept-Encoding normalised to what the client can decode."""

from __future__ import annotations

import pytest

from proxy.encoding import normalise_accept_encoding, uncoded


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # RFC 9110 §12.5.3: no field (or an empty one) means no preference: identity is safe
        pytest.param(None, "identity", id="absent"),
        pytest.param("", "identity", id="empty"),
        pytest.param("identity", "identity", id="identity"),
        pytest.param("gzip", "gzip", id="gzip"),
        pytest.param("br", "br", id="br"),
        # product rule: only br and gzip are distinguished, always listed "br, gzip"
        pytest.param("gzip, br", "br, gzip", id="both-canonical-order"),
        pytest.param("br, gzip", "br, gzip", id="both"),
        pytest.param("gzip, deflate, br, zstd", "br, gzip", id="others-ignored"),
        pytest.param("deflate", "identity", id="deflate-only"),
        pytest.param("zstd, compress", "identity", id="unsupported-only"),
        # RFC 9110 §12.5.3: codings are case-insensitive; x-gzip is gzip (§8.4.1.3)
        pytest.param("GZIP, Br", "br, gzip", id="case-insensitive"),
        pytest.param("x-gzip", "gzip", id="x-gzip-alias"),
        pytest.param(" gzip ,  br ", "br, gzip", id="whitespace"),
        # RFC 9110 §12.4.2: q=0 means "not acceptable"; other weights only order preferences
        pytest.param("gzip;q=0", "identity", id="gzip-q0-refused"),
        pytest.param("gzip;q=0.0, br", "br", id="gzip-q0.0-refused"),
        pytest.param("gzip; q=0", "identity", id="q0-with-space"),
        pytest.param("gzip;Q=0", "identity", id="q-name-case"),
        pytest.param("gzip;q=0.5", "gzip", id="low-weight-still-accepted"),
        pytest.param("br;q=0.1, gzip;q=1.0", "br, gzip", id="weights-do-not-reorder"),
        pytest.param("gzip;q=0.001", "gzip", id="tiny-weight-accepted"),
        # fail closed: an unreadable weight is treated as refused
        pytest.param("gzip;q=abc", "identity", id="bad-weight-refused"),
        # RFC 9110 §12.5.3: "*" matches any coding not listed; we pick gzip for it
        pytest.param("*", "gzip", id="wildcard-is-gzip"),
        pytest.param("*;q=0", "identity", id="wildcard-refused"),
        pytest.param("gzip;q=0, *", "identity", id="wildcard-but-gzip-refused"),
        pytest.param("br;q=0, *", "gzip", id="wildcard-br-refused"),
        pytest.param("br, *", "br", id="wildcard-with-listed"),
        pytest.param("identity;q=0, gzip", "gzip", id="identity-refused-ignored"),
        pytest.param(",,gzip,,", "gzip", id="empty-members"),
    ],
)
def test_normalise_accept_encoding(header: str | None, expected: str) -> None:
    assert normalise_accept_encoding(header) == expected


@pytest.mark.parametrize(
    ("headers", "readable"),
    [
        ([], True),
        ([("Content-Type", "text/html")], True),
        ([("Content-Encoding", "identity")], True),
        ([("content-encoding", "")], True),
        ([("Content-Encoding", "gzip")], False),
        ([("CONTENT-ENCODING", " br ")], False),
        ([("Content-Encoding", "identity"), ("Content-Encoding", "gzip")], False),
    ],
)
def test_uncoded(headers: list[tuple[str, str]], readable: bool) -> None:
    assert uncoded(headers) is readable
