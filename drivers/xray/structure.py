"""Is an image file whole? Walk its container structure without decoding pixels.

A copy that stalls half way leaves a file that is stable in size yet truncated; a
decoder cannot always tell (libjpeg pads a truncated JPEG with grey and "succeeds").
Walking the container format tells the two apart from a corrupt file of full length:

- TIFF (TIFF 6.0, section 2): the header's IFD offset, the IFD entries and the strip or
  tile extents must all lie inside the file; beyond the end means truncated, nonsense
  values (unsorted tags, unknown field types) mean corrupt.
- PNG (RFC 2083, section 3): chunks of length + type + data + CRC up to ``IEND``; a
  chunk running past the end means truncated, a bad type or CRC means corrupt.
- JPEG (ITU T.81, annex B): marker segments up to ``EOI``; running out first means
  truncated, a missing ``0xFF`` where a marker must start means corrupt.
"""

from __future__ import annotations

import struct
import zlib
from enum import StrEnum


class Shape(StrEnum):
    """What the structure walk found."""

    EMPTY = "empty"
    WHOLE = "whole"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    UNKNOWN = "unknown"  # not a format walked here: the decoder decides


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_format(data: bytes) -> str | None:
    """``tiff``, ``png`` or ``jpeg`` from the file's magic bytes."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    return None


def walk(data: bytes) -> Shape:
    """Classify ``data`` as whole, truncated, corrupt, empty or unknown."""
    if not data:
        return Shape.EMPTY
    fmt = image_format(data)
    if fmt == "tiff":
        return _tiff(data)
    if fmt == "png":
        return _png(data)
    if fmt == "jpeg":
        return _jpeg(data)
    return Shape.UNKNOWN


# TIFF field types 1..18 (TIFF 6.0 plus BigTIFF's 16..18) and their sizes in bytes.
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                    13: 4, 16: 8, 17: 8, 18: 8}  # fmt: skip
_TIFF_EXTENT_TAGS = {273: 279, 324: 325}  # StripOffsets->StripByteCounts, Tile likewise
_TIFF_MAX_ENTRIES = 1000


def _tiff_values(data: bytes, order: str, ftype: int, count: int, field: bytes) -> list[int] | None:
    """Integer values of an entry, or ``None`` if they lie past the end of ``data``."""
    codes = {3: "H", 4: "I", 16: "Q"}
    if ftype not in codes:
        return []
    size = _TIFF_TYPE_SIZES[ftype] * count
    if size <= 4:
        raw = field[:size]
    else:
        (offset,) = struct.unpack(order + "I", field)
        if offset + size > len(data):
            return None
        raw = data[offset : offset + size]
    return list(struct.unpack(f"{order}{count}{codes[ftype]}", raw))


def _tiff(data: bytes) -> Shape:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return Shape.TRUNCATED
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd < 8:
        return Shape.CORRUPT
    if ifd + 2 > len(data):
        return Shape.TRUNCATED
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    if not 0 < count <= _TIFF_MAX_ENTRIES:
        return Shape.CORRUPT
    values: dict[int, list[int]] = {}
    last_tag = -1
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):  # entries seen so far were sane: the rest is missing
            return Shape.TRUNCATED
        tag, ftype, n = struct.unpack(order + "HHI", data[at : at + 8])
        if tag <= last_tag or ftype not in _TIFF_TYPE_SIZES:
            return Shape.CORRUPT
        last_tag = tag
        if tag in _TIFF_EXTENT_TAGS or tag in _TIFF_EXTENT_TAGS.values():
            got = _tiff_values(data, order, ftype, n, data[at + 8 : at + 12])
            if got is None:
                return Shape.TRUNCATED
            values[tag] = got
    for offsets_tag, counts_tag in _TIFF_EXTENT_TAGS.items():
        offsets, counts = values.get(offsets_tag), values.get(counts_tag)
        if offsets is None or counts is None:
            continue
        if len(offsets) != len(counts):
            return Shape.CORRUPT
        if any(o + c > len(data) for o, c in zip(offsets, counts, strict=True)):
            return Shape.TRUNCATED
        return Shape.WHOLE
    return Shape.CORRUPT  # no strips and no tiles: no pixels anywhere


def _png(data: bytes) -> Shape:
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if length >= 2**31 or not kind.isalpha():
            return Shape.CORRUPT
        end = pos + 12 + length
        if end > len(data):
            return Shape.TRUNCATED
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return Shape.CORRUPT
        if kind == b"IEND":
            return Shape.WHOLE
        pos = end
    return Shape.TRUNCATED


# Markers without a length field: TEM, RST0..RST7 (T.81 table B.1).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _jpeg(data: bytes) -> Shape:
    pos = 2  # after SOI
    size = len(data)
    while pos < size:
        if data[pos] != 0xFF:
            return Shape.CORRUPT
        while pos < size and data[pos] == 0xFF:  # fill bytes (T.81 B.1.1.2)
            pos += 1
        if pos >= size:
            return Shape.TRUNCATED
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            return Shape.WHOLE
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8):
            return Shape.CORRUPT
        if pos + 2 > size:
            return Shape.TRUNCATED
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            return Shape.CORRUPT
        pos += length
        if pos > size:
            return Shape.TRUNCATED
        if marker == 0xDA:  # SOS: entropy-coded data until the next real marker
            found = _next_marker(data, pos)
            if found is None:
                return Shape.TRUNCATED
            pos = found
    return Shape.TRUNCATED


def _next_marker(data: bytes, pos: int) -> int | None:
    """Index of the next 0xFF starting a marker (not stuffing 0xFF00, not RSTn)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return None
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos


# SOFn markers (T.81 table B.1): C0-C3, C5-C7, C9-CB, CD-CF; C4 (DHT), C8 (JPG) and
# CC (DAC) share the range but carry no frame header.
_JPEG_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone, without decoding; ``None`` if not found.

    PNG: IHDR is the first chunk, width and height its first two 4-byte big-endian
    fields (PNG specification, 11.2.2). TIFF: tags 256 ImageWidth and 257 ImageLength
    of the first IFD, SHORT or LONG (TIFF 6.0, section 8). JPEG: the frame header
    after an SOFn marker, P (1 byte), Y lines then X samples per line, 2 bytes each
    (T.81, B.2.2). Checking these before decoding is what keeps a small file that
    declares 10000x10000 16-bit pixels from ever being decoded.
    """
    fmt = image_format(data)
    if fmt == "png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt == "tiff":
        return _tiff_dimensions(data)
    if fmt == "jpeg":
        return _jpeg_dimensions(data)
    return None


def _tiff_dimensions(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd < 8 or ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    found: dict[int, int] = {}
    for i in range(min(count, _TIFF_MAX_ENTRIES)):
        at = ifd + 2 + 12 * i
        if at + 12 > len(data):
            return None
        tag, ftype, n = struct.unpack(order + "HHI", data[at : at + 8])
        if tag in (256, 257) and ftype in (3, 4) and n == 1:
            values = _tiff_values(data, order, ftype, n, data[at + 8 : at + 12])
            if values:
                found[tag] = values[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None
