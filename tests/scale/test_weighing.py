"""Weighing sessions: one event per vehicle, only from stable, in-range frames."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.scale.processor import WeighingProcessor, WeighingSettings
from drivers.scale.readings import WeightMeasured
from gateway.readings import Stamp
from gateway.records import Draft

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Feed:
    """Plays frames at 10 Hz into a processor."""

    def __init__(
        self, settings: WeighingSettings | None = None, state_dir: Path | None = None
    ) -> None:
        self.settings = settings or WeighingSettings(
            telemetry_interval_s=1.0, stable_window_s=2.0, min_weight_kg=200
        )
        self.state_dir = state_dir
        self.proc = WeighingProcessor("scale-1", self.settings, state_dir=state_dir)
        self.t = 0.0
        self.out: list[Draft] = []
        self.durable = True
        """Tell the processor what it returned is durable, as the supervisor does."""

    def restart(self, down_s: float = 1.5) -> None:
        """``kill -9``: the processor is gone, nothing flushed; frames go unseen for ``down_s``."""
        self.proc = WeighingProcessor("scale-1", self.settings, state_dir=self.state_dir)
        self.t += down_s

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
            drafts = self.proc.feed(
                WeightMeasured(
                    weight=weight,
                    unit=unit,
                    stable=stable,
                    in_range=in_range,
                    zero_captured=zero_captured,
                    at=at,
                )
            )
            self.out += drafts
            if drafts and self.durable:
                self.proc.stored(drafts)
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


def drive_on(feed: Feed, kg: float, stand_s: float) -> None:
    feed.frames(0, 1.0)
    feed.ramp(0, kg, 1.5)
    feed.frames(kg, stand_s)


def truck(feed: Feed, kg: float, settle_s: float = 3.0) -> None:
    drive_on(feed, kg, settle_s)
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
    assert w["start"] < plateau["start"] < plateau["end"] < w["end"]
    motion_frames = w["motion_frames"]
    assert isinstance(motion_frames, int) and motion_frames > 0


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


# -- restarts: the session in progress survives the process --------------------------------


def uninterrupted(kg: float) -> dict[str, object]:
    feed = Feed()
    truck(feed, kg, settle_s=4.0)
    [w] = feed.weighings
    return w


@pytest.mark.parametrize("killed_after_s", [0.5, 2.5], ids=["plateau-short", "plateau-final"])
def test_a_restart_mid_plateau_gives_one_complete_weighing_from_the_first_start(
    tmp_path: Path, killed_after_s: float
) -> None:
    expected = uninterrupted(24_480)
    feed = Feed(state_dir=tmp_path)
    drive_on(feed, 24_480, killed_after_s)
    feed.restart(down_s=1.0)
    feed.frames(24_480, 4.0 - killed_after_s - 1.0)
    feed.ramp(24_480, 0, 1.0)
    feed.frames(0, 1.0)
    [w] = feed.weighings
    assert w["status"] == "complete"
    assert w["weight"] == 24_480
    assert w["start"] == expected["start"]
    assert w["end"] == expected["end"]
    assert w["duration_s"] == expected["duration_s"]
    plateau = w["plateau"]
    assert isinstance(plateau, dict)
    assert plateau["duration_s"] >= 2.0
    assert plateau["samples"] < 40, "only frames the gateway saw, on one side of the restart"
    assert list(tmp_path.iterdir()) == [], "nothing left in the state dir between passages"


def test_plateau_statistics_survive_a_restart_exactly(tmp_path: Path) -> None:
    feed = Feed(WeighingSettings(stable_window_s=2.0, stable_tolerance_kg=40), state_dir=tmp_path)
    feed.frames(0, 1.0)
    feed.ramp(0, 18_000, 1.0)
    wobble = [18_000, 18_020, 17_980, 18_020, 18_000, 17_960] * 7  # 4.2 s of a plateau
    for kg in wobble:
        feed.frames(kg, 0.1)
    feed.ramp(18_000, 9_000, 0.3)  # driving off: the plateau ends, is the best, is stored
    feed.restart()
    feed.ramp(9_000, 0, 0.5)
    feed.frames(0, 1.0)
    [w] = feed.weighings
    plateau = w["plateau"]
    assert isinstance(plateau, dict)
    assert w["weight"] == statistics.median(wobble)
    assert plateau["samples"] == len(wobble)
    assert plateau["mean_kg"] == round(statistics.fmean(wobble), 3)
    assert plateau["stdev_kg"] == round(statistics.pstdev(wobble), 3)
    assert (plateau["min_kg"], plateau["max_kg"]) == (min(wobble), max(wobble))


def test_a_vehicle_that_left_while_the_gateway_was_down_gives_its_one_record(
    tmp_path: Path,
) -> None:
    feed = Feed(state_dir=tmp_path)
    drive_on(feed, 31_000, 2.5)  # long enough: the weight was final
    feed.restart(down_s=3.0)  # it drove off meanwhile
    truck(feed, 12_000)  # the next one
    first, second = feed.weighings
    assert first["status"] == "complete"
    assert first["weight"] == 31_000
    assert first["start"] == "2026-11-23T08:00:01.100Z"
    assert first["end"] == "2026-11-23T08:00:08.000Z", "the first frame seen empty"
    assert second["weight"] == 12_000


def test_a_vehicle_gone_before_its_weight_was_final_is_one_no_stable_weight(
    tmp_path: Path,
) -> None:
    feed = Feed(state_dir=tmp_path)
    drive_on(feed, 31_000, 1.0)
    feed.restart(down_s=4.0)
    feed.frames(0, 2.0)
    [w] = feed.weighings
    assert w["status"] == "no_stable_weight"
    assert w["start"] == "2026-11-23T08:00:01.100Z"
    assert w["end"] == "2026-11-23T08:00:07.500Z", "the first frame seen empty"
    assert 14 <= w["frames"] <= 24  # type: ignore[operator] # the last second may be unstored


def test_a_weighing_not_yet_in_the_outbox_is_published_once_after_a_restart(
    tmp_path: Path,
) -> None:
    feed = Feed(state_dir=tmp_path)
    drive_on(feed, 22_000, 3.0)
    feed.ramp(22_000, 0, 1.0)
    feed.durable = False  # killed before the outbox committed it
    feed.frames(0, 1.0)
    [w] = feed.weighings
    feed.restart(down_s=0.5)
    feed.durable = True
    feed.frames(0, 1.0)
    assert feed.weighings == [w, w], "the same record again, from the state file"
    feed.restart(down_s=0.5)  # this time the outbox had it
    feed.frames(0, 1.0)
    assert len(feed.weighings) == 2


def test_state_too_old_to_resume_is_published_as_it_was_left(tmp_path: Path) -> None:
    settings = WeighingSettings(stable_window_s=2.0, max_passage_s=600)
    feed = Feed(settings, state_dir=tmp_path)
    drive_on(feed, 40_000, 3.0)
    feed.restart(down_s=3600)  # an hour later another truck stands there
    feed.frames(15_000, 3.0)
    feed.frames(0, 1.0)
    old, new = feed.weighings
    assert old["weight"] == 40_000
    assert "2026-11-23T08:00:04.400Z" <= old["end"] <= "2026-11-23T08:00:05.400Z"  # type: ignore[operator]
    assert new["weight"] == 15_000
    assert new["start"] > old["end"]  # type: ignore[operator]


def test_an_unreadable_state_file_is_discarded(tmp_path: Path) -> None:
    (tmp_path / "weighing-scale-1.json").write_text('{"version": 1, "device": "scale-1", "ses')
    feed = Feed(state_dir=tmp_path)
    truck(feed, 9_000)
    [w] = feed.weighings
    assert w["weight"] == 9_000


def test_the_state_file_holds_a_long_session_in_a_few_hundred_bytes(tmp_path: Path) -> None:
    feed = Feed(state_dir=tmp_path)
    drive_on(feed, 26_000, 60.0)  # a truck standing for a minute
    path = tmp_path / "weighing-scale-1.json"
    state = json.loads(path.read_text())
    [(weight, kg, frames)] = state["session"]["run"]["samples"]  # one histogram bin
    assert (weight, kg) == (26_000, 26_000)
    assert frames > 500
    assert path.stat().st_size < 1_000
