"""``gateway.verify`` on what a capped outbox leaves after a long outage.

The gaps an outbox makes on purpose are announced in a signed ``event/outbox_evicted``
report: the check counts them as announced evictions and still passes; the same gaps
without the report fail, named by seq.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.outbox import EVICTION_TOPIC, Outbox
from gateway.records import Priority
from gateway.verify import Message, is_record_topic, verify_stream
from tests.core.test_outbox_pressure import draft
from tests.helpers import ephemeral_signer


async def test_announced_evictions_pass_and_unannounced_gaps_fail(tmp_path: Path) -> None:
    signer = ephemeral_signer()
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, site="s", gateway="g", max_bytes=64 * 1024, signer=signer) as box:
        for n in range(600):
            await box.append([draft(n, Priority.EVENT if n % 25 == 0 else Priority.TELEMETRY)])
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT topic, payload FROM records ORDER BY pos").fetchall()
    received = [Message(f"customs/s/g/{topic}", bytes(payload)) for topic, payload in rows]
    key = signer.private.public_key()

    report = verify_stream(received, key)
    assert report.ok, report.problems
    assert report.evicted > 400, "the telemetry the outbox dropped is announced"

    without_report = [m for m in received if not m.topic.endswith(EVICTION_TOPIC)]
    failed = verify_stream(without_report, key)
    assert not failed.ok
    assert {p.kind for p in failed.problems} == {"gap"}


@pytest.mark.parametrize(
    ("suffix", "record"),
    [("status", False), ("key", False), ("media/0190-ab", False), ("reply/central-1", False),
     ("cmd/ocr", False), ("event/seal_alarm", True), ("device/media/state", True),
     ("reading/reply/weight", True), ("device/key/state", True)],
)  # fmt: skip
def test_which_topics_hold_records_devices_named_like_other_topics_included(
    suffix: str, record: bool
) -> None:
    assert is_record_topic(f"customs/s/g/{suffix}") is record
