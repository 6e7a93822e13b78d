"""Per-device health, published retained on ``{root}/device/{id}/state``."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.records import Draft, Priority, rfc3339


class DeviceState(StrEnum):
    """What central's device wall shows."""

    STARTING = "starting"
    UP = "up"
    DEGRADED = "degraded"
    """Up, but bad frames are arriving."""
    STALLED = "stalled"
    """Connected, but its stream stopped (a frozen camera); being reopened with backoff."""
    DOWN = "down"
    """Not answering; the supervisor is retrying with backoff."""
    UNAVAILABLE = "unavailable"
    """The driver cannot run on this box (missing optional package); retried slowly."""
    STOPPED = "stopped"
    """The gateway shut down in an orderly way."""


@dataclass(slots=True)
class DeviceHealth:
    """Live health of one device, owned by its supervisor."""

    device: str
    driver: str
    state: DeviceState = DeviceState.STARTING
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_error: str | None = None
    errors_total: int = 0
    restarts_total: int = 0
    restart_times: deque[float] = field(default_factory=deque, repr=False)
    """Monotonic times of restarts in the last hour (a camera wall shows reconnects/hour)."""
    next_retry_s: float | None = None
    last_reading: dict[str, Any] | None = None
    last_reading_at: datetime | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    storage: str = "ok"
    """``disk_full`` while the outbox's disk is full (its readings may be refused)."""

    def change(self, state: DeviceState, error: str | None = None) -> bool:
        """Move to ``state``; return True if that is a change worth publishing."""
        changed = state != self.state or (error is not None and error != self.last_error)
        if state != self.state:
            self.since = datetime.now(UTC)
        self.state = state
        if error is not None:
            self.last_error = error
            self.errors_total += 1
        return changed

    def restarted(self, now: float | None = None) -> None:
        """Count a reopen of the device."""
        self.restarts_total += 1
        self.restart_times.append(time.monotonic() if now is None else now)

    def restarts_last_hour(self, now: float | None = None) -> int:
        """Reopens in the last 3600 s."""
        cutoff = (time.monotonic() if now is None else now) - 3600.0
        while self.restart_times and self.restart_times[0] < cutoff:
            self.restart_times.popleft()
        return len(self.restart_times)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (used in the state record and ``gatewayctl status``)."""
        return {
            "state": str(self.state),
            "since": rfc3339(self.since),
            "driver": self.driver,
            "last_error": self.last_error,
            "errors_total": self.errors_total,
            "restarts_total": self.restarts_total,
            "restarts_last_hour": self.restarts_last_hour(),
            "next_retry_s": self.next_retry_s,
            "last_reading": self.last_reading,
            "last_reading_at": rfc3339(self.last_reading_at) if self.last_reading_at else None,
            "counters": self.counters,
            "storage": self.storage,
        }

    def draft(self) -> Draft:
        """The retained state record for central."""
        return Draft(
            topic=f"device/{self.device}/state",
            schema="device_state/1",
            device=self.device,
            ts=datetime.now(UTC),
            data=self.as_dict(),
            priority=Priority.STATE,
            retain=True,
        )
