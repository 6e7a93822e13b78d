"""Family services restarted with backoff, and facts delivered between families."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.backoff import Backoff
from gateway.errors import DeviceIOError
from gateway.facts import Fact, FactBus, VehicleLeftScale, VehicleOnScale
from gateway.readings import Stamp
from gateway.services import ServiceSupervisor


class FlakyEngine:
    """Fails to start ``failures`` times (as an OCR engine missing its model would)."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0

    async def run(self, ready: Callable[[], None]) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise DeviceIOError(f"engine failed to load (attempt {self.starts})")
        ready()
        await asyncio.Event().wait()

    def stats(self) -> dict[str, Any]:
        return {"starts": self.starts}


async def test_a_service_that_fails_at_start_is_retried_with_backoff_and_reported() -> None:
    engine = FlakyEngine(failures=2)
    supervisor = ServiceSupervisor(engine, backoff=Backoff(base_s=0.05, cap_s=0.1))
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(10):
            await supervisor.settled.wait()
            first = supervisor.as_dict()
            await supervisor.ready.wait()
        up = supervisor.as_dict()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert first["state"] == "down" and first["last_error"] == "engine failed to load (attempt 1)"
    assert up["state"] == "up" and up["restarts_total"] == 2 and up["starts"] == 3
    assert up["last_error"] == "engine failed to load (attempt 2)"  # kept for the technician


def test_facts_reach_subscribers_of_their_type_and_a_failing_subscriber_harms_no_one() -> None:
    bus = FactBus()
    on: list[Fact] = []
    every: list[Fact] = []

    def broken(fact: Fact) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(VehicleOnScale, broken)
    bus.subscribe(VehicleOnScale, on.append)
    bus.subscribe(Fact, every.append)
    at = Stamp.now()
    arrived = VehicleOnScale(device="scale-1", at=at, weight_kg=31_250.0)
    left = VehicleLeftScale(device="scale-1", at=at)
    bus.publish(arrived)
    bus.publish(left)
    assert on == [arrived]
    assert every == [arrived, left]
    assert bus.subscriber_errors_total == 1
