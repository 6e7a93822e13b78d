"""Cameras: motion events with the best snapshot, stills for the idle wall.

The camera driver analyses frames off the event loop and yields only what changed;
this processor turns that into what central receives:

- ``event/motion`` (priority ``EVENT``): ``type`` start, update (significant change or
  heartbeat) and end of one event, with boxes and score. ``start`` and ``end`` carry a
  snapshot (at ``end`` the best frame of the event: largest, sharpest moving region),
  published on ``media/{media_id}`` as ``image/jpeg`` in the same commit and referred
  to by ``media_id`` and ``sha256``. Snapshots are evicted before events (priority
  ``STATE``): under pressure central keeps the fact and loses the picture.
- ``reading/{camera}/still`` (priority ``TELEMETRY``) with its JPEG, every
  ``still_interval_s``: the idle camera wall, first to go when the outbox is full.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drivers.camera.commands import OCR_COMMAND, OcrCommand
from drivers.camera.config import CameraSection
from drivers.camera.readings import CropsCaptured, MotionObserved, Snapshot, StillCaptured
from gateway.central_commands import Handler
from gateway.config import DeviceSection
from gateway.errors import ConfigError
from gateway.facts import VehicleOnScale
from gateway.family import FamilyContext, Processor
from gateway.readings import Reading
from gateway.records import Draft, MediaDraft, Outgoing, Priority, jpeg_media, media_ref, rfc3339
from gateway.services import Service

if TYPE_CHECKING:
    from drivers.camera.ocr.service import OcrService

MOTION_TOPIC = "event/motion"


def _snapshot_media(device: str, snapshot: Snapshot, priority: Priority) -> MediaDraft:
    """``snapshot`` to publish, with the digest taken when it was encoded (not again)."""
    return jpeg_media(device, snapshot.jpeg, priority, sha256=snapshot.sha256)


def _snapshot_ref(media: MediaDraft, snapshot: Snapshot) -> dict[str, Any]:
    return {**media_ref(media), "width": snapshot.width, "height": snapshot.height}


OcrSubmit = Callable[[str, CropsCaptured], None]
"""Hands a camera's OCR crops to the OCR service (which publishes ``event/ocr`` itself)."""


class CameraProcessor:
    """Turns one camera's readings into records and media; OCR crops go to ``ocr``."""

    def __init__(self, device: str, ocr: OcrSubmit | None = None) -> None:
        self.device = device
        self.ocr = ocr

    def feed(self, reading: Reading) -> list[Outgoing]:
        """One reading in; records (and their media) out."""
        if isinstance(reading, MotionObserved):
            return self._motion(reading)
        if isinstance(reading, StillCaptured):
            return self._still(reading)
        if isinstance(reading, CropsCaptured):
            if self.ocr is not None:
                self.ocr(self.device, reading)  # read off the loop; results come later
            return []
        return []  # CameraStats: shown in the device state, not published on its own

    def _motion(self, motion: MotionObserved) -> list[Outgoing]:
        out: list[Outgoing] = []
        snapshot: dict[str, Any] | None = None
        if motion.snapshot is not None:
            media = _snapshot_media(self.device, motion.snapshot, Priority.STATE)
            snapshot = _snapshot_ref(media, motion.snapshot)
            out.append(media)
        out.append(
            Draft(
                topic=MOTION_TOPIC,
                schema="motion/1",
                device=self.device,
                ts=motion.at.utc,
                data={
                    "type": motion.phase,
                    "event_id": motion.event_id,
                    "camera": self.device,
                    "started": rfc3339(motion.started_at.utc),
                    "boxes": [[round(v, 4) for v in box] for box in motion.boxes],
                    "score": round(motion.score, 4),
                    "frames": motion.frames,
                    "snapshot": snapshot,
                },
                priority=Priority.EVENT,
            )
        )
        return out

    def _still(self, still: StillCaptured) -> list[Outgoing]:
        media = _snapshot_media(self.device, still.snapshot, Priority.TELEMETRY)
        return [
            media,
            Draft(
                topic=f"reading/{self.device}/still",
                schema="still/1",
                device=self.device,
                ts=still.at.utc,
                data={"camera": self.device, "snapshot": _snapshot_ref(media, still.snapshot)},
                priority=Priority.TELEMETRY,
            ),
        ]


class CameraRuntime:
    """The camera family in a daemon: processors, the OCR service and its triggers.

    OCR triggers besides motion: :class:`~gateway.facts.VehicleOnScale` for a scale a
    camera lists in ``ocr_on_weighing`` (the truck is on the scale, so in the lane
    camera's view), and ``cmd/ocr`` from the centre.
    """

    def __init__(self, context: FamilyContext, devices: Sequence[DeviceSection]) -> None:
        self.context = context
        self.cameras = {d.id: d for d in devices if isinstance(d, CameraSection)}
        self.ocr: OcrService | None = None
        if any(c.ocr_regions for c in self.cameras.values()):
            from drivers.camera.ocr.service import OcrService  # noqa: PLC0415 - the ocr extra

            self.ocr = OcrService(context.emit, bus=context.bus)
        self._on_scale: dict[str, list[str]] = {}
        for camera in self.cameras.values():
            for scale in camera.ocr_on_weighing:
                self._on_scale.setdefault(scale, []).append(camera.id)
        self._check_scales()
        context.bus.subscribe(VehicleOnScale, self._vehicle_on)

    def _check_scales(self) -> None:
        config = self.context.config
        if config is None:
            return
        devices = {d.id: d for d in config.devices}
        for index, device in enumerate(config.devices):
            camera = self.cameras.get(device.id)
            for scale in camera.ocr_on_weighing if camera is not None else ():
                if scale not in devices or not devices[scale].driver.startswith("scale."):
                    scales = [d.id for d in config.devices if d.driver.startswith("scale.")]
                    raise ConfigError(
                        f"{config.source}: devices[{index}].ocr_on_weighing: no scale {scale!r}"
                        f"; scales: {', '.join(scales) or 'none'}"
                    )

    def _vehicle_on(self, fact: VehicleOnScale) -> None:
        for camera in self._on_scale.get(fact.device, ()):
            self.request_ocr(camera, f"weighing:{fact.device}")

    def request_ocr(self, camera: str, trigger: str) -> bool:
        """Ask a running camera to read its regions; False when it cannot now."""
        from drivers.camera.driver import CameraDriver  # noqa: PLC0415 - OpenCV

        driver = self.context.drivers(camera)
        return isinstance(driver, CameraDriver) and driver.request_ocr(trigger)

    def processor(self, device: DeviceSection) -> Processor:
        """See :class:`gateway.family.FamilyRuntime`."""
        return CameraProcessor(device.id, self.ocr.submit if self.ocr is not None else None)

    def commands(self) -> Mapping[str, Handler]:
        """``cmd/ocr`` when a camera has OCR regions."""
        if self.ocr is None:
            return {}
        readers = [c.id for c in self.cameras.values() if c.ocr_regions]
        return {OCR_COMMAND: OcrCommand(readers, self.request_ocr)}

    def services(self) -> Sequence[Service]:
        """The OCR worker, when a camera has OCR regions."""
        return (self.ocr,) if self.ocr is not None else ()

    def status(self) -> dict[str, Any]:
        """``ocr``: passages, crops, drops."""
        return {"ocr": self.ocr.stats()} if self.ocr is not None else {}


runtime = CameraRuntime
"""The camera family's runtime factory."""
