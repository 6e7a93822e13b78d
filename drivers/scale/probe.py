"""Find out what a serial port speaks: try the usual settings and every scale codec.

Read-only: the only bytes sent are the protocols' own weight queries (SMA ``W``,
MT-SICS ``SI``), never zero or tare commands.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from drivers.scale.codec import ScaleCodec
from drivers.scale.protocols import CODECS
from drivers.serial_link import SerialLink
from gateway.errors import DeviceError, DeviceTimeoutError, FrameError
from gateway.readings import Stamp, WeightMeasured

BAUDRATES = (9600, 4800, 19200, 2400, 38400, 115200, 1200)
FRAMINGS = ("8N1", "7E1")


@dataclass(slots=True)
class CodecScore:
    """How one protocol fared on the bytes heard."""

    protocol: str
    readings: list[WeightMeasured] = field(default_factory=list)
    bad_frames: int = 0

    @property
    def convincing(self) -> bool:
        """Several good frames and few bad ones."""
        return len(self.readings) >= 3 and self.bad_frames <= len(self.readings) // 4


@dataclass(slots=True)
class ProbeAttempt:
    """One baud rate and framing tried."""

    baudrate: int
    framing: str
    bytes_heard: int
    best: CodecScore | None
    error: str | None = None


def score(data: bytes) -> list[CodecScore]:
    """Decode ``data`` with every codec; best first."""
    at = Stamp.now()
    scores = []
    for name, cls in CODECS.items():
        codec: ScaleCodec = cls()
        result = CodecScore(protocol=name)
        for item in codec.feed(data, at):
            if isinstance(item, FrameError):
                result.bad_frames += 1
            else:
                result.readings.append(item)
        scores.append(result)
    scores.sort(key=lambda s: (len(s.readings) - s.bad_frames), reverse=True)
    return scores


async def listen(port: str, baudrate: int, framing: str, seconds: float) -> bytes:
    """Collect what the port sends in ``seconds``, sending the read-only polls."""
    link = SerialLink(port, baudrate=baudrate, framing=framing)
    link.open()
    polls = [c.poll_command or c.start_command for c in CODECS.values()]
    heard = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            for poll in polls:
                if poll:
                    link.write(poll)
            try:
                heard += await link.read(min(left, 0.2))
            except DeviceTimeoutError:
                continue
    finally:
        link.close()
    return bytes(heard)


async def probe_serial(port: str, *, seconds: float = 1.5,
                       baudrates: tuple[int, ...] = BAUDRATES) -> list[ProbeAttempt]:
    """Try settings until one gives a convincing protocol; return every attempt made."""
    attempts: list[ProbeAttempt] = []
    for baudrate in baudrates:
        for framing in FRAMINGS:
            try:
                data = await listen(port, baudrate, framing, seconds)
            except DeviceError as exc:
                attempts.append(ProbeAttempt(baudrate, framing, 0, None, error=str(exc)))
                return attempts  # the port itself is the problem; other speeds won't help
            best = score(data)[0] if data else None
            attempts.append(ProbeAttempt(baudrate, framing, len(data), best))
            if best is not None and best.convincing:
                return attempts
    return attempts
