"""Modbus drivers against the pymodbus-served simulator: TCP and RTU over ptys."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.codec import Point, decode, encode, named_bits
from drivers.modbus.driver import ModbusDriver, ModbusSection
from drivers.modbus.readings import PointsRead
from drivers.scale.driver_modbus import ModbusScaleDriver, ModbusScaleSection
from drivers.scale.processor import WeighingProcessor, WeighingSettings
from drivers.scale.readings import WeightMeasured
from gateway.backoff import Backoff
from gateway.errors import FrameError
from gateway.records import Draft, Outgoing
from gateway.supervisor import DeviceSupervisor, Emit
from simulators.modbus import SENSOR_POINTS, ModbusSimulator

# -- pure register conversion ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "word_order", "byte_order", "words", "value"),
    [
        ("int16", "big", "big", [0xFFFE], -2),
        ("uint16", "big", "big", [0xFFFE], 65534),
        ("int32", "big", "big", [0x0001, 0x0002], 65538),
        ("int32", "little", "big", [0x0002, 0x0001], 65538),
        ("int32", "big", "big", [0xFFFF, 0xCFC7], -12345),
        ("uint32", "big", "big", [0x8000, 0x0000], 2**31),
        ("uint32", "big", "little", [0x0080, 0x0000], 2**31),
        ("float32", "big", "big", [0x4640, 0xE400], 12345.0),
        ("float32", "little", "big", [0xE400, 0x4640], 12345.0),
    ],
)
def test_each_type_and_word_order_decodes(
    kind: Any, word_order: Any, byte_order: Any, words: list[int], value: float
) -> None:
    point = Point(name="p", address=0, type=kind, word_order=word_order, byte_order=byte_order)
    assert decode(point, words) == value
    assert encode(point, value) == words


def test_a_nan_float_register_is_a_frame_error_not_a_value() -> None:
    point = Point(name="t", address=0, type="float32")
    with pytest.raises(FrameError, match="not a finite number"):
        decode(point, [0x7FC0, 0x0000])
    with pytest.raises(FrameError):
        decode(point, [0x7F80, 0x0000])
    assert decode(point, [0x41AB, 0xC28F]) == 21.47  # float32 noise dropped


def test_scale_offset_and_named_bits() -> None:
    point = Point(name="t", address=0, type="int16", scale=0.1, offset=-40.0)
    assert decode(point, [655]) == pytest.approx(25.5)
    status = Point(name="s", address=8, bits={"unstable": 5, "overload": 9})
    assert named_bits(status, 1 << 5) == {"unstable": True, "overload": False}


# -- helpers -------------------------------------------------------------------------------


async def weigh(driver: ModbusScaleDriver, sim: ModbusSimulator) -> list[dict[str, Any]]:
    processor = WeighingProcessor("scale-m", WeighingSettings(stable_window_s=0.6))
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        async for reading in driver.readings():
            assert isinstance(reading, WeightMeasured)
            events.extend(d.data for d in processor.feed(reading) if d.topic == "event/weighing")

    async with driver:
        task = asyncio.create_task(consume())
        await sim.finished.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return events


def scale_config(target: str, **extra: Any) -> ModbusScaleSection:
    return ModbusScaleSection(
        id="scale-m", driver="scale.modbus", target=target, stable_window_s=0.6, **extra
    )


@pytest.mark.parametrize(
    ("profile", "preset"),
    [("scale-int32", "generic-int32"), ("scale-float32", "indicator-float32")],
)
async def test_modbus_scale_over_tcp_weighs_every_truck(profile: str, preset: str) -> None:
    async with ModbusSimulator(profile=profile, tcp_port=0, trucks=2, speed=3, seed=4) as sim:
        driver = ModbusScaleDriver(scale_config(f"tcp://127.0.0.1:{sim.port}", preset=preset))
        events = await weigh(driver, sim)
    assert [e["weight"] for e in events] == sim.truck_weights_kg
    assert all(e["status"] == "complete" for e in events)


async def test_swapped_words_are_read_right_with_the_configured_word_order() -> None:
    async with ModbusSimulator(
        profile="scale-int32", tcp_port=0, trucks=1, speed=3, seed=8, faults=["swap"]
    ) as sim:
        driver = ModbusScaleDriver(
            scale_config(
                f"tcp://127.0.0.1:{sim.port}",
                weight=Point(name="gross", address=0x50, type="int32", word_order="little"),
                status=Point(name="status", address=0x08, bits={"unstable": 5, "overload": 9}),
            )
        )
        events = await weigh(driver, sim)
    assert [e["weight"] for e in events] == sim.truck_weights_kg


async def test_rtu_over_a_pty_with_crc_errors_counts_them_and_still_weighs(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    async with ModbusSimulator(
        profile="scale-int32",
        rtu_link=link,
        trucks=2,
        speed=3,
        seed=2,
        faults=["crc"],
        fault_rates={"crc": 0.05},
    ) as sim:
        driver = ModbusScaleDriver(
            scale_config(str(link), preset="generic-int32", timeout_s=0.2, max_timeouts=3)
        )
        events = await weigh(driver, sim)
    assert driver.counters.extra["crc_errors"] > 0
    assert [e["weight"] for e in events] == sim.truck_weights_kg


async def test_exception_codes_are_reported_per_point_and_the_device_stays_up() -> None:
    async with ModbusSimulator(profile="sensors", tcp_port=0, seed=1) as sim:
        config = ModbusSection(
            id="io-1",
            driver="modbus",
            target=f"tcp://127.0.0.1:{sim.port}",
            points=(SENSOR_POINTS[1], Point(name="missing", address=0x4000, interval_s=0.2)),
        )
        driver = ModbusDriver(config)
        async with driver:
            async for reading in driver.readings():
                assert isinstance(reading, PointsRead)
                first = reading
                break
    assert first.values["missing"] is None
    assert "0x02 (illegal data address)" in first.errors["missing"]
    assert isinstance(first.values["heartbeat"], int)
    assert driver.counters.extra["exceptions"] >= 1


# -- three slaves on one RS-485 line ----------------------------------------------------------


async def test_a_dead_slave_never_stalls_the_others_on_a_shared_line(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    rounds: dict[str, list[float]] = {"io-1": [], "io-2": [], "io-3": []}
    states: dict[str, list[str]] = {k: [] for k in rounds}
    loop = asyncio.get_running_loop()
    enough = asyncio.Event()
    warmed_up = asyncio.Event()
    silenced_at: list[float] = []

    def counter(device: str) -> Emit:
        async def emit(drafts: Sequence[Outgoing]) -> None:
            for d in drafts:
                if isinstance(d, Draft) and d.topic.endswith("/state"):
                    states[device].append(d.data["state"])
                else:
                    rounds[device].append(loop.time())
            if all(len(r) >= 5 for r in rounds.values()):
                warmed_up.set()
            if (
                silenced_at
                and all(sum(t > silenced_at[0] for t in rounds[k]) >= 20 for k in ("io-1", "io-3"))
                and "down" in states["io-2"]
            ):
                enough.set()

        return emit

    async with ModbusSimulator(profile="sensors", rtu_link=link, units=(1, 2, 3), seed=3) as sim:
        supervisors = [
            DeviceSupervisor(
                ModbusSection(
                    id=f"io-{u}",
                    driver="modbus",
                    target=str(link),
                    unit=u,
                    timeout_s=0.3,
                    telemetry_interval_s=0,
                    points=(Point(name="heartbeat", address=0x0102, interval_s=0.1),),
                ),
                counter(f"io-{u}"),
                backoff=Backoff(base_s=2, cap_s=4),
            )
            for u in (1, 2, 3)
        ]
        tasks = [asyncio.create_task(s.run()) for s in supervisors]
        try:
            async with asyncio.timeout(20):
                await warmed_up.wait()
                sim.silence_unit(2)
                silenced_at.append(loop.time())
                await enough.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for device in ("io-1", "io-3"):
        after = [t for t in rounds[device] if t > silenced_at[0]]
        gaps = [b - a for a, b in itertools.pairwise(after)]
        assert max(gaps) < 1.0, f"{device} stalled {max(gaps):.2f} s behind the dead slave"
    assert states["io-2"][-1] == "down"
    assert "no answer" in (supervisors[1].health.last_error or "")


# -- technician's CLI ----------------------------------------------------------------------


async def run_ctl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.gatewayctl",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_gatewayctl_modbus_read_and_scan() -> None:
    async with ModbusSimulator(profile="sensors", tcp_port=0, units=(1, 5), seed=1) as sim:
        target = f"tcp://127.0.0.1:{sim.port}"
        code, out = await run_ctl(
            "modbus", "read", target, "--unit", "5", "--address", "0x0100", "--type", "float32"
        )
        assert code == 0, out
        assert "holding 0x0100 (256)" in out
        temperature = float(out.split("float32")[-1])
        assert temperature == pytest.approx(sim.values["temperature"], abs=1.0)
        code, out = await run_ctl("modbus", "scan", target, "--units", "1-6", "--address", "0x0102")
    assert code == 0, out
    assert "unit   1:" in out
    assert "unit   5:" in out
    assert "2 unit(s) answered of 6" in out
