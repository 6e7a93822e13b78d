"""One supervised task per device: open, read, condense, and retry with backoff.

This is the only place reconnection lives. A failing device never takes the daemon
down: every error, expected or not, ends in a logged state change and a retry after
a capped, jittered delay. A failure is logged once when it starts and once when the
device recovers, not at every retry. A device that was absent (port path gone,
connection refused) is retried as soon as it is back, whatever the delay had grown to
(the driver's :meth:`~gateway.driver.Driver.presence` says how to see it). Failing to
record a failure (a full outbox) is logged and the retries go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog

from gateway.backoff import Backoff
from gateway.config import DeviceSection
from gateway.driver import Driver
from gateway.errors import DeviceStalledError, DriverUnavailableError, GatewayError
from gateway.family import Processor
from gateway.health import DeviceHealth, DeviceState
from gateway.presence import Presence
from gateway.records import Draft, Outgoing
from gateway.registry import create_driver, processor_for

log = structlog.get_logger(__name__)

Emit = Callable[[Sequence[Outgoing]], Awaitable[object]]

UNDECODED_CHECK_S = 1.0
"""How often an open device that has given no reading is looked at."""
UNDECODED_BAD_FRAMES = 5
"""Bad frames with no good one before a device is reported as not decoding."""


class DeviceSupervisor:
    """Runs one device forever (until cancelled)."""

    def __init__(
        self,
        config: DeviceSection,
        emit: Emit,
        *,
        backoff: Backoff | None = None,
        driver_factory: Callable[[DeviceSection], Driver] = create_driver,
        processor: Processor | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self.health = DeviceHealth(device=config.id, driver=config.driver)
        self.processor = processor if processor is not None else processor_for(config)
        self.driver: Driver | None = None
        self._driver_factory = driver_factory
        self._bad_frames_seen = 0
        self._undecoded = False
        """Degraded because its bytes never decoded: the first reading recovers it."""

    async def run(self) -> None:
        """Open, stream, recover; returns only by cancellation."""
        log_ = log.bind(device=self.config.id, driver=self.config.driver)
        while True:
            try:
                await self._session()
            except DriverUnavailableError as exc:
                await self._failed(log_, DeviceState.UNAVAILABLE, str(exc))
            except DeviceStalledError as exc:
                await self._failed(log_, DeviceState.STALLED, str(exc))
            except GatewayError as exc:
                await self._failed(log_, DeviceState.DOWN, str(exc))
            except Exception as exc:
                log_.exception("driver crashed; restarting it")
                await self._failed(log_, DeviceState.DOWN, f"internal error: {exc!r}")
            delay = self.backoff.next_delay()
            self.health.next_retry_s = round(delay, 2)
            await self._wait_to_retry(log_, delay)
            self.health.next_retry_s = None  # retrying now: no countdown frozen in status
            self.health.restarted()

    async def _session(self) -> None:
        driver = self._driver_factory(self.config)
        self.driver = driver
        # Optional (see Processor): told only once the drafts are durable, so that dedup
        # state never covers a record the outbox refused.
        stored: Callable[[Sequence[Outgoing]], None] | None = getattr(
            self.processor, "stored", None
        )
        async with driver:
            watcher = asyncio.create_task(self._watch_undecoded(driver), name="undecoded")
            try:
                await self._stream(driver, stored)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _stream(
        self, driver: Driver, stored: Callable[[Sequence[Outgoing]], None] | None
    ) -> None:
        async for reading in driver.readings():
            self.health.last_reading = reading.summary()
            self.health.last_reading_at = reading.at.utc
            self.health.counters = driver.counters.as_dict()
            if self._undecoded or self.health.state in (
                DeviceState.STARTING,
                DeviceState.STALLED,
                DeviceState.DOWN,
                DeviceState.UNAVAILABLE,
            ):
                self._undecoded = False
                await self._recovered()
            drafts = self.processor.feed(reading)
            if drafts:
                await self.emit(drafts)
                if stored is not None:
                    stored(drafts)

    async def _watch_undecoded(self, driver: Driver) -> None:
        """Report, within seconds, a device whose bytes arrive but never decode.

        The usual cause is a wrong protocol or line setting in the config: the device
        is there, so it is not ``down``, but nothing it sends is read. It becomes
        ``degraded`` with the last bad frame as its error (logged once) until its first
        good reading.
        """
        baseline = driver.counters.bad_frames
        while self.health.state is DeviceState.STARTING or self._undecoded:
            await asyncio.sleep(UNDECODED_CHECK_S)
            counters = driver.counters
            bad = counters.bad_frames - baseline
            if self._undecoded or self.health.last_reading_at is not None:
                return
            if bad < UNDECODED_BAD_FRAMES:
                continue
            self._undecoded = True
            self.health.counters = counters.as_dict()
            error = (
                f"bytes arrive but no frame decodes ({bad} bad, 0 good): last"
                f" {counters.last_bad_frame!r}; check the protocol and line settings"
                " (gatewayctl probe on its port tells what it speaks)"
            )
            self.health.change(DeviceState.DEGRADED, error)
            log.warning(
                "device sends nothing that decodes",
                device=self.config.id,
                driver=self.config.driver,
                bad_frames=bad,
                last_bad_frame=counters.last_bad_frame,
            )
            try:
                await self.emit([self.health.draft()])
            except Exception:  # the state goes out with the next periodic refresh
                log.exception("could not record the device's state", device=self.config.id)
            return

    async def _recovered(self) -> None:
        if self.health.state is not DeviceState.STARTING:
            log.info(
                "device recovered",
                device=self.config.id,
                after_error=self.health.last_error,
                restarts=self.health.restarts_total,
            )
        else:
            log.info("device up", device=self.config.id)
        self.backoff.reset()
        self.health.next_retry_s = None
        self.health.change(DeviceState.UP)
        await self.emit([self.health.draft()])

    async def _failed(
        self, log_: structlog.typing.FilteringBoundLogger, state: DeviceState, error: str
    ) -> None:
        first = self.health.state not in (
            DeviceState.STALLED,
            DeviceState.DOWN,
            DeviceState.UNAVAILABLE,
        )
        if self.driver is not None:
            self.health.counters = self.driver.counters.as_dict()
        if self.health.change(state, error):
            if first:
                log_.warning("device failed; retrying with backoff", error=error)
            try:
                await self.emit([self.health.draft()])
            except Exception:
                # Never let reporting a failure end this task (and with it the TaskGroup
                # of every device): the state goes out with the next periodic refresh.
                log_.exception("could not record the device's state; retrying the device")

    def _presence(self, log_: structlog.typing.FilteringBoundLogger) -> Presence | None:
        if self.driver is None:
            return None
        try:
            return type(self.driver).presence(self.config)
        except Exception:
            log_.exception("driver cannot say how to see the device return; plain backoff")
            return None

    async def _wait_to_retry(
        self, log_: structlog.typing.FilteringBoundLogger, delay: float
    ) -> None:
        """Wait ``delay``, or less if the device was absent and is back.

        The backoff sleep races the driver's presence watch: a port path that exists
        again or a TCP target accepting again ends the wait at once. A device that is
        there but failing does not (see :meth:`gateway.presence.Presence.returned`),
        so it is never retried in a hot loop.
        """
        presence = self._presence(log_)
        if presence is None:
            await asyncio.sleep(delay)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        try:
            async with asyncio.timeout_at(deadline) as timer:
                await presence.returned()
        except Exception as exc:
            if isinstance(exc, TimeoutError) and timer.expired():
                return  # the backoff ran out first
            log_.exception("watching for the device failed; waiting out the backoff")
            await asyncio.sleep(max(deadline - loop.time(), 0.0))
            return
        log_.info(
            "device is back; retrying now",
            presence=repr(presence),
            backoff_s=round(delay, 2),
            early_by_s=round(deadline - loop.time(), 2),
        )

    def refresh(self) -> Draft | None:
        """Periodic state: marks an up device degraded while bad frames keep arriving."""
        if self.driver is None:
            return None
        counters = self.driver.counters
        self.health.counters = counters.as_dict()
        bad_now = counters.bad_frames - self._bad_frames_seen
        self._bad_frames_seen = counters.bad_frames
        if self.health.state in (DeviceState.UP, DeviceState.DEGRADED):
            self.health.change(DeviceState.DEGRADED if bad_now else DeviceState.UP)
        return self.health.draft()

    def stopped(self) -> Draft:
        """Final state on orderly shutdown."""
        self.health.change(DeviceState.STOPPED)
        self.health.since = datetime.now(UTC)
        return self.health.draft()
