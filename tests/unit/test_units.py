"""Pin proxy.units: human-written sizes and durations, good and bad."""

from __future__ import annotations

import pytest

from proxy.units import format_size, parse_duration, parse_size

KIB, MIB, GIB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # product rule: a bare integer is bytes
        pytest.param(512, 512, id="int-is-bytes"),
        pytest.param(0, 0, id="zero"),
        pytest.param("512", 512, id="bare-string-is-bytes"),
        pytest.param("512B", 512, id="B-suffix"),
        # product rule: IEC units are powers of 1024 (uWSGI's 64KiB blocksize)
        pytest.param("64KiB", 64 * KIB, id="KiB"),
        pytest.param("64kib", 64 * KIB, id="units-case-insensitive"),
        pytest.param("10MiB", 10 * MIB, id="MiB"),
        pytest.param("1GiB", GIB, id="GiB"),
        pytest.param("64k", 64 * KIB, id="bare-k-is-KiB"),
        pytest.param("1m", MIB, id="bare-m-is-MiB"),
        pytest.param("2g", 2 * GIB, id="bare-g-is-GiB"),
        # product rule: SI units are powers of 1000, as written
        pytest.param("64KB", 64_000, id="KB-is-SI"),
        pytest.param("10MB", 10_000_000, id="MB-is-SI"),
        pytest.param("1GB", 1_000_000_000, id="GB-is-SI"),
        pytest.param("1.5KiB", 1536, id="fraction"),
        pytest.param(" 64 KiB ", 64 * KIB, id="spaces-tolerated"),
    ],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("lots", "cannot parse size 'lots'", id="words"),
        pytest.param("", "cannot parse size ''", id="empty"),
        pytest.param("10TB", "cannot parse size '10TB'", id="unknown-unit"),
        pytest.param("-1", "cannot parse size '-1'", id="negative-string"),
        pytest.param("KiB", "cannot parse size 'KiB'", id="unit-without-number"),
        pytest.param("1 2KiB", "cannot parse size '1 2KiB'", id="two-numbers"),
        pytest.param(-1, "cannot be negative", id="negative-int"),
        pytest.param(True, "got a boolean", id="bool-is-not-a-size"),
        pytest.param(1.5, "got float", id="float-is-not-a-size"),
        pytest.param(None, "got NoneType", id="none"),
        pytest.param(["64KiB"], "got list", id="list"),
    ],
)
def test_parse_size_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # product rule: a bare number is seconds
        pytest.param(30, 30.0, id="int-is-seconds"),
        pytest.param(1.5, 1.5, id="float-is-seconds"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param("30", 30.0, id="bare-string-is-seconds"),
        pytest.param("30s", 30.0, id="s"),
        pytest.param("5m", 300.0, id="m-is-minutes"),
        pytest.param("2h", 7200.0, id="h"),
        pytest.param("1d", 86400.0, id="d"),
        pytest.param("500ms", 0.5, id="ms"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("10S", 10.0, id="units-case-insensitive"),
        pytest.param(" 5 m ", 300.0, id="spaces-tolerated"),
    ],
)
def test_parse_duration(text: object, expected: float) -> None:
    result = parse_duration(text)
    assert result == pytest.approx(expected)
    assert isinstance(result, float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("soon", "cannot parse duration 'soon'", id="words"),
        pytest.param("", "cannot parse duration ''", id="empty"),
        pytest.param("5 parsecs", "cannot parse duration '5 parsecs'", id="unknown-unit"),
        pytest.param("5w", "cannot parse duration '5w'", id="weeks-unsupported"),
        pytest.param("-5s", "cannot parse duration '-5s'", id="negative-string"),
        pytest.param("s", "cannot parse duration 's'", id="unit-without-number"),
        pytest.param(-1, "cannot be negative", id="negative-number"),
        pytest.param(-0.5, "cannot be negative", id="negative-float"),
        pytest.param(True, "got a boolean", id="bool-is-not-a-duration"),
        pytest.param(None, "got NoneType", id="none"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=str)
def test_parse_duration_rejects_non_finite_numbers(value: float) -> None:
    # TOML allows nan and inf; a ttl of nan or inf is no duration
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("size", "written"),
    [
        (0, "0B"),
        (1500, "1500B"),
        (65536, "64KiB"),
        (16 * 1024**2, "16MiB"),
        (64 * 1024**2, "64MiB"),
        (10**7, "10MB"),
        (1000, "1KB"),
        (3 * 1024**3, "3GiB"),
        (1025, "1025B"),
    ],
)
def test_format_size_reads_back(size: int, written: str) -> None:
    """What `check` prints is what a config would say, and reads back to the same size."""
    assert format_size(size) == written
    assert parse_size(written) == size
