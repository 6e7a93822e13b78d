"""The whole gateway as a process: simulated scale on a pty -> daemon -> mosquitto -> central."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulators.scale import ScaleSimulator
from tests.broker import Central, Mosquitto
from tests.helpers import config_text
from tests.process import GatewayProcess
from tests.records import assert_chain, payloads_by_id

ROOT = "customs/haiphong-dinhvu/gate-3"


def weights(central: Central) -> list[float]:
    return [
        r["data"]["weight"]
        for r in central.records("event/weighing")
        if r["data"]["status"] == "complete"
    ]


@pytest.fixture
async def gateway_setup(tmp_path: Path, broker: Mosquitto) -> tuple[Path, Path]:
    link = tmp_path / "scale-1"
    data = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(
            data,
            broker.port,
            [
                {
                    "id": "scale-1",
                    "driver": "scale.toledo",
                    "port": str(link),
                    "baudrate": 9600,
                    "telemetry_interval_s": 0.5,
                    "stable_window_s": 1.0,
                    "silence_timeout_s": 3.0,
                }
            ],
        )
    )
    return config, link


async def run_ctl(config: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.gatewayctl",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_trucks_are_weighed_and_reach_central_then_clean_shutdown(
    tmp_path: Path, gateway_setup: tuple[Path, Path], central: Central
) -> None:
    config, link = gateway_setup
    gateway = GatewayProcess(config, tmp_path)
    try:
        async with ScaleSimulator(protocol="toledo", link=link, trucks=3, speed=2.0, seed=7) as sim:
            await gateway.start()
            code, out = await run_ctl(config, "status", "--json")
            assert code in (0, 1), out
            status = json.loads(out)
            assert status["gateway"]["root"] == ROOT
            assert "scale-1" in status["devices"]
            tail = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.gatewayctl",
                "--config",
                str(config),
                "tail",
                "--json",
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                assert tail.stdout is not None
                line = await asyncio.wait_for(tail.stdout.readline(), 20)
                assert json.loads(line)["record"]["site"] == "haiphong-dinhvu"
            finally:
                tail.terminate()
                await tail.wait()
            plain = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.gatewayctl", "--config", str(config), "tail",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert plain.stdout is not None
                shown = await asyncio.wait_for(plain.stdout.readline(), 20)
                assert b" scale-1 " in shown, "each line names its device"
            finally:
                plain.terminate()
                await plain.wait()
            await central.wait_for(lambda c: len(weights(c)) == 3, 60)
            assert weights(central) == sim.truck_weights_kg
            code, out = await run_ctl(config, "status")
            assert "scale-1" in out, out
            assert "UP" in out, out
        assert await gateway.stop(signal.SIGTERM) == 0
    finally:
        await gateway.ensure_stopped()
    assert "READY=1" in "".join(gateway.notes)
    assert "STOPPING=1" in "".join(gateway.notes)
    assert any("WATCHDOG=1" in n for n in gateway.notes)
    messages = central.snapshot()
    statuses = [json.loads(m.payload)["state"] for m in messages if m.topic == f"{ROOT}/status"]
    assert statuses[-1] == "offline"
    states = [
        json.loads(m.payload)["data"]["state"]
        for m in messages
        if m.topic == f"{ROOT}/device/scale-1/state"
    ]
    assert states[:2] == ["starting", "up"], "published at start, then when it reads"
    assert states[-1] == "stopped"
    assert all(
        m.retain is False or m.topic.endswith(("/state", "/status", "/key")) for m in messages
    )
    records = central.records()
    assert_chain(records, payloads_by_id(messages))
    weighing = central.records("event/weighing")[0]
    assert weighing["schema"] == "weighing/1"
    assert weighing["device"] == "scale-1"
    assert set(weighing) == {
        "schema",
        "id",
        "seq",
        "ts",
        "site",
        "gateway",
        "device",
        "data",
        "prev",
        "sig",
    }


@pytest.mark.slow
async def test_a_20_second_broker_outage_loses_nothing(
    tmp_path: Path, gateway_setup: tuple[Path, Path], broker: Mosquitto, central: Central
) -> None:
    config, link = gateway_setup
    gateway = GatewayProcess(config, tmp_path)
    try:
        async with ScaleSimulator(
            protocol="toledo", link=link, trucks=6, speed=2.0, seed=11
        ) as sim:
            await gateway.start()
            await central.wait_for(lambda c: len(weights(c)) >= 1, 60)
            broker.stop()
            await asyncio.sleep(20)  # the outage itself, not a synchronisation
            broker.start()
            await central.wait_for(lambda c: len(weights(c)) == 6, 90)
            assert weights(central) == sim.truck_weights_kg
            await sim.finished.wait()
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    records = central.records()
    assert records[0]["seq"] == 1
    assert_chain(records, payloads_by_id(central.snapshot()))


@pytest.mark.slow
async def test_sigkill_mid_stream_then_restart_loses_nothing(
    tmp_path: Path, gateway_setup: tuple[Path, Path], central: Central
) -> None:
    config, link = gateway_setup
    gateway = GatewayProcess(config, tmp_path)
    try:
        async with ScaleSimulator(protocol="toledo", link=link, trucks=4, speed=2.0, seed=5):
            await gateway.start()
            await central.wait_for(lambda c: len(weights(c)) >= 1, 60)
            assert await gateway.stop(signal.SIGKILL) == -signal.SIGKILL
            await central.wait_for(
                lambda c: any(
                    m.topic == f"{ROOT}/status" and json.loads(m.payload)["state"] == "offline"
                    for m in c.snapshot()
                ),
                10,
            )  # the Last Will
            with sqlite3.connect(tmp_path / "data" / "outbox.sqlite3") as db:
                last_seq = int(
                    db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
                )
            await gateway.start()
            await central.wait_for(lambda c: len(c.records()) >= last_seq, 30)
            await central.wait_for(lambda c: len(weights(c)) >= 3, 90)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    records = central.records()
    assert [r["seq"] for r in records][:last_seq] == list(range(1, last_seq + 1))
    assert_chain(records, payloads_by_id(central.snapshot()))


def loaded_since(central: Central, after_seq: int, *, stable: bool = False) -> list[dict[str, Any]]:
    """Weight telemetry above min_weight_kg (200) recorded after ``after_seq`` (stable only)."""
    return [
        r
        for r in central.records("reading/scale-1/weight")
        if r["seq"] > after_seq
        and (r["data"]["weight_kg"] or 0) >= 200
        and (r["data"]["stable"] or not stable)
    ]


def loaded_at_least(n: int, after_seq: int, *, stable: bool = False) -> Callable[[Central], bool]:
    """A :meth:`Central.wait_for` predicate: ``n`` or more :func:`loaded_since` records."""
    return lambda c: len(loaded_since(c, after_seq, stable=stable)) >= n


def weighings_beyond(n: int) -> Callable[[Central], bool]:
    """A :meth:`Central.wait_for` predicate: more than ``n`` weighing events."""
    return lambda c: len(c.records("event/weighing")) > n


@pytest.mark.slow
async def test_restarts_with_a_truck_on_the_scale_give_one_weighing_from_its_start(
    tmp_path: Path, gateway_setup: tuple[Path, Path], central: Central
) -> None:
    config, link = gateway_setup
    gateway = GatewayProcess(config, tmp_path)
    kill, term = signal.SIGKILL, signal.SIGTERM
    stops = [(kill, kill), (kill, kill), (term, term)]  # per truck: driving on, standing
    driving_on: list[dict[str, Any]] = []
    try:
        async with ScaleSimulator(
            protocol="toledo", link=link, trucks=len(stops), speed=1.0, seed=23
        ) as sim:
            await gateway.start()
            for on_ramp, on_plateau in stops:
                done = central.records("event/weighing")
                after, count = (done[-1]["seq"] if done else 0), len(done)
                await central.wait_for(loaded_at_least(1, after), 30)
                driving_on.append(loaded_since(central, after)[0])
                await gateway.stop(on_ramp)
                await gateway.start()
                # Standing 1.5 s or more of its 3 s (stable_window_s is 1): what a restart
                # leaves of the plateau is too short to be a weight by itself.
                await central.wait_for(loaded_at_least(4, after, stable=True), 30)
                await gateway.stop(on_plateau)
                await gateway.start()
                await central.wait_for(weighings_beyond(count), 30)
            await sim.finished.wait()
        assert await gateway.stop() == 0  # drained: nothing else is on its way
    finally:
        await gateway.ensure_stopped()
    weighings = central.records("event/weighing")
    assert [w["data"]["status"] for w in weighings] == ["complete"] * len(stops)
    assert weights(central) == sim.truck_weights_kg
    for weighing, first in zip(weighings, driving_on, strict=True):
        assert weighing["data"]["start"] <= first["ts"], "the start seen before the restarts"
