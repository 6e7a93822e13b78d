"""Typed facts between families, on one in-process bus the core owns.

A family never reads another family's topics or payloads. What one family learns
that another may act on is a :class:`Fact`: a small frozen record published on the
:class:`FactBus` by the processor that learnt it, delivered at once, in the event
loop, to every subscriber of its type. The camera family triggers OCR on
:class:`VehicleOnScale` from the scale family; the lane correlator joins them all.

Facts are published when the processor has decided them, which is before the
records built from the same reading are durable: a fact is a hint to act on (read a
plate now), never evidence. Evidence is the record, which carries its own ``id``.

A subscriber that raises is logged and unsubscribed from nothing: the publisher and
the other subscribers never see its error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from gateway.readings import Stamp

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """Base of every fact: which device it concerns and when it happened there.

    ``record_id`` is the ``id`` of the record the same decision produced (the
    :class:`~gateway.records.Draft` made with it), for facts that have one: what a lane
    cites as its evidence. It is named before the record is durable.
    """

    device: str
    at: Stamp
    record_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleOnScale(Fact):
    """A scale's weight rose to its ``min_weight_kg`` or above (or over capacity):
    a vehicle drove on. ``weight_kg`` is ``None`` when the indicator shows no value."""

    weight_kg: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleLeftScale(Fact):
    """A scale's weight fell below its ``min_weight_kg``: the vehicle drove off."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WeighingRecorded(Fact):
    """A passage's ``event/weighing`` was decided: its final weight, or ``None``
    when no weight qualified (``status`` ``no_stable_weight``)."""

    weight_kg: float | None
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRead(Fact):
    """A camera region's passage was read: a container code or a plate.

    ``text`` is ``None`` when the region showed nothing readable; ``verified`` says
    the text passed its check (ISO 6346 check digit and owner, plate shape).
    """

    kind: str
    region: str
    text: str | None
    verified: bool
    confidence: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SealObserved(Fact):
    """A seal was seen by a gate reader or reported by an e-lock, and in what state."""

    seal_id: str
    state: str
    alarm: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanRecorded(Fact):
    """An X-ray scan was recorded (``event/xray_scan``) with its original's hash."""

    scan_id: str
    sha256: str
    containers: tuple[str, ...]


F = TypeVar("F", bound=Fact)


class FactBus:
    """Publish/subscribe by fact type (a subscriber to :class:`Fact` gets them all)."""

    def __init__(self) -> None:
        self._subscribers: dict[type[Fact], list[Callable[[Fact], None]]] = {}
        self.published_total = 0
        self.subscriber_errors_total = 0

    def subscribe(self, kind: type[F], callback: Callable[[F], None]) -> None:
        """Call ``callback`` with every fact of type ``kind`` (subclasses included)."""
        self._subscribers.setdefault(kind, []).append(callback)  # type: ignore[arg-type]

    def publish(self, fact: Fact) -> None:
        """Deliver ``fact`` now to its type's subscribers, in subscription order."""
        self.published_total += 1
        for kind in type(fact).__mro__:
            for callback in self._subscribers.get(kind, ()):
                try:
                    callback(fact)
                except Exception:
                    self.subscriber_errors_total += 1
                    log.exception("fact subscriber failed", fact=type(fact).__name__)
