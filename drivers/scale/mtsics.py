"""MT-SICS weight replies (HARDWARE.md, "MT-SICS").

Command/response over CR LF lines, parsed by whitespace tokens, not columns:

- ``S S <weight> <unit>``: stable weight; ``S D <weight> <unit>``: dynamic (in motion),
  the answer to ``SI`` while the load moves;
- ``S +`` overload, ``S -`` underload: no weight, out of range;
- ``S I``: busy / not stable in time: a legitimate answer that carries no weight, so it
  yields nothing and is counted in :attr:`MtSicsCodec.busy_count`;
- ``ES`` syntax error, ``ET`` transmission error, ``EL`` logical error: frame errors;
- ``Z A``: a zero command completed (sent by someone else), ignored.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from gateway.errors import FrameError
from gateway.readings import Stamp, WeightMeasured

LF = 0x0A
MAX_LINE = 80
"""Longest line accepted; weight replies are about 20 bytes."""

_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_ERRORS = {
    "ES": "syntax error (command not understood)",
    "ET": "transmission error",
    "EL": "logical error (command cannot be executed)",
}


def _decimals(value: float, limit: int) -> int:
    """Fewest decimals (at most ``limit``) that show ``value`` exactly."""
    return next((d for d in range(limit + 1) if round(value, d) == value), limit)


class MtSicsCodec(ScaleCodec):
    """Decoder and encoder for MT-SICS ``S``/``SI`` replies.

    Attributes:
        busy_count: ``S I`` replies seen (busy, or not stable in time).
    """

    name: ClassVar[str] = "mtsics"
    poll_command: ClassVar[bytes | None] = b"SI\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.busy_count = 0
        self._discarding = False  # inside an over-long line: drop until its LF

    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        out: list[Decoded] = []
        buf = self._buffer
        while buf:
            end = buf.find(LF)
            if end < 0:
                if self._discarding:
                    buf.clear()
                elif len(buf) > MAX_LINE:
                    out.append(FrameError(f"mtsics: no line end within {MAX_LINE} bytes"))
                    self._discarding = True
                    buf.clear()
                break
            line = bytes(buf[:end])
            del buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > MAX_LINE:
                out.append(FrameError(f"mtsics: no line end within {MAX_LINE} bytes"))
                continue
            item = self._line(line.removesuffix(b"\r"), at)
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: bytes, at: Stamp) -> Decoded | None:
        """Decode one reply line (without CR LF); ``None`` for lines that carry nothing."""
        try:
            tokens = line.decode("ascii").split()
        except UnicodeDecodeError:
            return FrameError(f"mtsics: non-ASCII bytes in {line!r}")
        match tokens:
            case []:
                return None
            case ["S", "S" | "D" as kind, value, unit] if _NUMBER.fullmatch(value):
                return WeightMeasured(weight=float(value), unit=unit, stable=kind == "S", at=at)
            case ["S", "+" | "-"]:
                return WeightMeasured(weight=None, unit="", stable=False, in_range=False, at=at)
            case ["S", "I"]:
                self.busy_count += 1
                return None
            case ["ES" | "ET" | "EL" as code]:
                return FrameError(f"mtsics: indicator answered {code}: {_ERRORS[code]}")
            case ["Z", "A"]:
                return None
        return FrameError(f"mtsics: unexpected reply {line!r}")

    @classmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode as the reply to ``SI``: ``S S``/``S D`` with the weight right aligned in
        10 characters, or ``S +``/``S -`` when out of range or without a weight.

        Raises:
            ValueError: the unit is empty or contains whitespace.
        """
        weight = reading.weight
        if weight is None or not reading.in_range:
            return b"S -\r\n" if weight is not None and weight < 0 else b"S +\r\n"
        if reading.unit.split() != [reading.unit]:
            raise ValueError(f"mtsics: cannot encode unit {reading.unit!r}")
        kind = "D" if reading.stable is False else "S"
        text = f"{weight:.{_decimals(abs(weight), 6)}f}"
        return f"S {kind} {text:>10} {reading.unit}\r\n".encode("ascii")
