"""The driver protocol every device family implements.

A driver is built from its validated config section and offers ``open()``, an async
iterator of readings, ``close()`` and ``probe()``. The public methods here do the
shared work (state, counters, logging, error wrapping); a driver implements only the
small private parts (``_open``, ``_read``, ``_close``). Reconnection is not a
driver's business: the gateway's supervisor retries with backoff.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

from gateway.config import DeviceSection
from gateway.errors import DeviceError, FrameError
from gateway.presence import Presence
from gateway.readings import Reading

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class DriverCounters:
    """Counters a driver keeps for device state and ``gatewayctl status``."""

    readings: int = 0
    bad_frames: int = 0
    bytes_in: int = 0
    last_bad_frame: str | None = None
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        out: dict[str, Any] = {
            "readings": self.readings,
            "bad_frames": self.bad_frames,
            "bytes_in": self.bytes_in,
            "last_bad_frame": self.last_bad_frame,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What ``gatewayctl probe`` prints: a verdict and the evidence for it."""

    ok: bool
    verdict: str
    details: list[str]


class Driver(ABC):
    """Base class of every device driver; an async context manager."""

    config_model: ClassVar[type[DeviceSection]]
    """The pydantic model that validates this driver's ``[[devices]]`` section."""

    def __init__(self, config: DeviceSection) -> None:
        self.config = config
        self.counters = DriverCounters()
        self._opened = False

    @classmethod
    def presence(cls, config: DeviceSection) -> Presence | None:
        """How to see this device come back after it was absent; None: nothing to watch.

        While it waits out its backoff, the supervisor retries at once when the device,
        seen absent, is present again (see :mod:`gateway.presence`); without a presence
        it waits the backoff out. Drivers of a device on a port or a TCP target say how.
        """
        return None

    async def open(self) -> None:
        """Open the device; raises a :class:`DeviceError` subclass on failure."""
        await self._open()
        self._opened = True

    async def close(self) -> None:
        """Release the device. Safe to call twice or after a failed open."""
        if self._opened:
            self._opened = False
            await self._close()

    async def __aenter__(self) -> Driver:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def readings(self) -> AsyncIterator[Reading]:
        """Yield readings until the device fails (raising a ``DeviceError``).

        Bad frames are counted and skipped here, once for every driver.
        """
        while True:
            for item in await self._read():
                if isinstance(item, FrameError):
                    self.counters.bad_frames += 1
                    self.counters.last_bad_frame = str(item)
                    continue
                self.counters.readings += 1
                yield item

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _read(self) -> list[Reading | FrameError]:
        """Wait for the next batch of decoded items; raise ``DeviceError`` on link failure."""

    @abstractmethod
    async def _close(self) -> None: ...

    async def probe(self) -> ProbeResult:
        """Open briefly, read a few readings, close: a read-only self-test."""
        details: list[str] = []
        try:
            async with self:
                async for reading in self.readings():
                    details.append(repr(reading))
                    if len(details) >= 3:
                        break
        except DeviceError as exc:
            return ProbeResult(ok=False, verdict=f"failed: {exc}", details=details)
        return ProbeResult(ok=True, verdict="device answers", details=details)
