"""Licence plates from OCR text boxes: Vietnamese and Chinese formats.

Vietnam (HARDWARE.md "Licence plates"): two province digits, a series (one letter,
a letter and a digit, or two letters), then five digits ``123.45`` or, on older
plates, four ``1234``. Trailers and semi-trailers (the container chassis) use series
R (``51R-141.39``); commercial vehicles carry the same text on yellow. Two-row plates
come back as two boxes: top row then bottom row.

China: a province character, a letter (the city), then five characters (digits and
letters other than I and O), six on new-energy plates: ``桂A·12345``.

The raw text and the engine's confidence are kept; ``text`` is the normalised form
used for matching (``29A-123.45``, ``桂A·12345``) and ``key`` the same without
separators.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drivers.camera.ocr.container import TO_DIGIT, TO_LETTER
from drivers.camera.ocr.engine import Image, OcrEngine, TextBox
from drivers.camera.ocr.layout import lines

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
"""Chinese province abbreviations as they appear first on a plate."""

TRADITIONAL = str.maketrans("粵滬蘇遼贛閩貴雲陝魯寧瓊晉", "粤沪苏辽赣闽贵云陕鲁宁琼晋")
"""Traditional forms the recogniser sometimes returns for a province character."""

VN_RE = re.compile(r"^(\d{2})([A-Z][A-Z0-9]?)(\d{4,5})$")
CN_RE = re.compile(rf"^([{PROVINCES}])([A-Z])([A-HJ-NP-Z0-9]{{5,6}})$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PlateReading:
    """A plate read from a crop.

    Attributes:
        text: normalised plate (``29A-123.45``, ``51R-141.39``, ``桂A·12345``), or the
            cleaned characters when no format matched.
        key: ``text`` without separators, for matching against other sources.
        raw: what the engine read, rows joined with a space.
        country: ``"VN"``, ``"CN"`` or ``None`` when no format matched.
        valid: the text has the shape of a plate of ``country``.
        confidence: the lowest engine confidence among the rows used.
        trailer: a Vietnamese R-series (trailer / semi-trailer) plate.
        colour: background colour (``yellow``: Vietnamese commercial vehicle; ``blue``:
            Chinese regular, ``green``: Chinese new-energy; ``white``, ``other``);
            ``None`` when read from text alone.
    """

    text: str
    key: str
    raw: str
    country: str | None
    valid: bool
    confidence: float
    trailer: bool = False
    colour: str | None = None


def _clean(text: str) -> str:
    """Upper-case letters, digits and CJK characters only (separators, dots, spaces go)."""
    return "".join(ch for ch in text.upper().translate(TRADITIONAL) if ch.isalnum())


def _series_length(rows: Sequence[str], chars: str) -> int:
    """Length of the Vietnamese series (1 or 2) after the two province digits.

    The plate's own layout says it best: the top row of a two-row plate, or the dash
    of a one-row plate, ends the series. Without either, nine characters mean a
    two-character series, eight with a letter in fourth place a two-letter series.
    """
    top = _clean(rows[0])
    if len(rows) > 1 and len(top) in (3, 4):
        return len(top) - 2
    if "-" in rows[0]:
        before = len(_clean(rows[0].split("-", 1)[0]))
        if before in (3, 4):
            return before - 2
    return 2 if len(chars) == 9 or (len(chars) == 8 and chars[3].isalpha()) else 1


def _vietnamese(rows: Sequence[str], chars: str) -> tuple[str, str] | None:
    """(text, key) if ``chars`` repair by position into a Vietnamese plate."""
    if not 7 <= len(chars) <= 9:
        return None
    head = "".join(TO_DIGIT.get(c, c) for c in chars[:2])
    n = _series_length(rows, chars)
    series = TO_LETTER.get(chars[2], chars[2]) + chars[3 : 2 + n]
    tail = "".join(TO_DIGIT.get(c, c) for c in chars[2 + n :])
    key = head + series + tail
    if VN_RE.match(key) is None or not tail.isdigit() or len(tail) not in (4, 5):
        return None
    shown = f"{tail[:3]}.{tail[3:]}" if len(tail) == 5 else tail
    return f"{head}{series}-{shown}", key


def _chinese(rows: Sequence[str], chars: str) -> tuple[str, str] | None:
    """(text, key) if ``chars`` repair by position into a Chinese plate."""
    if len(chars) < 7 or chars[0] not in PROVINCES:
        return None
    city = TO_LETTER.get(chars[1], chars[1])
    # I and O are not issued after the city letter, so they can only be 1 and 0.
    tail = chars[2:].replace("O", "0").replace("I", "1")
    key = chars[0] + city + tail
    if CN_RE.match(key) is None:
        return None
    return f"{key[:2]}·{key[2:]}", key


def parse_plate(rows: Sequence[str], confidence: float) -> PlateReading:
    """Normalise plate text given as rows (top first) and the engine's confidence."""
    raw = " ".join(rows)
    chars = _clean("".join(rows))
    for country, parse in (("CN", _chinese), ("VN", _vietnamese)):
        parsed = parse(rows, chars)
        if parsed is not None:
            text, key = parsed
            trailer = country == "VN" and key[2] == "R" and not key[3].isalpha()
            return PlateReading(
                text=text,
                key=key,
                raw=raw,
                country=country,
                valid=True,
                confidence=confidence,
                trailer=trailer,
            )
    return PlateReading(
        text=chars, key=chars, raw=raw, country=None, valid=False, confidence=confidence
    )


def parse_boxes(boxes: Sequence[TextBox]) -> PlateReading | None:
    """The plate in an engine's boxes (rows joined top then bottom), or ``None`` if empty."""
    rows = [" ".join(b.text for b in line) for line in lines(list(boxes))]
    rows = [r for r in rows if _clean(r)]
    if not rows:
        return None
    confidence = min(b.confidence for b in boxes)
    best = parse_plate(rows, confidence)
    if not best.valid and len(rows) > 2:
        # Stray text (a frame's dealer name, a sticker): try each pair of adjacent rows.
        for i in range(len(rows) - 1):
            pair = parse_plate(rows[i : i + 2], confidence)
            if pair.valid:
                return pair
        for row in rows:
            single = parse_plate([row], confidence)
            if single.valid:
                return single
    return best


def plate_colour(crop: Image) -> str:
    """The background colour of a plate crop, from the median hue, saturation and value.

    The background is the majority of a plate's pixels, so the median is its colour;
    hue ranges are OpenCV's (0-180).
    """
    if crop.ndim != 3:
        return "other"
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV).reshape(-1, 3)
    hue, sat, val = (float(v) for v in np.median(hsv, axis=0))
    if sat < 60:
        return "white" if val > 150 else "other"
    if 15 <= hue <= 40:
        return "yellow"
    if 40 < hue <= 90:
        return "green"
    if 90 < hue <= 130:
        return "blue"
    return "other"


def read_plate(engine: OcrEngine, crop: Image) -> PlateReading | None:
    """Read the plate in a crop; ``None`` when the engine found no text."""
    reading = parse_boxes(engine.recognise(crop))
    if reading is None:
        return None
    return dataclasses.replace(reading, colour=plate_colour(crop))
