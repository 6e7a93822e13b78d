"""Hi-G-Tek DataReader gate reader (``driver = "eseal.reader"``), on serial or TCP.

The reader repeats an Unsynchronized Reader Message (a seal's alert or close burst)
until the host sends the Message Command Ack, which names no message (Hi-G-Tek manual
6.5.5.11.2): the reader has one message outstanding at a time. The driver acknowledges
an alert only after the daemon has made its record durable: the supervisor asks for
the next batch only once the previous one is in the outbox, so acknowledgements for a
batch are written at the start of the next :meth:`_read`. A crash in between costs a
repeat (de-duplicated), never an alarm. Because the ack carries no identity, an alert
is acknowledged once: copies of it arriving within :data:`ACK_GUARD_S` of its ack
(duplicates, or repeats already on the wire) are not acknowledged again, since that
ack would be taken for the next message.

Polling doubles as a keep-alive: every ``poll_interval_s`` the driver asks for the
results of its previous Verify (Get Results) and starts a new Verify; a reader that
says nothing at all for ``silence_timeout_s`` is reported down and reopened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from drivers.eseal.codec_reader import DEFAULT_CRC_INIT, Layout, SealReaderCodec
from drivers.eseal.processor import SealSection
from drivers.eseal.readings import AlertAcked, HostCommand, ReaderReply, ReadRequested, SealAlert
from drivers.serial_link import SerialLink
from gateway.config import DeviceSection
from gateway.driver import Driver, ProbeResult
from gateway.errors import DeviceError, DeviceTimeoutError, FrameError
from gateway.presence import Presence, port_presence
from gateway.readings import Reading, Stamp

ACK_GUARD_S = 0.5
"""Copies of an acknowledged alert arriving this soon after its ack are not acked again."""


class SealReaderSection(SealSection):
    """``[[devices]]`` keys of a gate reader."""

    driver: Literal["eseal.reader"]
    port: str = Field(
        description="serial device (/dev/ttyUSB1), or socket://HOST:PORT for a reader on TCP"
    )
    baudrate: int = Field(default=9600, ge=300, le=921600)
    framing: Literal["8N1", "7E1", "7O1", "8E1", "8O1", "8N2"] = "8N1"
    crc_init: int = Field(
        default=DEFAULT_CRC_INIT, ge=0, le=0xFFFF, description="CRC-16 CCITT start value"
    )
    layout: Layout = Field(
        default="hgt", description="CRC coverage of reader frames (gatewayctl probe eseal)"
    )
    reader: int | None = Field(
        default=None, ge=0, le=0xFFFF, description="only this reader address R# (RS-485 bus)"
    )
    channel: int = Field(default=1, ge=0, le=255, description="reader RF channel to verify on")
    poll_interval_s: float = Field(
        default=10.0, ge=0, description="read request this often (0: never)"
    )
    silence_timeout_s: float = Field(
        default=60.0, ge=0, description="nothing heard this long = down (0: never)"
    )


class SealReaderDriver(Driver):
    """Decodes reader frames, acknowledges alerts once they are durable."""

    config_model = SealReaderSection

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, SealReaderSection)
        super().__init__(config)
        self.reader_config = config
        self.codec = SealReaderCodec(crc_init=config.crc_init, layout=config.layout)
        self.link = SerialLink(config.port, baudrate=config.baudrate, framing=config.framing)
        self._to_ack: list[SealAlert] = []
        self._acked: dict[tuple[object, ...], float] = {}  # alert -> when acknowledged
        self.acknowledges = True
        """False for probes: an alert acknowledged but not recorded would be lost."""
        self._heard_at = 0.0
        self._next_poll = 0.0

    @classmethod
    def presence(cls, config: DeviceSection) -> Presence | None:
        """The serial port path, or the reader's TCP port for ``socket://HOST:PORT``."""
        assert isinstance(config, SealReaderSection)
        return port_presence(config.port)

    async def _open(self) -> None:
        self.link.open()
        cfg = self.reader_config
        self.codec = SealReaderCodec(crc_init=cfg.crc_init, layout=cfg.layout)  # no stale half
        self._to_ack.clear()
        self._acked.clear()
        now = asyncio.get_running_loop().time()
        self._heard_at = now
        self._next_poll = now

    async def _close(self) -> None:
        self.link.close()

    def _acknowledge(self) -> None:
        """Acknowledge the alerts of the batch the daemon has now stored, each once."""
        now = asyncio.get_running_loop().time()
        self._acked = {k: t for k, t in self._acked.items() if now - t < ACK_GUARD_S}
        for alert in self._to_ack:
            key = (alert.reader, *alert.dedup_key, alert.sequence, alert.burst, alert.opened)
            if key in self._acked:
                continue  # a copy of one just acknowledged: another ack means the next one
            self._acked[key] = now
            self.link.write(self.codec.ack_for(alert))
            self.counters.extra["acks_sent"] = self.counters.extra.get("acks_sent", 0) + 1
        self._to_ack.clear()

    async def _read(self) -> list[Reading | FrameError]:
        self._acknowledge()
        cfg = self.reader_config
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if cfg.poll_interval_s and now >= self._next_poll:
                reader = cfg.reader or 0
                self.link.write(self.codec.read_request(reader, cfg.channel))
                self.link.write(self.codec.verify_request(reader, cfg.channel))
                self._next_poll = now + cfg.poll_interval_s
            waits = [1.0]
            if cfg.poll_interval_s:
                waits.append(self._next_poll - now)
            if cfg.silence_timeout_s:
                silent_for = now - self._heard_at
                if silent_for >= cfg.silence_timeout_s:
                    raise DeviceTimeoutError(
                        f"{cfg.port}: reader silent for {silent_for:.0f} s"
                        " (check cable, power, baud rate and crc_init)"
                    )
                waits.append(self._heard_at + cfg.silence_timeout_s - now)
            try:
                data = await self.link.read(max(min(waits), 0.001))
            except DeviceTimeoutError:
                continue
            self._heard_at = loop.time()
            self.counters.bytes_in += len(data)
            items = self._accept(self.codec.feed(data, Stamp.now()))
            if items:
                return items

    def _accept(self, decoded: Sequence[Reading | FrameError]) -> list[Reading | FrameError]:
        """Drop echoes of our own frames and other readers'; remember alerts to ACK."""
        wanted = self.reader_config.reader
        out: list[Reading | FrameError] = []
        for item in decoded:
            if isinstance(item, AlertAcked | ReadRequested | HostCommand | ReaderReply):
                continue  # echoes of the host's frames, answers with nothing to record
            if wanted is not None and getattr(item, "reader", wanted) != wanted:
                continue
            if isinstance(item, SealAlert) and self.acknowledges:
                self._to_ack.append(item)
            out.append(item)
        return out

    async def probe(self) -> ProbeResult:
        """Ask the reader for the seal in range and wait for any valid frame."""
        details: list[str] = []
        self.acknowledges = False  # read-only: the reader keeps its alerts for the daemon
        try:
            async with self:
                self._next_poll = 0.0  # a read request right away
                async with asyncio.timeout(max(self.reader_config.poll_interval_s, 3.0)):
                    async for reading in self.readings():
                        details.append(repr(reading))
                        if len(details) >= 2:
                            break
        except TimeoutError:
            verdict = "no valid frame in time"
            if self.counters.bad_frames:
                verdict += (
                    f"; {self.counters.bad_frames} bad frame(s): {self.counters.last_bad_frame}"
                    " (wrong crc_init or baud rate?)"
                )
            return ProbeResult(ok=False, verdict=verdict, details=details)
        except DeviceError as exc:
            return ProbeResult(ok=False, verdict=f"failed: {exc}", details=details)
        return ProbeResult(ok=True, verdict="seal reader answers", details=details)
