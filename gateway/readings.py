"""What drivers produce: small frozen records of what a device measured.

Drivers yield these; processors turn them into published records. Every reading
carries both a monotonic time (for durations and rates) and a UTC time (for the
record envelope), taken when its bytes arrived, never when it is published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

# Conversion of display units to kilograms. Indicators report in their display unit;
# processors compare in kg so that thresholds in config have one unit.
KG_PER_UNIT: dict[str, float] = {"kg": 1.0, "t": 1000.0, "g": 0.001, "lb": 0.45359237}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stamp:
    """A moment, as a monotonic clock reading and as UTC wall time."""

    mono: float
    utc: datetime

    @classmethod
    def now(cls) -> Stamp:
        """Read both clocks now (only I/O layers call this; codecs receive a Stamp)."""
        return cls(mono=time.monotonic(), utc=datetime.now(UTC))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """Base of everything a driver yields: something a device reported, and when.

    Driver families define their own subclasses (seal reads, scans, motion); the
    processor for a device dispatches on the subclass.

    Attributes:
        at: when the reading's last byte arrived (or the file was complete).
    """

    at: Stamp

    def summary(self) -> dict[str, object]:
        """The few fields shown in device state and ``gatewayctl status``."""
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightMeasured(Reading):
    """One frame from a weighbridge indicator.

    Attributes:
        weight: displayed weight in ``unit``; ``None`` when the indicator shows no value
            (over/under range, error dashes).
        unit: display unit as the indicator reports it (``kg``, ``t``, ``lb``, ``g``).
        stable: the indicator's own stability flag; ``None`` for protocols that do not
            report one (XK3190), in which case the weighing processor judges stability.
        in_range: ``False`` when over capacity, under zero, or in an error state.
        net: the value is net (tare subtracted) rather than gross.
        zero_captured: power-up zero has been captured (OIML R76: no weighing before).
        tare: tare in ``unit`` where the protocol carries it.
        at: when the frame's last byte arrived.
    """

    weight: float | None
    unit: str
    stable: bool | None
    in_range: bool = True
    net: bool = False
    zero_captured: bool = True
    tare: float | None = None

    @property
    def weight_kg(self) -> float | None:
        """The weight converted to kilograms, or ``None`` if unknown or unit unknown."""
        factor = KG_PER_UNIT.get(self.unit)
        if self.weight is None or factor is None:
            return None
        return self.weight * factor

    def summary(self) -> dict[str, object]:
        return {
            "weight": self.weight,
            "unit": self.unit,
            "stable": self.stable,
            "in_range": self.in_range,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PointsRead(Reading):
    """Values polled from a register-mapped device (Modbus) in one round.

    Attributes:
        values: point name -> scaled value (``None`` when the read failed this round).
        bits: named status bits, ``"point.bit"`` -> state.
        errors: point name -> why it has no value this round.
        at: when the round finished.
    """

    values: dict[str, float | int | bool | None]
    bits: dict[str, bool]
    errors: dict[str, str]

    def summary(self) -> dict[str, object]:
        return {"values": self.values, "errors": self.errors}
