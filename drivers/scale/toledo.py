"""Mettler Toledo standard continuous output (HARDWARE.md, "Mettler Toledo standard
continuous output").

Frame, 17 bytes or 18 with the optional checksum::

    STX | A | B | C | wwwwww | tttttt | CR | [CKS]

Every byte is masked with 0x7F first: on 7E1 links read as 8 bits, bit 7 is parity.
The indicator streams about 10 frames/s and never waits for a command, so the
codec resynchronises on the next STX after any bad frame.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from gateway.errors import FrameError
from gateway.readings import Stamp, WeightMeasured

STX = 0x02
CR = 0x0D
_DIGITS = range(0x30, 0x3A)

# Frame offsets (HARDWARE.md: STX, status A, B, C, 6 weight digits, 6 tare digits, CR, CKS).
_A, _B, _C = 1, 2, 3
_WEIGHT = slice(4, 10)
_TARE = slice(10, 16)
_CR_AT = 16
_BODY_LEN = 17  # STX .. CR, the bytes the checksum covers
_DIGITS_AND_CR = re.compile(rb"[0-9]{12}\r")  # weight + tare digits, then CR (bytes 4..16)

# Status A bits 0-2: where the decimal point sits, as (multiply, divide) of the six
# displayed digits (d): 000 = dddd00, 001 = ddddd0, 010 = dddddd, 011 = ddddd.d,
# ... 111 = d.ddddd.
_SCALE: dict[int, tuple[int, int]] = {
    0b000: (100, 1),
    0b001: (10, 1),
    0b010: (1, 1),
    0b011: (1, 10),
    0b100: (1, 100),
    0b101: (1, 1_000),
    0b110: (1, 10_000),
    0b111: (1, 100_000),
}
_CODE_FOR_DECIMALS = {d: 0b010 + d for d in range(6)}  # 0 decimals -> 010 ... 5 -> 111

# Status A bits 3-4 display increment (01 = x1) and bit 5 always 1: what we send.
_A_BASE = 0x20 | 0x08

# Status B (base 0x20) bits.
_B_NET = 0x01
_B_NEGATIVE = 0x02
_B_OUT_OF_RANGE = 0x04
_B_MOTION = 0x08
_B_KG = 0x10
_B_ZERO_NOT_CAPTURED = 0x40

# Status C (base 0x20) bits 0-2: unit override. HARDWARE.md lists 1 = g and 2 = t;
# other codes are reported under a name no unit table knows, so ``weight_kg`` is None
# rather than a guess.
_C_UNITS = {1: "g", 2: "t"}
_UNIT_CODES = {"g": 1, "t": 2}

_BASE_BIT = 0x20  # status bytes A, B and C always have bit 5 set
_MASK = bytes(i & 0x7F for i in range(256))  # bit 7 may be parity (7E1 read as 8N1)


def _decimals(value: float, limit: int) -> int:
    """Fewest decimals (at most ``limit``) that show ``value`` exactly."""
    return next((d for d in range(limit + 1) if round(value, d) == value), limit)


class ToledoCodec(ScaleCodec):
    """Decoder and encoder for Toledo continuous output.

    Args:
        checksum: the indicator sends the 18th checksum byte (a setting on the
            indicator, so it comes from config; the frame itself does not say).
    """

    name: ClassVar[str] = "toledo"

    def __init__(self, checksum: bool = True) -> None:
        super().__init__()
        self.checksum = checksum
        self._frame_len = _BODY_LEN + 1 if checksum else _BODY_LEN

    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        out: list[Decoded] = []
        buf = self._buffer
        buf[:] = buf.translate(_MASK)  # idempotent: already-masked bytes stay
        while buf:
            if not self._resync(STX, "STX", out):
                break
            problem = self._first_problem(buf)
            if problem is None and len(buf) < self._frame_len:
                break  # a good start so far; wait for the rest
            if problem is None:
                out.append(self._reading(bytes(buf[: self._frame_len]), at))
                del buf[: self._frame_len]
                self._in_error = False
            else:
                out.append(FrameError(f"toledo: {problem}"))
                self._in_error = True
                del buf[:1]  # drop this STX; the next one may start a good frame
        return out

    def _first_problem(self, buf: bytearray) -> str | None:
        """Why the frame starting at ``buf[0]`` cannot be good, judged on the bytes present.

        Checking each byte as soon as it arrives means a frame cut short is rejected
        when the next frame's STX lands where a status bit, digit or CR must be.
        """
        if len(buf) >= self._frame_len and self._whole_frame_ok(buf):
            return None  # the common case, checked without a loop in Python
        for i in range(1, min(len(buf), self._frame_len)):
            byte = buf[i]
            if i in (_A, _B, _C):
                if not byte & _BASE_BIT:
                    return f"status byte {i} is 0x{byte:02X}, bit 5 not set"
            elif i < _CR_AT:
                if byte not in _DIGITS:
                    return f"byte {i} is 0x{byte:02X}, not a digit"
            elif i == _CR_AT:
                if byte != CR:
                    return f"byte 16 is 0x{byte:02X}, not CR"
            elif sum(buf[: _BODY_LEN + 1]) & 0x7F:
                # CKS = two's complement of the 7-bit sum of bytes 0..16.
                return "checksum mismatch"
        return None

    def _whole_frame_ok(self, buf: bytearray) -> bool:
        """Fast check of a complete frame; the byte-by-byte loop explains failures."""
        if not _DIGITS_AND_CR.fullmatch(buf, _A + 3, _CR_AT + 1):
            return False
        if not buf[_A] & buf[_B] & buf[_C] & _BASE_BIT:
            return False
        return not self.checksum or not sum(buf[: _BODY_LEN + 1]) & 0x7F

    def _reading(self, frame: bytes, at: Stamp) -> WeightMeasured:
        status_a, status_b, status_c = frame[_A], frame[_B], frame[_C]
        multiply, divide = _SCALE[status_a & 0b111]

        def value(digits: bytes) -> float:
            number = int(digits) * multiply
            return number / divide if divide != 1 else float(number)

        weight = value(frame[_WEIGHT])
        if status_b & _B_NEGATIVE:
            weight = -weight
        override = status_c & 0b111
        if override:
            unit = _C_UNITS.get(override, f"toledo-unit-{override}")
        else:
            unit = "kg" if status_b & _B_KG else "lb"
        return WeightMeasured(
            weight=weight,
            unit=unit,
            stable=not (status_b & _B_MOTION),
            in_range=not (status_b & _B_OUT_OF_RANGE),
            net=bool(status_b & _B_NET),
            zero_captured=not (status_b & _B_ZERO_NOT_CAPTURED),
            tare=value(frame[_TARE]),
            at=at,
        )

    @classmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode with the checksum byte.

        The decimal point is the fewest decimals (0 to 5) that show both weight and
        tare exactly, so whole kilograms get code 010. A reading without a weight is
        sent as zero with the out-of-range bit (the indicator's dashes).

        Raises:
            ValueError: the value does not fit six digits, or the unit has no code.
        """
        weight = reading.weight if reading.weight is not None else 0.0
        tare = reading.tare or 0.0
        magnitude = abs(weight)
        decimals = max(_decimals(magnitude, 5), _decimals(tare, 5))
        weight_digits = round(magnitude * 10**decimals)
        tare_digits = round(tare * 10**decimals)
        if weight_digits > 999_999 or tare_digits > 999_999:
            raise ValueError(f"toledo: {weight} / tare {tare} does not fit six digits")

        status_b = _BASE_BIT
        status_c = _BASE_BIT
        if reading.unit in _UNIT_CODES:
            status_c |= _UNIT_CODES[reading.unit]
            status_b |= _B_KG
        elif reading.unit == "kg":
            status_b |= _B_KG
        elif reading.unit != "lb":
            raise ValueError(f"toledo: no unit code for {reading.unit!r}")
        if reading.net:
            status_b |= _B_NET
        if weight < 0:
            status_b |= _B_NEGATIVE
        if not reading.in_range or reading.weight is None:
            status_b |= _B_OUT_OF_RANGE
        if reading.stable is False:
            status_b |= _B_MOTION
        if not reading.zero_captured:
            status_b |= _B_ZERO_NOT_CAPTURED

        body = (
            bytes([STX, _A_BASE | _CODE_FOR_DECIMALS[decimals], status_b, status_c])
            + f"{weight_digits:06d}{tare_digits:06d}".encode("ascii")
            + bytes([CR])
        )
        return body + bytes([-sum(body) & 0x7F])
