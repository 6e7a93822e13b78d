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

from collections.abc import Callable
from typing import Any

from drivers.camera.readings import CropsCaptured, MotionObserved, Snapshot, StillCaptured
from gateway.readings import Reading
from gateway.records import Draft, MediaDraft, Outgoing, Priority, jpeg_media, media_ref, rfc3339

MOTION_TOPIC = "event/motion"


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
            media = jpeg_media(self.device, motion.snapshot.jpeg, Priority.STATE)
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
        media = jpeg_media(self.device, still.snapshot.jpeg, Priority.TELEMETRY)
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
