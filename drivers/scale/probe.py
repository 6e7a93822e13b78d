"""Find out what a serial port speaks: try the usual settings and every scale codec.

Read-only: the only bytes sent are the protocols' own weight queries (SMA ``W``,
MT-SICS ``SI``), never zero or tare commands.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from drivers.scale.codec import ScaleCodec
from drivers.scale.protocols import CODECS
from drivers.scale.readings import WeightMeasured
from drivers.serial_link import SerialLink
from gateway.errors import DeviceError, DeviceTimeoutError, FrameError
from gateway.readings import Stamp

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
    sent: bytes | None = None
    """The query sent while listening (None: listened passively)."""


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
    scores.sort(key=lambda s: (len(s.readings), -s.bad_frames), reverse=True)
    return scores


async def listen(
    port: str,
    baudrate: int,
    framing: str,
    seconds: float,
    *,
    poll: bytes | None = None,
    poll_interval_s: float = 0.1,
) -> bytes:
    """Collect what the port sends in ``seconds``, sending ``poll`` periodically if given."""
    link = SerialLink(port, baudrate=baudrate, framing=framing)
    link.open()
    heard = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    next_poll = loop.time()
    try:
        while (now := loop.time()) < deadline:
            if poll and now >= next_poll:
                link.write(poll)
                next_poll = now + poll_interval_s
            try:
                heard += await link.read(
                    max(0.001, min(deadline, next_poll) - now) if poll else deadline - now
                )
            except DeviceTimeoutError:
                continue
    finally:
        link.close()
    return bytes(heard)


def _polls() -> list[bytes | None]:
    """Listen passively first (streaming indicators), then each protocol's own query."""
    polls: list[bytes | None] = [None]
    for codec in CODECS.values():
        query = codec.poll_command or codec.start_command
        if query and query not in polls:
            polls.append(query)
    return polls


async def probe_serial(
    port: str, *, seconds: float = 1.5, baudrates: tuple[int, ...] = BAUDRATES
) -> list[ProbeAttempt]:
    """Try settings until one gives a convincing protocol; return every attempt made."""
    attempts: list[ProbeAttempt] = []
    for baudrate in baudrates:
        for framing in FRAMINGS:
            for poll in _polls():
                try:
                    data = await listen(port, baudrate, framing, seconds, poll=poll)
                except DeviceError as exc:
                    attempts.append(ProbeAttempt(baudrate, framing, 0, None, error=str(exc)))
                    if len(attempts) == 1:
                        return attempts  # the port itself is the problem
                    break  # this setting is not supported by the port
                best = score(data)[0] if data else None
                attempts.append(ProbeAttempt(baudrate, framing, len(data), best, sent=poll))
                if best is not None and best.convincing:
                    return attempts
    return attempts
