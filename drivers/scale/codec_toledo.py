"""Mettler Toledo standard continuous output.

Frame, 17 bytes or 18 with the optional checksum::

    STX | A | B | C | wwwwww | tttttt | CR | [CKS]

Where each field comes from (full list with the facts in ``docs/hardware.md``):

- Layout, status bits of B, checksum: IND245 firmware, file ``IND245/scale/ContOut.c``
  (Mettler-Toledo, 2004-2006, in the public code index; functions
  ``CONT_BuildContinousOutputString``, ``buildStatusWord``, ``buildChecksum``),
  agreeing with the Wildcat/Territory scale E15609900A user's manual, chapter 6
  appendices, p. 6-5, tables 6-9 to 6-11.
  CKS is the two's complement of the 7-bit sum of bytes 0..16.
- Weight and tare fields: the displayed string with the point and the sign removed,
  right aligned in six characters with **leading spaces** (``FormatOutputWeightString``;
  the "8142" variant of the same file pads with zeros instead, so both are accepted).
  Captures from an IND231 in ``Bridges-Code/mettler_toledo_bridge``,
  ``test/mettler_toledo_bridge_test.dart`` (``'40    046   000'``) have the spaces.
- Status A bits 0-2, "dummy zero or decimal position" (Wildcat manual table 6-9): the six
  characters *are* the display, dummy zeros included; codes 000 ``dddd00`` and 001
  ``ddddd0`` (d a displayed digit) say where the fixed zeros sit, 010 has no point,
  011..111 put the point 1..5 places from the right. IND245 ``buildContinuousOutputWordA``
  derives the code from the increment (10 and 20 kg give 001) while the digits stay the
  displayed ones, and the IND231 capture ``'1!!  1440   460'`` (code 001) means 1440 g. Bits
  3-4 build code (01 x1, 10 x2, 11 x5), bit 5 always 1.
- Status B: bit 0 net, 1 negative, 2 out of range, 3 motion, 4 kg (else lb), 5 always
  1, 6 power-up zero not captured (``buildStatusWord``; Wildcat table 6-10).
- Status C bits 0-2, the unit when it is neither kg nor lb: 1 g, 2 t, 3 oz, 6 ton,
  7 newton (``buildStatusWord``), 4 ozt and 5 dwt (HslCommunication library, class
  ``HslCommunication.Profinet.Toledo.ToledoStandardData``); bit 3 print request,
  bit 4 display expanded x10. The firmware sets B.4 only for kg and clears it for every
  C unit, so B.4 = 1 means kg whatever C.0-2 hold: an IND310 sending C = 0x21 while in
  kg stays kg.

Every byte is masked with 0x7F first: on 7E1 links read as 8 bits, bit 7 is parity.
The indicator streams about 10 frames/s and never waits for a command, so the
codec resynchronises on the next STX after any bad frame.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.readings import WeightMeasured
from gateway.errors import FrameError
from gateway.readings import Stamp

STX = 0x02
CR = 0x0D
SPACE = 0x20
_DIGITS = range(0x30, 0x3A)

# Frame offsets: STX, status A, B, C, 6 weight characters, 6 tare characters, CR, CKS.
_A, _B, _C = 1, 2, 3
_WEIGHT = slice(4, 10)
_TARE = slice(10, 16)
_FIELDS = ((4, 10, "weight"), (10, 16, "tare"))
_CR_AT = 16
_BODY_LEN = 17  # STX .. CR, the bytes the checksum covers
# Each field right aligned: leading spaces, then digits (a blank tare field is no tare).
_WEIGHT_FIELD = re.compile(rb" *[0-9]+")
_TARE_FIELD = re.compile(rb" *[0-9]*")

# Status A bits 0-2 -> divisor of the six displayed digits. 000 and 001 mark dummy
# zeros that are already among the digits, so they divide by 1 like 010.
_DIVISOR = {0b000: 1, 0b001: 1, 0b010: 1} | {code: 10 ** (code - 2) for code in range(3, 8)}
_BUILD = {1: 0b01, 2: 0b10, 5: 0b11}  # status A bits 3-4 for increments 1, 2, 5 x 10^k

# Status B (base 0x20) bits.
_B_NET = 0x01
_B_NEGATIVE = 0x02
_B_OUT_OF_RANGE = 0x04
_B_MOTION = 0x08
_B_KG = 0x10
_B_ZERO_NOT_CAPTURED = 0x40

# Status C (base 0x20) bits 0-2 when B.4 is clear. 0 is lb; 7 is "newton" in the IND245
# firmware but "custom units" elsewhere, so it keeps a name no unit table knows and
# ``weight_kg`` is None rather than a guess.
_C_UNITS = {1: "g", 2: "t", 3: "oz", 4: "ozt", 5: "dwt", 6: "ton"}
_UNIT_CODES = {unit: code for code, unit in _C_UNITS.items()}

_BASE_BIT = 0x20  # status bytes A, B and C always have bit 5 set
_MASK = bytes(i & 0x7F for i in range(256))  # bit 7 may be parity (7E1 read as 8N1)


def _decimals(value: float, limit: int) -> int:
    """Fewest decimals (at most ``limit``) that show ``value`` exactly."""
    return next((d for d in range(limit + 1) if round(value, d) == value), limit)


def _increment_code(increment: float) -> tuple[int, int]:
    """(decimal point code, build code) for an increment of 1, 2 or 5 x 10^k, k = -5..2."""
    for k in range(-5, 3):  # code 2 - k: 0.00001 -> 111 ... 1 -> 010, 10 -> 001, 100 -> 000
        for build, bits in _BUILD.items():
            if abs(increment - build * 10.0**k) < 1e-9 * 10.0**k:
                return 2 - k, bits
    raise ValueError(f"toledo: increment {increment} is not 1, 2 or 5 x 10^k (k = -5..2)")


def _field(number: int, decimals: int) -> bytes:
    """Six characters as the indicator shows them: the point's leading zero kept, spaces left."""
    return str(number).rjust(decimals + 1, "0").rjust(6).encode("ascii")


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
                if problem := _field_problem(buf, i):
                    return problem
            elif i == _CR_AT:
                if byte != CR:
                    return f"byte 16 is 0x{byte:02X}, not CR"
            elif sum(buf[: _BODY_LEN + 1]) & 0x7F:
                # CKS = two's complement of the 7-bit sum of bytes 0..16.
                return "checksum mismatch"
        return None

    def _whole_frame_ok(self, buf: bytearray) -> bool:
        """Fast check of a complete frame; the byte-by-byte loop explains failures."""
        if buf[_CR_AT] != CR or not _WEIGHT_FIELD.fullmatch(buf, _WEIGHT.start, _WEIGHT.stop):
            return False
        if not _TARE_FIELD.fullmatch(buf, _TARE.start, _TARE.stop):
            return False
        if not buf[_A] & buf[_B] & buf[_C] & _BASE_BIT:
            return False
        return not self.checksum or not sum(buf[: _BODY_LEN + 1]) & 0x7F

    def _reading(self, frame: bytes, at: Stamp) -> WeightMeasured:
        status_a, status_b, status_c = frame[_A], frame[_B], frame[_C]
        divide = _DIVISOR[status_a & 0b111]

        def value(chars: bytes) -> float:
            number = int(chars) if chars.strip() else 0
            return number / divide if divide != 1 else float(number)

        weight = value(frame[_WEIGHT])
        if status_b & _B_NEGATIVE:
            weight = -weight
        override = status_c & 0b111
        if status_b & _B_KG:
            unit = "kg"  # B.4 is set for kg only; C.0-2 cannot turn it into another unit
        elif override:
            unit = _C_UNITS.get(override, f"toledo-unit-{override}")
        else:
            unit = "lb"
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
    def encode(cls, reading: WeightMeasured, *, increment: float | None = None) -> bytes:
        """Encode as an indicator sends it: checksum on, leading zeros as spaces.

        Without ``increment`` the decimal point is the fewest decimals (0 to 5) that
        show both weight and tare exactly, build code x1. With it (1, 2 or 5 x 10^k),
        status A carries the indicator's code for that increment (20 kg: 001, x2), as
        the IND245 firmware derives it. A reading without a weight is sent as zero with
        the out-of-range bit (the indicator's dashes).

        Raises:
            ValueError: the value does not fit six digits, the increment is not one an
                indicator has, or the unit has no code.
        """
        weight = reading.weight if reading.weight is not None else 0.0
        tare = reading.tare or 0.0
        magnitude = abs(weight)
        if increment is None:
            decimals = max(_decimals(magnitude, 5), _decimals(tare, 5))
            code, build = 0b010 + decimals, _BUILD[1]
        else:
            code, build = _increment_code(increment)
            decimals = max(code - 2, 0)
        weight_digits = round(magnitude * 10**decimals)
        tare_digits = round(tare * 10**decimals)
        if increment is not None and (
            abs(weight_digits - magnitude * 10**decimals) > 1e-6
            or abs(tare_digits - tare * 10**decimals) > 1e-6
        ):
            raise ValueError(f"toledo: {weight} / tare {tare} needs more decimals than {increment}")
        if weight_digits > 999_999 or tare_digits > 999_999:
            raise ValueError(f"toledo: {weight} / tare {tare} does not fit six digits")

        status_b = _BASE_BIT
        status_c = _BASE_BIT
        if reading.unit == "kg":
            status_b |= _B_KG
        elif reading.unit in _UNIT_CODES:
            status_c |= _UNIT_CODES[reading.unit]
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
            bytes([STX, _BASE_BIT | build << 3 | code, status_b, status_c])
            + _field(weight_digits, decimals)
            + _field(tare_digits, decimals)
            + bytes([CR])
        )
        return body + bytes([-sum(body) & 0x7F])


def _field_problem(buf: bytearray, i: int) -> str | None:
    """Why byte ``i`` (in the weight or tare field) cannot be right, or None.

    A field is right aligned: spaces, then digits; the weight needs at least one digit,
    a blank tare field is no tare.
    """
    byte = buf[i]
    start, end, label = next(f for f in _FIELDS if f[0] <= i < f[1])
    if byte == SPACE:
        if i > start and buf[i - 1] in _DIGITS:
            return f"byte {i} is a space after a digit in the {label} field"
        if i == end - 1 and label == "weight":
            return "the weight field has no digit"
        return None
    if byte not in _DIGITS:
        return f"byte {i} is 0x{byte:02X}, not a digit or space"
    return None
