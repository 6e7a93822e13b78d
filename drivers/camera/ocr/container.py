"""Container codes from OCR text boxes: reading order, position classes, verification.

A code is owner (3 letters) + category (U/J/Z) + serial (6 digits) + check digit.
Repairs are by position class only: a digit read where a letter must be becomes the
look-alike letter (0→O, 1→I, 5→S, 8→B ...) and the reverse in digit positions. No
character is ever changed to make the check digit pass: measured on the issue's set,
that added no correct reads and let 2-15 % wrong codes through.

``verified`` means: the check digit holds AND the owner prefix is in the known list.
A valid check digit with an unknown owner is reported with ``check_digit_ok`` and
``owner_known=False`` but is NOT verified, because the check digit cannot tell M/W,
G/Q or K/U apart (values differ by 11), so a misread owner letter passes it; the
owner list is the only guard. Sites that see other owners extend the list.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from drivers.camera.ocr.engine import Image, OcrEngine, TextBox
from drivers.camera.ocr.layout import column_to_row, erase_frames, lines
from gateway import iso6346

TO_LETTER = {"0": "O", "1": "I", "4": "A", "5": "S", "6": "G", "8": "B"}
"""Digit look-alikes read where a letter must be (owner code positions)."""

TO_DIGIT = {
    "O": "0", "Q": "0", "D": "0", "U": "0",
    "I": "1", "L": "1", "J": "1", "T": "7",
    "Z": "2", "S": "5", "B": "8", "G": "6", "A": "4",
}  # fmt: skip
"""Letter look-alikes read where a digit must be (serial and check digit positions)."""

# Characters the painted box around the check digit is read as; dropped before parsing.
FRAME_CHARS = set("|[](){}!")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerCode:
    """One container code read from a crop.

    Attributes:
        code: 11 characters after position-class repair; the last is ``?`` when the
            check digit was not read.
        raw: the same characters as the engine read them.
        confidence: the lowest engine confidence among the boxes that made the code.
        check_digit_ok: the check digit holds.
        owner_known: the owner prefix (4 letters) is in the known-owner list.
        verified: ``check_digit_ok and owner_known``: the only codes to publish as read.
        size_type: the size/type code painted with it (``45G1``), if read.
        candidates: other readings of the same place (unverified ones only).
    """

    code: str
    raw: str
    confidence: float
    check_digit_ok: bool
    owner_known: bool
    verified: bool
    size_type: str | None = None
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerReading:
    """What a crop held: container codes in reading order, and the raw lines."""

    codes: tuple[ContainerCode, ...]
    lines: tuple[str, ...]
    layout: str = "horizontal"

    @property
    def verified(self) -> tuple[ContainerCode, ...]:
        """Codes that may be published as read."""
        return tuple(c for c in self.codes if c.verified)


@dataclass(slots=True)
class _Stream:
    """Characters in reading order, each with its confidence."""

    chars: list[str] = field(default_factory=list)
    confs: list[float] = field(default_factory=list)

    def add(self, text: str, confidence: float) -> None:
        for ch in text.upper():
            if ch.isascii() and ch.isalnum():
                self.chars.append(ch)
                self.confs.append(confidence)


def _repair(raw: str) -> str | None:
    """Position-class repair of 10 or 11 characters, or ``None`` if they cannot be a code."""
    out = []
    for i, read in enumerate(raw):
        if i < 3:
            ch = TO_LETTER.get(read, read)
            if not ch.isalpha():
                return None
        elif i == 3:
            ch = read
            if ch not in iso6346.CATEGORIES:  # taken literally: U/J/Z have no digit twin
                return None
        else:
            ch = TO_DIGIT.get(read, read)
            if not ch.isdigit():
                return None
        out.append(ch)
    return "".join(out)


def _windows(stream: _Stream) -> list[tuple[int, int, str, str]]:
    """Every place a code (or a code missing its check digit) parses: start, end, raw, code."""
    found = []
    text = "".join(stream.chars)
    for start in range(len(text) - 9):
        full = text[start : start + 11]
        if len(full) == 11 and (code := _repair(full)) is not None:
            found.append((start, start + 11, full, code))
        elif (head := _repair(text[start : start + 10])) is not None:
            found.append((start, start + 10, text[start : start + 10], head + "?"))
    return found


def parse_boxes(
    boxes: Sequence[TextBox],
    *,
    owners: Collection[str] = iso6346.KNOWN_OWNERS,
    layout: str = "horizontal",
) -> ContainerReading:
    """Container codes (several per crop allowed) from an engine's boxes."""
    stream = _Stream()
    texts = []
    sizes: list[str] = []
    for line in lines(list(boxes)):
        for box in line:
            cleaned = "".join(ch for ch in box.text if ch not in FRAME_CHARS)
            stream.add(cleaned, box.confidence)
            sizes.extend(t for t in cleaned.upper().split() if iso6346.is_size_type(t))
        texts.append(" ".join(b.text for b in line))
    windows = _windows(stream)
    taken: list[tuple[int, int]] = []
    chosen: list[tuple[int, int, str, str]] = []
    # Verified-by-digit windows first; then the rest where nothing better overlaps.
    ranked = sorted(windows, key=lambda w: (not iso6346.is_valid(w[3]), w[0]))
    for win in ranked:
        start, end = win[0], win[1]
        if all(end <= a or start >= b for a, b in taken):
            taken.append((start, end))
            chosen.append(win)
    chosen.sort()
    codes = []
    for index, (start, end, raw, code) in enumerate(chosen):
        ok = iso6346.is_valid(code)
        known = code[:4] in owners
        others = tuple(w[3] for w in windows if w[3] != code and not (w[1] <= start or w[0] >= end))
        codes.append(
            ContainerCode(
                code=code,
                raw=raw,
                confidence=min(stream.confs[start:end]),
                check_digit_ok=ok,
                owner_known=known,
                verified=ok and known,
                size_type=_size_for(index, len(chosen), sizes),
                candidates=() if ok and known else others,
            )
        )
    return ContainerReading(codes=tuple(codes), lines=tuple(texts), layout=layout)


def _size_for(index: int, count: int, sizes: list[str]) -> str | None:
    """The size/type code of the ``index``-th container: painted in the same order."""
    return sizes[index] if len(sizes) == count else (sizes[0] if count == 1 and sizes else None)


def read_container(
    engine: OcrEngine, crop: Image, *, owners: Collection[str] = iso6346.KNOWN_OWNERS
) -> ContainerReading:
    """Read the container code(s) in a crop.

    The box painted around the check digit is erased first. Tall, narrow crops are
    first tried as a vertical code (one character per line),
    cut into characters laid out in a row; the crop as it is is read otherwise, or
    when that gives no code at all.
    """
    crop = erase_frames(crop)
    height, width = crop.shape[:2]
    vertical: ContainerReading | None = None
    if height > 1.5 * width:
        row = column_to_row(crop)
        if row is not None:
            vertical = parse_boxes(engine.recognise(row), owners=owners, layout="vertical")
            if vertical.codes:  # the column as it is rarely reads better: save the time
                return vertical
    plain = parse_boxes(engine.recognise(crop), owners=owners)
    if vertical is not None and vertical.codes and not plain.verified:
        return vertical
    return plain
