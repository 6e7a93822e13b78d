"""Register maps and the pure conversion between 16-bit registers and values.

Vendors disagree on how a 32-bit value sits in two registers: the word order (high
word first, "big", or low word first, "little") and, rarely, the byte order inside
each register. Both are configuration. No I/O here: words in, values out, and the
reverse for the simulator.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import FrameError

Function = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
Order = Literal["big", "little"]

WORDS: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "bool": 1,
}
STRUCT: dict[str, str] = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}


class Point(BaseModel):
    """One value in a device's register map (a ``[[devices.points]]`` table).

    ``address`` is the protocol address as sent on the wire (0-based), not the
    40001-style number some manuals print.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="no dots: bits are point.bit")
    address: int = Field(ge=0, le=0xFFFF)
    function: Function = "holding"
    type: DataType = "uint16"
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    interval_s: float = Field(default=1.0, gt=0)
    bits: dict[str, int] = Field(default_factory=dict, description="named status bits 0..15")

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        bit_function = self.function in ("coil", "discrete")
        if bit_function != (self.type == "bool"):
            raise ValueError("coil/discrete points have type 'bool'; registers never do")
        for name, bit in self.bits.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"bit name {name!r}: letters, digits, '_' and '-' only")
            if not 0 <= bit <= 15:
                raise ValueError(f"bit {name!r} = {bit}: status bits are 0..15")
        if self.bits and self.type not in ("uint16", "int16"):
            raise ValueError("named bits belong to a 16-bit status register")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) this point occupies."""
        return WORDS[self.type]


def _word_bytes(words: list[int], point: Point) -> bytes:
    ordered = words if point.word_order == "big" else list(reversed(words))
    out = bytearray()
    for word in ordered:
        pair = word.to_bytes(2, "big")
        out += pair if point.byte_order == "big" else pair[::-1]
    return bytes(out)


def decode(point: Point, words: list[int]) -> float | int:
    """Registers as read from the wire -> the scaled value.

    Raises:
        FrameError: a float32 register holds NaN or infinity (a sensor fault, or the
            wrong word order configured).
    """
    if len(words) != point.count:
        raise ValueError(f"{point.name}: expected {point.count} registers, got {len(words)}")
    (raw,) = struct.unpack(">" + STRUCT[point.type], _word_bytes(words, point))
    if point.type == "float32":
        if not math.isfinite(raw):
            raise FrameError(f"{point.name}: register holds {raw} (not a finite number)")
        raw = float(f"{raw:.7g}")  # float32 carries ~7 significant digits; drop the noise
    if point.scale == 1.0 and point.offset == 0.0 and point.type != "float32":
        return int(raw)
    return float(raw) * point.scale + point.offset


def encode(point: Point, value: float) -> list[int]:
    """The registers a device holding ``value`` serves (used by the simulator)."""
    raw = (value - point.offset) / point.scale
    number: float | int = raw if point.type == "float32" else round(raw)
    data = struct.pack(">" + STRUCT[point.type], number)
    words = []
    for i in range(0, len(data), 2):
        pair = data[i : i + 2]
        words.append(int.from_bytes(pair if point.byte_order == "big" else pair[::-1], "big"))
    return words if point.word_order == "big" else list(reversed(words))


def named_bits(point: Point, value: int) -> dict[str, bool]:
    """The status bits a register value carries, by name."""
    return {name: bool(int(value) >> bit & 1) for name, bit in point.bits.items()}
