"""Weighing sessions: a ~10 Hz indicator stream reduced to one record per vehicle.

Rules (OIML R76 / R134, as summarised in HARDWARE.md): a weight is final only when
the indicator says stable (or, for protocols without a flag, the value holds within
``stable_tolerance_kg``), stays so for ``stable_window_s``, is in range, and power-up
zero was captured. Motion and out-of-range frames never become a weight.

A session starts when the weight rises to ``min_weight_kg`` and ends when it falls
back below it. Its final weight is the longest qualifying plateau (a truck that
creeps forward and settles again gives two plateaus; the one it stood on longest
wins, later on a tie), published with its statistics as ``event/weighing``.
Between sessions the stream is only sampled as throttled telemetry.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from pydantic import Field

from gateway.config import DeviceSection
from gateway.readings import WeightMeasured
from gateway.records import Draft, Priority, rfc3339


class WeighingKeys(DeviceSection):
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
    """Tunables, from the device's config section."""

    min_weight_kg: float = 200.0
    stable_window_s: float = 2.0
    stable_tolerance_kg: float = 20.0
    telemetry_interval_s: float = 1.0


@dataclass(slots=True)
class _Plateau:
    frames: list[WeightMeasured] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.frames[-1].at.mono - self.frames[0].at.mono if self.frames else 0.0

    def kg(self) -> list[float]:
        return [f.weight_kg or 0.0 for f in self.frames]


@dataclass(slots=True)
class _Session:
    first: WeightMeasured
    run: _Plateau = field(default_factory=_Plateau)
    best: _Plateau | None = None
    frames: int = 0
    motion_frames: int = 0
    out_of_range_frames: int = 0


class WeighingProcessor:
    """Turns one scale's readings into weighing events and telemetry drafts."""

    def __init__(self, device: str, settings: WeighingSettings) -> None:
        self.device = device
        self.settings = settings
        self._session: _Session | None = None
        self._last_telemetry: float | None = None
        self.sessions_total = 0

    def feed(self, reading: WeightMeasured) -> list[Draft]:
        """Process one reading; return what should be published because of it."""
        out: list[Draft] = []
        telemetry = self._telemetry(reading)
        if telemetry is not None:
            out.append(telemetry)
        weighing = self._track(reading)
        if weighing is not None:
            out.append(weighing)
        return out

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
                self._session = _Session(first=r)
                self._extend(self._session, r)
            return None
        if usable and kg is not None and kg < self.settings.min_weight_kg:
            self._session = None
            self._close_run(session)
            return self._weighing(session, r)
        self._extend(session, r)
        return None

    def _extend(self, s: _Session, r: WeightMeasured) -> None:
        s.frames += 1
        if not (r.in_range and r.zero_captured) or r.weight_kg is None:
            s.out_of_range_frames += 1
            self._close_run(s)
            return
        if r.stable is False:
            s.motion_frames += 1
            self._close_run(s)
            return
        run = s.run
        if run.frames:
            reference = run.frames[0].weight_kg or 0.0
            if abs(r.weight_kg - reference) > self.settings.stable_tolerance_kg:
                self._close_run(s)
        s.run.frames.append(r)

    def _close_run(self, s: _Session) -> None:
        run = s.run
        if (
            run.frames
            and run.duration_s >= self.settings.stable_window_s
            and (s.best is None or run.duration_s >= s.best.duration_s)
        ):
            s.best = run
        s.run = _Plateau()

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
            displayed = statistics.median(f.weight or 0.0 for f in best.frames)
            kg = best.kg()
            final = best.frames[-1]
            data.update(
                status="complete",
                weight=displayed,
                unit=final.unit,
                weight_kg=statistics.median(kg),
                net=final.net,
                tare=final.tare,
                plateau={
                    "start": rfc3339(best.frames[0].at.utc),
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
        return Draft(
            topic="event/weighing",
            schema="weighing/1",
            device=self.device,
            ts=end.at.utc,
            data=data,
            priority=Priority.EVENT,
        )
