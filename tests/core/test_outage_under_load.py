"""Broker outages under load, counted at central: every record read during one arrives.

Ten Modbus sensors (one simulator, units 1-10 over TCP) polled so that the gateway
produces about 20 records a second; the broker goes away and comes back while the
daemon keeps running. What counts is what central received, not what the outbox holds:
every ``seq`` the outbox ever committed must reach central, and the backlog must start
to flow within seconds of the broker's return, whatever the outage length.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from simulators.modbus import ModbusSimulator
from tests.broker import Central, Mosquitto
from tests.helpers import config_text
from tests.process import GatewayProcess
from tests.records import assert_chain, payloads_by_id

SENSORS = 10


def load_config(data: Path, broker_port: int, modbus_port: int, sensors: int = SENSORS) -> str:
    """Sensors (ten: ~20 records/s), each read every 0.1 s and published every 0.5 s."""
    # The shipped reconnect defaults (1 s doubling to 60 s), not the tests' quick ones:
    # how long the backlog waits after the broker's return is part of what is checked.
    text = "".join(
        line + "\n"
        for line in config_text(data, broker_port).splitlines()
        if not line.startswith("reconnect_")
    )
    for unit in range(1, sensors + 1):
        text += (
            "[[devices]]\n"
            f'id = "sensor-{unit}"\n'
            'driver = "modbus"\n'
            f'target = "tcp://127.0.0.1:{modbus_port}"\n'
            f"unit = {unit}\n"
            "telemetry_interval_s = 0.5\n"
            "[[devices.points]]\n"
            'name = "heartbeat"\n'
            "address = 258\n"
            'function = "holding"\n'
            'type = "uint16"\n'
            "interval_s = 0.1\n"
        )
    return text


def committed_seq(data: Path) -> int:
    """The outbox's last committed ``seq`` (read beside the running daemon; WAL allows it)."""
    with sqlite3.connect(data / "outbox.sqlite3") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    return int(row[0]) if row else 0


def received_seqs(central: Central) -> set[int]:
    return {int(r["seq"]) for r in central.records()}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker with mosquitto's stock in-flight quota (Receive Maximum 20)."""
    b = Mosquitto(tmp_path, stock_inflight=True)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@contextlib.asynccontextmanager
async def loaded_gateway(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> AsyncIterator[Path]:
    """The simulator and the daemon under load; yields the daemon's data dir."""
    data = tmp_path / "data"
    async with ModbusSimulator(
        profile="sensors", tcp_port=0, units=range(1, SENSORS + 1), seed=3
    ) as sim:
        config = tmp_path / "gateway.toml"
        assert sim.port is not None
        config.write_text(load_config(data, broker.port, sim.port))
        gateway = GatewayProcess(config, tmp_path)
        try:
            await gateway.start()
            await central.wait_for(lambda c: len(c.records()) >= 60, 30)
            yield data
            assert await gateway.stop(signal.SIGTERM) == 0
        finally:
            await gateway.ensure_stopped()


async def outage(broker: Mosquitto, central: Central, data: Path, seconds: float) -> float:
    """Stop the broker for ``seconds`` under load; return how long after its return the
    first record committed during the outage reached central."""
    before = committed_seq(data)
    broker.stop()
    await asyncio.sleep(seconds)  # the outage itself, not a synchronisation
    during = committed_seq(data)
    assert during > before + seconds * 10, "the devices kept producing during the outage"
    broker.start()
    back = time.monotonic()
    await central.wait_for(lambda c: any(before < s <= during for s in received_seqs(c)), 30)
    return time.monotonic() - back


async def assert_everything_arrives(central: Central, data: Path, timeout_s: float = 60) -> None:
    """Every record committed so far reaches central (counted there, by ``seq``)."""
    last = committed_seq(data)
    with contextlib.suppress(TimeoutError):
        await central.wait_for(lambda c: set(range(1, last + 1)) <= received_seqs(c), timeout_s)
    missing = sorted(set(range(1, last + 1)) - received_seqs(central))
    assert not missing, f"{len(missing)} of {last} records never reached central: {missing[:20]}"


@pytest.mark.slow
async def test_a_30_second_outage_under_load_loses_nothing_and_drains_at_once(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    async with loaded_gateway(tmp_path, broker, central) as data:
        first_backlog_s = await outage(broker, central, data, 30)
        assert first_backlog_s < 5, f"the backlog started to flow {first_backlog_s:.1f} s after"
        await assert_everything_arrives(central, data)
    assert_chain(central.records(), payloads_by_id(central.snapshot()))


@pytest.mark.slow
async def test_repeated_short_outages_under_load_lose_nothing(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    async with loaded_gateway(tmp_path, broker, central) as data:
        for _ in range(4):
            await outage(broker, central, data, 3)
            await assert_everything_arrives(central, data)
