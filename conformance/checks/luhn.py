"""Luhn (mod 10) check digits, which end RPPS (11 digits) and FINESS (9 characters) numbers.

One implementation for the checks (CDA header, XDS/MHD authors) and for the reference vendor, which
must produce well-formed fictitious ids.
"""

from __future__ import annotations


def _sum(digits: str, *, double_odd: bool) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if (i % 2 == 1) == double_odd:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` (check digit last) passes Luhn; official examples' fictitious ids often fail."""
    return digits.isdigit() and _sum(digits, double_odd=True) % 10 == 0


def luhn_digit(digits: str) -> str:
    """The check digit to append to ``digits``."""
    return str((10 - _sum(digits, double_odd=False) % 10) % 10)
