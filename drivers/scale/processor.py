"""Weighing sessions: a ~10 Hz indicator stream reduced to one record per vehicle.

Rules (OIML R76 / R134, as summarised in HARDWARE.md): a weight is final only when
the indicator says stable (or, for protocols without a flag, the value holds within
``stable_tolerance_kg``), stays so for ``stable_window_s``, is in range, and power-up
zero was captured. Motion and out-of-range frames never become a weight.

A session starts when the weight rises to ``min_weight_kg`` and ends when it falls
back below it. Its final weight is the longest qualifying plateau (a truck that
creeps forward and settles again gives two plateaus; the one it stood on longest
wins, later on a tie), published with its statistics as ``event/weighing``.
Between sessions the stream is only sampled as throttled telemetry. On the fact bus
(:mod:`gateway.facts`) a session's start is :class:`VehicleOnScale`, its end
:class:`VehicleLeftScale` then :class:`WeighingRecorded`: lane cameras read plates
on the first, without looking at any topic.

Restarts (``kill -9``, a crash, an orderly restart) do not split a passage. With a
state directory, the session in progress is kept in ``weighing-{device}.json``
(:class:`gateway.statefile.StateFile`: atomic, fsynced) when it starts, when a
plateau becomes long enough or a new best one ends, and otherwise at most every
``persist_interval_s``; a plateau is kept as its end frames and a histogram of its
values, so the statistics are exact whatever its length. On the next start the
session is resumed: the record keeps the original ``start`` and counts every frame
seen before and after. A plateau never spans the restart, because the gateway did
not see the scale meanwhile: the one in progress ends at the last frame stored
before it, and the longest plateau of the whole passage still wins.

A vehicle that drove off while the gateway was down gives its one record at the
first frame after the restart that shows the scale empty (that frame is ``end``,
as for any passage) and with the same rule as any passage: ``complete`` with the
plateau the gateway saw stand for ``stable_window_s`` before the restart, else
``no_stable_weight``, the status of every passage without a final weight. A customs
integrator gets one record per vehicle either way: a weight the rules made final is
not thrown away because the truck is gone and cannot be weighed again, and a passage
the gateway did not see long enough is flagged for re-weighing instead of being
silently dropped. A session that started more than ``max_passage_s`` before the
restart is not resumed (whatever is on the scale now is taken for another vehicle):
its record is published as it was left, ending at the last frame stored.

A finished record is kept in the state file, next to the session, until the outbox
has it (the supervisor calls :meth:`WeighingProcessor.stored` once it is durable).
A crash before that publishes the kept record, the same one, on the next start; only
a crash in the instant between the outbox's commit and that call can publish it
twice. A record the outbox refused stays kept and is published on the next start.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.scale.readings import WeightMeasured
from gateway.config import DeviceSection
from gateway.facts import FactBus, VehicleLeftScale, VehicleOnScale, WeighingRecorded
from gateway.family import FamilyContext, Processor, basic_runtime, unexpected
from gateway.readings import Reading, Stamp
from gateway.records import Draft, Outgoing, Priority, rfc3339
from gateway.statefile import StateFile

log = structlog.get_logger(__name__)

WEIGHING_TOPIC = "event/weighing"


class WeighingSection(DeviceSection):
    """``[[devices]]`` keys every scale driver accepts, whatever its transport."""

    telemetry_interval_s: float = Field(default=1.0, ge=0, description="0 sends every reading")
    min_weight_kg: float = Field(default=200.0, gt=0, description="above this a vehicle is on")
    stable_window_s: float = Field(default=2.0, gt=0, description="stable this long = final")
    stable_tolerance_kg: float = Field(default=20.0, ge=0, description="plateau spread allowed")

    def weighing_settings(self) -> WeighingSettings:
        """The processor's settings from these keys."""
        return WeighingSettings(
            min_weight_kg=self.min_weight_kg,
            stable_window_s=self.stable_window_s,
            stable_tolerance_kg=self.stable_tolerance_kg,
            telemetry_interval_s=self.telemetry_interval_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WeighingSettings:
    """Tunables, from the device's config section.

    Attributes:
        max_passage_s: a session that started longer ago than this is not resumed
            after a restart.
        persist_interval_s: the session in progress is stored at least this often
            (and at once when it starts or its plateaus change).
    """

    min_weight_kg: float = 200.0
    stable_window_s: float = 2.0
    stable_tolerance_kg: float = 20.0
    telemetry_interval_s: float = 1.0
    max_passage_s: float = 1800.0
    persist_interval_s: float = 1.0


@dataclass(slots=True)
class _Plateau:
    """Stable frames within tolerance of the first: its end frames and a histogram."""

    first: WeightMeasured
    last: WeightMeasured
    samples: Counter[tuple[float, float]]  # (displayed weight, kg) -> frames

    @classmethod
    def starting(cls, r: WeightMeasured) -> _Plateau:
        return cls(first=r, last=r, samples=Counter({_sample(r): 1}))

    def add(self, r: WeightMeasured) -> None:
        self.last = r
        self.samples[_sample(r)] += 1

    @property
    def duration_s(self) -> float:
        return self.last.at.mono - self.first.at.mono

    @property
    def reference_kg(self) -> float:
        return self.first.weight_kg or 0.0

    def values(self) -> tuple[list[float], list[float]]:
        """Every frame's displayed weight and weight in kg."""
        pairs = list(self.samples.elements())
        return [w for w, _ in pairs], [kg for _, kg in pairs]


def _sample(r: WeightMeasured) -> tuple[float, float]:
    return (r.weight or 0.0, r.weight_kg or 0.0)


@dataclass(slots=True)
class _Session:
    first: WeightMeasured
    last: WeightMeasured
    run: _Plateau | None = None
    best: _Plateau | None = None
    frames: int = 0
    motion_frames: int = 0
    out_of_range_frames: int = 0


# -- the state file ------------------------------------------------------------------------


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _StoredFrame(_Stored):
    utc: datetime
    weight: float | None
    unit: str
    stable: bool | None
    in_range: bool
    net: bool
    zero_captured: bool
    tare: float | None

    @classmethod
    def of(cls, r: WeightMeasured) -> _StoredFrame:
        return cls(
            utc=r.at.utc,
            weight=r.weight,
            unit=r.unit,
            stable=r.stable,
            in_range=r.in_range,
            net=r.net,
            zero_captured=r.zero_captured,
            tare=r.tare,
        )

    def frame(self, offset: float) -> WeightMeasured:
        """The frame, its monotonic time this process's: ``offset`` = mono - UTC seconds."""
        return WeightMeasured(
            weight=self.weight,
            unit=self.unit,
            stable=self.stable,
            in_range=self.in_range,
            net=self.net,
            zero_captured=self.zero_captured,
            tare=self.tare,
            at=Stamp(mono=self.utc.timestamp() + offset, utc=self.utc),
        )


class _StoredPlateau(_Stored):
    first: _StoredFrame
    last: _StoredFrame
    samples: list[tuple[float, float, int]]

    @classmethod
    def of(cls, p: _Plateau | None) -> _StoredPlateau | None:
        if p is None:
            return None
        samples = [(w, kg, n) for (w, kg), n in p.samples.items()]
        return cls(first=_StoredFrame.of(p.first), last=_StoredFrame.of(p.last), samples=samples)

    def plateau(self, offset: float) -> _Plateau:
        counts = Counter({(w, kg): n for w, kg, n in self.samples})
        return _Plateau(self.first.frame(offset), self.last.frame(offset), counts)


class _StoredSession(_Stored):
    first: _StoredFrame
    last: _StoredFrame
    run: _StoredPlateau | None
    best: _StoredPlateau | None
    frames: int
    motion_frames: int
    out_of_range_frames: int

    @classmethod
    def of(cls, s: _Session) -> _StoredSession:
        return cls(
            first=_StoredFrame.of(s.first),
            last=_StoredFrame.of(s.last),
            run=_StoredPlateau.of(s.run),
            best=_StoredPlateau.of(s.best),
            frames=s.frames,
            motion_frames=s.motion_frames,
            out_of_range_frames=s.out_of_range_frames,
        )

    def session(self, offset: float) -> _Session:
        return _Session(
            first=self.first.frame(offset),
            last=self.last.frame(offset),
            run=self.run.plateau(offset) if self.run is not None else None,
            best=self.best.plateau(offset) if self.best is not None else None,
            frames=self.frames,
            motion_frames=self.motion_frames,
            out_of_range_frames=self.out_of_range_frames,
        )


class _StoredRecord(_Stored):
    ts: datetime
    data: dict[str, Any]


class _State(_Stored):
    version: Literal[1] = 1
    device: str
    session: _StoredSession | None = None
    unconfirmed: list[_StoredRecord] = []
    """Finished weighings not yet known to be in the outbox."""


# -- the processor -------------------------------------------------------------------------


class WeighingProcessor:
    """Turns one scale's readings into weighing events and telemetry drafts.

    ``state_dir``: where the session in progress is kept across restarts (none: in
    memory only).
    """

    def __init__(
        self,
        device: str,
        settings: WeighingSettings,
        *,
        state_dir: Path | None = None,
        bus: FactBus | None = None,
    ) -> None:
        self.device = device
        self.bus = bus or FactBus()
        self.settings = settings
        self._session: _Session | None = None
        self._last_telemetry: float | None = None
        self.sessions_total = 0
        self._store = StateFile(state_dir / f"weighing-{device}.json") if state_dir else None
        self._last_run: _State | None = self._load()
        self._unconfirmed: list[Draft] = []
        self._saved_mono: float | None = None
        self._store_failed = False

    def feed(self, reading: Reading) -> list[Draft]:
        """Process one reading; return what should be published because of it."""
        if not isinstance(reading, WeightMeasured):
            raise unexpected(self, reading)
        out: list[Draft] = []
        if self._last_run is not None:
            out += self._restore(self._last_run, reading)
            self._last_run = None
        telemetry = self._telemetry(reading)
        if telemetry is not None:
            out.append(telemetry)
        weighing = self._track(reading)
        if weighing is not None:
            out.append(weighing)
        return out

    def stored(self, drafts: Sequence[Outgoing]) -> None:
        """``drafts`` from :meth:`feed` are durable: their weighings need no keeping."""
        kept = [w for w in self._unconfirmed if not any(d is w for d in drafts)]
        if len(kept) < len(self._unconfirmed):
            self._unconfirmed = kept
            self._save()

    # -- telemetry ---------------------------------------------------------------------

    def _telemetry(self, r: WeightMeasured) -> Draft | None:
        interval = self.settings.telemetry_interval_s
        if self._last_telemetry is not None and r.at.mono - self._last_telemetry < interval:
            return None
        self._last_telemetry = r.at.mono
        return Draft(
            topic=f"reading/{self.device}/weight",
            schema="weight/1",
            device=self.device,
            ts=r.at.utc,
            data={
                "weight": r.weight,
                "unit": r.unit,
                "weight_kg": r.weight_kg,
                "stable": r.stable,
                "in_range": r.in_range,
                "net": r.net,
                "tare": r.tare,
                "zero_captured": r.zero_captured,
            },
            priority=Priority.TELEMETRY,
        )

    # -- sessions ----------------------------------------------------------------------

    def _track(self, r: WeightMeasured) -> Draft | None:
        kg = r.weight_kg
        usable = r.in_range and r.zero_captured and kg is not None
        session = self._session
        if session is None:
            loaded = kg is not None and kg >= self.settings.min_weight_kg
            overloaded = not r.in_range and (kg is None or kg > 0)
            if loaded or overloaded:
                self._session = _Session(first=r, last=r)
                self._extend(self._session, r)
                self._save(r.at)
                self.bus.publish(VehicleOnScale(device=self.device, at=r.at, weight_kg=kg))
            return None
        if usable and kg is not None and kg < self.settings.min_weight_kg:
            self._session = None
            self._close_run(session)
            record = self._finished(self._weighing(session, r))
            self.bus.publish(VehicleLeftScale(device=self.device, at=r.at))
            self.bus.publish(
                WeighingRecorded(
                    device=self.device,
                    at=r.at,
                    weight_kg=record.data["weight_kg"],
                    status=record.data["status"],
                    record_id=record.id,
                )
            )
            return record
        due = self._saved_mono is None or (
            r.at.mono - self._saved_mono >= self.settings.persist_interval_s
        )
        if self._extend(session, r) or due:
            self._save(r.at)
        return None

    def _extend(self, s: _Session, r: WeightMeasured) -> bool:
        """Add a frame; True when a plateau changed (a new best, a run now long enough)."""
        s.frames += 1
        s.last = r
        if not (r.in_range and r.zero_captured) or r.weight_kg is None:
            s.out_of_range_frames += 1
            return self._close_run(s)
        if r.stable is False:
            s.motion_frames += 1
            return self._close_run(s)
        run = s.run
        if run is None or abs(r.weight_kg - run.reference_kg) > self.settings.stable_tolerance_kg:
            changed = self._close_run(s)
            s.run = _Plateau.starting(r)
            return changed
        was_short = run.duration_s < self.settings.stable_window_s
        run.add(r)
        return was_short and run.duration_s >= self.settings.stable_window_s

    def _close_run(self, s: _Session) -> bool:
        """End the run in progress; True if it became the best plateau."""
        run, s.run = s.run, None
        if (
            run is not None
            and run.duration_s >= self.settings.stable_window_s
            and (s.best is None or run.duration_s >= s.best.duration_s)
        ):
            s.best = run
            return True
        return False

    def _weighing(self, s: _Session, end: WeightMeasured) -> Draft:
        self.sessions_total += 1
        data: dict[str, object] = {
            "status": "no_stable_weight",
            "weight": None,
            "unit": s.first.unit,
            "weight_kg": None,
            "start": rfc3339(s.first.at.utc),
            "end": rfc3339(end.at.utc),
            "duration_s": round(end.at.mono - s.first.at.mono, 3),
            "frames": s.frames,
            "motion_frames": s.motion_frames,
            "out_of_range_frames": s.out_of_range_frames,
            "plateau": None,
        }
        best = s.best
        if best is not None:
            weights, kg = best.values()
            final = best.last
            data.update(
                status="complete",
                weight=statistics.median(weights),
                unit=final.unit,
                weight_kg=statistics.median(kg),
                net=final.net,
                tare=final.tare,
                plateau={
                    "start": rfc3339(best.first.at.utc),
                    "end": rfc3339(final.at.utc),
                    "duration_s": round(best.duration_s, 3),
                    "samples": len(kg),
                    "mean_kg": round(statistics.fmean(kg), 3),
                    "min_kg": min(kg),
                    "max_kg": max(kg),
                    "stdev_kg": round(statistics.pstdev(kg), 3),
                    "indicator_stable_flag": final.stable is not None,
                },
            )
        return self._record(end.at.utc, data)

    def _record(self, ts: datetime, data: dict[str, Any]) -> Draft:
        return Draft(
            topic=WEIGHING_TOPIC,
            schema="weighing/1",
            device=self.device,
            ts=ts,
            data=data,
            priority=Priority.EVENT,
        )

    def _finished(self, record: Draft) -> Draft:
        """A weighing to publish: kept in the state file until it is in the outbox."""
        self._unconfirmed.append(record)
        self._save()
        return record

    # -- across restarts ---------------------------------------------------------------

    def _load(self) -> _State | None:
        if self._store is None:
            return None
        try:
            data = self._store.read()
            state = _State.model_validate_json(data) if data is not None else None
        except (OSError, ValidationError) as exc:
            log.warning(
                "weighing state unreadable; discarded",
                device=self.device,
                path=str(self._store.path),
                error=str(exc),
            )
            return None
        if state is not None and state.device != self.device:
            log.warning("weighing state of another device; discarded", path=str(self._store.path))
            return None
        return state

    def _restore(self, state: _State, r: WeightMeasured) -> list[Draft]:
        """At the first reading after a start: the stored record and session, if any."""
        out: list[Draft] = []
        offset = r.at.mono - r.at.utc.timestamp()
        for stored in state.unconfirmed:
            log.info("weighing stored before the restart published", device=self.device)
            out.append(self._finished(self._record(stored.ts, stored.data)))
        if state.session is None:
            return out
        session = state.session.session(offset)
        self._close_run(session)  # the gateway did not see the scale meanwhile
        age_s = (r.at.utc - session.first.at.utc).total_seconds()
        fresh = r.at.utc >= session.last.at.utc and age_s <= self.settings.max_passage_s
        where = {"device": self.device, "start": rfc3339(session.first.at.utc)}
        if fresh:
            log.info("weighing resumed after a restart", **where, age_s=round(age_s, 1))
            self._session = session
        else:
            log.warning("weighing state too old to resume; published as it was left", **where)
            out.append(self._finished(self._weighing(session, session.last)))
        return out

    def _save(self, now: Stamp | None = None) -> None:
        """Store the session in progress and the unconfirmed record (none: no file)."""
        if self._store is None:
            return
        if now is not None:
            self._saved_mono = now.mono
        session = self._session
        try:
            if session is None and not self._unconfirmed:
                self._store.remove()
            else:
                state = _State(
                    device=self.device,
                    session=_StoredSession.of(session) if session is not None else None,
                    unconfirmed=[_StoredRecord(ts=d.ts, data=d.data) for d in self._unconfirmed],
                )
                self._store.write(state.model_dump_json().encode())
        except OSError as exc:
            if not self._store_failed:
                log.warning(
                    "cannot store the weighing in progress; a restart would lose it",
                    device=self.device,
                    path=str(self._store.path),
                    error=str(exc),
                )
            self._store_failed = True
            return
        if self._store_failed:
            log.info("weighing state stored again", device=self.device)
            self._store_failed = False


def _processor(device: DeviceSection, context: FamilyContext) -> Processor:
    assert isinstance(device, WeighingSection)
    return WeighingProcessor(
        device.id, device.weighing_settings(), state_dir=context.state_dir, bus=context.bus
    )


runtime = basic_runtime(_processor)
"""The scale family's runtime (see :class:`gateway.family.FamilyRuntime`)."""
