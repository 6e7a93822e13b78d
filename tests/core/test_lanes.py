"""The lane correlator: one crossing per passage, each discrepancy kind exactly when due.

Facts go through the real :class:`FactBus` to a real :class:`Lane` with a real
manifest store on disk; what it emits is what the daemon would make durable. Each
truck below is scripted for one finding and must raise that one only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import LaneSection, parse_config
from gateway.errors import ConfigError
from gateway.facts import (
    CodeRead,
    FactBus,
    ScanRecorded,
    SealObserved,
    VehicleOnScale,
    WeighingRecorded,
)
from gateway.lanes import Lane
from gateway.manifests import ManifestStore
from gateway.readings import Stamp
from gateway.records import Draft, Outgoing
from tests.core.test_asyncapi import fit_drafts
from tests.helpers import config_text

PLATE, CONTAINER, SEAL = "15C-123.45", "MSKU4135329", "HGT0001234"
OTHER_CONTAINER = "TGHU3000017"  # a valid ISO 6346 code not declared


class Recorder:
    """What the lane hands the outbox."""

    def __init__(self) -> None:
        self.drafts: list[Draft] = []
        self.changed = asyncio.Event()

    async def __call__(self, drafts: Sequence[Outgoing]) -> list[Any]:
        self.drafts += [d for d in drafts if isinstance(d, Draft)]
        self.changed.set()
        return []

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [d.data for d in self.drafts if d.topic == topic]

    async def until(self, count: int, topic: str = "event/crossing") -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while len(self.of(topic)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.of(topic)


def manifest(**changes: Any) -> dict[str, Any]:
    until = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    return {"id": "M-1", "plate": PLATE, "containers": [CONTAINER], "seals": [SEAL],
            "declared_gross_kg": 32140, "scan_required": True, "valid_until": until,
            **changes}  # fmt: skip


class Truck:
    """Plays one passage's facts on the bus, each with the id of its record."""

    def __init__(self, bus: FactBus) -> None:
        self.bus = bus
        self.ids: list[str] = []

    def _id(self) -> str:
        self.ids.append(f"rec-{len(self.ids)}")
        return self.ids[-1]

    def drive_on(self) -> None:
        self.bus.publish(VehicleOnScale(device="scale-1", at=Stamp.now(), weight_kg=800))

    def plate(self, text: str = PLATE, *, verified: bool = True, confidence: float = 0.9) -> None:
        self.bus.publish(CodeRead(device="cam-lane", at=Stamp.now(), kind="plate",
                                  region="cab-plate", text=text, verified=verified,
                                  confidence=confidence, record_id=self._id()))  # fmt: skip

    def container(self, code: str = CONTAINER) -> None:
        self.bus.publish(CodeRead(device="cam-lane", at=Stamp.now(), kind="container",
                                  region="door", text=code, verified=True, confidence=0.95,
                                  record_id=self._id()))  # fmt: skip

    def seal(self, seal_id: str = SEAL, *, alarm: bool = False) -> None:
        self.bus.publish(SealObserved(device="seal-gate-1", at=Stamp.now(), seal_id=seal_id,
                                      state="opened" if alarm else "sealed", alarm=alarm,
                                      record_id=self._id()))  # fmt: skip

    def scan(self, code: str = CONTAINER) -> None:
        self.bus.publish(ScanRecorded(device="xray-1", at=Stamp.now(), scan_id="XR-1",
                                      sha256="ab" * 32, containers=(code,),
                                      record_id=self._id()))  # fmt: skip

    def weigh(self, kg: float = 32_000) -> None:
        self.bus.publish(WeighingRecorded(device="scale-1", at=Stamp.now(), weight_kg=kg,
                                          status="complete", record_id=self._id()))  # fmt: skip

    def whole(self, **changes: Any) -> None:
        """A truck that matches :func:`manifest`, with ``changes`` to its facts."""
        self.drive_on()
        self.plate(changes.get("plate", PLATE))
        containers = changes.get("containers", [CONTAINER])
        for code in containers:
            self.container(code)
        self.seal(changes.get("seal", SEAL), alarm=changes.get("alarm", False))
        if changes.get("scan", True):
            self.scan(containers[0])
        self.weigh(changes.get("kg", 32_000))


def lane(
    tmp_path: Path, bus: FactBus, recorder: Recorder, **config: Any
) -> tuple[Lane, ManifestStore]:
    store = ManifestStore(tmp_path)
    section = LaneSection(id="lane-3", scale="scale-1", cameras=("cam-lane",),
                          seal_readers=("seal-gate-1",), xray="xray-1",
                          **{"close_after_s": 0, **config})  # fmt: skip
    return Lane(section, bus, recorder, store), store


async def test_a_clean_truck_gives_one_clear_crossing_with_every_field_and_its_evidence(
    tmp_path: Path,
) -> None:
    bus, recorder = FactBus(), Recorder()
    _, store = lane(tmp_path, bus, recorder)
    store.put([manifest()])
    truck = Truck(bus)
    truck.whole()
    (crossing,) = await recorder.until(1)
    assert crossing["result"] == "clear", crossing
    assert crossing["plate"] == {"text": PLATE, "verified": True, "confidence": 0.9}
    assert crossing["containers"] == [
        {"code": CONTAINER, "verified": True, "sources": ["ocr", "xray"]}
    ]
    assert crossing["gross_kg"] == 32_000 and crossing["weighing_id"] == truck.ids[-1]
    assert crossing["seals"] == [{"id": SEAL, "state": "sealed"}]
    assert (crossing["scan_id"], crossing["manifest_id"], crossing["revision"]) == (
        "XR-1",
        "M-1",
        1,
    )
    assert crossing["evidence"] == truck.ids, "every record it was built from, by id"
    assert recorder.of("event/discrepancy") == []
    assert {name for name, _ in fit_drafts(recorder.drafts)} == {"crossing"}


SCRIPTED = [
    ("no_manifest", {}, {"plate": "29H-456.78", "containers": [OTHER_CONTAINER]}),
    ("plate_mismatch", {}, {"plate": "29H-456.78"}),
    ("container_mismatch", {}, {"containers": [OTHER_CONTAINER]}),
    ("container_unexpected", {}, {"containers": [CONTAINER, OTHER_CONTAINER]}),
    ("container_missing", {"containers": [CONTAINER, OTHER_CONTAINER]}, {}),
    ("seal_mismatch", {}, {"seal": "HGT0009999"}),
    ("seal_broken", {}, {"alarm": True}),
    ("weight_out_of_tolerance", {}, {"kg": 40_000}),
]


@pytest.mark.parametrize(("kind", "declared", "played"), SCRIPTED, ids=[s[0] for s in SCRIPTED])
async def test_each_discrepancy_is_raised_by_the_truck_scripted_for_it_and_only_it(
    tmp_path: Path, kind: str, declared: dict[str, Any], played: dict[str, Any]
) -> None:
    bus, recorder = FactBus(), Recorder()
    _, store = lane(tmp_path, bus, recorder)
    store.put([manifest(**declared)])
    Truck(bus).whole(**played)
    (crossing,) = await recorder.until(1)
    alarms = recorder.of("event/discrepancy")
    assert crossing["result"] == "discrepancy"
    assert crossing["discrepancies"] == [kind], crossing
    assert [a["kind"] for a in alarms] == [kind]
    assert {name for name, _ in fit_drafts(recorder.drafts)} == {"crossing", "discrepancy"}
    assert alarms[0]["crossing_id"] == crossing["crossing_id"]
    assert all(
        d.priority.name == "ALARM" for d in recorder.drafts if d.topic == "event/discrepancy"
    )


async def test_the_tolerance_is_the_greater_of_5_percent_and_500_kg(tmp_path: Path) -> None:
    bus, recorder = FactBus(), Recorder()
    _, store = lane(tmp_path, bus, recorder)
    store.put([manifest(declared_gross_kg=8_000)])
    Truck(bus).whole(kg=8_450)  # 5.6 %, but within 500 kg
    (crossing,) = await recorder.until(1)
    assert crossing["result"] == "clear", crossing


async def test_an_unverified_plate_sends_the_crossing_to_review_not_to_discrepancy(
    tmp_path: Path,
) -> None:
    bus, recorder = FactBus(), Recorder()
    lane(tmp_path, bus, recorder)  # no manifest at all: only a sure plate may accuse
    truck = Truck(bus)
    truck.drive_on()
    truck.plate("29H-456.7", verified=False, confidence=0.4)
    truck.weigh()
    (crossing,) = await recorder.until(1)
    assert crossing["result"] == "review" and crossing["discrepancies"] == []
    assert "plate read not verified" in crossing["review"]
    assert recorder.of("event/discrepancy") == []


async def test_a_late_scan_revises_the_same_crossing_and_a_missing_one_is_raised_in_time(
    tmp_path: Path,
) -> None:
    bus, recorder = FactBus(), Recorder()
    _, store = lane(tmp_path, bus, recorder, late_scan_s=0.2)
    store.put([manifest(), manifest(id="M-2", plate="29H-456.78", containers=[OTHER_CONTAINER])])
    first = Truck(bus)
    first.whole(scan=False)
    (pending,) = await recorder.until(1)
    assert pending["result"] == "review" and "required scan not yet received" in pending["review"]
    first.scan()  # minutes later, at a separate scanner
    revised = (await recorder.until(2))[1]
    assert (revised["crossing_id"], revised["revision"]) == (pending["crossing_id"], 2)
    assert revised["scan_id"] == "XR-1" and revised["result"] == "clear"

    Truck(bus).whole(plate="29H-456.78", containers=[OTHER_CONTAINER], scan=False)
    overdue = (await recorder.until(4))[3]
    assert overdue["revision"] == 2 and overdue["discrepancies"] == ["scan_required_missing"]
    assert [a["kind"] for a in recorder.of("event/discrepancy")] == ["scan_required_missing"]
    assert len({c["crossing_id"] for c in recorder.of("event/crossing")}) == 2, "never a second"


async def test_the_next_truck_closes_the_last_and_a_read_that_comes_late_revises_it(
    tmp_path: Path,
) -> None:
    bus, recorder = FactBus(), Recorder()
    lane(tmp_path, bus, recorder, close_after_s=60)  # only the next truck closes it
    first = Truck(bus)
    first.drive_on()
    taken = Stamp.now()  # the camera's passage starts with the truck on the scale
    first.weigh()
    Truck(bus).drive_on()
    (closed,) = await recorder.until(1)
    assert closed["plate"] is None and closed["gross_kg"] == 32_000
    bus.publish(CodeRead(device="cam-lane", at=taken, kind="plate", region="cab-plate",
                         text=PLATE, verified=True, confidence=0.9, record_id="ocr-1"))  # fmt: skip
    revised = (await recorder.until(2))[1]
    assert (revised["crossing_id"], revised["revision"]) == (closed["crossing_id"], 2)
    assert revised["plate"]["text"] == PLATE and "ocr-1" in revised["evidence"]


def test_a_lane_naming_a_device_that_is_not_configured_is_a_config_error(tmp_path: Path) -> None:
    text = config_text(tmp_path, 1883) + '[[lanes]]\nid = "lane-3"\nscale = "scale-9"\n'
    with pytest.raises(ConfigError, match=r"lanes\[0\]: device 'scale-9' is not configured"):
        parse_config(text, tmp_path / "gateway.toml")


async def test_a_restart_mid_passage_continues_the_same_crossing(tmp_path: Path) -> None:
    """The daemon killed with a truck on the scale: the lane's state file (real, on disk)
    carries the passage over, so the restarted lane publishes one crossing with what was
    seen before and after, and no discrepancy from either half alone."""
    state = tmp_path / "state"
    store = ManifestStore(tmp_path)
    store.put([manifest()])
    section = LaneSection(id="lane-3", scale="scale-1", cameras=("cam-lane",),
                          seal_readers=("seal-gate-1",), xray="xray-1",
                          close_after_s=0)  # fmt: skip
    before_bus = FactBus()
    Lane(section, before_bus, Recorder(), store, state_dir=state)
    before = Truck(before_bus)
    before.drive_on()
    before.plate()
    before.container()
    # kill -9 here: nothing of the first lane object survives but its file
    after_bus, recorder = FactBus(), Recorder()
    restarted = Lane(section, after_bus, recorder, ManifestStore(tmp_path), state_dir=state)
    restarted.start()
    after = Truck(after_bus)
    after.ids = list(before.ids)
    after.seal()
    after.scan()
    after.weigh()
    (crossing,) = await recorder.until(1)
    assert crossing["result"] == "clear", crossing
    assert crossing["plate"]["text"] == PLATE and crossing["gross_kg"] == 32_000
    assert crossing["evidence"] == after.ids, "both halves cited"
    assert recorder.of("event/discrepancy") == []
    assert json.loads((state / "lane-lane-3.json").read_text()) == {"open": None, "pending": []}
