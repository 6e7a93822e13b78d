"""The per-camera analysis thread: frames from the capture slot to readings.

Motion analysis and JPEG encoding cost milliseconds per frame; on the event loop they
would delay every other device. So each camera has one analysis thread that takes the
latest frame of the analysed stream at ``analyse_fps``, runs the detector, encodes the
pictures that are due and hands finished readings to the loop through a callback
(the driver passes one using ``call_soon_threadsafe``).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from drivers.camera.capture import Frame, RateMeter, StreamCapture
from drivers.camera.config import CameraConfig
from drivers.camera.motion import MotionChange, MotionDetector
from drivers.camera.readings import (
    Box,
    CameraStats,
    CropsCaptured,
    MotionObserved,
    RegionCrop,
    Snapshot,
    StillCaptured,
)
from drivers.camera.snapshot import encode_snapshot
from gateway.errors import DeviceIOError, FrameError
from gateway.readings import Reading, Stamp

Item = list[Reading | FrameError] | DeviceIOError
"""What the worker delivers: a batch of readings, or the error that stopped it."""

TAKE_WAIT_S = 0.5
"""Longest wait for a frame before checking for stop again."""
CROP_QUALITY = 90
"""JPEG quality of OCR crops published as evidence (small pictures, text must stay sharp)."""


@dataclass(slots=True)
class _Burst:
    """An OCR passage in progress: a few crops of every region, spaced out for voting."""

    passage_id: str
    trigger: str
    taken: int = 0
    next_due: float = 0.0


def _overlaps(a: Box, b: Box) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


class CameraWorker:
    """Captures (analysed stream, optional snapshot stream) plus the analysis thread."""

    def __init__(
        self,
        config: CameraConfig,
        deliver: Callable[[Item], None],
        ready: Callable[[], None],
    ) -> None:
        self.config = config
        self._deliver = deliver
        self._ready = ready
        timeouts = {
            "open_timeout_s": config.open_timeout_s,
            "read_timeout_s": config.read_timeout_s,
        }
        self.analysed = StreamCapture(config.url, name=f"camera-{config.id}", **timeouts)
        self.snapshots = (
            StreamCapture(config.snapshot_url, name=f"camera-{config.id}-main", **timeouts)
            if config.snapshot_url
            else None
        )
        self.detector: MotionDetector[Frame] = MotionDetector(config)
        self.frames_analysed = 0
        self.rate_analysed = RateMeter()
        self._events: dict[int, tuple[str, Stamp]] = {}
        self._event_boxes: dict[int, tuple[Box, ...]] = {}
        self._ocr_requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._detector_lock = threading.Lock()  # analysis thread vs finish_events()
        self._burst: _Burst | None = None
        self._next_still = 0.0
        self._next_stats = 0.0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{config.id}-analysis", daemon=True
        )

    def start(self) -> None:
        """Start reading and analysing."""
        self._started = time.monotonic()
        for capture in self._captures():
            capture.start()
        self._thread.start()

    def stop(self) -> None:
        """Ask every thread to finish; does not wait (see :meth:`join`)."""
        self._stop.set()
        for capture in self._captures():
            capture.stop()

    @property
    def join_budget_s(self) -> float:
        """Longest the threads can take to end after :meth:`stop`."""
        return max(capture.join_budget_s for capture in self._captures())

    def join(self, timeout: float) -> bool:
        """Wait for all threads (a blocked network read ends by its read timeout)."""
        deadline = time.monotonic() + timeout
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return (
            all(capture.join(max(0.0, deadline - time.monotonic())) for capture in self._captures())
            and not self._thread.is_alive()
        )

    def finish_events(self) -> list[Reading | FrameError]:
        """End the motion event in progress, if any (the stream stalled): its last step."""
        with self._detector_lock:
            changes = self.detector.finish()
            out: list[Reading | FrameError] = []
            for change in changes:
                best = change.best
                if best is None:
                    continue
                out.extend(self._motion(change, best, best))
            return out

    def request_ocr(self, trigger: str) -> None:
        """Read the OCR regions soon (any thread): a scale, a command from the centre."""
        self._ocr_requests.put(trigger)

    def counters(self) -> dict[str, int]:
        """Integer counters for ``DriverCounters.extra`` (rates rounded to whole fps)."""
        now = time.monotonic()
        return {
            "frames_in": self.analysed.frames_in,
            "frames_analysed": self.frames_analysed,
            "frames_dropped": self.analysed.dropped,
            "reconnects": self.analysed.reconnects,
            "fps_in": round(self.analysed.rate_in.rate(now)),
            "fps_analysed": round(self.rate_analysed.rate(now)),
        }

    def stats(self, at: Stamp) -> CameraStats:
        """The health reading for now."""
        a = self.analysed
        return CameraStats(
            at=at,
            width=a.width,
            height=a.height,
            codec=a.codec,
            fps_in=a.rate_in.rate(at.mono),
            fps_analysed=self.rate_analysed.rate(at.mono),
            frames_in=a.frames_in,
            frames_analysed=self.frames_analysed,
            frames_dropped=a.dropped,
            reconnects=a.reconnects,
            recalibrations=self.detector.recalibrations,
        )

    def _captures(self) -> list[StreamCapture]:
        return [self.analysed] if self.snapshots is None else [self.analysed, self.snapshots]

    # -- analysis thread ---------------------------------------------------------------

    def _send(self, item: Item | None) -> None:
        """Deliver ``item`` (``None``: announce the first frame) to the driver's loop."""
        try:
            if item is None:
                self._ready()
            else:
                self._deliver(item)
        except RuntimeError:  # the event loop closed under us: nobody is listening any more
            self._stop.set()

    def _run(self) -> None:
        period = 1.0 / self.config.analyse_fps
        announced = False
        try:
            while not self._stop.is_set():
                frame = self.analysed.take(TAKE_WAIT_S)
                if frame is None:
                    continue
                started = time.monotonic()
                if not announced:
                    announced = True
                    self._send(None)
                with self._detector_lock:
                    items = self._analyse(frame)
                if items:
                    self._send(items)
                self._stop.wait(max(0.0, started + period - time.monotonic()))
        except Exception as exc:  # any failure must reach the driver, not die with the thread
            self._send(DeviceIOError(f"{self.config.id}: analysis failed: {exc!r}"))

    def _picture_source(self, frame: Frame) -> Frame:
        """The frame snapshots come from: the main stream's latest when there is one."""
        if self.snapshots is not None:
            main = self.snapshots.latest()
            if main is not None:
                return main
        return frame

    def _main_pending(self, picture: Frame, frame: Frame) -> bool:
        """The main stream is still opening: a still waits for it (up to its open timeout)."""
        return (
            self.snapshots is not None
            and picture is frame
            and frame.at.mono - self._started < self.config.open_timeout_s
        )

    def _analyse(self, frame: Frame) -> list[Reading | FrameError]:
        config = self.config
        now = frame.at.mono
        self.frames_analysed += 1
        self.rate_analysed.tick(now)
        picture = self._picture_source(frame)
        out: list[Reading | FrameError] = []
        for change in self.detector.feed(frame.image, now, picture):
            out.extend(self._motion(change, frame, picture))
            self._motion_trigger(change)
        if config.ocr_regions:
            out.extend(self._ocr(frame, picture))
        if (
            config.still_interval_s
            and now >= self._next_still
            and not self._main_pending(picture, frame)
        ):
            self._next_still = now + config.still_interval_s
            still = self._snapshot(picture, config.still_height)
            out.append(
                still
                if isinstance(still, FrameError)
                else StillCaptured(at=frame.at, snapshot=still)
            )
        if config.stats_interval_s and now >= self._next_stats:
            self._next_stats = now + config.stats_interval_s
            out.append(self.stats(frame.at))
        return out

    def _motion_trigger(self, change: MotionChange[Frame]) -> None:
        """Motion that ends in an OCR region: the vehicle has stopped there, read it."""
        if change.boxes:
            self._event_boxes[change.event] = change.boxes
        if change.phase != "end":
            return
        boxes = self._event_boxes.pop(change.event, ())
        regions = [r.box for r in self.config.ocr_regions]
        if self.config.ocr_on_motion and any(_overlaps(b, r) for b in boxes for r in regions):
            self._ocr_requests.put("motion")

    def _ocr(self, frame: Frame, picture: Frame) -> list[Reading | FrameError]:
        """Start a burst when asked, and take its next crops when they are due."""
        now = frame.at.mono
        while not self._ocr_requests.empty():
            trigger = self._ocr_requests.get_nowait()
            if self._burst is None:  # a passage already being read answers this one too
                self._burst = _Burst(str(uuid.uuid4()), trigger, next_due=now)
        burst = self._burst
        if burst is None or now < burst.next_due or self._main_pending(picture, frame):
            return []
        burst.taken += 1
        burst.next_due = now + self.config.ocr_interval_s
        frames = self.config.ocr_frames
        if burst.taken >= frames:
            self._burst = None
        crops: list[RegionCrop] = []
        image = picture.image
        height, width = image.shape[:2]
        for region in self.config.ocr_regions:
            x, y, w, h = region.box
            cut = image[
                round(y * height) : round((y + h) * height),
                round(x * width) : round((x + w) * width),
            ].copy()
            try:
                jpeg = encode_snapshot(cut, cut.shape[0], CROP_QUALITY)
            except FrameError as exc:
                return [exc]
            crops.append(RegionCrop(region=region.name, kind=region.kind, image=cut, jpeg=jpeg))
        return [
            CropsCaptured(
                at=picture.at,
                passage_id=burst.passage_id,
                trigger=burst.trigger,
                frame=burst.taken,
                frames=frames,
                crops=tuple(crops),
            )
        ]

    def _snapshot(self, picture: Frame, height: int | None = None) -> Snapshot | FrameError:
        """``picture`` as JPEG, at most ``height`` rows (default ``snapshot_height``)."""
        try:
            return encode_snapshot(
                picture.image, height or self.config.snapshot_height, self.config.jpeg_quality
            )
        except FrameError as exc:
            return exc

    def _motion(
        self, change: MotionChange[Frame], frame: Frame, picture: Frame
    ) -> list[Reading | FrameError]:
        """The reading for one detector step; a failed encoding still reports the step."""
        if change.phase == "start":
            self._events[change.event] = (str(uuid.uuid4()), frame.at)
        event_id, started_at = self._events[change.event]
        out: list[Reading | FrameError] = []
        snapshot: Snapshot | None = None
        if change.phase == "end" or (change.phase == "start" and self.config.snapshot_on_start):
            best = change.best if change.best is not None else picture
            encoded = self._snapshot(best)
            if isinstance(encoded, FrameError):
                out.append(encoded)
            else:
                snapshot = encoded
        if change.phase == "end":
            del self._events[change.event]
        out.append(
            MotionObserved(
                at=frame.at,
                phase=change.phase,
                event_id=event_id,
                boxes=change.boxes,
                score=change.score,
                snapshot=snapshot,
                started_at=started_at,
                frames=change.frames,
            )
        )
        return out
