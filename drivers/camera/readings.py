"""What a camera driver yields: motion steps, idle-wall stills and camera health.

JPEG bytes travel inside the readings as :class:`Snapshot`; the processor publishes them
on the media topic and references them from the record by ``sha256``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.readings import Reading, Stamp

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """An encoded picture (not a reading by itself).

    Attributes:
        jpeg: the JPEG bytes.
        width: pixels across.
        height: pixels down.
        sha256: hex digest of ``jpeg``; records reference the media by it.
    """

    jpeg: bytes
    width: int
    height: int
    sha256: str

    def summary(self) -> dict[str, object]:
        """Size and digest, never the bytes."""
        return {"width": self.width, "height": self.height, "bytes": len(self.jpeg)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MotionObserved(Reading):
    """One step of a motion event.

    Attributes:
        phase: ``start``, ``update`` (significant change or heartbeat) or ``end``.
        event_id: unique per camera run (a UUID); the steps of one event share it.
        boxes: moving regions as (x, y, w, h) fractions of the frame.
        score: fraction of the watched (unmasked) area that changed.
        snapshot: at ``start`` the current frame of the snapshot stream, at ``end`` the
            best frame of the event, ``None`` at ``update``.
        started_at: when the event started.
        frames: analysed frames with motion in the event so far.
        at: when the analysed frame behind this step arrived.
    """

    phase: Literal["start", "update", "end"]
    event_id: str
    boxes: tuple[Box, ...]
    score: float
    snapshot: Snapshot | None
    started_at: Stamp
    frames: int

    def summary(self) -> dict[str, object]:
        return {
            "phase": self.phase,
            "event_id": self.event_id,
            "boxes": len(self.boxes),
            "score": round(self.score, 4),
            "frames": self.frames,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StillCaptured(Reading):
    """The periodic still for the idle wall (every ``still_interval_s``).

    Attributes:
        snapshot: the picture, from the snapshot stream when one is configured.
    """

    snapshot: Snapshot

    def summary(self) -> dict[str, object]:
        return {"still": self.snapshot.summary()}


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraStats(Reading):
    """Camera health, every ``stats_interval_s``: is the stream alive and keeping up.

    Attributes:
        width: analysed stream's frame width (0 before the first frame).
        height: analysed stream's frame height.
        codec: FourCC the backend reports (``"MJPG"``, ``"h264"``; ``""`` if unknown).
        fps_in: frames per second decoded from the analysed stream (recent window).
        fps_analysed: frames per second through the motion detector.
        frames_in: frames decoded since open.
        frames_analysed: frames analysed since open.
        frames_dropped: frames overwritten before analysis (decimation or overload).
        reconnects: times the stream was reopened after a failed read.
        recalibrations: times a global change (lighting) re-learnt the background.
    """

    width: int
    height: int
    codec: str
    fps_in: float
    fps_analysed: float
    frames_in: int
    frames_analysed: int
    frames_dropped: int
    reconnects: int
    recalibrations: int

    def summary(self) -> dict[str, object]:
        return {
            "resolution": f"{self.width}x{self.height}",
            "codec": self.codec,
            "fps_in": round(self.fps_in, 1),
            "fps_analysed": round(self.fps_analysed, 1),
            "dropped": self.frames_dropped,
            "reconnects": self.reconnects,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionCrop:
    """One configured OCR region cut from a full-resolution frame.

    Attributes:
        region: the region's name.
        kind: ``container`` or ``plate``.
        image: the crop (BGR pixels), what the OCR engine reads.
        jpeg: the same crop as JPEG, published with the result as evidence.
    """

    region: str
    kind: Literal["container", "plate"]
    image: Any = field(repr=False)
    jpeg: Snapshot = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CropsCaptured(Reading):
    """Crops of every OCR region from one frame of a passage (a burst of a few frames).

    Attributes:
        passage_id: shared by the crops of one burst; results are voted per passage.
        trigger: why: ``motion``, ``weighing:<scale>``, ``command``.
        frame: 1-based frame of the burst.
        frames: frames in the burst; the passage is complete after the last.
        crops: one per region.
    """

    passage_id: str
    trigger: str
    frame: int
    frames: int
    crops: tuple[RegionCrop, ...]

    def summary(self) -> dict[str, object]:
        return {"ocr_passage": self.passage_id, "trigger": self.trigger, "frame": self.frame}
