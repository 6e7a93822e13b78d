"""Weighing sessions: one event per vehicle, only from stable, in-range frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.readings import Stamp, WeightMeasured
from gateway.records import Draft
from gateway.weighing import WeighingProcessor, WeighingSettings

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Feed:
    """Plays frames at 10 Hz into a processor."""

    def __init__(self, settings: WeighingSettings | None = None) -> None:
        self.proc = WeighingProcessor(
            "scale-1",
            settings
            or WeighingSettings(telemetry_interval_s=1.0, stable_window_s=2.0, min_weight_kg=200),
        )
        self.t = 0.0
        self.out: list[Draft] = []

    def frames(
        self,
        weight: float | None,
        seconds: float,
        *,
        stable: bool | None = True,
        in_range: bool = True,
        zero_captured: bool = True,
        unit: str = "kg",
    ) -> None:
        for _ in range(round(seconds * 10)):
            at = Stamp(mono=self.t, utc=T0 + timedelta(seconds=self.t))
            self.out += self.proc.feed(
                WeightMeasured(
                    weight=weight,
                    unit=unit,
                    stable=stable,
                    in_range=in_range,
                    zero_captured=zero_captured,
                    at=at,
                )
            )
            self.t += 0.1

    def ramp(self, start: float, end: float, seconds: float, **kw: object) -> None:
        steps = round(seconds * 10)
        for i in range(steps):
            self.frames(start + (end - start) * i / steps, 0.1, stable=False, **kw)  # type: ignore[arg-type]

    @property
    def weighings(self) -> list[dict[str, object]]:
        return [d.data for d in self.out if d.topic == "event/weighing"]

    @property
    def telemetry(self) -> list[Draft]:
        return [d for d in self.out if d.topic == "reading/scale-1/weight"]


def truck(feed: Feed, kg: float, settle_s: float = 3.0) -> None:
    feed.frames(0, 1.0)
    feed.ramp(0, kg, 1.5)
    feed.frames(kg, settle_s)
    feed.ramp(kg, 0, 1.0)
    feed.frames(0, 1.0)


def test_one_truck_gives_one_weighing_with_plateau_statistics() -> None:
    feed = Feed()
    truck(feed, 24_480)
    [w] = feed.weighings
    assert w["status"] == "complete"
    assert w["weight"] == 24_480
    assert w["unit"] == "kg"
    assert w["weight_kg"] == 24_480
    plateau = w["plateau"]
    assert isinstance(plateau, dict)
    assert plateau["samples"] == 30
    assert plateau["stdev_kg"] == 0
    assert plateau["duration_s"] >= 2.0
    assert w["start"] < plateau["start"] < plateau["end"] < w["end"]  # type: ignore[operator]
    assert w["motion_frames"] > 0


def test_three_trucks_three_weighings_and_telemetry_is_throttled() -> None:
    feed = Feed()
    for kg in (12_000, 30_020, 41_000):
        truck(feed, kg)
    assert [w["weight"] for w in feed.weighings] == [12_000, 30_020, 41_000]
    seconds = feed.t
    assert abs(len(feed.telemetry) - seconds) <= 2, "about one telemetry reading per second"


def test_motion_only_never_gives_a_weight() -> None:
    feed = Feed()
    feed.frames(0, 1)
    feed.frames(20_000, 5, stable=False)
    feed.frames(0, 1)
    [w] = feed.weighings
    assert w["status"] == "no_stable_weight"
    assert w["weight"] is None


def test_out_of_range_and_no_zero_capture_frames_are_not_weights() -> None:
    feed = Feed()
    feed.frames(0, 1)
    feed.frames(60_000, 4, in_range=False)
    feed.frames(0, 1)
    feed.frames(15_000, 4, zero_captured=False)
    feed.frames(0, 1)
    assert [w["status"] for w in feed.weighings] == ["no_stable_weight", "no_stable_weight"]


def test_a_plateau_shorter_than_the_window_is_not_final() -> None:
    feed = Feed()
    truck(feed, 18_000, settle_s=1.0)
    [w] = feed.weighings
    assert w["status"] == "no_stable_weight"


def test_without_a_stability_flag_the_held_value_decides() -> None:
    feed = Feed(WeighingSettings(stable_window_s=2.0, stable_tolerance_kg=20))
    feed.frames(0, 1, stable=None)
    for i in range(15):  # rising: each frame differs by far more than the tolerance
        feed.frames(i * 1500, 0.1, stable=None)
    feed.frames(22_500, 3, stable=None)
    feed.frames(0, 1, stable=None)
    [w] = feed.weighings
    assert w["status"] == "complete"
    assert w["weight"] == 22_500
    assert w["plateau"]["indicator_stable_flag"] is False  # type: ignore[index]


def test_the_longest_plateau_wins_when_a_truck_creeps() -> None:
    feed = Feed()
    feed.frames(0, 1)
    feed.ramp(0, 20_000, 1)
    feed.frames(20_000, 2.5)
    feed.ramp(20_000, 26_000, 0.5)
    feed.frames(26_000, 4)
    feed.ramp(26_000, 0, 1)
    feed.frames(0, 1)
    [w] = feed.weighings
    assert w["weight"] == 26_000


def test_tonnes_are_converted_for_thresholds() -> None:
    feed = Feed()
    feed.frames(0.0, 1, unit="t")
    feed.ramp(0, 32.5, 1, unit="t")
    feed.frames(32.5, 3, unit="t")
    feed.ramp(32.5, 0, 1, unit="t")
    feed.frames(0.0, 1, unit="t")
    [w] = feed.weighings
    assert w["weight"] == 32.5
    assert w["unit"] == "t"
    assert w["weight_kg"] == 32_500
