"""ISO 6346 container identification: check digit, categories, size/type codes.

Pure functions, no OCR: the container reader and the test set generator share them.
Letter values skip multiples of 11 (A=10, B=12 ... K=21, L=23 ... U=32, V=34 ... Z=38);
the check digit is the sum of value * 2**i over the first ten characters, mod 11,
with 10 written as 0 (ISO 6346:1995, Annex A; HARDWARE.md "Container codes").
"""

from __future__ import annotations

import re
import string

CATEGORIES = {"U": "freight container", "J": "detachable equipment", "Z": "trailer/chassis"}
"""Equipment category identifiers (the fourth letter)."""

CODE_RE = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")
"""A complete container code: owner (3), category (1), serial (6), check digit (1)."""

# Size/type codes (ISO 6346:1995 section 4): length code, height/width code, then the
# type group letter and a detail digit, e.g. 22G1, 42G1, 45G1, 45R1, L5G1, 22T6.
SIZE_TYPE_RE = re.compile(r"^[1-9ABCDEFGHKLMNP][0-9CDEFLMNP][GVBSRHUPT][0-9]$")

TYPE_GROUPS = {
    "G": "general purpose",
    "V": "ventilated",
    "B": "dry bulk",
    "S": "named cargo",
    "R": "thermal (reefer)",
    "H": "thermal, insulated",
    "U": "open top",
    "P": "platform",
    "T": "tank",
}


def _letter_values() -> dict[str, int]:
    """A=10 upwards, skipping 11, 22 and 33 so no letter equals a check-digit overflow."""
    values: dict[str, int] = {str(d): d for d in range(10)}
    value = 10
    for letter in string.ascii_uppercase:
        if value % 11 == 0:
            value += 1
        values[letter] = value
        value += 1
    return values


VALUES = _letter_values()


def check_digit(first_ten: str) -> int:
    """The check digit of an owner code + category + serial (10 characters).

    Raises:
        ValueError: the text is not 4 letters followed by 6 digits.
    """
    if not re.fullmatch(r"[A-Z]{4}[0-9]{6}", first_ten):
        raise ValueError(f"not an owner code + serial: {first_ten!r}")
    total = sum(VALUES[ch] << i for i, ch in enumerate(first_ten))
    return total % 11 % 10


def is_valid(code: str) -> bool:
    """``True`` if ``code`` is a well-formed container code whose check digit holds."""
    return bool(CODE_RE.match(code)) and check_digit(code[:10]) == int(code[10])


def is_size_type(text: str) -> bool:
    """``True`` if ``text`` has the shape of a size/type code (22G1, 45R1, L5G1 ...)."""
    return bool(SIZE_TYPE_RE.match(text))


def format_code(code: str) -> str:
    """The way codes are painted: ``MSCU 123456 6``."""
    return f"{code[:4]} {code[4:10]} {code[10:]}"


# Owner codes (three letters + U) registered with the BIC for the major carriers and
# lessors. A prefix outside this list is not proof of a misread, but the check digit
# cannot tell M/W, G/Q or K/U apart (their values differ by 11), so the owner list is
# the only guard against such swaps in the prefix.
KNOWN_OWNERS: frozenset[str] = frozenset(
    {
        "MSCU", "MEDU",  # MSC
        "MAEU", "MSKU", "MRKU",  # Maersk
        "CMAU",  # CMA CGM
        "CSQU", "CBHU", "CCLU",  # COSCO (CCLU: former China Shipping)
        "HLXU", "HLBU",  # Hapag-Lloyd
        "ONEU",  # Ocean Network Express
        "EGHU", "EMCU", "EISU",  # Evergreen
        "OOLU", "OOCU",  # OOCL
        "YMLU",  # Yang Ming
        "HDMU",  # HMM
        "ZIMU",  # ZIM
        "PCIU",  # PIL
        "WHLU",  # Wan Hai
        "APZU",  # APL
        "SUDU",  # Hamburg Sud
        "TRLU", "TCLU", "TCNU",  # Triton
        "TEMU", "TGHU",  # Textainer
        "FSCU",  # Florens
        "SEGU", "GESU",  # Seaco
        "CAIU",  # CAI
        "BMOU",  # Beacon
        "TTNU",  # TAL (Triton)
    }
)  # fmt: skip
