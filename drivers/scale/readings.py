"""What a weighbridge indicator reports: one :class:`WeightMeasured` per frame."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.readings import Reading

# Conversion of display units to kilograms. Indicators report in their display unit;
# processors compare in kg so that thresholds in config have one unit.
KG_PER_UNIT: dict[str, float] = {"kg": 1.0, "t": 1000.0, "g": 0.001, "lb": 0.45359237}


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
