"""The per-camera analysis thread: frames from the capture slot to readings.

Motion analysis and JPEG encoding cost milliseconds per frame; on the event loop they
would delay every other device. So each camera has one analysis thread that takes the
latest frame of the analysed stream at ``analyse_fps``, runs the detector, encodes the
pictures that are due and hands finished readings to the loop through a
:class:`Handoff`.

Every hand-off between a thread and the loop is bounded:

- capture thread to analysis thread: a slot of one frame, the latest
  (:mod:`drivers.camera.capture`; overwritten frames are ``frames_dropped``);
- analysis thread to loop (:class:`Handoff`): stills and camera stats keep only the
  latest (one slot each: the next replaces it). Motion ``start``/``end`` steps, OCR crop
  bursts and the error that stopped the thread must never be lost silently; they wait
  in order in a queue of at most ``HANDOFF_BOUND`` items, together with what may go
  (motion ``update`` steps, frame errors). When the queue is full the oldest of those
  that may go is dropped first; when it holds only what must be kept, an update or a
  frame error is dropped, and a start, end or crop burst makes the analysis thread wait
  for the loop to take (it skips frames meanwhile, counted as ``frames_dropped``).
  Every item dropped or replaced is counted in ``handoff_dropped`` and every wait in
  ``handoff_waits``, both in the device state's counters;
- loop to analysis thread: an OCR request is one pending trigger (a passage being
  read answers the requests that come meanwhile).

The loop is woken with ``call_soon_threadsafe`` at most once per take, so the loop's own
queue of callbacks cannot grow either.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivers.camera.capture import Frame, RateMeter, StreamCapture
from drivers.camera.config import CameraSection
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

TAKE_WAIT_S = 0.5
"""Longest wait for a frame (or for room in the hand-off) before checking for stop again."""
HANDOFF_BOUND = 32
"""Most readings waiting for the loop, besides the latest still and stats (see the module)."""
CROP_QUALITY = 90
"""JPEG quality of OCR crops published as evidence (small pictures, text must stay sharp)."""


@dataclass(slots=True)
class _Burst:
    """An OCR passage in progress: a few crops of every region, spaced out for voting."""

    passage_id: str
    trigger: str
    taken: int = 0
    next_due: float = 0.0


def _may_go(item: Reading | FrameError) -> bool:
    """Whether ``item`` may be dropped when the hand-off is full (see the module)."""
    return isinstance(item, FrameError) or (
        isinstance(item, MotionObserved) and item.phase == "update"
    )


class Handoff:
    """The bounded, thread-safe hand-off from the analysis thread to the loop.

    The analysis thread calls :meth:`put` and :meth:`fail`; the loop calls :meth:`take`
    after ``wake`` (which must schedule the loop's side, e.g. ``call_soon_threadsafe``).
    The policy is the module's.
    """

    def __init__(self, wake: Callable[[], None], bound: int = HANDOFF_BOUND) -> None:
        self.bound = bound
        self.dropped = 0
        """Items dropped (a full queue) or replaced by a newer still or stats."""
        self.waits = 0
        """Times the analysis thread waited for room for an item that must be kept."""
        self._wake = wake
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[bool, Reading | FrameError]] = collections.deque()
        self._latest: dict[type[Reading], Reading] = {}
        self._failure: DeviceIOError | None = None
        self._woken = False
        self._closed = False

    def __len__(self) -> int:
        """Items in the queue (the latest still and stats not counted)."""
        with self._cond:
            return len(self._queue)

    def put(self, items: Iterable[Reading | FrameError]) -> None:
        """Hand readings to the loop (analysis thread; may wait, see the module)."""
        with self._cond:
            for item in items:
                if isinstance(item, StillCaptured | CameraStats):
                    if type(item) in self._latest:  # the older one was never taken
                        self.dropped += 1
                    self._latest[type(item)] = item
                elif self._room(may_go := _may_go(item)):
                    self._queue.append((may_go, item))
                else:
                    continue  # dropped (counted) or nobody takes any more
                self._signal()

    def fail(self, error: DeviceIOError) -> None:
        """The analysis thread stopped: the loop gets ``error`` after the readings."""
        with self._cond:
            self._failure = error
            self._signal()

    def close(self) -> None:
        """Nobody will take any more: a waiting :meth:`put` gives up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self) -> tuple[list[Reading | FrameError], DeviceIOError | None]:
        """Everything handed over so far, in order, and the failure if there was one (loop)."""
        with self._cond:
            out = [item for _, item in self._queue]
            out.extend(self._latest.values())
            self._queue.clear()
            self._latest.clear()
            failure, self._failure = self._failure, None
            self._woken = False
            self._cond.notify_all()
        return out, failure

    def _signal(self) -> None:
        """Wake the loop unless it has been woken since it last took (under the lock)."""
        if not self._woken:
            self._woken = True
            self._wake()

    def _room(self, may_go: bool) -> bool:
        """Make room for one more item (under the lock); False: it is not to be queued."""
        waited = False
        while len(self._queue) >= self.bound:
            oldest = next((i for i, (old, _) in enumerate(self._queue) if old), None)
            if oldest is not None:
                del self._queue[oldest]
                self.dropped += 1
            elif may_go:  # only what must be kept is waiting: this one goes
                self.dropped += 1
                return False
            elif self._closed:
                return False
            else:
                if not waited:
                    self.waits += 1
                    waited = True
                self._cond.wait(TAKE_WAIT_S)
        return True


def _overlaps(a: Box, b: Box) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


class CameraWorker:
    """Captures (analysed stream, optional snapshot stream) plus the analysis thread."""

    def __init__(
        self,
        config: CameraSection,
        wake: Callable[[], None],
        ready: Callable[[], None],
        bound: int = HANDOFF_BOUND,
    ) -> None:
        self.config = config
        self.handoff = Handoff(wake, bound)
        """Readings for the loop: take them when ``wake`` was called."""
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
        self._ocr_request: str | None = None  # the pending trigger (see the module)
        self._ocr_lock = threading.Lock()
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
        self.handoff.close()
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
        with self._ocr_lock:
            if self._ocr_request is None:  # the first asked starts the passage
                self._ocr_request = trigger

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
            "handoff_dropped": self.handoff.dropped,
            "handoff_waits": self.handoff.waits,
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

    def _send(self, item: list[Reading | FrameError] | DeviceIOError | None) -> None:
        """Hand ``item`` (``None``: announce the first frame) to the driver's loop."""
        try:
            if item is None:
                self._ready()
            elif isinstance(item, DeviceIOError):
                self.handoff.fail(item)
            else:
                self.handoff.put(item)
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
            self.request_ocr("motion")

    def _ocr(self, frame: Frame, picture: Frame) -> list[Reading | FrameError]:
        """Start a burst when asked, and take its next crops when they are due."""
        now = frame.at.mono
        with self._ocr_lock:
            trigger, self._ocr_request = self._ocr_request, None
        if trigger is not None and self._burst is None:  # one being read answers it too
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
