"""The durable outbox: sequence, hash chain, durability across reopen, bounded eviction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import OutboxError, OutboxFullError
from gateway.outbox import Outbox, seq_ranges
from gateway.records import GENESIS, Draft, MediaDraft, Outgoing, Priority, envelope, uuid7
from gateway.uplink import Uplink
from tests.broker import Central, Mosquitto
from tests.helpers import make_config


def draft(priority: Priority = Priority.EVENT, size: int = 10, topic: str = "event/test") -> Draft:
    return Draft(
        topic=topic,
        schema="test/1",
        device="dev-1",
        ts=datetime.now(UTC),
        data={"blob": "x" * size},
        priority=priority,
    )


def outbox(path: Path, max_bytes: int = 10_000_000) -> Outbox:
    return Outbox(path / "outbox.sqlite3", site="site-a", gateway="gw-1", max_bytes=max_bytes)


async def test_records_get_increasing_seq_and_a_hash_chain(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        first = await box.append([draft(), draft()])
        second = await box.append([draft()])
    records = first + second
    assert [r.seq for r in records] == [1, 2, 3]
    bodies = [json.loads(r.payload) for r in records]
    assert bodies[0]["prev"] == GENESIS
    assert bodies[1]["prev"] == hashlib.sha256(records[0].payload).hexdigest()
    assert bodies[2]["prev"] == hashlib.sha256(records[1].payload).hexdigest()
    assert {b["site"] for b in bodies} == {"site-a"}
    assert bodies[0]["schema"] == "test/1"
    assert bodies[0]["device"] == "dev-1"
    assert bodies[0]["ts"].endswith("Z")
    assert len({b["id"] for b in bodies}) == 3


async def test_sequence_and_chain_continue_after_reopen(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        before = await box.append([draft(), draft()])
    async with outbox(tmp_path) as box:
        assert box.stats.depth == 2
        pending = await box.read_after(0, 10)
        after = await box.append([draft()])
    assert [r.payload for r in pending] == [r.payload for r in before]
    assert after[0].seq == 3
    assert json.loads(after[0].payload)["prev"] == before[-1].digest


async def test_acknowledged_records_are_deleted_durably(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        records = await box.append([jpeg_media(), draft(), jpeg_media(), draft(), draft()])
        # Media take a queue position but no seq: from here on the two numbers differ,
        # and an acknowledgement names the position.
        assert [(r.pos, r.seq) for r in records] == [(1, None), (2, 1), (3, None), (4, 2), (5, 3)]
        box.ack(records[1].pos)
        box.ack(records[3].pos)
        pending = await box.read_after(0, 10)
        assert [r.pos for r in pending] == [1, 3, 5], "acknowledged: never read again"
    async with outbox(tmp_path) as box:
        left = await box.read_after(0, 10)
        assert [(r.pos, r.seq) for r in left] == [(1, None), (3, None), (5, 3)]
        assert box.stats.depth == 3


async def test_over_the_cap_telemetry_goes_first_and_alarms_never(tmp_path: Path) -> None:
    async with outbox(tmp_path, max_bytes=64 * 1024) as box:
        alarms = await box.append([draft(Priority.ALARM, 2000) for _ in range(5)])
        events = await box.append([draft(Priority.EVENT, 2000) for _ in range(5)])
        await box.append([draft(Priority.TELEMETRY, 2000) for _ in range(30)])
        # over the cap now: the oldest telemetry must have gone, nothing else
        kept = {r.seq for r in await box.read_after(0, 1000)}
        assert {r.seq for r in alarms} <= kept
        assert {r.seq for r in events} <= kept
        assert box.stats.evicted_total > 0
        assert box.stats.bytes <= 64 * 1024 + 2500  # plus the eviction report itself
        # flood with alarms: events may go, alarms never
        more = await box.append([draft(Priority.ALARM, 2000) for _ in range(40)])
        kept = {r.seq for r in await box.read_after(0, 1000)}
        assert {r.seq for r in alarms + more} <= kept
        assert not kept & {r.seq for r in events}
    async with outbox(tmp_path, max_bytes=64 * 1024) as box:  # reopened: reports committed
        reports = [
            json.loads(r.payload)
            for r in await box.read_after(0, 1000)
            if r.topic == "event/outbox_evicted"
        ]
    assert reports, "eviction must be reported as an event"
    assert sum(r["data"]["count"] for r in reports) >= 30
    assert reports[0]["data"]["by_priority"].get("telemetry", 0) > 0


def test_seq_ranges_compress_runs() -> None:
    assert seq_ranges([5, 1, 2, 3, 9, 10]) == [[1, 3], [5, 5], [9, 10]]


@pytest.mark.parametrize("count", [2, 50])
async def test_concurrent_appends_share_one_commit_in_the_order_issued(
    tmp_path: Path, count: int
) -> None:
    """Appends issued before the commit task first runs all wait for it, and it writes
    them in one transaction (one fsync), each with its seq in the order it was issued."""
    async with outbox(tmp_path) as box:
        results = await asyncio.gather(
            *(box.append([draft(topic=f"event/n{n}")]) for n in range(count))
        )
        assert box.stats.commits_total == 1
    # gather answers in the order the appends were issued: append n got seq n + 1
    assert [r[0].seq for r in results] == list(range(1, count + 1))
    async with outbox(tmp_path) as box:
        stored = await box.read_after(0, count)
    assert [r.topic for r in stored] == [f"event/n{n}" for n in range(count)]


async def test_appends_arriving_during_a_commit_are_grouped_into_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    started, release = asyncio.Event(), threading.Event()
    async with outbox(tmp_path) as box:
        commit_sync = box._commit_sync

        def slow_commit(groups: list[Sequence[Outgoing]], acked: list[int]) -> Any:
            loop.call_soon_threadsafe(started.set)
            release.wait(10)
            return commit_sync(groups, acked)

        monkeypatch.setattr(box, "_commit_sync", slow_commit)
        first = asyncio.ensure_future(box.append([draft(topic="event/first")]))
        await started.wait()  # the first commit is running on the SQLite thread
        later = asyncio.gather(*(box.append([draft(topic=f"event/n{n}")]) for n in range(20)))
        await asyncio.sleep(0)  # each of the 20 has queued its draft
        release.set()
        results = [await first, *await later]
        assert box.stats.commits_total == 2, "21 appends: the first alone, then the 20 together"
    assert [r[0].seq for r in results] == list(range(1, 22))
    assert [r[0].topic for r in results[1:]] == [f"event/n{n}" for n in range(20)]


async def test_a_full_disk_evicts_telemetry_keeps_alarms_and_is_reported(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        assert box._db is not None
        # SQLITE_FULL, the same error a full disk gives, from a page limit on this database.
        await box._run(box._db.execute, "PRAGMA max_page_count = 60")
        telemetry = [
            r.seq for _ in range(300) for r in await box.append([draft(Priority.TELEMETRY, 900)])
        ]
        assert len(telemetry) == 300, "telemetry makes room for itself by evicting older telemetry"
        assert box.stats.disk_full_total >= 1
        kept = {r.seq for r in await box.read_after(0, 10_000)}
        assert telemetry[0] not in kept and telemetry[-1] in kept
        alarms: list[int | None] = []
        with pytest.raises(OutboxFullError, match="disk full"):
            for _ in range(300):
                alarms += [r.seq for r in await box.append([draft(Priority.ALARM, 900)])]
        kept = {r.seq for r in await box.read_after(0, 10_000)}
        assert set(alarms) <= kept, "alarms are never evicted, even when the disk is full"
        assert not kept & set(telemetry), "all telemetry went before the alarms were refused"
        assert box.stats.last_error is not None


async def test_a_record_that_is_not_json_is_refused_and_the_outbox_carries_on(
    tmp_path: Path,
) -> None:
    bad = Draft(
        topic="reading/x/points",
        schema="points/1",
        device="x",
        ts=datetime.now(UTC),
        data={"values": {"t": float("nan")}},
        priority=Priority.TELEMETRY,
    )
    async with outbox(tmp_path) as box:
        with pytest.raises(OutboxError, match="could not be serialised"):
            await box.append([bad])
        good = await box.append([draft()])
    assert good[0].seq == 1, "the refused batch consumed no sequence number"


def jpeg_media(priority: Priority = Priority.TELEMETRY, size: int = 2000) -> MediaDraft:
    return MediaDraft(
        media_id=uuid7(),
        device="cam-1",
        content_type="image/jpeg",
        body=b"\xff\xd8" + bytes(size) + b"\xff\xd9",
        priority=priority,
    )


async def test_media_take_no_seq_and_leave_the_chain_unbroken(tmp_path: Path) -> None:
    async with outbox(tmp_path) as box:
        media = jpeg_media()
        records = await box.append([draft(), media, draft()])
    assert [r.seq for r in records] == [1, None, 2]
    assert records[1].payload == media.body
    assert records[1].topic == f"media/{media.media_id}"
    assert records[1].content_type == "image/jpeg"
    assert json.loads(records[2].payload)["prev"] == records[0].digest
    async with outbox(tmp_path) as box:
        queued = await box.read_after(0, 10)
        assert [(r.seq, r.content_type) for r in queued] == [
            (1, None),
            (None, "image/jpeg"),
            (2, None),
        ]
        assert (await box.append([draft()]))[0].seq == 3


async def test_media_are_evicted_before_events_and_reported_apart(tmp_path: Path) -> None:
    async with outbox(tmp_path, max_bytes=30_000) as box:
        for _ in range(10):
            await box.append([jpeg_media(size=2000), draft(Priority.EVENT, 500)])
        await box.append([jpeg_media(size=20_000)])
        kept = await box.read_after(0, 1000)
    events = [r for r in kept if r.topic == "event/test"]
    assert len(events) == 10, "events stay while media can make room"
    report = json.loads(next(r for r in kept if r.topic == "event/outbox_evicted").payload)
    assert report["data"]["media"] >= 1
    assert report["data"]["seq_ranges"] == [], "no record's seq went missing"


async def test_an_outbox_from_before_media_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, priority INTEGER NOT NULL, retain INTEGER NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO records VALUES (7, 'x', 'event/old', '{}', 30, 0);"
        "INSERT INTO meta VALUES ('last_seq', '7');"
    )
    db.commit()
    db.close()
    async with outbox(tmp_path) as box:
        old = await box.read_after(0, 10)
        new = await box.append([jpeg_media(), draft()])
    assert [(r.seq, r.topic) for r in old] == [(7, "event/old")]
    assert [r.seq for r in new] == [None, 8]
    assert new[0].pos == 8 and new[1].pos == 9


OLD_SCHEMA = (  # what an outbox file looked like before records.seq was renamed pos
    "CREATE TABLE records (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, priority INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " content_type TEXT, env_seq INTEGER);"
    "CREATE INDEX records_by_priority ON records (priority, seq);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
)


async def test_an_outbox_with_the_old_seq_column_is_migrated_and_delivered(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = make_config(tmp_path, broker.port)
    site, gateway = "haiphong-dinhvu", "gate-3"
    media = jpeg_media()
    record_id = uuid7()
    payload = envelope(
        draft(topic="event/old"), seq=1, record_id=record_id, prev=GENESIS, site=site,
        gateway=gateway,
    )  # fmt: skip
    db = sqlite3.connect(config.outbox_path)
    db.executescript(OLD_SCHEMA)
    db.executemany(
        "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, media.media_id, media.topic, media.body, 10, 0, "image/jpeg", None),
            (2, record_id, "event/old", payload, 30, 0, None, 1),  # position 2, seq 1
        ],
    )
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("last_seq", "1"), ("last_pos", "2"), ("last_hash", hashlib.sha256(payload).hexdigest())],
    )
    db.commit()
    db.close()
    async with (
        Outbox(config.outbox_path, site=site, gateway=gateway, max_bytes=10**7) as box,
        Uplink(config, box) as uplink,
    ):
        new = await box.append([draft(topic="event/new")])
        await central.wait_for(lambda c: len(c.records()) == 2, 15)
        assert await uplink.drained(10), "every record acknowledged, by its position"
    assert (new[0].pos, new[0].seq) == (3, 2)
    records = central.records()
    assert [(r["seq"], r["id"]) for r in records] == [(1, record_id), (2, new[0].id)]
    assert json.loads(new[0].payload)["prev"] == hashlib.sha256(payload).hexdigest()
    assert [m.payload for m in central.snapshot() if "/media/" in m.topic] == [media.body]
    async with outbox(tmp_path) as box:
        assert box.stats.depth == 0, "the acknowledged positions were the rows deleted"
    db = sqlite3.connect(config.outbox_path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(records)")]
    (index,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'records_by_priority'")
    db.close()
    assert columns[0] == "pos" and "seq" not in columns
    assert index[0].endswith("(priority, pos)")
