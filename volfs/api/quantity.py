"""Kubernetes resource quantities (``64Mi``, ``1e9``, ``500M``) as whole bytes.

The grammar is Kubernetes' ``resource.Quantity``::

    <quantity> ::= <sign>? <digits> ( "." <digits>? )? <suffix>?  |  <sign>? "." <digits> <suffix>?
    <suffix>   ::= Ki | Mi | Gi | Ti | Pi | Ei | m | k | M | G | T | P | E | (e|E) <sign>? <digits>

A fractional number of bytes rounds up, as ``Quantity.Value()`` does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["MAX_BYTES", "format_quantity", "parse_quantity"]

MAX_BYTES = 2**63 - 1
"""The largest size a quantity may name (Kubernetes keeps sizes in an int64)."""

_MAX_EXPONENT = 1000
"""Exponents are clamped to this magnitude: beyond it a size is 0, 1 or too large anyway."""

_QUANTITY = re.compile(
    r"(?P<sign>[+-])?(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[mkMGTPE])?",
    re.ASCII,
)

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki")


def parse_quantity(value: str | int | float) -> int:
    """Return the number of bytes a quantity names, rounding a fraction up.

    Args:
        value: a quantity string (``"1.5Gi"``, ``"129e6"``, ``"100k"``) or a plain
            number, as YAML or JSON decode it.

    Returns:
        The size in bytes, ``0 <= n <= MAX_BYTES``.

    Raises:
        ValueError: ``"lots" is not a quantity`` for anything that does not match the
            grammar; ``"-1Gi" must not be negative`` for a negative size;
            ``"9Ei" is too large: must be less than 8Ei`` beyond ``MAX_BYTES``.

    >>> parse_quantity("64Mi"), parse_quantity("1.5k"), parse_quantity("1500m")
    (67108864, 1500, 2)
    """
    exact = _exact_value(value)
    if exact < 0:
        raise ValueError(f'"{value}" must not be negative')
    size = math.ceil(exact)
    if size > MAX_BYTES:
        raise ValueError(f'"{value}" is too large: must be less than 8Ei')
    return size


def format_quantity(n: int) -> str:
    """Return the shortest exact form of ``n`` bytes with a binary suffix, if any fits.

    >>> format_quantity(67108864), format_quantity(1000), format_quantity(0)
    ('64Mi', '1000', '0')
    """
    if n == 0:
        return "0"
    for suffix in _BINARY_SUFFIXES:
        unit = 1024 ** _BINARY[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _exact_value(value: object) -> Fraction:
    """The exact (possibly fractional, possibly negative) value; ValueError if not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _not_a_quantity(value)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _not_a_quantity(value)
        return Fraction(value)
    return _parse_string(value)


def _parse_string(text: str) -> Fraction:
    """Parse the quantity grammar; ValueError if ``text`` does not follow it."""
    match = _QUANTITY.fullmatch(text)
    if match is None or not (match["int"] or match["frac"]):
        raise _not_a_quantity(text)
    digits = match["int"] + (match["frac"] or "")
    number = Fraction(int(digits), 10 ** len(match["frac"] or ""))
    if match["sign"] == "-":
        number = -number
    return number * _multiplier(match["suffix"] or "")


def _multiplier(suffix: str) -> Fraction:
    """The factor a suffix stands for (``Mi`` -> 2**20, ``e3`` -> 1000, ``m`` -> 1/1000)."""
    if suffix in _BINARY:
        return Fraction(1024 ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return Fraction(10) ** _DECIMAL[suffix]
    if not suffix:
        return Fraction(1)
    exponent = max(-_MAX_EXPONENT, min(_MAX_EXPONENT, int(suffix[1:])))
    return Fraction(10) ** exponent


def _not_a_quantity(value: object) -> ValueError:
    return ValueError(f'"{value}" is not a quantity')
