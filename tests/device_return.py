"""A scale that goes away and comes back, timed at central.

Shared by ``tests/core/test_device_return.py`` and ``bench/device_return.py``: the daemon
runs as a process, a Toledo scale simulator on a pty is stopped (its pty and link
vanish, as when a USB adapter is pulled) and started again after each absence, and
what is timed is how long after its link exists again the next
``reading/{id}/weight`` reaches central.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.scale import ScaleSimulator
from tests.broker import Central
from tests.helpers import config_text
from tests.process import GatewayProcess

DEVICE = "scale-1"


def scale_device(link: Path) -> dict[str, Any]:
    """The scale's ``[[devices]]`` entry (default backoff: 1 s doubling to 60 s)."""
    return {
        "id": DEVICE,
        "driver": "scale.toledo",
        "port": str(link),
        "telemetry_interval_s": 0.5,
        "silence_timeout_s": 3.0,
    }


def read_after(central: Central, moment: datetime) -> bool:
    """Whether a weight reading taken after ``moment`` has reached central."""
    return any(
        datetime.fromisoformat(r["ts"]) > moment
        for r in central.records(f"reading/{DEVICE}/weight")
    )


@dataclass
class Returns:
    """What :func:`time_returns` measured."""

    seconds: list[float]
    """Per absence: from the simulator's link existing again to a new reading at central."""
    exit_code: int
    """The daemon's, after SIGTERM at the end."""
    log: Path
    """The daemon's JSON log lines."""


async def time_returns(
    workdir: Path,
    broker_port: int,
    central: Central,
    absences: Sequence[float],
    *,
    timeout_s: float = 90.0,
) -> Returns:
    """Run the daemon with the scale there, then take the scale away for each absence."""
    link = workdir / "ttyUSB-scale"
    config = workdir / "gateway.toml"
    config.write_text(config_text(workdir / "data", broker_port, [scale_device(link)]))
    gateway = GatewayProcess(config, workdir)

    def simulator(seed: int) -> ScaleSimulator:
        return ScaleSimulator(protocol="toledo", link=link, trucks=None, seed=seed)

    seconds: list[float] = []
    try:
        started = datetime.now(UTC)
        async with simulator(0):
            await gateway.start()
            await central.wait_for(functools.partial(read_after, moment=started), timeout_s)
        for seed, absence in enumerate(absences, 1):
            gone = datetime.now(UTC)  # readings after this can only come from the next one
            await asyncio.sleep(absence)  # the absence itself
            async with simulator(seed):
                back = time.monotonic()
                await central.wait_for(functools.partial(read_after, moment=gone), timeout_s)
                seconds.append(time.monotonic() - back)
        exit_code = await gateway.stop()
    finally:
        await gateway.ensure_stopped()
    return Returns(seconds, exit_code, gateway.log)
