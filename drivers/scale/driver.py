"""Serial weighbridge indicator driver: a :class:`SerialLink` around a pure codec."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from drivers.scale.codec import ScaleCodec
from drivers.scale.processor import WeighingSection
from drivers.scale.protocols import CODECS
from drivers.serial_link import SerialLink
from gateway.config import DeviceSection
from gateway.driver import Driver
from gateway.errors import DeviceTimeoutError, FrameError
from gateway.presence import Presence, port_presence
from gateway.readings import Reading, Stamp

ScaleDriverName = Literal["scale.toledo", "scale.sma", "scale.xk3190", "scale.mtsics"]


class ScaleSection(WeighingSection):
    """``[[devices]]`` keys for a serial scale (weighing keys are used by the processor)."""

    driver: ScaleDriverName
    port: str = Field(description="device path (/dev/ttyUSB0) or any pyserial URL")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    framing: Literal["8N1", "7E1", "7O1", "8E1", "8O1", "8N2"] = "8N1"
    checksum: bool = Field(default=True, description="Toledo: 18th checksum byte present")
    silence_timeout_s: float = Field(default=5.0, gt=0, description="no bytes this long = down")
    poll_interval_s: float = Field(default=0.1, gt=0, description="command/response protocols")


def make_codec(config: ScaleSection) -> ScaleCodec:
    """The codec for the configured protocol."""
    protocol = config.driver.removeprefix("scale.")
    cls = CODECS[protocol]
    if protocol == "toledo":
        return cls(checksum=config.checksum)  # type: ignore[call-arg]
    return cls()


class SerialScaleDriver(Driver):
    """Reads a continuous-output or polled indicator on a serial port."""

    config_model = ScaleSection

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, ScaleSection)
        super().__init__(config)
        self.scale_config = config
        self.codec = make_codec(config)
        self.link = SerialLink(config.port, baudrate=config.baudrate, framing=config.framing)
        self._silent_until = 0.0
        self._next_poll = 0.0

    @classmethod
    def presence(cls, config: DeviceSection) -> Presence | None:
        """The port path, or the TCP connection of a ``socket://`` / ``rfc2217://`` URL."""
        assert isinstance(config, ScaleSection)
        return port_presence(config.port)

    async def _open(self) -> None:
        self.link.open()
        now = asyncio.get_running_loop().time()
        self._silent_until = now + self.scale_config.silence_timeout_s
        self._next_poll = now
        if self.codec.start_command:
            self.link.write(self.codec.start_command)

    async def _close(self) -> None:
        self.link.close()

    async def _read(self) -> list[Reading | FrameError]:
        loop = asyncio.get_running_loop()
        poll = self.codec.poll_command
        while True:
            now = loop.time()
            if poll is not None and now >= self._next_poll:
                self.link.write(poll)
                self._next_poll = now + self.scale_config.poll_interval_s
            wait = self._silent_until - now
            if poll is not None:
                wait = min(wait, self._next_poll - now)
            try:
                data = await self.link.read(max(wait, 0.001))
            except DeviceTimeoutError:
                if loop.time() >= self._silent_until:
                    raise DeviceTimeoutError(
                        f"{self.config.id}: no data from {self.link.port} for "
                        f"{self.scale_config.silence_timeout_s:g} s"
                    ) from None
                continue
            self._silent_until = loop.time() + self.scale_config.silence_timeout_s
            self.counters.bytes_in += len(data)
            return list(self.codec.feed(data, Stamp.now()))
