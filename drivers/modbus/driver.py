"""Modbus driver: a generic register-map poller, and the base of Modbus devices.

``driver = "modbus"`` polls the configured points, each at its own rate, and yields
one :class:`PointsRead` per round. :class:`ModbusDevice` (the line, the transaction,
the counters) is shared with the scale family's ``scale.modbus`` driver
(:mod:`drivers.scale.driver_modbus`).

A slave that stops answering raises :class:`DeviceTimeoutError` after
``max_timeouts`` consecutive silent requests, so the supervisor backs it off and it
stops taking turns on a shared line. Exception responses are counted, reported per
point, and never take the device down: the slave is alive.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field, model_validator

from drivers.modbus.codec import Point, decode, named_bits
from drivers.modbus.line import (
    LineSettings,
    ModbusExceptionResponse,
    ModbusLine,
    acquire,
    parse_target,
    release,
)
from drivers.modbus.processor import PointsSection
from drivers.modbus.readings import PointsRead
from gateway.config import DeviceSection
from gateway.driver import Driver
from gateway.errors import DeviceInitError, DeviceTimeoutError, FrameError
from gateway.presence import PathPresence, Presence, TcpPresence
from gateway.readings import Reading, Stamp

NO_ANSWER = "no answer"


class LineSection(DeviceSection):
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


class ModbusSection(LineSection, PointsSection):
    """``driver = "modbus"``: a register map."""

    driver: Literal["modbus"]
    points: tuple[Point, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ModbusSection:
        names = [p.name for p in self.points]
        if len(names) != len(set(names)):
            raise ValueError("points: every point needs its own name")
        return self


class ModbusDevice(Driver):
    """Shared part: the line, the transaction, the counters."""

    line_section: LineSection

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, LineSection)
        super().__init__(config)
        self.line_section = config
        self.line: ModbusLine | None = None
        self._silent = 0

    @classmethod
    def presence(cls, config: DeviceSection) -> Presence | None:
        """A ``tcp://`` target accepting connections, or the RTU line's serial port path."""
        assert isinstance(config, LineSection)
        try:
            tcp = parse_target(config.target)
        except DeviceInitError:
            return None  # a bad target fails at open; nothing to watch
        return PathPresence(config.target) if tcp is None else TcpPresence(*tcp)

    async def _open(self) -> None:
        self.line = acquire(self.line_section.line_settings())
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
                point.function, point.address, point.count, self.line_section.unit
            )
        except DeviceTimeoutError:
            self._silent += 1
            self._sync_counters()
            if self._silent >= self.line_section.max_timeouts:
                raise
            return []
        self._silent = 0
        self.counters.bytes_in += self.line.last_rx_bytes
        return words

    def _sync_counters(self) -> None:
        if self.line is not None:
            per = self.line.counters.by_unit.get(self.line_section.unit, {})
            self.counters.extra.update(
                {k: per.get(k, 0) for k in ("requests", "timeouts", "crc_errors", "exceptions")}
            )


class ModbusDriver(ModbusDevice):
    """Polls a register map, each point at its own interval."""

    config_model = ModbusSection

    def __init__(self, config: DeviceSection) -> None:
        super().__init__(config)
        assert isinstance(config, ModbusSection)
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
