"""One Modbus line (a TCP connection or an RS-485 port) shared by the devices on it.

Several slaves on one RS-485 line share a port, and a TCP gateway shares a
connection: every device on the same ``target`` gets the same :class:`ModbusLine`.
Each transaction holds the line's lock for one request/response only, and asyncio
locks are FIFO, so devices take turns; a dead slave costs at most its timeout per
turn, and its driver stops taking turns once the supervisor backs it off.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.modbus.codec import Function
from gateway.errors import DeviceError, DeviceInitError, DeviceIOError, DeviceTimeoutError

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusExceptionResponse(DeviceError):
    """The slave answered with a Modbus exception code (it is alive, the request failed)."""

    def __init__(self, code: int, where: str) -> None:
        self.code = code
        super().__init__(f"{where}: exception {code:#04x} ({EXCEPTION_NAMES.get(code, 'unknown')})")


@dataclass(frozen=True, slots=True)
class LineSettings:
    """How to reach a line: ``tcp://host:port`` or a serial device with its framing."""

    target: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout_s: float = 1.0


@dataclass(slots=True)
class LineCounters:
    """Per-line transaction counters."""

    requests: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    exceptions: int = 0
    by_unit: dict[int, dict[str, int]] = field(default_factory=dict)

    def count(self, unit: int, what: str) -> None:
        """Count one outcome for a unit."""
        setattr(self, what, getattr(self, what) + 1)
        per = self.by_unit.setdefault(unit, {})
        per[what] = per.get(what, 0) + 1


def parse_target(target: str) -> tuple[str, int] | None:
    """``tcp://host:port`` -> (host, port); anything else is a serial port (None)."""
    if not target.startswith("tcp://"):
        return None
    url = urlparse(target)
    if not url.hostname:
        raise DeviceInitError(f"{target}: expected tcp://HOST:PORT")
    return url.hostname, url.port or 502


class ModbusLine:
    """A pymodbus client plus the lock that serialises transactions on it."""

    def __init__(self, settings: LineSettings) -> None:
        self.settings = settings
        self.counters = LineCounters()
        self.lock = asyncio.Lock()
        self.users = 0
        self._rx_bytes = 0  # bytes received during the current transaction
        tcp = parse_target(settings.target)
        common: dict[str, Any] = {
            "timeout": settings.timeout_s,
            "retries": 0,  # retries are the supervisor's business, with backoff
            "reconnect_delay": 0,  # likewise reconnection
            "trace_packet": self._trace,
        }
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if tcp is not None:
            self.client = AsyncModbusTcpClient(tcp[0], port=tcp[1], **common)
        else:
            self.client = AsyncModbusSerialClient(
                settings.target,
                baudrate=settings.baudrate,
                parity=settings.parity,
                stopbits=settings.stopbits,
                bytesize=8,
                **common,
            )

    @property
    def last_rx_bytes(self) -> int:
        """Bytes received during the last transaction."""
        return self._rx_bytes

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    async def connect(self) -> None:
        """Open the connection or port if it is not open."""
        if self.client.connected:
            return
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            raise DeviceInitError(f"cannot open Modbus line {self.settings.target}: {exc}") from exc
        if not ok:
            raise DeviceInitError(f"cannot open Modbus line {self.settings.target}")

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    async def read(self, function: Function, address: int, count: int, unit: int) -> list[Any]:
        """One read transaction; registers (ints) or bits (bools).

        Raises:
            ModbusExceptionResponse: the slave answered with an exception code.
            DeviceTimeoutError: no valid answer in time (``crc_errors`` counts the case
                where bytes did arrive but never formed a valid frame).
            DeviceIOError: the connection or port failed.
        """
        where = f"{self.settings.target} unit {unit} {function} {address:#06x}"
        async with self.lock:
            await self.connect()
            self.counters.count(unit, "requests")
            self._rx_bytes = 0
            call = {
                "holding": self.client.read_holding_registers,
                "input": self.client.read_input_registers,
                "coil": self.client.read_coils,
                "discrete": self.client.read_discrete_inputs,
            }[function]
            try:
                response = await call(address, count=count, device_id=unit)
            except ModbusIOException as exc:
                kind = "crc_errors" if self._rx_bytes else "timeouts"
                self.counters.count(unit, kind)
                what = "garbled answer (CRC/framing)" if self._rx_bytes else "no answer"
                raise DeviceTimeoutError(f"{where}: {what}") from exc
            except ConnectionException as exc:
                raise DeviceIOError(f"{where}: connection failed: {exc}") from exc
            except ModbusException as exc:
                raise DeviceIOError(f"{where}: {exc}") from exc
        if response.isError():
            self.counters.count(unit, "exceptions")
            raise ModbusExceptionResponse(int(getattr(response, "exception_code", 0)), where)
        if function in ("coil", "discrete"):
            return list(response.bits[:count])
        return list(response.registers)


_LINES: dict[str, ModbusLine] = {}


def acquire(settings: LineSettings) -> ModbusLine:
    """The shared line for a target (created on first use)."""
    line = _LINES.get(settings.target)
    if line is None:
        line = _LINES[settings.target] = ModbusLine(settings)
    line.users += 1
    return line


def release(line: ModbusLine) -> None:
    """Give a line back; the last user closes it."""
    line.users -= 1
    if line.users <= 0:
        line.close()
        _LINES.pop(line.settings.target, None)
