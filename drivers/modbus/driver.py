"""Modbus drivers: a generic register-map poller and a weighbridge indicator.

``driver = "modbus"`` polls the configured points, each at its own rate, and yields
one :class:`PointsRead` per round. ``driver = "scale.modbus"`` reads a weight and a
status register ~10 times a second and yields :class:`WeightMeasured`, so the same
weighing rules apply as for serial scales.

A slave that stops answering raises :class:`DeviceTimeoutError` after
``max_timeouts`` consecutive silent requests, so the supervisor backs it off and it
stops taking turns on a shared line. Exception responses are counted, reported per
point, and never take the device down: the slave is alive.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field, model_validator

from drivers.base import Driver
from drivers.modbus.line import (
    LineSettings,
    ModbusExceptionResponse,
    ModbusLine,
    acquire,
    parse_target,
    release,
)
from drivers.modbus.presets import PRESETS, ScaleMap
from drivers.modbus.registers import Point, decode, named_bits
from drivers.presence import PathPresence, Presence, TcpPresence
from gateway.config import DeviceSection
from gateway.errors import DeviceInitError, DeviceTimeoutError, FrameError
from gateway.points import PointsKeys
from gateway.readings import PointsRead, Reading, Stamp, WeightMeasured
from gateway.weighing import WeighingKeys

NO_ANSWER = "no answer"


class LineKeys(DeviceSection):
    """Keys that say how to reach a Modbus slave."""

    target: str = Field(description="tcp://HOST:PORT, or a serial port for RTU")
    unit: int = Field(default=1, ge=0, le=247, description="slave / unit id")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    timeout_s: float = Field(default=0.5, gt=0, description="per request")
    max_timeouts: int = Field(default=2, ge=1, description="silent requests in a row = down")

    def line_settings(self) -> LineSettings:
        """Settings of the shared line."""
        return LineSettings(
            target=self.target,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout_s=self.timeout_s,
        )


class ModbusConfig(LineKeys, PointsKeys):
    """``driver = "modbus"``: a register map."""

    driver: Literal["modbus"]
    points: tuple[Point, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusConfig:
        names = [p.name for p in self.points]
        if len(names) != len(set(names)):
            raise ValueError("points: every point needs its own name")
        return self


class ScaleModbusConfig(LineKeys, WeighingKeys):
    """``driver = "scale.modbus"``: a weighbridge indicator with a register map."""

    driver: Literal["scale.modbus"]
    preset: Literal["generic-int32", "indicator-float32"] | None = None
    weight: Point | None = None
    status: Point | None = None
    unit_name: str = Field(default="kg", description="display unit of the weight register")
    poll_interval_s: float = Field(default=0.1, gt=0)

    @model_validator(mode="after")
    def _map(self) -> ScaleModbusConfig:
        if (self.preset is None) == (self.weight is None):
            raise ValueError("give either preset or a weight point (and optional status)")
        return self

    def scale_map(self) -> ScaleMap:
        """The register map in use."""
        if self.preset is not None:
            return PRESETS[self.preset]
        assert self.weight is not None
        return ScaleMap(weight=self.weight, status=self.status, unit=self.unit_name)


class _ModbusDevice(Driver):
    """Shared part: the line, the transaction, the counters."""

    line_keys: LineKeys

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, LineKeys)
        super().__init__(config)
        self.line_keys = config
        self.line: ModbusLine | None = None
        self._silent = 0

    @classmethod
    def presence(cls, config: DeviceSection) -> Presence | None:
        """A ``tcp://`` target accepting connections, or the RTU line's serial port path."""
        assert isinstance(config, LineKeys)
        try:
            tcp = parse_target(config.target)
        except DeviceInitError:
            return None  # a bad target fails at open; nothing to watch
        return PathPresence(config.target) if tcp is None else TcpPresence(*tcp)

    async def _open(self) -> None:
        self.line = acquire(self.line_keys.line_settings())
        try:
            await self.line.connect()
        except BaseException:
            release(self.line)
            self.line = None
            raise

    async def _close(self) -> None:
        if self.line is not None:
            release(self.line)
            self.line = None

    async def _transact(self, point: Point) -> list[Any]:
        """Read one point; silent slaves end the session after ``max_timeouts``."""
        assert self.line is not None
        try:
            words = await self.line.read(
                point.function, point.address, point.count, self.line_keys.unit
            )
        except DeviceTimeoutError:
            self._silent += 1
            self._sync_counters()
            if self._silent >= self.line_keys.max_timeouts:
                raise
            return []
        self._silent = 0
        self.counters.bytes_in += self.line.last_rx_bytes
        return words

    def _sync_counters(self) -> None:
        if self.line is not None:
            per = self.line.counters.by_unit.get(self.line_keys.unit, {})
            self.counters.extra.update(
                {k: per.get(k, 0) for k in ("requests", "timeouts", "crc_errors", "exceptions")}
            )


class ModbusDriver(_ModbusDevice):
    """Polls a register map, each point at its own interval."""

    config_model = ModbusConfig

    def __init__(self, config: DeviceSection) -> None:
        super().__init__(config)
        assert isinstance(config, ModbusConfig)
        self.points = config.points
        self._due: dict[str, float] = {}

    async def _read(self) -> list[Reading | FrameError]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._due:
            self._due = {p.name: now for p in self.points}
        wait = min(self._due.values()) - now
        if wait > 0:
            await asyncio.sleep(wait)
        now = loop.time()
        values: dict[str, float | int | bool | None] = {}
        bits: dict[str, bool] = {}
        errors: dict[str, str] = {}
        for point in self.points:
            if self._due[point.name] > now:
                continue
            self._due[point.name] = now + point.interval_s
            try:
                words = await self._transact(point)
            except ModbusExceptionResponse as exc:
                values[point.name], errors[point.name] = None, str(exc)
                continue
            if not words:
                values[point.name], errors[point.name] = None, NO_ANSWER
                continue
            try:
                value = bool(words[0]) if point.type == "bool" else decode(point, words)
            except FrameError as exc:
                self.counters.bad_frames += 1
                values[point.name], errors[point.name] = None, str(exc)
                continue
            values[point.name] = value
            if point.bits:
                bits.update(
                    {f"{point.name}.{k}": v for k, v in named_bits(point, int(value)).items()}
                )
        self._sync_counters()
        if values and all(e == NO_ANSWER for e in errors.values()) and len(errors) == len(values):
            return []  # silence is not a reading: the device must not count as up
        return [PointsRead(values=values, bits=bits, errors=errors, at=Stamp.now())]


class ModbusScaleDriver(_ModbusDevice):
    """A weighbridge indicator read over Modbus: weight + status each round."""

    config_model = ScaleModbusConfig

    def __init__(self, config: DeviceSection) -> None:
        super().__init__(config)
        assert isinstance(config, ScaleModbusConfig)
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
