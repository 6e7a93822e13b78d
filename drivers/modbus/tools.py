"""Technician's Modbus tools behind ``gatewayctl modbus read`` and ``gatewayctl modbus scan``."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modbus.codec import WORDS, DataType, Function, Order, Point, decode
from drivers.modbus.line import LineSettings, ModbusExceptionResponse, ModbusLine
from gateway.errors import DeviceError, DeviceTimeoutError


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Raw registers and their decoded values."""

    raw: list[int]
    values: list[float | int | bool]


async def read(
    settings: LineSettings,
    *,
    unit: int,
    address: int,
    count: int,
    function: Function,
    data_type: DataType,
    word_order: Order = "big",
    byte_order: Order = "big",
) -> ReadResult:
    """Read ``count`` values of ``data_type`` starting at wire address ``address``."""
    line = ModbusLine(settings)
    try:
        await line.connect()
        width = WORDS[data_type]
        raw = await line.read(function, address, count * width, unit)
    finally:
        line.close()
    if data_type == "bool":
        return ReadResult(raw=[int(b) for b in raw], values=[bool(b) for b in raw])
    point = Point(
        name="value",
        address=address,
        function=function,
        type=data_type,
        word_order=word_order,
        byte_order=byte_order,
    )
    values = [decode(point, raw[i : i + width]) for i in range(0, len(raw), width)]
    return ReadResult(raw=list(raw), values=values)


@dataclass(frozen=True, slots=True)
class ScanHit:
    """A unit id that answered, and how."""

    unit: int
    answer: str


async def scan(settings: LineSettings, units: range, address: int = 0) -> list[ScanHit]:
    """Which unit ids answer a one-register read (an exception answer counts: it is alive)."""
    line = ModbusLine(settings)
    hits: list[ScanHit] = []
    try:
        await line.connect()
        for unit in units:
            try:
                words = await line.read("holding", address, 1, unit)
            except ModbusExceptionResponse as exc:
                hits.append(ScanHit(unit, f"alive, answered {exc}"))
            except DeviceTimeoutError:
                continue
            except DeviceError:
                raise
            else:
                hits.append(ScanHit(unit, f"holding {address:#06x} = {words[0]}"))
    finally:
        line.close()
    return hits
