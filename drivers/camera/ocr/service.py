"""OCR in the daemon: camera crops in, voted ``event/ocr`` records out.

A camera with ``ocr_regions`` yields :class:`CropsCaptured` bursts (a few frames of
every region, one passage). The crops go to the OCR worker process (latest request
per camera region wins; drops are counted); when the passage's last frame is read,
the readings of each region are voted on and published:

- ``event/ocr`` (priority ``EVENT``), ``kind`` container or plate: ``text``,
  ``verified``, ``confidence``, ``candidates``, camera, region, and the crop of the
  best frame on ``media/{media_id}`` (``media_id`` + ``sha256`` in the record).
  A container code is ``verified`` only with a valid ISO 6346 check digit and a known
  owner prefix; characters are never changed to make a check digit pass. A plate is
  ``verified`` when it has the shape of a Vietnamese or Chinese plate.

A motion-triggered passage where a region showed no text at all (the lane after the
truck left) publishes nothing for that region; one asked for by a scale or the centre
publishes ``text: null`` so the request has an answer.

Triggers besides motion: a vehicle driving onto a scale named in a camera's
``ocr_on_weighing`` (the scale family's :class:`~gateway.facts.VehicleOnScale`), and
``cmd/ocr`` from the centre (see :class:`drivers.camera.processor.CameraRuntime`).
Every region's decision is also a :class:`~gateway.facts.CodeRead` on the fact bus.

The service runs under the core's :class:`~gateway.services.ServiceSupervisor`: a
worker that fails to start or dies is started again with backoff, and crops that
arrive meanwhile are dropped and counted (``dropped_down``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.camera.ocr.container import ContainerReading
from drivers.camera.ocr.plate import PlateReading
from drivers.camera.ocr.voting import container_passage, plate_passage
from drivers.camera.ocr.worker import HEALTH_CHECK_S, OcrReader, RequestDroppedError
from drivers.camera.readings import CropsCaptured, RegionCrop
from gateway import iso6346
from gateway.errors import DeviceIOError, GatewayError
from gateway.facts import CodeRead, FactBus
from gateway.readings import Stamp
from gateway.records import Draft, MediaDraft, Outgoing, Priority, jpeg_media, media_ref

log = structlog.get_logger(__name__)

OCR_TOPIC = "event/ocr"

Emit = Callable[[Sequence[Outgoing]], Awaitable[object]]


@dataclass(slots=True)
class _Region:
    """One region's readings in a passage."""

    kind: str
    readings: list[ContainerReading | PlateReading | None] = field(default_factory=list)
    best: tuple[float, RegionCrop] | None = None  # (confidence, crop) of the best frame

    def add(self, reading: ContainerReading | PlateReading | None, crop: RegionCrop) -> None:
        self.readings.append(reading)
        confidence = _confidence(reading)
        if self.best is None or confidence > self.best[0]:
            self.best = (confidence, crop)


def _confidence(reading: ContainerReading | PlateReading | None) -> float:
    if isinstance(reading, PlateReading):
        return reading.confidence + (1.0 if reading.valid else 0.0)
    if isinstance(reading, ContainerReading) and reading.codes:
        return max(c.confidence + (1.0 if c.verified else 0.0) for c in reading.codes)
    return -1.0


@dataclass(slots=True)
class _Passage:
    """A burst being read: outstanding crops and what each region read."""

    device: str
    passage_id: str
    trigger: str
    frames: int
    started: Stamp
    last_seen: bool = False
    outstanding: int = 0
    regions: dict[str, _Region] = field(default_factory=dict)


class OcrService:
    """Owns the OCR worker; reads passages and emits their records."""

    name = "ocr"

    def __init__(
        self,
        emit: Emit,
        *,
        cpu: int | None = None,
        bus: FactBus | None = None,
        reader: Callable[[], OcrReader] | None = None,
        check_every_s: float = HEALTH_CHECK_S,
    ) -> None:
        self._emit = emit
        self._bus = bus or FactBus()
        self._new_reader = reader or (lambda: OcrReader(cpu=cpu))
        self._reader = self._new_reader()
        self._serving = False
        self._check_every_s = check_every_s
        self.dropped_down = 0
        self._passages: dict[tuple[str, str], _Passage] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.passages_total = 0
        self.crops_total = 0
        self.empty_total = 0

    async def start(self) -> None:
        """Start the worker process and wait for its engine to warm up."""
        await self._reader.start()
        self._serving = True
        log.info("ocr ready", workers=list(self._reader.pids))

    async def run(self, ready: Callable[[], None]) -> None:
        """Start a worker, serve until it breaks (raising), stop it (see the module)."""
        if self._reader.started or self._reader.broken is not None:
            self._reader = self._new_reader()
        try:
            await self.start()
            ready()
            await self._reader.wait_broken(self._check_every_s)
            raise DeviceIOError(f"OCR worker died: {self._reader.broken}")
        finally:
            self._serving = False
            await self.aclose()
            self._passages.clear()

    async def aclose(self) -> None:
        """Stop reading; passages in progress are abandoned (the worker is stopped)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reader.aclose()

    @property
    def pids(self) -> tuple[int, ...]:
        """The worker processes' pids (empty while none runs)."""
        return self._reader.pids if self._serving else ()

    def stats(self) -> dict[str, int]:
        """For ``gatewayctl status``."""
        return {
            "passages": self.passages_total,
            "crops": self.crops_total,
            "empty_regions": self.empty_total,
            "dropped": self._reader.dropped,
            "dropped_down": self.dropped_down,
            "in_progress": len(self._passages),
        }

    def submit(self, device: str, burst: CropsCaptured) -> None:
        """Queue one frame's crops (called from the device's supervisor, never blocks)."""
        if not self._serving:
            self.dropped_down += len(burst.crops)
            return
        key = (device, burst.passage_id)
        passage = self._passages.get(key)
        if passage is None:
            passage = _Passage(
                device, burst.passage_id, burst.trigger, burst.frames, started=burst.at
            )
            log.info("ocr passage", device=device, trigger=burst.trigger, id=burst.passage_id)
            self._passages[key] = passage
        passage.last_seen = burst.frame >= burst.frames
        for crop in burst.crops:
            passage.outstanding += 1
            self.crops_total += 1
            task = asyncio.get_running_loop().create_task(
                self._read(key, crop), name=f"ocr-{device}-{crop.region}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, key: tuple[str, str], crop: RegionCrop) -> None:
        passage = self._passages[key]
        region = passage.regions.setdefault(crop.region, _Region(crop.kind))
        try:
            result = await self._reader.read(f"{key[0]}/{crop.region}", crop.kind, crop.image)
            region.add(result.container if crop.kind == "container" else result.plate, crop)
        except RequestDroppedError:
            pass  # a newer crop of the same region replaced it; counted by the reader
        except GatewayError as exc:
            log.error("ocr failed", device=key[0], region=crop.region, error=str(exc))
        finally:
            passage.outstanding -= 1
        if passage.last_seen and passage.outstanding == 0:
            del self._passages[key]
            self.passages_total += 1
            drafts = [
                d for name, r in passage.regions.items() for d in self._decide(passage, name, r)
            ]
            if drafts:
                await self._emit(drafts)

    def _decide(self, passage: _Passage, name: str, region: _Region) -> list[Outgoing]:
        device = passage.device
        if passage.trigger == "motion" and all(_confidence(r) < 0 for r in region.readings):
            # No text at all, e.g. the lane after a truck left: nothing to report. Asked
            # by a scale or the centre, "nothing read" is an answer and is published.
            self.empty_total += 1
            return []
        passage_data: dict[str, Any] = {
            "camera": device,
            "region": name,
            "passage_id": passage.passage_id,
            "trigger": passage.trigger,
            "frames": len(region.readings),
        }
        media: MediaDraft | None = None
        if region.best is not None:
            crop = region.best[1]
            media = jpeg_media(device, crop.jpeg.jpeg, Priority.STATE, sha256=crop.jpeg.sha256)
            ref = media_ref(media)
            passage_data |= {"media_id": ref["media_id"], "sha256": ref["sha256"]}
        results = (
            self._containers(region.readings)
            if region.kind == "container"
            else [self._plate(region.readings)]
        )
        out: list[Outgoing] = [media] if media is not None else []
        for data in results:
            record = Draft(
                topic=OCR_TOPIC,
                schema="ocr/1",
                device=device,
                ts=passage.started.utc,
                data={"kind": region.kind, **data, **passage_data},
                priority=Priority.EVENT,
            )
            self._bus.publish(
                CodeRead(
                    device=device,
                    at=passage.started,
                    kind=region.kind,
                    region=name,
                    text=data["text"],
                    verified=data["verified"],
                    confidence=data["confidence"],
                    record_id=record.id,
                )
            )
            out.append(record)
        return out

    @staticmethod
    def _containers(
        readings: list[ContainerReading | PlateReading | None],
    ) -> list[dict[str, Any]]:
        found = [r for r in readings if isinstance(r, ContainerReading)]
        codes = container_passage(found)
        if not codes:
            return [{"text": None, "verified": False, "confidence": 0.0, "candidates": []}]
        seen = sorted({c.code for r in found for c in r.codes})
        sizes = {c.code: c.size_type for r in found for c in r.codes if c.size_type}
        return [
            {
                "text": code.code,
                "verified": code.verified,
                "confidence": round(code.support / max(1, code.frames), 3),
                "check_digit_ok": "?" not in code.code and iso6346.is_valid(code.code),
                "owner_known": code.code[:4] in iso6346.KNOWN_OWNERS,
                "size_type": sizes.get(code.code),
                "candidates": [s for s in seen if s != code.code],
                "votes": code.frames,
            }
            for code in codes
        ]

    @staticmethod
    def _plate(readings: list[ContainerReading | PlateReading | None]) -> dict[str, Any]:
        plates = [r for r in readings if isinstance(r, PlateReading) or r is None]
        won = plate_passage(plates)
        seen = sorted({r.text for r in plates if isinstance(r, PlateReading)})
        if won is None:
            return {"text": None, "verified": False, "confidence": 0.0, "candidates": seen}
        return {
            "text": won.text,
            "raw": won.raw,
            "verified": won.valid,
            "confidence": round(won.confidence, 3),
            "country": won.country,
            "trailer": won.trailer,
            "colour": won.colour,
            "candidates": [s for s in seen if s != won.text],
        }
