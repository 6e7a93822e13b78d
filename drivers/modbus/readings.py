"""What a register-mapped device reports: one :class:`PointsRead` per polling round."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.readings import Reading


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
