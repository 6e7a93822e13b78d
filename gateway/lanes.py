"""Lanes: one crossing record per truck, checked against what the centre declared.

A :class:`Lane` joins the typed facts of the families (``gateway.facts``), never their
topics: a passage opens when the lane's scale sees a vehicle drive on
(:class:`VehicleOnScale`), gathers the plates and container codes its cameras read
(:class:`CodeRead`), the seals its readers see (:class:`SealObserved`), the weighing
(:class:`WeighingRecorded`) and the scan (:class:`ScanRecorded`), and closes
``close_after_s`` after the weighing, or at ``max_passage_s``. Then it publishes
``event/crossing`` (``crossing/1``, EVENT) and one ``event/discrepancy``
(``discrepancy/1``, ALARM, never evicted) per finding against the manifest
(:mod:`gateway.manifests`) whose plate or containers match.

A read that is not verified or below ``min_confidence`` sends the crossing to
``review``: what depends on it is listed under ``review``, never raised as a
discrepancy. A scan that comes after the crossing closed (a separate scanner) and
names one of its containers publishes revision 2, 3 ... of the same crossing; a
required scan that has not come ``late_scan_s`` after the close is then a
``scan_required_missing`` discrepancy.

``evidence`` lists the ``id`` of every record the crossing was built from (the facts'
``record_id``). The passage in progress and the crossings not yet handed to the
outbox are kept in ``{data_dir}/state/lane-{id}.json`` after every change, so a restart
(``kill -9`` included) in the middle of a passage continues the same crossing: one
crossing, not two, and no discrepancy from half of one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from gateway.config import LaneSection
from gateway.facts import (
    CodeRead,
    FactBus,
    ScanRecorded,
    SealObserved,
    VehicleOnScale,
    WeighingRecorded,
)
from gateway.manifests import Manifest, ManifestStore
from gateway.records import Draft, Outgoing, Priority, rfc3339, uuid7
from gateway.statefile import StateFile

log = structlog.get_logger(__name__)

CROSSING_TOPIC = "event/crossing"
DISCREPANCY_TOPIC = "event/discrepancy"
KEEP_CLOSED = 64
"""Closed crossings remembered for late scans, per lane."""

Emit = Callable[[Sequence[Outgoing]], Awaitable[object]]


def plate_key(text: str) -> str:
    """A plate as compared: letters and digits only, upper case (``15C-123.45`` = ``15C12345``)."""
    return "".join(c for c in text.upper() if c.isalnum())


@dataclass(slots=True)
class _Read:
    text: str
    verified: bool
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "verified": self.verified, "confidence": self.confidence}

    def better_than(self, other: _Read | None) -> bool:
        return other is None or (self.verified, self.confidence) > (
            other.verified,
            other.confidence,
        )


@dataclass(slots=True)
class _Crossing:
    """One passage being gathered."""

    crossing_id: str
    started: datetime
    ended: datetime | None = None
    revision: int = 1
    plate: _Read | None = None
    trailer_plate: _Read | None = None
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    gross_kg: float | None = None
    weighing_id: str | None = None
    weighing_status: str | None = None
    seals: dict[str, str] = field(default_factory=dict)
    seal_alarms: list[dict[str, str]] = field(default_factory=list)
    scan_id: str | None = None
    scan_sha256: str | None = None
    evidence: list[str] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)
    """Discrepancy kinds already published (a revision raises only new ones)."""

    def to_json(self) -> dict[str, Any]:
        """What the state file keeps."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["started"] = self.started.isoformat()
        out["ended"] = self.ended.isoformat() if self.ended else None
        out["plate"] = self.plate.as_dict() if self.plate else None
        out["trailer_plate"] = self.trailer_plate.as_dict() if self.trailer_plate else None
        out["raised"] = sorted(self.raised)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Crossing:
        """Back from :meth:`to_json`."""
        fields = dict(data)
        fields["started"] = datetime.fromisoformat(data["started"])
        fields["ended"] = datetime.fromisoformat(data["ended"]) if data["ended"] else None
        fields["plate"] = _Read(**data["plate"]) if data["plate"] else None
        fields["trailer_plate"] = _Read(**data["trailer_plate"]) if data["trailer_plate"] else None
        fields["raised"] = set(data["raised"])
        return cls(**fields)

    def cite(self, record_id: str | None) -> None:
        if record_id is not None and record_id not in self.evidence:
            self.evidence.append(record_id)

    def container(self, code: str, *, verified: bool, source: str) -> None:
        entry = self.containers.setdefault(code, {"code": code, "verified": False, "sources": []})
        entry["verified"] = entry["verified"] or verified
        if source not in entry["sources"]:
            entry["sources"].append(source)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not match the manifest."""

    kind: str
    expected: Any
    observed: Any


class Lane:
    """The correlator of one ``[[lanes]]`` entry."""

    def __init__(
        self,
        config: LaneSection,
        bus: FactBus,
        emit: Emit,
        manifests: ManifestStore,
        *,
        state_dir: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._emit = emit
        self._manifests = manifests
        self._clock = clock
        self.open: _Crossing | None = None
        self.closed: list[_Crossing] = []
        self._timer: asyncio.TimerHandle | None = None
        self._late: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.crossings_total = 0
        self.discrepancies_total = 0
        self._pending: dict[str, _Crossing] = {}
        """Closed (or revised) and not yet handed to the outbox: published again after a
        restart."""
        self._state = StateFile(state_dir / f"lane-{config.id}.json") if state_dir else None
        self._restore()
        bus.subscribe(VehicleOnScale, self._vehicle_on)
        bus.subscribe(WeighingRecorded, self._weighed)
        bus.subscribe(CodeRead, self._code)
        bus.subscribe(SealObserved, self._seal)
        bus.subscribe(ScanRecorded, self._scan)

    # -- state ---------------------------------------------------------------------------

    def _restore(self) -> None:
        raw = self._state.read() if self._state is not None else None
        if raw is None:
            return
        try:
            saved = json.loads(raw)
            self.open = _Crossing.from_json(saved["open"]) if saved["open"] else None
            self._pending = {
                c["crossing_id"]: _Crossing.from_json(c) for c in saved.get("pending", [])
            }
        except (ValueError, KeyError, TypeError) as exc:  # a damaged file: start afresh
            log.warning("lane state unreadable; starting afresh", lane=self.config.id,
                        error=str(exc))  # fmt: skip
            self.open, self._pending = None, {}

    def _save(self) -> None:
        if self._state is None:
            return
        body = {
            "open": self.open.to_json() if self.open else None,
            "pending": [c.to_json() for c in self._pending.values()],
        }
        try:
            self._state.write(json.dumps(body, ensure_ascii=False).encode())
        except OSError as exc:  # a full disk: the passage goes on in memory
            log.warning("could not keep the lane's passage", lane=self.config.id, error=str(exc))

    def start(self) -> None:
        """In the event loop: resume a restored passage's timers, publish what was due."""
        crossing = self.open
        if crossing is not None:
            age = (self._clock() - crossing.started).total_seconds()
            self._arm(max(0.0, self.config.max_passage_s - age))
            if crossing.weighing_status is not None:
                self._arm(self.config.close_after_s)
            log.info("lane passage resumed", lane=self.config.id, crossing=crossing.crossing_id)
        for pending in list(self._pending.values()):
            self._spawn(self._publish(pending))

    # -- facts -----------------------------------------------------------------------------

    def _vehicle_on(self, fact: VehicleOnScale) -> None:
        if fact.device != self.config.scale:
            return
        if self.open is not None:
            if self.open.weighing_status is None:
                return  # the same vehicle (a bounce on the scale)
            self._close()  # the next truck is on before close_after_s: this one is done
        self.open = _Crossing(crossing_id=uuid7(), started=fact.at.utc)
        self._arm(self.config.max_passage_s)
        self._save()

    def _weighed(self, fact: WeighingRecorded) -> None:
        crossing = self.open
        if fact.device != self.config.scale or crossing is None:
            return
        crossing.gross_kg = fact.weight_kg
        crossing.weighing_status = fact.status
        crossing.weighing_id = fact.record_id
        crossing.cite(fact.record_id)
        self._arm(self.config.close_after_s)
        self._save()

    def _code(self, fact: CodeRead) -> None:
        if fact.device not in self.config.cameras or fact.text is None:
            return
        crossing = self.open
        if crossing is None or fact.at.utc < crossing.started:
            # Read after its passage closed (OCR takes a moment): the passage it was
            # taken in gets it, as a revision.
            late = self._closed_at(fact.at.utc)
            if late is not None:
                self._add_code(late, fact)
                late.revision += 1
                self._spawn(self._publish(late))
            return
        self._add_code(crossing, fact)
        self._save()

    def _closed_at(self, when: datetime) -> _Crossing | None:
        return next(
            (c for c in reversed(self.closed) if c.started <= when <= (c.ended or c.started)),
            None,
        )

    def _add_code(self, crossing: _Crossing, fact: CodeRead) -> None:
        assert fact.text is not None
        crossing.cite(fact.record_id)
        if fact.kind == "container":
            crossing.container(fact.text, verified=fact.verified, source="ocr")
            return
        read = _Read(fact.text, fact.verified, fact.confidence)
        if fact.region in self.config.trailer_plate_regions:
            if read.better_than(crossing.trailer_plate):
                crossing.trailer_plate = read
        elif read.better_than(crossing.plate):
            crossing.plate = read

    def _seal(self, fact: SealObserved) -> None:
        crossing = self.open
        if fact.device not in self.config.seal_readers or crossing is None:
            return
        if crossing.seals.get(fact.seal_id) == fact.state and not fact.alarm:
            return  # a reader polls the same seal twice a second: nothing new to keep
        crossing.cite(fact.record_id)
        crossing.seals[fact.seal_id] = fact.state
        if fact.alarm:
            crossing.seal_alarms.append({"seal_id": fact.seal_id, "state": fact.state})
        self._save()

    def _scan(self, fact: ScanRecorded) -> None:
        if fact.device != self.config.xray:
            return
        crossing = self.open
        if crossing is None:  # late: the crossing whose container it names
            codes = set(fact.containers)
            crossing = next((c for c in reversed(self.closed) if codes & set(c.containers)), None)
            if crossing is None:
                return
            crossing.revision += 1
            self._attach_scan(crossing, fact)
            late = self._late.pop(crossing.crossing_id, None)
            if late is not None:
                late.cancel()
            self._spawn(self._publish(crossing))
            return
        self._attach_scan(crossing, fact)
        self._save()

    @staticmethod
    def _attach_scan(crossing: _Crossing, fact: ScanRecorded) -> None:
        crossing.scan_id, crossing.scan_sha256 = fact.scan_id, fact.sha256
        crossing.cite(fact.record_id)
        for code in fact.containers:
            crossing.container(code, verified=True, source="xray")

    # -- closing ---------------------------------------------------------------------------

    def _arm(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._close)

    def _close(self) -> None:
        crossing, self.open, self._timer = self.open, None, None
        if crossing is None:
            return
        crossing.ended = self._clock()
        self.closed = [*self.closed[-(KEEP_CLOSED - 1) :], crossing]
        self._pending[crossing.crossing_id] = crossing
        self._save()  # closed and not yet durable: a restart now publishes it
        manifest = self._manifest_for(crossing)
        self._spawn(self._publish(crossing, manifest))
        if manifest is not None and manifest.scan_required and crossing.scan_id is None:
            self._late[crossing.crossing_id] = asyncio.get_running_loop().call_later(
                self.config.late_scan_s, self._scan_overdue, crossing
            )

    def _scan_overdue(self, crossing: _Crossing) -> None:
        self._late.pop(crossing.crossing_id, None)
        crossing.revision += 1
        self._spawn(self._publish(crossing, scan_overdue=True))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Cancel the timers (the daemon is stopping)."""
        for handle in (self._timer, *self._late.values()):
            if handle is not None:
                handle.cancel()

    # -- judging -------------------------------------------------------------------------

    def _manifest_for(self, crossing: _Crossing) -> Manifest | None:
        held = self._manifests.current()
        if crossing.plate is not None:
            key = plate_key(crossing.plate.text)
            found = next((m for m in held if plate_key(m.plate) == key), None)
            if found is not None:
                return found
        codes = set(crossing.containers)
        return next((m for m in held if codes & set(m.containers)), None)

    def _sure(self, read: _Read | None) -> bool:
        return read is not None and read.verified and read.confidence >= self.config.min_confidence

    def judge(
        self, crossing: _Crossing, manifest: Manifest | None, *, scan_overdue: bool = False
    ) -> tuple[list[Finding], list[str]]:
        """Discrepancies, and the reasons for review (reads too weak to accuse on)."""
        findings: list[Finding] = []
        review: list[str] = []
        plate = crossing.plate.text if crossing.plate else None
        if not self._sure(crossing.plate):
            review.append("plate not read" if plate is None else "plate read not verified")
        if manifest is None:
            if self._sure(crossing.plate):
                findings.append(Finding("no_manifest", None, plate))
            return findings, review
        if self._sure(crossing.plate) and plate_key(manifest.plate) != plate_key(plate or ""):
            findings.append(Finding("plate_mismatch", manifest.plate, plate))
        self._judge_containers(crossing, manifest, findings, review)
        observed_seals = sorted(crossing.seals)
        if manifest.seals and observed_seals and set(manifest.seals) != set(observed_seals):
            findings.append(Finding("seal_mismatch", sorted(manifest.seals), observed_seals))
        findings += [Finding("seal_broken", None, alarm) for alarm in crossing.seal_alarms]
        declared = manifest.declared_gross_kg
        if declared is not None and crossing.gross_kg is None:
            review.append("no stable weight")
        elif declared is not None and crossing.gross_kg is not None:
            allowed = max(declared * self.config.tolerance_pct / 100, self.config.tolerance_kg)
            if abs(crossing.gross_kg - declared) > allowed:
                findings.append(Finding("weight_out_of_tolerance", declared, crossing.gross_kg))
        if manifest.scan_required and crossing.scan_id is None:
            if scan_overdue or self.config.xray is None:
                findings.append(Finding("scan_required_missing", True, None))
            else:
                review.append("required scan not yet received")
        return findings, review

    @staticmethod
    def _judge_containers(
        crossing: _Crossing, manifest: Manifest, findings: list[Finding], review: list[str]
    ) -> None:
        verified = {c for c, e in crossing.containers.items() if e["verified"]}
        unsure = set(crossing.containers) - verified
        declared = set(manifest.containers)
        missing = sorted(declared - verified)
        unexpected = sorted(verified - declared)
        if unsure - declared:
            review.append("container read not verified")
        if missing and unexpected:
            findings.append(Finding("container_mismatch", missing, unexpected))
        elif unexpected:
            findings.append(Finding("container_unexpected", None, unexpected))
        elif missing and crossing.containers:
            findings.append(Finding("container_missing", missing, None))
        elif missing:
            review.append("no container read")

    async def _publish(
        self,
        crossing: _Crossing,
        manifest: Manifest | None = None,
        *,
        scan_overdue: bool = False,
    ) -> None:
        """Hand the crossing (and its new discrepancies) to the outbox; ``manifest``
        when the caller has just looked it up."""
        self._pending[crossing.crossing_id] = crossing
        self._save()
        manifest = manifest or self._manifest_for(crossing)
        findings, review = self.judge(crossing, manifest, scan_overdue=scan_overdue)
        result = "discrepancy" if findings else "review" if review else "clear"
        data = {
            "lane": self.config.id,
            "crossing_id": crossing.crossing_id,
            "revision": crossing.revision,
            "started": rfc3339(crossing.started),
            "ended": rfc3339(crossing.ended) if crossing.ended else None,
            "plate": crossing.plate.as_dict() if crossing.plate else None,
            "trailer_plate": crossing.trailer_plate.as_dict() if crossing.trailer_plate else None,
            "containers": list(crossing.containers.values()),
            "gross_kg": crossing.gross_kg,
            "weighing_id": crossing.weighing_id,
            "seals": [{"id": s, "state": st} for s, st in sorted(crossing.seals.items())],
            "seal_alarms": crossing.seal_alarms,
            "scan_id": crossing.scan_id,
            "scan_sha256": crossing.scan_sha256,
            "manifest_id": manifest.id if manifest else None,
            "result": result,
            "discrepancies": sorted({f.kind for f in findings}),
            "review": review,
            "evidence": list(crossing.evidence),
        }
        drafts: list[Outgoing] = [
            Draft(topic=CROSSING_TOPIC, schema="crossing/1", device=None,
                  ts=crossing.started, data=data, priority=Priority.EVENT)
        ]  # fmt: skip
        new = [f for f in findings if f.kind not in crossing.raised]
        drafts += [
            Draft(
                topic=DISCREPANCY_TOPIC,
                schema="discrepancy/1",
                device=None,
                ts=crossing.ended or crossing.started,
                data={
                    "lane": self.config.id,
                    "crossing_id": crossing.crossing_id,
                    "kind": f.kind,
                    "expected": f.expected,
                    "observed": f.observed,
                    "manifest_id": manifest.id if manifest else None,
                },
                priority=Priority.ALARM,
            )
            for f in new
        ]
        try:
            await self._emit(drafts)
        except Exception:  # the outbox refused: logged, the lane goes on
            log.exception("could not record a crossing", lane=self.config.id)
            return
        crossing.raised |= {f.kind for f in new}
        self._pending.pop(crossing.crossing_id, None)
        self._save()
        self.crossings_total += crossing.revision == 1
        self.discrepancies_total += len(new)
        log.info("crossing", lane=self.config.id, crossing=crossing.crossing_id,
                 revision=crossing.revision, result=result)  # fmt: skip

    def status(self) -> dict[str, Any]:
        """For ``gatewayctl status``."""
        return {
            "open": self.open.crossing_id if self.open else None,
            "crossings_total": self.crossings_total,
            "discrepancies_total": self.discrepancies_total,
        }
