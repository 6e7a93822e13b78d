"""Serial scale driver + simulator over a real pty, for every protocol; supervisor recovery."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.scale.driver import ScaleDriverName, ScaleSection, SerialScaleDriver
from drivers.scale.processor import WeighingProcessor, WeighingSettings
from gateway.backoff import Backoff
from gateway.records import Draft, Outgoing
from gateway.supervisor import DeviceSupervisor
from simulators.scale import ScaleSimulator

DRIVERS: dict[str, ScaleDriverName] = {
    "toledo": "scale.toledo",
    "sma": "scale.sma",
    "xk3190": "scale.xk3190",
    "mtsics": "scale.mtsics",
}
PROTOCOLS = list(DRIVERS)


def scale_config(protocol: str, link: Path, **extra: Any) -> ScaleSection:
    return ScaleSection(
        id="scale-1",
        driver=DRIVERS[protocol],
        port=str(link),
        stable_window_s=0.6,
        silence_timeout_s=2.0,
        **extra,
    )


async def weigh(driver: SerialScaleDriver, sim: ScaleSimulator) -> list[dict[str, Any]]:
    """Read until the simulator is done; return the weighing events."""
    processor = WeighingProcessor("scale-1", WeighingSettings(stable_window_s=0.6))
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        async for reading in driver.readings():
            events.extend(d.data for d in processor.feed(reading) if d.topic == "event/weighing")

    async with driver:
        reader = asyncio.create_task(consume())
        await sim.finished.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return events


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_each_protocol_gives_one_weighing_per_truck(tmp_path: Path, protocol: str) -> None:
    link = tmp_path / "ttyS-sim"
    async with ScaleSimulator(protocol=protocol, link=link, trucks=2, speed=3.0, seed=3) as sim:
        driver = SerialScaleDriver(scale_config(protocol, link))
        events = await weigh(driver, sim)
    assert [e["weight"] for e in events] == sim.truck_weights_kg
    assert all(e["status"] == "complete" for e in events)
    assert driver.counters.bad_frames == 0
    assert driver.counters.readings > 20


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_garbled_frames_are_counted_and_skipped(tmp_path: Path, protocol: str) -> None:
    link = tmp_path / "ttyS-sim"
    async with ScaleSimulator(
        protocol=protocol,
        link=link,
        trucks=2,
        speed=3.0,
        seed=21,
        faults=["noise", "truncate", "checksum"],
        fault_rates={"noise": 0.1, "truncate": 0.1},
    ) as sim:
        driver = SerialScaleDriver(scale_config(protocol, link))
        events = await weigh(driver, sim)
    assert driver.counters.bad_frames > 0
    assert [e["weight"] for e in events] == sim.truck_weights_kg


async def test_a_disconnected_scale_is_reported_and_recovered(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-sim"
    emitted: list[Draft] = []
    recovered = asyncio.Event()

    async def emit(drafts: Sequence[Outgoing]) -> None:
        emitted.extend(d for d in drafts if isinstance(d, Draft))  # a scale sends no media
        states = [d.data["state"] for d in emitted if d.topic.endswith("/state")]
        if "down" in states and states[-1] == "up":
            recovered.set()

    async with ScaleSimulator(
        protocol="toledo",
        link=link,
        trucks=None,
        speed=2.0,
        seed=1,
        faults=["disconnect"],
        fault_rates={"disconnect": 0.05},
    ):
        supervisor = DeviceSupervisor(
            scale_config("toledo", link), emit, backoff=Backoff(base_s=0.2, cap_s=0.5)
        )
        task = asyncio.create_task(supervisor.run())
        try:
            async with asyncio.timeout(30):
                await recovered.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    down = next(d.data for d in emitted if d.topic.endswith("/state") and d.data["state"] == "down")
    assert down["last_error"]
    assert supervisor.health.restarts_total >= 1


async def test_a_missing_port_is_down_with_a_clear_error(tmp_path: Path) -> None:
    emitted: list[Draft] = []
    failed = asyncio.Event()

    async def emit(drafts: Sequence[Outgoing]) -> None:
        emitted.extend(d for d in drafts if isinstance(d, Draft))  # a scale sends no media
        failed.set()

    supervisor = DeviceSupervisor(
        scale_config("toledo", tmp_path / "no-such-tty"), emit, backoff=Backoff(base_s=5, cap_s=5)
    )
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(5):
            await failed.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    state = emitted[0].data
    assert state["state"] == "down"
    assert "no-such-tty" in state["last_error"]
    assert emitted[0].retain


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gatewayctl_probe_serial_names_the_protocol(tmp_path: Path, protocol: str) -> None:
    link = tmp_path / "ttyS-probe"
    async with ScaleSimulator(protocol=protocol, link=link, trucks=None, speed=1.0, seed=2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.gatewayctl",
            "probe",
            "serial",
            str(link),
            "--seconds",
            "1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"verdict: {protocol} at" in text
    assert f'driver = "scale.{protocol}"' in text


async def test_gatewayctl_probe_serial_on_a_silent_port(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.gatewayctl",
            "probe",
            "serial",
            os.ttyname(slave),
            "--seconds",
            "0.2",
            "--baudrate",
            "9600",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1
    assert "silence at every speed" in out.decode()
