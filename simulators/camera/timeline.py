"""When things happen in front of the camera: trucks and faults, frame by frame.

Everything here is a pure function of the seed and the frame number, so that a clip
can be re-rendered frame for frame and a test can ask "what should frame 812 show?"
without playing frames 0..811. Truck ``i`` draws from its own random stream
(``"{seed}:truck:{i}"``), and its timing only depends on the trucks before it; fault
window ``k`` draws from ``"{seed}:fault:{k}"``.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from simulators.camera.plates import Plate, plate
from simulators.xray import container_number

FAULTS = ("stall", "disconnect", "lighting")
"""Fault kinds: the stream stops but stays open; the server drops and refuses clients;
a global brightness step (headlights, auto-exposure) without object motion."""

# Size/type codes (ISO 6346 section 4): 22G1 a 20 ft general purpose, 42G1/45G1 40 ft
# (45: high cube), 45R1 a 40 ft high-cube reefer.
LOADS = (("22G1",), ("42G1",), ("45G1",), ("45R1",), ("22G1", "22G1"))

DRIVE_S = 4.0  # driving in from the edge of the picture to the gate, and away again
GATE_S = 1.0  # the boom rising before the truck leaves


@dataclass(frozen=True, slots=True, kw_only=True)
class Truck:
    """One truck's visit, in frame numbers (``exit_frame`` is the first frame without it).

    Attributes:
        index: position in the run, from 0.
        entry_frame: first frame the truck is in the picture.
        stop_frame: first frame it stands at the gate.
        leave_frame: first frame it moves off again (the boom rises ``GATE_S`` before).
        exit_frame: first frame it is gone.
        containers: ISO 6346 numbers, rear to front.
        size_types: size/type code of each container.
        plate: the tractor unit's plate.
        trailer_plate: the semi-trailer's plate (series R).
        colour: palette index of the containers' paint.
    """

    index: int
    entry_frame: int
    stop_frame: int
    leave_frame: int
    exit_frame: int
    containers: tuple[str, ...]
    size_types: tuple[str, ...]
    plate: Plate
    trailer_plate: Plate
    colour: int

    def present(self, frame: int) -> bool:
        """Whether the truck is in the picture at ``frame``."""
        return self.entry_frame <= frame < self.exit_frame

    def moving(self, frame: int) -> bool:
        """Whether it drives (in or out) at ``frame``."""
        return (
            self.entry_frame <= frame < self.stop_frame
            or self.leave_frame <= frame < self.exit_frame
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultWindow:
    """A fault active on frames ``start_frame`` up to (not including) ``end_frame``."""

    kind: str
    start_frame: int
    end_frame: int

    def covers(self, frame: int) -> bool:
        """Whether the fault is active at ``frame``."""
        return self.start_frame <= frame < self.end_frame


class TruckPlan:
    """Trucks, one after another, with an empty lane between them.

    Args:
        seed: seeds each truck's load, plates and idle time.
        fps: frames per second of the timeline.
        trucks: how many; ``None`` for an endless lane.
        truck_every_s: mean time from one truck's entry to the next one's: most of it
            is an empty lane (at least two seconds of it, whatever the setting).
        dwell_s: how long a truck stands at the gate.
        first_truck_s: empty lane before the first truck.
    """

    def __init__(
        self,
        *,
        seed: int,
        fps: float,
        trucks: int | None,
        truck_every_s: float,
        dwell_s: float,
        first_truck_s: float,
    ) -> None:
        if fps <= 0 or dwell_s < 0 or truck_every_s <= 0 or first_truck_s < 0:
            raise ValueError("fps and truck_every_s must be positive, times not negative")
        if trucks is not None and trucks < 0:
            raise ValueError("trucks must not be negative")
        self.seed = seed
        self.fps = fps
        self.count = trucks
        self.truck_every_s = truck_every_s
        self.dwell_s = dwell_s
        self.first_truck_s = first_truck_s
        self._trucks: list[Truck] = []

    def _frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.fps))

    def _make(self, index: int) -> Truck:
        rng = random.Random(f"{self.seed}:truck:{index}")
        if index == 0:
            entry = round(self.first_truck_s * self.fps)
        else:
            idle_s = self.truck_every_s - 2 * DRIVE_S - self.dwell_s
            idle_s = max(2.0, idle_s * rng.uniform(0.7, 1.3))
            entry = self._trucks[index - 1].exit_frame + self._frames(idle_s)
        stop = entry + self._frames(DRIVE_S)
        leave = stop + self._frames(self.dwell_s)
        size_types = rng.choice(LOADS)
        return Truck(
            index=index,
            entry_frame=entry,
            stop_frame=stop,
            leave_frame=leave,
            exit_frame=leave + self._frames(DRIVE_S),
            containers=tuple(container_number(rng) for _ in size_types),
            size_types=size_types,
            plate=plate(rng),
            trailer_plate=plate(rng, trailer=True),
            colour=rng.randrange(1 << 16),
        )

    def get(self, index: int) -> Truck | None:
        """Truck ``index``, or ``None`` past the last one."""
        if index < 0 or (self.count is not None and index >= self.count):
            return None
        while len(self._trucks) <= index:
            self._trucks.append(self._make(len(self._trucks)))
        return self._trucks[index]

    def __iter__(self) -> Iterator[Truck]:
        index = 0
        while (truck := self.get(index)) is not None:
            yield truck
            index += 1

    def at(self, frame: int) -> Truck | None:
        """The truck in the picture at ``frame``, if any (visits never overlap)."""
        while self.count is None or len(self._trucks) < self.count:  # plan past ``frame``
            if self._trucks and self._trucks[-1].entry_frame > frame:
                break
            self.get(len(self._trucks))
        index = bisect.bisect_right(self._trucks, frame, key=lambda t: t.entry_frame) - 1
        if index >= 0 and self._trucks[index].present(frame):
            return self._trucks[index]
        return None

    def until(self, frame: int) -> list[Truck]:
        """Every truck that has entered by ``frame``."""
        trucks = []
        for truck in self:
            if truck.entry_frame > frame:
                break
            trucks.append(truck)
        return trucks

    def end_frame(self) -> int | None:
        """The first frame after the last truck and two seconds of empty lane."""
        if self.count is None:
            return None
        last = self.get(self.count - 1)
        end = last.exit_frame if last is not None else 0
        return end + self._frames(2.0)


class FaultPlan:
    """Fault windows, cycling through the enabled kinds in :data:`FAULTS` order.

    Window ``k`` starts ``first_s + k * every_s`` seconds in, plus up to a quarter of
    ``every_s`` of jitter drawn from the seed, and lasts ``duration_s``.
    """

    def __init__(
        self,
        *,
        faults: Iterable[str],
        seed: int,
        fps: float,
        first_s: float,
        every_s: float,
        duration_s: float,
    ) -> None:
        enabled = frozenset(faults)
        if unknown := enabled - set(FAULTS):
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {list(FAULTS)}")
        if every_s <= duration_s or duration_s <= 0 or first_s < 0:
            raise ValueError("fault windows need 0 < duration_s < every_s, first_s >= 0")
        self.kinds = tuple(f for f in FAULTS if f in enabled)
        self.seed = seed
        self.fps = fps
        self.first_s = first_s
        self.every_s = every_s
        self.duration_s = duration_s

    def window(self, k: int) -> FaultWindow:
        """The ``k``-th fault window."""
        jitter = random.Random(f"{self.seed}:fault:{k}").uniform(0, self.every_s / 4)
        start = round((self.first_s + k * self.every_s + jitter) * self.fps)
        return FaultWindow(
            kind=self.kinds[k % len(self.kinds)],
            start_frame=start,
            end_frame=start + max(1, round(self.duration_s * self.fps)),
        )

    def active(self, kind: str, frame: int) -> FaultWindow | None:
        """The window of ``kind`` covering ``frame``, if any."""
        if kind not in self.kinds:
            return None
        k = math.floor((frame / self.fps - self.first_s) / self.every_s)
        for candidate in (k - 1, k):
            if candidate >= 0 and (w := self.window(candidate)).kind == kind and w.covers(frame):
                return w
        return None

    def until(self, frame: int) -> list[FaultWindow]:
        """Every window starting by ``frame``."""
        windows: list[FaultWindow] = []
        if not self.kinds:
            return windows
        k = 0
        while (w := self.window(k)).start_frame <= frame:
            windows.append(w)
            k += 1
        return windows
