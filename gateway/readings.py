"""What drivers produce: small frozen records of what a device measured.

Drivers yield these; processors turn them into published records. Every reading
carries both a monotonic time (for durations and rates) and a UTC time (for the
record envelope), taken when its bytes arrived, never when it is published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Stamp:
    """A moment, as a monotonic clock reading and as UTC wall time."""

    mono: float
    utc: datetime

    @classmethod
    def now(cls) -> Stamp:
        """Read both clocks now (only I/O layers call this; codecs receive a Stamp)."""
        return cls(mono=time.monotonic(), utc=datetime.now(UTC))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """Base of everything a driver yields: something a device reported, and when.

    Each family defines its own subclasses in ``drivers/<family>/readings.py``; the
    family's processor dispatches on the subclass.

    Attributes:
        at: when the reading's last byte arrived (or the file was complete).
    """

    at: Stamp

    def summary(self) -> dict[str, object]:
        """The few fields shown in device state and ``gatewayctl status``."""
        return {}
