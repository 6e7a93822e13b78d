"""The uplink against a real mosquitto: order, PUBACK-driven deletion, status topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from gateway.outbox import Outbox
from gateway.records import Draft, Priority
from gateway.uplink import Uplink
from tests.broker import Central, Mosquitto
from tests.helpers import make_config
from tests.records import assert_chain, payloads_by_id

ROOT = "customs/haiphong-dinhvu/gate-3"


def event(n: int) -> Draft:
    return Draft(
        topic="event/test",
        schema="test/1",
        device="dev",
        ts=datetime.now(UTC),
        data={"n": n},
        priority=Priority.EVENT,
    )


async def test_records_reach_central_in_order_and_leave_the_outbox(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = make_config(tmp_path, broker.port, extra="inflight = 4")
    async with (
        Outbox(
            config.outbox_path, site="haiphong-dinhvu", gateway="gate-3", max_bytes=10**7
        ) as box,
        Uplink(config, box) as uplink,
    ):
        await box.append([event(n) for n in range(50)])
        await central.wait_for(lambda c: len(c.records("event/test")) == 50, 15)
        assert await uplink.drained(10)
        assert uplink.stats.acked_total == 50
    records = central.records("event/test")
    assert [r["data"]["n"] for r in records] == list(range(50))
    assert_chain(records, payloads_by_id(central.snapshot()))
    messages = central.snapshot()
    assert all(
        m.content_type == "application/json" for m in messages if m.topic.endswith("event/test")
    )
    statuses = [json.loads(m.payload)["state"] for m in messages if m.topic == f"{ROOT}/status"]
    assert statuses[0] == "online"
    assert statuses[-1] == "offline"
    async with Outbox(config.outbox_path, site="s", gateway="g", max_bytes=10**7) as box:
        assert box.stats.depth == 0, "acknowledged records must be gone after restart"


async def test_records_queued_while_broker_is_down_arrive_when_it_returns(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    broker.stop()
    config = make_config(tmp_path, broker.port)
    async with (
        Outbox(
            config.outbox_path, site="haiphong-dinhvu", gateway="gate-3", max_bytes=10**7
        ) as box,
        Uplink(config, box) as uplink,
    ):
        await box.append([event(n) for n in range(20)])
        assert not uplink.stats.connected
        broker.start()
        await central.wait_for(lambda c: len(c.records("event/test")) == 20, 20)
    assert [r["seq"] for r in central.records("event/test")] == list(range(1, 21))
