"""E-seal readers and JT/T 808 e-locks through the whole gateway to central.

Simulators speak the real wire formats with HARDWARE.md's faults (CRC errors, noise,
duplicates, out-of-order times, no seal in range); the gateway runs as a process; a
real mosquitto carries what central receives. The reader sends the Hi-G-Tek manual's
plain alert records (no event time: alarms are told apart by the gateway's receive
time) unless a test asks for the gateway's own extended record.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from drivers.eseal.driver_jt808 import Jt808Section
from drivers.eseal.processor import JT808_ALARM_EVENTS
from drivers.eseal.readings import NoSealInRange, PositionReported, SealAlert, SealRead
from gateway.records import rfc3339
from simulators.eseal import PROTOCOL_FAULTS, TIMED_FAULTS, AlertForm, EsealSimulator
from tests.broker import Central, Mosquitto, free_port
from tests.eseal.test_durability import AUTH_CODE, alert_key, jt808_config, record_key
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"


def reader_config(tmp_path: Path, broker: Mosquitto, port: str, **extra: Any) -> Path:
    config = tmp_path / "gateway.toml"
    device = {
        "id": "seal-gate-1",
        "driver": "eseal.reader",
        "port": port,
        "poll_interval_s": 0.5,
        "silence_timeout_s": 0,
        **extra,
    }
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    return config


def keys(central: Central, topic: str) -> list[tuple[str, str, str | None]]:
    return [record_key(r["data"]) for r in central.records(topic)]


def device_state(central: Central, device: str) -> dict[str, Any]:
    states = [m.json() for m in central.snapshot() if m.topic == f"{ROOT}/device/{device}/state"]
    return dict(states[-1]["data"])


def device_time(report: PositionReported) -> str:
    """A report's terminal time as central sees it (the simulator always sends one)."""
    assert report.device_time is not None, report
    return rfc3339(report.device_time)


@pytest.mark.parametrize("form", ["plain", "extended"])
async def test_reader_with_every_fault_publishes_each_alarm_once(
    tmp_path: Path, broker: Mosquitto, central: Central, form: AlertForm
) -> None:
    """Plain (the manual's records, every fault but out-of-order times, which need
    times), and the gateway's own extended record with all of them."""
    link = tmp_path / "seal-gate-1"
    gateway = GatewayProcess(reader_config(tmp_path, broker, str(link)), tmp_path)
    faults = sorted(PROTOCOL_FAULTS["reader"] - (TIMED_FAULTS if form == "plain" else set()))
    try:
        async with EsealSimulator(
            protocol="reader", link=link, events=40, faults=faults, seed=7, speed=8,
            fault_rates={"out_of_order": 0.5}, alert_form=form,
        ) as sim:  # fmt: skip
            await gateway.start()
            await asyncio.wait_for(sim.finished.wait(), 60)
            alerts = [s for s in sim.sent if isinstance(s, SealAlert)]
            assert alerts, "the seed must produce alerts"
            assert sim.acked and set(map(id, sim.acked)) == set(map(id, alerts)), (
                "every alert acknowledged, so the reader stops repeating it"
            )
            alarms = sorted(alert_key(a) for a in alerts if a.alarm)
            events = sorted(alert_key(a) for a in alerts if not a.alarm)
            await central.wait_for(
                lambda c: (
                    len(c.records("event/seal_alarm")) >= len(alarms)
                    and len(c.records("event/seal")) >= len(events)
                ),
                30,
            )
            reads = {s.seal_id for s in sim.sent if isinstance(s, SealRead)}
            # A read garbled on the wire is gone (readers repeat alerts, not reads);
            # the read requests the driver sends bring most seals back.
            await central.wait_for(
                lambda c: (
                    len(reads & {r["data"].get("seal_id") for r in c.records("seal")})
                    >= len(reads) // 2
                ),
                30,
            )
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert sorted(keys(central, "event/seal_alarm")) == alarms, "each alarm exactly once"
    assert sorted(keys(central, "event/seal")) == events, "each other seal event exactly once"
    assert set(sim.stats.faults) == set(faults), "the seed exercised every fault"
    alarm_records = central.records("event/seal_alarm")
    assert {r["data"]["event"] for r in alarm_records} <= {"opened_without_approval", "tampered",
                                                         "wire_tampered"}  # fmt: skip
    if form == "plain":
        assert Counter(a.seal_id for a in alerts).most_common(1)[0][1] >= 2, (
            "the seed must burst one seal more than once: told apart without times"
        )
        for record in alarm_records:  # no device time: the gateway's receive time
            data = record["data"]
            assert (data["event_time"], data["sequence"]) == (None, None)
            assert record["ts"] == data["received"]
            assert "/received:" in data["dedup_key"]
        assert len({r["data"]["dedup_key"] for r in alarm_records}) == len(alarms)
    else:
        by_key = {(r["data"]["seal_id"], r["data"]["event_time"]): r for r in alarm_records}
        for alert in (a for a in alerts if a.alarm):
            assert alert.event_time is not None, "the extended record carries the time"
            record = by_key[alert.seal_id, rfc3339(alert.event_time)]
            assert record["ts"] == rfc3339(alert.event_time), "the device's time, not publish"
    if any(isinstance(s, NoSealInRange) for s in sim.sent):
        assert any(r["data"]["in_range"] is False for r in central.records("seal-gate-1/seal"))
    state = device_state(central, "seal-gate-1")
    assert state["counters"]["bad_frames"] > 0, "CRC errors and noise are counted"
    assert state["counters"]["acks_sent"] >= len(alerts)


async def test_an_alarm_raised_while_the_broker_is_down_arrives_when_it_returns(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    link = tmp_path / "seal-gate-1"
    gateway = GatewayProcess(reader_config(tmp_path, broker, str(link)), tmp_path)
    try:
        async with EsealSimulator(protocol="reader", link=link, events=60, seed=21, speed=4) as sim:
            await gateway.start()
            await central.wait_for(lambda c: bool(c.records("reading/seal-gate-1/seal")), 30)
            broker.stop()
            acked_before = len(sim.acked)
            async with asyncio.timeout(60):  # alarms stored while central cannot get them
                while sum(a.alarm for a in sim.acked[acked_before:]) < 2:
                    sim.ack_arrived.clear()
                    await sim.ack_arrived.wait()
            during = Counter(
                alert_key(a)
                for a in sim.acked[acked_before:]
                if isinstance(a, SealAlert) and a.alarm
            )
            broker.start()
            await central.wait_for(lambda c: during <= Counter(keys(c, "event/seal_alarm")), 60)
            await asyncio.wait_for(sim.finished.wait(), 60)
            alarms = Counter(alert_key(a) for a in sim.sent if isinstance(a, SealAlert) and a.alarm)
            await central.wait_for(lambda c: alarms <= Counter(keys(c, "event/seal_alarm")), 30)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert Counter(keys(central, "event/seal_alarm")) == alarms, "each alarm exactly once"


async def test_the_probe_finds_a_tcp_readers_crc_start_and_acknowledges_nothing() -> None:
    async with EsealSimulator(
        protocol="reader", tcp_port=0, seed=4, speed=8, crc_init=0x1D0F
    ) as sim:
        url = f"socket://127.0.0.1:{sim.port}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.gatewayctl", "probe", "eseal", url, "--seconds", "1",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "crc_init 0xFFFF: " in text, "the default start value was tried first"
    assert "crc_init = 0x1D0F" in text
    assert not sim.acked, "the probe is read-only: it acknowledges nothing"


async def test_reader_on_tcp_with_its_own_crc_start(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    async with EsealSimulator(
        protocol="reader", tcp_port=0, events=12, seed=4, speed=8, crc_init=0x1D0F
    ) as sim:
        url = f"socket://127.0.0.1:{sim.port}"
        gateway = GatewayProcess(reader_config(tmp_path, broker, url, crc_init=0x1D0F), tmp_path)
        try:
            await gateway.start()  # the simulator starts playing when the gateway connects
            await asyncio.wait_for(sim.finished.wait(), 60)
            alarms = sorted(alert_key(a) for a in sim.sent if isinstance(a, SealAlert) and a.alarm)
            await central.wait_for(lambda c: len(c.records("event/seal_alarm")) >= len(alarms), 30)
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    assert alarms
    assert sorted(keys(central, "event/seal_alarm")) == alarms


async def test_jt808_elock_alarms_and_positions_reach_central_once(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    port = free_port()
    config = jt808_config(tmp_path, broker, port)
    gateway = GatewayProcess(config, tmp_path)
    faults = sorted(PROTOCOL_FAULTS["jt808"])
    try:
        await gateway.start()
        async with EsealSimulator(
            protocol="jt808", tcp_port=port, events=40, faults=faults, seed=9, speed=8,
            register=True, auth_code=AUTH_CODE,
        ) as sim:  # fmt: skip
            await asyncio.wait_for(sim.finished.wait(), 60)
        reports = [s for s in sim.sent if not isinstance(s, SealRead | SealAlert | NoSealInRange)]
        alarm_reports = [r for r in reports if r.alarm]
        assert alarm_reports and {id(r) for r in alarm_reports} <= {id(a) for a in sim.acked}
        # Rising edges in the order sent: none may be missing at central.
        expected, before = set(), frozenset[str]()
        for r in reports:
            now = frozenset(JT808_ALARM_EVENTS[f] for f in r.alarms)
            expected |= {(e, device_time(r)) for e in now - before}
            before = now
        await central.wait_for(
            lambda c: expected <= {(x["data"]["event"], x["data"]["event_time"])
                                   for x in c.records("event/seal_alarm")}, 30,
        )  # fmt: skip
        await central.wait_for(lambda c: len(c.records("reading/elock-gw/position")) >= 10, 30)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    alarm_records = central.records("event/seal_alarm")
    dedup = Counter(r["data"]["dedup_key"] for r in alarm_records)
    assert dedup.most_common(1)[0][1] == 1, "duplicates and repeats are published once"
    sent_times = {device_time(r) for r in alarm_reports}
    assert {r["data"]["event_time"] for r in alarm_records} <= sent_times, "no phantom alarms"
    assert all(r["data"]["position"]["lat"] for r in alarm_records)
    positions = central.records("reading/elock-gw/position")
    assert {p["data"]["terminal"] for p in positions} == {sim.terminal}


async def test_jt808_2013_and_2019_elocks_share_the_listener_and_status_shows_both(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    port = free_port()
    config = jt808_config(tmp_path, broker, port)
    gateway = GatewayProcess(config, tmp_path)
    try:
        await gateway.start()
        old = EsealSimulator(protocol="jt808", tcp_port=port, events=12, seed=9, speed=8,
                             register=True, auth_code=AUTH_CODE,
                             terminal="013800138000")  # fmt: skip
        new = EsealSimulator(protocol="jt808", tcp_port=port, events=12, seed=10, speed=8,
                             register=True, auth_code=AUTH_CODE, terminal="13900139000",
                             jt808_version="2019")  # fmt: skip
        async with old, new:
            await asyncio.wait_for(asyncio.gather(old.finished.wait(), new.finished.wait()), 60)
        assert len(old.acked) == len(old.sent) and len(new.acked) == len(new.sent), (
            "every report answered, each in its terminal's own version"
        )
        terminals = {old.terminal, new.terminal}
        assert terminals == {"013800138000", "00000000013900139000"}
        await central.wait_for(
            lambda c: {p["data"]["terminal"] for p in c.records("elock-gw/position")} == terminals,
            30,
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.gatewayctl", "--config", str(config), "status",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert "JT/T 808 terminals by protocol version: 2013: 1, 2019: 1" in out.decode()
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    state = device_state(central, "elock-gw")
    assert state["counters"]["terminals_2013"] == 1 and state["counters"]["terminals_2019"] == 1
    assert state["last_reading"]["protocol"] in ("2013", "2019")


def test_jt808_config_presets_name_vendor_bits_only_when_asked() -> None:
    default = Jt808Section(id="x", driver="eseal.jt808", listen_port=7018).codec()
    assert "lock_cut" not in default.flags, "alarm bit 17 is no tamper by default"
    example = Jt808Section(id="x", driver="eseal.jt808", listen_port=7018,
                          flags_preset="example-elock").codec()  # fmt: skip
    assert "lock_cut" in example.alarm_flags
    added = Jt808Section(id="x", driver="eseal.jt808", listen_port=7018,
                        flags={"lock_cut": ("status", 20)}).codec()  # fmt: skip
    assert added.flags["lock_cut"] == ("status", 20) and "locked" in added.flags
    with pytest.raises(ValueError, match="unknown flags preset"):
        Jt808Section(id="x", driver="eseal.jt808", listen_port=7018, flags_preset="acme")


def test_jt808_config_rejects_an_alarm_flag_it_cannot_map(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="door_cut"):
        Jt808Section(id="x", driver="eseal.jt808", listen_port=7018, alarm_flags=["door_cut"])
    assert json.dumps(Jt808Section(id="x", driver="eseal.jt808", listen_port=7018).model_dump())
