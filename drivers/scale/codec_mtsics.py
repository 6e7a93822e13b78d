"""MT-SICS (METTLER TOLEDO Standard Interface Command Set) weight replies.

Command/response over CR LF lines, parsed by whitespace tokens, not columns. The driver
sends only ``SI``; the replies to ``S``, ``Z`` and ``ZI`` (sent by another host on the
line, or by a technician) are recognised too, so they are never counted as bad frames.
Sources: the MT-SICS reference manual as reproduced in the METTLER TOLEDO AT balances
operating instructions (manualshelf, p. 87, "S - Send stable weight value") and the
AL/IC operating instructions (p. 72); the OHAUS 7000 series indicator manual (MT-SICS
subset, "Z - ZERO"); and ``Atlantis-Software/mt-sics``, ``lib/constants.js`` and
``test/sics0Test.js`` (the reply table and the ``ZI S`` / ``ZI D`` replies).

- ``S S <weight> <unit>`` stable weight (``S`` and ``SI``); ``S D <weight> <unit>``
  dynamic, only from ``SI``;
- ``S +`` overload, ``S -`` underload: no weight, out of range;
- ``S I`` command not executable (busy, e.g. taring, or no stability in time): a
  legitimate answer without a weight, counted in :attr:`MtSicsCodec.busy_count`;
- ``Z A`` zero done; ``ZI S`` / ``ZI D`` zeroed immediately, under stable / dynamic
  conditions: successes;
- ``Z I`` / ``ZI I`` not executable, ``Z +`` / ``ZI +`` above and ``Z -`` / ``ZI -``
  below the zero setting range: the zero was not done, but the indicator answered
  properly; none carries a weight, so these and the successes yield nothing and are
  counted in :attr:`MtSicsCodec.command_replies`;
- ``ES`` syntax error, ``ET`` transmission error, ``EL`` logical error: frame errors
  (the indicator did not understand a command, or a line was damaged).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.readings import WeightMeasured
from gateway.errors import FrameError
from gateway.readings import Stamp

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
        command_replies: replies to zero commands seen, by reply (``"ZI S"``: 2).
    """

    name: ClassVar[str] = "mtsics"
    poll_command: ClassVar[bytes | None] = b"SI\r\n"

    def __init__(self) -> None:
        super().__init__()
        self.busy_count = 0
        self.command_replies: Counter[str] = Counter()
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
            case ["Z", "A" | "I" | "+" | "-"] | ["ZI", "S" | "D" | "I" | "+" | "-"]:
                self.command_replies[" ".join(tokens)] += 1
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
