"""Register-mapped devices (Modbus sensors, barrier controllers): condensed telemetry.

Values are published as one ``reading/{device}/points`` record every
``telemetry_interval_s``, and at once when a named status bit or an on/off point
changes (a barrier opening should not wait for the next period).
"""

from __future__ import annotations

from pydantic import Field

from drivers.modbus.readings import PointsRead
from gateway.config import DeviceSection
from gateway.family import FamilyContext, Processor, basic_runtime, unexpected
from gateway.readings import Reading
from gateway.records import Draft, Priority


class PointsSection(DeviceSection):
    """``[[devices]]`` keys of register-mapped devices."""

    telemetry_interval_s: float = Field(default=5.0, ge=0, description="0 sends every round")


class PointsProcessor:
    """Throttles polled values; passes state changes through at once."""

    def __init__(self, device: str, interval_s: float) -> None:
        self.device = device
        self.interval_s = interval_s
        self._last_sent: float | None = None
        self._last_states: dict[str, bool] = {}

    def feed(self, reading: Reading) -> list[Draft]:
        """One polling round in, at most one record out."""
        if not isinstance(reading, PointsRead):
            raise unexpected(self, reading)
        states = dict(reading.bits)
        states.update({k: v for k, v in reading.values.items() if isinstance(v, bool)})
        changed = sorted(k for k, v in states.items() if self._last_states.get(k, v) != v)
        self._last_states.update(states)
        due = self._last_sent is None or reading.at.mono - self._last_sent >= self.interval_s
        if not (due or changed):
            return []
        self._last_sent = reading.at.mono
        return [
            Draft(
                topic=f"reading/{self.device}/points",
                schema="points/1",
                device=self.device,
                ts=reading.at.utc,
                data={
                    "values": reading.values,
                    "bits": reading.bits,
                    "errors": reading.errors,
                    "changed": changed,
                },
                priority=Priority.EVENT if changed else Priority.TELEMETRY,
            )
        ]


def _processor(device: DeviceSection, context: FamilyContext) -> Processor:
    assert isinstance(device, PointsSection)
    return PointsProcessor(device.id, device.telemetry_interval_s)


runtime = basic_runtime(_processor)
"""The modbus family's runtime (see :class:`gateway.family.FamilyRuntime`)."""
