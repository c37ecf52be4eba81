"""Kubernetes quantities as whole bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from volfs.api import format_quantity, parse_quantity
from volfs.api.quantity import MAX_BYTES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64Mi", 64 * 2**20),
        ("1Gi", 2**30),
        ("500M", 500_000_000),
        ("1e9", 1_000_000_000),
        ("1E9", 1_000_000_000),
        ("1.5Gi", 1_610_612_736),
        ("100k", 100_000),
        ("128974848", 128_974_848),
        ("129e6", 129_000_000),
        ("123Mi", 128_974_848),
        ("1Ki", 1024),
        ("1Ti", 2**40),
        ("1Pi", 2**50),
        ("1Ei", 2**60),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("1G", 10**9),
        ("0", 0),
        ("+1Ki", 1024),
        ("-0", 0),
        (".5Ki", 512),
        ("1.", 1),
        ("1e-3", 1),
        ("0.1", 1),
        ("1500m", 2),
        ("1000m", 1),
        ("1.0000001", 2),
        (128974848, 128_974_848),
        (1.5, 2),
        (0, 0),
    ],
)
def test_parse_quantity(text: str | int | float, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "garbage",
    ["lots", "1Zi", "", "--1", "1e", "1 Gi", " 1", "1Gi ", ".", "+", "1KI", "1mi", "0x10", "١"],
)
def test_garbage_is_not_a_quantity(garbage: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(garbage)
    assert str(info.value) == f'"{garbage}" is not a quantity'


@pytest.mark.parametrize("value", [True, None, [1], float("nan"), float("inf")])
def test_non_numbers_are_not_quantities(value: object) -> None:
    with pytest.raises(ValueError, match="is not a quantity$"):
        parse_quantity(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["-1", "-64Mi", -1, -0.5])
def test_negative_sizes_are_refused(value: str | int | float) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(value)
    assert str(info.value) == f'"{value}" must not be negative'


@pytest.mark.parametrize("value", ["8Ei", "1e19", "1e5000", 2**63])
def test_sizes_beyond_int64_are_refused(value: str | int) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(value)
    assert str(info.value) == f'"{value}" is too large: must be less than 8Ei'


def test_largest_size_is_accepted() -> None:
    assert parse_quantity(str(MAX_BYTES)) == MAX_BYTES


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (67108864, "64Mi"),
        (1000, "1000"),
        (0, "0"),
        (1, "1"),
        (1024, "1Ki"),
        (1536, "1536"),
        (3 * 2**30, "3Gi"),
        (2**60, "1Ei"),
        (1024 * 2**60, "1024Ei"),
    ],
)
def test_format_quantity(n: int, expected: str) -> None:
    assert format_quantity(n) == expected


@given(st.integers(min_value=0, max_value=MAX_BYTES))
def test_format_then_parse_is_exact(n: int) -> None:
    assert parse_quantity(format_quantity(n)) == n
