"""Register maps of common weighbridge indicators and load-cell transmitters.

A ``scale.modbus`` device names a preset (``preset = "generic-int32"``) or gives its
own ``weight`` and ``status`` points. Addresses are wire addresses (0-based).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modbus.codec import Point


@dataclass(frozen=True, slots=True)
class ScaleMap:
    """Where a Modbus scale keeps its weight and what its status bits mean.

    ``status`` bits used: ``unstable`` or ``stable`` (one of them), ``overload``,
    ``underload``, ``overflow``, ``negative``, ``zero``; absent names are not reported
    by that device.
    """

    weight: Point
    status: Point | None
    unit: str = "kg"


PRESETS: dict[str, ScaleMap] = {
    # Generic transmitter (HARDWARE.md): gross int32 high word first at 0x0050, status at
    # 0x0008 with bit 5 unstable, bit 6 overflow, bit 9 overload.
    "generic-int32": ScaleMap(
        weight=Point(name="gross", address=0x0050, type="int32", word_order="big"),
        status=Point(
            name="status",
            address=0x0008,
            type="uint16",
            bits={"unstable": 5, "overflow": 6, "overload": 9},
        ),
    ),
    # Float32 indicator: gross as IEEE-754 float, low word first, at 0x0000; status at
    # 0x0004: bit 0 stable, bit 1 overload, bit 2 underload, bit 3 negative, bit 4 zero.
    "indicator-float32": ScaleMap(
        weight=Point(name="gross", address=0x0000, type="float32", word_order="little"),
        status=Point(
            name="status",
            address=0x0004,
            type="uint16",
            bits={"stable": 0, "overload": 1, "underload": 2, "negative": 3, "zero": 4},
        ),
    ),
}
