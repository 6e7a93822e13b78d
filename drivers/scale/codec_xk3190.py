"""XK3190 family continuous output, format 0 (``tF = 0``).

Frame, 12 bytes::

    STX | '+'/'-' | dddddd | decimals '0'..'4' | XOR hi | XOR lo | ETX

Source: XK3190-A9+ weighing indicator manual, "Continuous method (Tf=0)" (easymanua.ls,
p. 9), and the XK3190-A26 manual, "Continuous communication format 0" (p. 12): byte 1
0x02, byte 2 sign, bytes 3-8 the displayed value high digit first, byte 9 the number
of decimals counted from the right (0-4), bytes 10-11 the XOR of bytes 2-9 as two hex
digits (a nibble of 10-15 is sent plus 37h: upper-case ``A``-``F``; lower case is
accepted too), byte 12 0x03.
The format carries no stability flag and no unit: readings have ``stable=None``
(the weighing processor judges stability from the values) and the configured unit.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.readings import WeightMeasured
from gateway.errors import FrameError
from gateway.readings import Stamp

STX = 0x02
ETX = 0x03
FRAME_LEN = 12

# Offsets (0-based; the manuals count from 1): STX 0, sign 1, digits 2-7, decimals 8,
# XOR 9-10, ETX 11.
_SIGN = 1
_DIGITS_AT = range(2, 8)
_DECIMALS = 8
_XOR_AT = (9, 10)
_ETX = 11

_SIGNS = b"+-"
_DIGIT_BYTES = b"0123456789"
_DECIMAL_BYTES = b"01234"
_HEX_BYTES = b"0123456789ABCDEFabcdef"


def _decimals(value: float, limit: int) -> int:
    """Fewest decimals (at most ``limit``) that show ``value`` exactly."""
    return next((d for d in range(limit + 1) if round(value, d) == value), limit)


def _xor(data: bytes | bytearray) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


class Xk3190Codec(ScaleCodec):
    """Decoder and encoder for XK3190 format 0.

    Args:
        unit: the indicator's display unit; format 0 does not send it.
    """

    name: ClassVar[str] = "xk3190"

    def __init__(self, unit: str = "kg") -> None:
        super().__init__()
        self.unit = unit

    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        out: list[Decoded] = []
        buf = self._buffer
        while buf:
            if not self._resync(STX, "STX", out):
                break
            problem = _first_problem(buf)
            if problem is None and len(buf) < FRAME_LEN:
                break  # a good start so far; wait for the rest
            if problem is None:
                out.append(self._reading(bytes(buf[:FRAME_LEN]), at))
                del buf[:FRAME_LEN]
                self._in_error = False
            else:
                out.append(FrameError(f"xk3190: {problem}"))
                self._in_error = True
                del buf[:1]  # drop this STX; the next one may start a good frame
        return out

    def _reading(self, frame: bytes, at: Stamp) -> WeightMeasured:
        number = int(frame[2:8])
        decimals = frame[_DECIMALS] - 0x30
        weight = number / 10**decimals if decimals else float(number)
        if frame[_SIGN] == ord("-"):
            weight = -weight
        return WeightMeasured(weight=weight, unit=self.unit, stable=None, at=at)

    @classmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode as format 0, with the fewest decimals (0 to 4) that show the weight.

        Raises:
            ValueError: no weight (format 0 has no error state), or too many digits.
        """
        if reading.weight is None:
            raise ValueError("xk3190: format 0 cannot send a reading without a weight")
        magnitude = abs(reading.weight)
        decimals = _decimals(magnitude, 4)
        digits = round(magnitude * 10**decimals)
        if digits > 999_999:
            raise ValueError(f"xk3190: {reading.weight} does not fit six digits")
        sign = "-" if reading.weight < 0 else "+"
        body = f"{sign}{digits:06d}{decimals}".encode("ascii")
        return bytes([STX]) + body + f"{_xor(body):02X}".encode("ascii") + bytes([ETX])


def _first_problem(buf: bytearray) -> str | None:
    """Why the frame starting at ``buf[0]`` cannot be good, judged on the bytes present.

    Each byte is checked as soon as it arrives, so a frame cut short is rejected when
    the next frame's STX lands where a sign, digit, hex digit or ETX must be.
    """
    for i in range(1, min(len(buf), FRAME_LEN)):
        byte = buf[i]
        if i == _SIGN:
            allowed = _SIGNS
        elif i in _DIGITS_AT:
            allowed = _DIGIT_BYTES
        elif i == _DECIMALS:
            allowed = _DECIMAL_BYTES
        elif i in _XOR_AT:
            allowed = _HEX_BYTES
        else:
            if byte != ETX:
                return f"byte 11 is 0x{byte:02X}, not ETX"
            sent = int(buf[9:11], 16)
            if sent != _xor(buf[1:9]):
                return f"XOR check {sent:02X}, computed {_xor(buf[1:9]):02X}"
            continue
        if byte not in allowed:
            return f"byte {i} is 0x{byte:02X}, not one of {allowed.decode()!r}"
    return None
