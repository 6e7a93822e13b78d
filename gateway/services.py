"""Long-lived family services (the OCR worker), supervised like devices.

A :class:`Service` runs until cancelled and raises when it breaks (its engine failed
to load, its worker process died). The :class:`ServiceSupervisor` restarts it with
the same capped, jittered backoff as a device, logs the failure once and the
recovery once, and reports its state in ``gatewayctl status``. A broken service
never ends the daemon; what depends on it degrades (crops are dropped and counted)
until it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from gateway.backoff import Backoff
from gateway.errors import GatewayError
from gateway.health import DeviceState
from gateway.records import rfc3339

log = structlog.get_logger(__name__)


class Service(Protocol):
    """A family's long-lived task."""

    name: str

    async def run(self, ready: Callable[[], None]) -> None:
        """Start, call ``ready()`` once serving, then serve until cancelled.

        Raises when the service breaks; the supervisor starts it again later.
        """
        ...

    def stats(self) -> dict[str, Any]:
        """Counters for ``gatewayctl status``."""
        ...


class ServiceSupervisor:
    """Runs one service forever (until cancelled), restarting it with backoff."""

    def __init__(self, service: Service, *, backoff: Backoff | None = None) -> None:
        self.service = service
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self.state = DeviceState.STARTING
        self.since = datetime.now(UTC)
        self.last_error: str | None = None
        self.restarts_total = 0
        self.next_retry_s: float | None = None
        self.ready = asyncio.Event()
        """Set while the service is up."""
        self.down = asyncio.Event()
        """Set while the service is down (failed, waiting to start again)."""
        self.settled = asyncio.Event()
        """Set at the first start's outcome, up or failed (the daemon waits for it)."""

    def _change(self, state: DeviceState) -> None:
        if state != self.state:
            self.state = state
            self.since = datetime.now(UTC)

    def _up(self) -> None:
        if self.state is not DeviceState.STARTING:
            log.info("service recovered", service=self.service.name, after_error=self.last_error)
        else:
            log.info("service up", service=self.service.name)
        self.backoff.reset()
        self.next_retry_s = None
        self._change(DeviceState.UP)
        self.down.clear()
        self.ready.set()
        self.settled.set()

    async def run(self) -> None:
        """Start, serve, restart; returns only by cancellation."""
        while True:
            try:
                await self.service.run(self._up)
                error = "service ended by itself"
            except Exception as exc:  # any failure: report it and start again later
                error = str(exc) or repr(exc)
                if self.state is not DeviceState.DOWN:
                    log.warning(
                        "service failed; restarting with backoff",
                        service=self.service.name,
                        error=error,
                        exc_info=not isinstance(exc, GatewayError),  # ours say what; others: where
                    )
            self.ready.clear()
            self.settled.set()
            self.last_error = error
            self._change(DeviceState.DOWN)
            self.down.set()
            delay = self.backoff.next_delay()
            self.next_retry_s = round(delay, 2)
            await asyncio.sleep(delay)
            self.restarts_total += 1

    def as_dict(self) -> dict[str, Any]:
        """For ``gatewayctl status``."""
        return {
            "state": str(self.state),
            "since": rfc3339(self.since),
            "last_error": self.last_error,
            "restarts_total": self.restarts_total,
            "next_retry_s": self.next_retry_s,
            **self.service.stats(),
        }
