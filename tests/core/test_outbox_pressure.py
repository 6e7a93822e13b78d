"""The outbox under pressure: a real full filesystem, a small cap over a long outage,
bad drafts and failing commits. Nothing an append was promised may be lost or hang.

Central's rule, checked here as central would: every ``seq`` from 1 to the last one is
either received or listed in an ``event/outbox_evicted`` report's ``seq_ranges``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import OutboxError, OutboxFullError
from gateway.outbox import EVICTION_TOPIC, Outbox
from gateway.records import Draft, Priority
from gateway.uplink import Uplink
from simulators.modbus import ModbusSimulator
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.core.test_outage_under_load import load_config
from tests.helpers import make_config
from tests.process import GatewayProcess

MiB = 1024 * 1024


def draft(n: int, priority: Priority, size: int = 300) -> Draft:
    return Draft(
        topic=f"event/{priority.name.lower()}",
        schema="test/1",
        device="dev",
        ts=datetime.now(UTC),
        data={"n": n, "pad": "x" * size},
        priority=priority,
    )


def covered(reports: list[dict[str, Any]]) -> set[int]:
    """Every seq some eviction report says was dropped."""
    return {
        s
        for r in reports
        for first, last in r["data"]["seq_ranges"]
        for s in range(first, last + 1)
    }


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: a real filesystem that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the filesystem says it is full."""
    chunk = bytes(64 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError:
        pass
    finally:
        os.close(fd)


async def test_a_full_disk_with_the_broker_down_loses_no_alarm_and_resumes(
    tmp_path: Path, small_fs: Path, broker: Mosquitto, central: Central
) -> None:
    broker.stop()
    config = make_config(tmp_path / "gw", broker.port)
    flips: list[bool] = []
    room_again = asyncio.Event()
    box = Outbox(
        small_fs / "outbox.sqlite3", site="haiphong-dinhvu", gateway="gate-3", max_bytes=256 * MiB
    )
    box.on_disk_full.append(flips.append)
    box.on_disk_full.append(lambda full: None if full else room_again.set())
    async with box:
        assert box.stats.reserve_bytes > 0
        fill(small_fs / "filler")
        alarms, refused = [], 0
        for n in range(3000):
            if n % 10 == 0:
                records = await box.append([draft(n, Priority.ALARM)])  # must never fail
                alarms.append(n)
                assert records[0].seq is not None
            else:
                try:
                    await box.append([draft(n, Priority.TELEMETRY, 900)])
                except OutboxFullError:
                    refused += 1
        assert flips == [True], "the full disk is reported once"
        assert box.disk_full and box.stats.disk_full_total == 1
        assert box.stats.evicted_total > 0, "telemetry made room for the alarms"
        (small_fs / "filler").unlink()
        await asyncio.wait_for(room_again.wait(), 10)
        assert flips == [True, False] and not box.disk_full
        assert box.stats.reserve_bytes > 0, "the reserve is held again"
        await box.append([draft(9999, Priority.EVENT)])
        broker.start()
        uplink = Uplink(config, box)
        connected = asyncio.Event()
        uplink.on_link.append(lambda e: connected.set() if e.kind == "connected" else None)
        async with uplink:
            await asyncio.wait_for(connected.wait(), 10)
            assert await uplink.drained(30)
        last_seq = box.stats.last_seq
    # Central's own client reconnects to the restarted broker on its own schedule.
    await central.wait_for(lambda c: any(r["seq"] == last_seq for r in c.records()), 60)
    records = central.records()
    received = {r["seq"] for r in records}
    reports = [r for r in records if r["schema"] == "outbox_evicted/1"]
    assert reports, sorted({r["schema"] for r in records})
    assert reports[-1]["data"]["by_priority"]["telemetry"] > 0
    missing = set(range(1, last_seq + 1)) - received - covered(reports)
    assert not missing, f"gaps no report covers: {sorted(missing)[:20]} of {last_seq}"
    got_alarms = sorted(
        r["data"]["n"]
        for r in records
        if r["schema"] == "test/1" and r["data"]["n"] % 10 == 0 and r["data"]["n"] < 3000
    )
    assert got_alarms == alarms, "every alarm reached central"
    assert 9999 in {r["data"].get("n") for r in records}, "the outbox resumed"


async def test_the_cap_holds_over_a_long_outage_with_one_growing_report(tmp_path: Path) -> None:
    cap = 64 * 1024
    biggest_commit = 0
    async with Outbox(
        tmp_path / "outbox.sqlite3", site="haiphong-dinhvu", gateway="gate-3", max_bytes=cap
    ) as box:
        # 60 s of a lane at telemetry rate (20 records/s), the broker away throughout.
        for n in range(1200):
            priority = (
                Priority.ALARM
                if n % 200 == 0
                else Priority.EVENT
                if n % 25 == 0
                else Priority.TELEMETRY
            )
            records = await box.append([draft(n, priority)])
            biggest_commit = max(biggest_commit, sum(len(r.payload) for r in records))
            assert box.stats.bytes <= cap + biggest_commit, f"over the cap at record {n}"
        last_seq = box.stats.last_seq
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        rows = db.execute("SELECT env_seq, topic, payload FROM records").fetchall()
    assert sum(len(p) for _, _, p in rows) <= cap + biggest_commit
    reports = [json.loads(p) for _, t, p in rows if t == EVICTION_TOPIC]
    assert len(reports) == 1, "one report that grows, not one per commit"
    data = reports[0]["data"]
    assert data["by_priority"]["telemetry"] > 1000
    assert data["superseded"], "the earlier reports it replaced are named"
    kept = {s for s, _, _ in rows}
    missing = set(range(1, last_seq + 1)) - kept - covered(reports)
    assert not missing, f"gaps no report covers: {sorted(missing)[:20]}"
    alarms = [json.loads(p)["data"]["n"] for _, t, p in rows if t == "event/alarm"]
    assert alarms == list(range(0, 1200, 200)), "alarms are never evicted"


async def test_a_bad_draft_is_refused_alone_and_its_neighbours_commit(tmp_path: Path) -> None:
    bad = Draft(
        topic="reading/x/points",
        schema="points/1",
        device="x",
        ts=datetime.now(UTC),
        data={"t": float("nan")},
        priority=Priority.ALARM,
    )
    async with Outbox(tmp_path / "o.sqlite3", site="s", gateway="g", max_bytes=MiB) as box:
        results = await asyncio.gather(
            box.append([draft(1, Priority.ALARM)]),
            box.append([bad]),
            box.append([draft(2, Priority.ALARM)]),
            return_exceptions=True,
        )
    assert isinstance(results[1], OutboxError) and "serialised" in str(results[1])
    good = [r for r in results if isinstance(r, list)]
    assert [rec.seq for batch in good for rec in batch] == [1, 2], "no seq was skipped"


async def test_a_commit_that_fails_answers_every_append_and_keeps_the_acks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Outbox(tmp_path / "o.sqlite3", site="s", gateway="g", max_bytes=MiB) as box:
        first = await box.append([draft(1, Priority.EVENT)])
        real = box._transaction
        calls = 0

        def broken_once(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("simulated fault inside the commit")
            return real(*args)

        monkeypatch.setattr(box, "_transaction", broken_once)
        box.ack(first[0].pos)
        with pytest.raises(OutboxError, match="simulated fault"):
            await asyncio.wait_for(box.append([draft(2, Priority.EVENT)]), 5)
        again = await asyncio.wait_for(box.append([draft(3, Priority.EVENT)]), 5)
        assert again[0].seq == 2
    async with Outbox(tmp_path / "o.sqlite3", site="s", gateway="g", max_bytes=MiB) as box:
        queued = await box.read_after(0, 10)
    assert [r.seq for r in queued] == [2], "the ack taken before the failure still deleted"


def statuses(central: Central) -> list[dict[str, Any]]:
    return [m.json() for m in central.snapshot() if m.topic.endswith("/status")]


@pytest.mark.slow
async def test_the_daemon_reports_a_full_disk_everywhere_and_recovers_by_itself(
    tmp_path: Path, small_fs: Path, broker: Mosquitto, central: Central
) -> None:
    data = small_fs / "data"
    async with ModbusSimulator(profile="sensors", tcp_port=0, units=range(1, 4), seed=5) as sim:
        assert sim.port is not None
        config = tmp_path / "gateway.toml"
        config.write_text(load_config(data, broker.port, sim.port, sensors=3))
        gateway = GatewayProcess(config, tmp_path)
        try:
            await gateway.start()
            await central.wait_for(lambda c: len(c.records()) >= 10, 30)
            fill(small_fs / "filler")
            await central.wait_for(lambda c: any(s.get("disk_full") for s in statuses(c)), 30)
            await central.wait_for(
                lambda c: any(r["data"].get("storage") == "disk_full" for r in c.records("/state")),
                30,
            )
            code, out = await run_ctl(config, "status", "--json")
            assert json.loads(out)["outbox"]["disk_full"] is True, out
            assert code == 1, "a full disk is a problem the technician must see"
            _, text = await run_ctl(config, "status")
            assert "DISK FULL" in text, text
            (small_fs / "filler").unlink()
            await central.wait_for(lambda c: statuses(c)[-1].get("disk_full") is False, 30)
            _, out = await run_ctl(config, "status", "--json")
            assert json.loads(out)["outbox"]["disk_full"] is False, out
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    with sqlite3.connect(data / "outbox.sqlite3") as db:
        last_seq = int(db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()[0])
    await central.wait_for(lambda c: any(r["seq"] == last_seq for r in c.records()), 30)
    records = central.records()
    reports = [r for r in records if r["schema"] == "outbox_evicted/1"]
    missing = set(range(1, last_seq + 1)) - {r["seq"] for r in records} - covered(reports)
    assert not missing, f"gaps no report covers: {sorted(missing)[:20]} of {last_seq}"
