"""An asyncio byte pipe over a pyserial port (device path, pty or pyserial URL).

Ports with a file descriptor (real UARTs, USB adapters, ptys) are read with
``loop.add_reader``: no thread, no polling. URL transports without one
(``rfc2217://``, ``loop://``) fall back to short blocking reads on a worker thread.
"""

from __future__ import annotations

import asyncio
import termios
from typing import Any

import serial

from gateway.errors import DeviceInitError, DeviceIOError, DeviceTimeoutError

FRAMINGS: dict[str, tuple[int, str, int]] = {
    "8N1": (serial.EIGHTBITS, serial.PARITY_NONE, serial.STOPBITS_ONE),
    "7E1": (serial.SEVENBITS, serial.PARITY_EVEN, serial.STOPBITS_ONE),
    "7O1": (serial.SEVENBITS, serial.PARITY_ODD, serial.STOPBITS_ONE),
    "8E1": (serial.EIGHTBITS, serial.PARITY_EVEN, serial.STOPBITS_ONE),
    "8O1": (serial.EIGHTBITS, serial.PARITY_ODD, serial.STOPBITS_ONE),
    "8N2": (serial.EIGHTBITS, serial.PARITY_NONE, serial.STOPBITS_TWO),
}


READ_CHUNK = 4096


class SerialLink:
    """Reads and writes bytes on a serial port without blocking the event loop."""

    def __init__(self, port: str, *, baudrate: int = 9600, framing: str = "8N1") -> None:
        self.port = port
        self.baudrate = baudrate
        self.framing = framing
        self._serial: Any = None
        self._fd: int | None = None

    def open(self) -> None:
        """Open the port; raises :class:`DeviceInitError` with the port name."""
        bytesize, parity, stopbits = FRAMINGS[self.framing]
        try:
            ser = serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                bytesize=bytesize,
                parity=parity,
                stopbits=stopbits,
                timeout=0,
                write_timeout=1,
                exclusive=False,
            )
        except (serial.SerialException, ValueError, OSError, termios.error) as exc:
            raise DeviceInitError(f"cannot open serial port {self.port}: {exc}") from exc
        self._serial = ser
        try:
            self._fd = ser.fileno()
        except (AttributeError, OSError, serial.SerialException):
            self._fd = None

    def close(self) -> None:
        """Close the port; idempotent."""
        if self._serial is not None:
            ser, self._serial = self._serial, None
            ser.close()

    async def read(self, timeout_s: float) -> bytes:
        """Bytes available now, waiting up to ``timeout_s`` for the first one.

        Raises:
            DeviceTimeoutError: nothing arrived in time.
            DeviceIOError: the port failed (unplugged adapter, closed pty).
        """
        ser = self._serial
        if ser is None:
            raise DeviceIOError(f"{self.port} is not open")
        if self._fd is None:
            return await self._read_in_thread(timeout_s)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            async with asyncio.timeout(timeout_s):
                await ready
        except TimeoutError:
            raise DeviceTimeoutError(f"{self.port}: no data for {timeout_s:g} s") from None
        finally:
            loop.remove_reader(self._fd)
        try:
            # With timeout=0 this returns what is there; a socket:// port reports
            # only 1 waiting byte whatever it holds, so ask for a buffer's worth.
            data: bytes = ser.read(max(READ_CHUNK, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise DeviceIOError(f"{self.port}: read failed: {exc}") from exc
        return data

    async def _read_in_thread(self, timeout_s: float) -> bytes:
        ser = self._serial

        def blocking() -> bytes:
            ser.timeout = min(timeout_s, 0.5)
            data: bytes = ser.read(max(1, ser.in_waiting))
            return data

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                data = await asyncio.to_thread(blocking)
            except (serial.SerialException, OSError) as exc:
                raise DeviceIOError(f"{self.port}: read failed: {exc}") from exc
            if data:
                return data
        raise DeviceTimeoutError(f"{self.port}: no data for {timeout_s:g} s")

    def write(self, data: bytes) -> None:
        """Send a short command (a poll); raises :class:`DeviceIOError` on failure."""
        if self._serial is None:
            raise DeviceIOError(f"{self.port} is not open")
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeviceIOError(f"{self.port}: write failed: {exc}") from exc
