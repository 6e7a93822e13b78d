"""The uplink against a real mosquitto: order, PUBACK-driven deletion, status topic."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

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


class AclBroker(Mosquitto):
    """A broker whose ACL refuses one topic until it is reloaded (SIGHUP) with another."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.acl = workdir / "acl"
        self.allow(["status", "event/test"])
        self.conf.write_text(self.conf.read_text() + f"acl_file {self.acl}\n")

    def allow(self, topics: list[str]) -> None:
        lines = ["topic read #"] + [f"topic write {ROOT}/{t}" for t in topics]
        self.acl.write_text("\n".join(lines) + "\n")

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    """The plain broker, or (``indirect`` with ``"acl"``) one with an ACL."""
    b = AclBroker(tmp_path) if getattr(request, "param", None) == "acl" else Mosquitto(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.mark.parametrize("broker", ["acl"], indirect=True)
async def test_a_record_the_broker_refuses_is_kept_retried_and_never_blocks_the_rest(
    tmp_path: Path, broker: AclBroker, central: Central
) -> None:
    config = make_config(tmp_path, broker.port)
    refused = asyncio.Event()
    reasons: list[str] = []

    def on_rejected(_record: object, reason: str) -> None:
        reasons.append(reason)
        if len(reasons) >= 2:
            refused.set()

    async with (
        Outbox(
            config.outbox_path, site="haiphong-dinhvu", gateway="gate-3", max_bytes=10**7
        ) as box,
        Uplink(config, box) as uplink,
    ):
        uplink.on_rejected.append(on_rejected)
        denied = Draft(
            topic="event/held",
            schema="test/1",
            device="dev",
            ts=datetime.now(UTC),
            data={"n": -1},
            priority=Priority.ALARM,
        )
        await box.append([denied, event(0), event(1)])
        await central.wait_for(lambda c: len(c.records("event/test")) == 2, 10)
        await asyncio.wait_for(refused.wait(), 10)  # refused, then refused again on retry
        assert reasons[0] == "Not authorized"
        assert box.stats.depth >= 1, "the refused record stays in the outbox"
        assert not await uplink.drained(0.5)
        assert uplink.stats.last_error is not None and "event/held" in uplink.stats.last_error
        broker.allow(["status", "event/test", "event/held"])
        broker.reload()
        await central.wait_for(lambda c: len(c.records("event/held")) == 1, 30)
        assert await uplink.drained(10)
    assert central.records("event/held")[0]["seq"] == 1
