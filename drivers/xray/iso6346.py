"""ISO 6346 container numbers: owner code, category, serial number, check digit.

The check digit (ISO 6346:1995 annex A) weights each of the first ten characters by
``2**position`` and takes the sum modulo 11, a remainder of 10 counting as 0. Letters
are worth 10 upwards, skipping the multiples of 11 (A=10, B=12 ... K=21, L=23 ...
U=32, V=34 ... Z=38) so that no letter is worth the same as the digit 0 modulo 11.

This module belongs in a shared place (the OCR processor needs it too); it lives here
until ``gateway/`` gains one.
"""

from __future__ import annotations

import re

CONTAINER_RE = re.compile(r"^[A-Z]{3}[UJZ][0-9]{6}[0-9]$")
"""Owner code (3 letters), category (U, J or Z), 6-digit serial, check digit."""


def _letter_value(letter: str) -> int:
    value = 10 + (ord(letter) - ord("A"))
    # Each multiple of 11 at or below the running value is skipped once.
    for skipped in (11, 22, 33):
        if value >= skipped:
            value += 1
    return value


LETTER_VALUES = {chr(c): _letter_value(chr(c)) for c in range(ord("A"), ord("Z") + 1)}


def check_digit(head: str) -> int:
    """The check digit of ``head``: owner code, category and serial (10 characters)."""
    if len(head) != 10:
        raise ValueError(f"need 10 characters before the check digit, got {head!r}")
    total = 0
    for position, char in enumerate(head):
        value = int(char) if char.isdigit() else LETTER_VALUES.get(char)
        if value is None:
            raise ValueError(f"not a container number character: {char!r} in {head!r}")
        total += value * 2**position
    return total % 11 % 10


def check_digit_ok(number: str) -> bool:
    """Whether ``number`` is a well-formed container number whose check digit is right."""
    number = number.strip().upper()
    if not CONTAINER_RE.match(number):
        return False
    return check_digit(number[:10]) == int(number[10])
