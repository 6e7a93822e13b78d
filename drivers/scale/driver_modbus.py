"""``driver = "scale.modbus"``: a weighbridge indicator read over Modbus.

Reads a weight and a status register ~10 times a second and yields
:class:`WeightMeasured`, so the same weighing rules apply as for serial scales. The
line, the transaction and the counters are the Modbus family's
(:class:`drivers.modbus.driver.ModbusDevice`).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field, model_validator

from drivers.modbus.codec import Point, decode, named_bits
from drivers.modbus.driver import LineSection, ModbusDevice
from drivers.modbus.line import ModbusExceptionResponse
from drivers.modbus.presets import PRESETS, ScaleMap
from drivers.scale.processor import WeighingSection
from drivers.scale.readings import WeightMeasured
from gateway.config import DeviceSection
from gateway.errors import FrameError
from gateway.readings import Reading, Stamp


class ModbusScaleSection(LineSection, WeighingSection):
    """``driver = "scale.modbus"``: a weighbridge indicator with a register map."""

    driver: Literal["scale.modbus"]
    preset: Literal["generic-int32", "indicator-float32"] | None = None
    weight: Point | None = None
    status: Point | None = None
    unit_name: str = Field(default="kg", description="display unit of the weight register")
    poll_interval_s: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _map(self) -> ModbusScaleSection:
        if (self.preset is None) == (self.weight is None):
            raise ValueError("give either preset or a weight point (and optional status)")
        return self

    def scale_map(self) -> ScaleMap:
        """The register map in use."""
        if self.preset is not None:
            return PRESETS[self.preset]
        assert self.weight is not None
        return ScaleMap(weight=self.weight, status=self.status, unit=self.unit_name)


class ModbusScaleDriver(ModbusDevice):
    """A weighbridge indicator read over Modbus: weight + status each round."""

    config_model = ModbusScaleSection

    def __init__(self, config: DeviceSection) -> None:
        super().__init__(config)
        assert isinstance(config, ModbusScaleSection)
        self.map = config.scale_map()
        self.poll_interval_s = config.poll_interval_s
        self._next = 0.0

    async def _read(self) -> list[Reading | FrameError]:
        loop = asyncio.get_running_loop()
        delay = self._next - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = loop.time() + self.poll_interval_s
        try:
            words = await self._transact(self.map.weight)
            status = await self._transact(self.map.status) if self.map.status else []
        except ModbusExceptionResponse as exc:
            self._sync_counters()
            return [FrameError(str(exc))]
        self._sync_counters()
        if not words or (self.map.status is not None and not status):
            return []
        try:
            weight = decode(self.map.weight, words)
        except FrameError as exc:
            return [exc]
        return [self._reading(weight, status)]

    def _reading(self, weight: float | int, status: list[int]) -> WeightMeasured:
        flags = named_bits(self.map.status, status[0]) if self.map.status and status else {}
        if "stable" in flags:
            stable: bool | None = flags["stable"]
        elif "unstable" in flags:
            stable = not flags["unstable"]
        else:
            stable = None
        out_of_range = any(flags.get(k, False) for k in ("overload", "underload", "overflow"))
        if flags.get("negative") and weight > 0:
            weight = -weight
        return WeightMeasured(
            weight=float(weight),
            unit=self.map.unit,
            stable=stable,
            in_range=not out_of_range,
            at=Stamp.now(),
        )
