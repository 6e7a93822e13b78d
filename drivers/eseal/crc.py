"""CRC-16/CCITT as gate readers use it: polynomial 0x1021, MSB first, no reflection.

The polynomial is ITU-T V.41 / ISO/IEC 3309 (x^16 + x^12 + x^5 + 1). Vendors differ
only in the start value, which is why it is a parameter:

============  ==========  ======================================
start value   name        check value (CRC of ASCII "123456789")
============  ==========  ======================================
``0xFFFF``    CCITT-FALSE ``0x29B1``
``0x0000``    XMODEM      ``0x31C3``
``0x1D0F``    AUG-CCITT   ``0xE5CC``
============  ==========  ======================================

No final XOR and no bit reflection in any of the three (catalogued in Greg Cook's
"Catalogue of parametrised CRC algorithms", CRC-16/IBM-3740, XMODEM, SPI-FUJITSU).
"""

from __future__ import annotations

POLY = 0x1021
"""x^16 + x^12 + x^5 + 1 with the x^16 term implied."""


def _table() -> tuple[int, ...]:
    """CRC of each single byte value with a zero register, for byte-at-a-time updates."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc16_ccitt(data: bytes | bytearray, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT of ``data`` starting from ``init`` (see the module table).

    Raises:
        ValueError: ``init`` does not fit 16 bits.
    """
    if not 0 <= init <= 0xFFFF:
        raise ValueError(f"CRC start value 0x{init:X} does not fit 16 bits")
    crc = init
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc
