"""Trucks crossing a weighbridge, tick by tick: what every scale simulator displays.

Shared by the serial indicator (:mod:`simulators.scale`) and the Modbus transmitter
(:mod:`simulators.modbus`), so that one seed gives the same trucks whichever wire
format carries them. Pure: no I/O, no clock; the caller paces the ticks.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# The life of one truck on the scale, in seconds at speed 1 (divided by ``speed``).
EMPTY_S = 1.0
DRIVE_ON_S = 1.5
PLATEAU_S = 3.0
DRIVE_OFF_S = 1.0
TAIL_S = 2.0  # stable zero after the last truck, before finishing

MIN_KG, MAX_KG, STEP_KG = 8_000, 44_000, 20  # plateau weights: a loaded truck, 20 kg steps
ENDLESS_HISTORY = 100  # plateau weights kept when playing trucks forever


@dataclass(frozen=True, slots=True)
class ScaleState:
    """What the indicator shows at one tick."""

    weight_kg: int
    motion: bool


class TruckTimeline:
    """Every tick's :class:`ScaleState`, truck after truck, then a trailing stable zero.

    Each truck: empty and stable at zero, driving on (the value rising with some
    bounce, motion flagged), standing still on a plateau, driving off.

    Args:
        trucks: how many trucks; ``None`` plays forever.
        speed: time compression; every duration is divided by it.
        rate_hz: ticks per second.
        seed: seeds the plateau weights and the motion wobble (two separate streams).

    Attributes:
        weights_kg: the plateau weights, drawn from the seed before they are played
            (when playing forever: drawn as trucks arrive, the last 100 kept). The list
            is only ever changed in place, so a caller may hold on to it.
    """

    def __init__(self, *, trucks: int | None, speed: float, rate_hz: float, seed: int) -> None:
        self.trucks = trucks
        self.speed = speed
        self.rate_hz = rate_hz
        self._weights_rng = random.Random(f"{seed}:weights")
        self._motion_rng = random.Random(f"{seed}:motion")
        self.weights_kg: list[int] = [self._draw_weight() for _ in range(trucks or 0)]

    def __iter__(self) -> Iterator[ScaleState]:
        indices: Iterable[int] = itertools.count() if self.trucks is None else range(self.trucks)
        for index in indices:
            if self.trucks is None:
                self.weights_kg.append(self._draw_weight())
                del self.weights_kg[:-ENDLESS_HISTORY]
                weight = self.weights_kg[-1]
            else:
                weight = self.weights_kg[index]
            yield from self._hold(0, EMPTY_S)
            yield from self._ramp(0, weight, DRIVE_ON_S)
            yield from self._hold(weight, PLATEAU_S)
            yield from self._ramp(weight, 0, DRIVE_OFF_S)
        yield from self._hold(0, TAIL_S)

    def _ticks(self, seconds: float) -> int:
        return max(1, round(seconds / self.speed * self.rate_hz))

    def _hold(self, weight_kg: int, seconds: float) -> Iterator[ScaleState]:
        state = ScaleState(weight_kg=weight_kg, motion=False)
        for _ in range(self._ticks(seconds)):
            yield state

    def _ramp(self, start: int, end: int, seconds: float) -> Iterator[ScaleState]:
        """Axles rolling on or off: a rising or falling value with some bounce.

        Consecutive values always differ, so a protocol without a motion flag
        (XK3190) still shows the motion.
        """
        ticks = self._ticks(seconds)
        top = max(start, end)
        previous = start
        for i in range(1, ticks + 1):
            level = start + (end - start) * i / (ticks + 1)
            level += self._motion_rng.uniform(-0.03, 0.03) * top
            value = min(max(round(level / STEP_KG) * STEP_KG, 0), top + top // 20)
            if value == previous:
                value += STEP_KG if value + STEP_KG <= top else -STEP_KG
            previous = value
            yield ScaleState(weight_kg=value, motion=True)

    def _draw_weight(self) -> int:
        return self._weights_rng.randrange(MIN_KG, MAX_KG + STEP_KG, STEP_KG)
