"""Motion detection on a camera's frames: a pure object, frames and times in, events out.

No I/O and no clock: the caller passes each analysed frame with its monotonic time, so
the detector is driven frame by frame in tests exactly as in the driver.

Pipeline per frame (on a small grayscale copy, ``analysis_height`` rows):

1. downscale (area interpolation) and grey, then a 5x5 Gaussian blur: sensor noise and
   compression blocks are smaller than anything worth reporting;
2. contrast normalisation (``contrast``): ``gain`` (default) scales the frame so its mean
   matches the background's, undoing a camera's auto-gain/iris for almost nothing;
   ``clahe`` equalises tiles of the histogram (better in low-contrast night scenes, but
   it costs as much as decoding a 640x360 frame);
3. difference against a running-average background (``cv2.accumulateWeighted``) and a
   threshold; masked polygons are cleared;
4. if more than ``recalibrate_fraction`` of the frame changed at once it is lighting
   (a cloud, headlights, IR switching on): the background is re-learnt from this frame,
   the next ``start_frames`` frames learn fast and count neither as motion nor as quiet;
5. dilation joins the parts of one vehicle, contours smaller than ``min_area`` are
   dropped, the rest become normalised boxes; the score is the changed fraction.

Events: ``start`` after ``start_frames`` consecutive motion frames, ``update`` when the
boxes or score change significantly (at most every :data:`MIN_UPDATE_GAP_S`) and at least
every ``heartbeat_s``, ``end`` after ``end_quiet_s`` without motion. The best frame of an
event (largest sharp moving region: box area x variance of the Laplacian) is kept only as
the caller's reference; the caller encodes it when the event ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

from drivers.camera.config import MotionSection

Image = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]
"""(x, y, w, h) as fractions of the frame width and height."""
Phase = Literal["start", "update", "end"]
T = TypeVar("T")

MIN_UPDATE_GAP_S = 1.0
"""Significant changes are reported at most this often; a truck driving in changes every frame."""
SIGNIFICANT_IOU = 0.5
"""An update is due when the union box overlaps the last reported one less than this."""
SIGNIFICANT_SCORE_RATIO = 2.0
"""... or when the score grew or shrank by more than this factor."""
SETTLE_ALPHA = 0.5
"""Background learning rate for the frames right after a recalibration."""
GAIN_DEADBAND = 0.01
"""Brightness ratios closer to 1 than this are left alone (saves a pass over the frame)."""
_DILATE_KERNEL = np.ones((5, 5), np.uint8)  # one pass = two 3x3 dilations


@dataclass(frozen=True, slots=True, kw_only=True)
class MotionChange(Generic[T]):
    """One step of an event, as the detector reports it.

    Attributes:
        phase: ``start``, ``update`` or ``end``.
        event: ordinal of the event in this detector's life (1, 2, ...).
        boxes: moving regions, normalised (x, y, w, h); at ``end``, those of the best frame.
        score: fraction of the analysed (unmasked) area that changed.
        frames: motion frames counted so far in the event.
        started: monotonic time of the ``start``.
        best: at ``end``, the caller's reference of the best frame; else ``None``.
    """

    phase: Phase
    event: int
    boxes: tuple[Box, ...]
    score: float
    frames: int
    started: float
    best: T | None = None


@dataclass(frozen=True, slots=True)
class _Found:
    """What one analysed frame showed."""

    boxes: tuple[Box, ...]
    score: float
    quality: float  # moving area x sharpness; picks the best frame


@dataclass(slots=True)
class _Event(Generic[T]):
    number: int
    started: float
    last_motion: float
    last_report: float
    reported: _Found
    current: _Found
    best: T
    best_found: _Found
    frames: int = 0

    def step(self, phase: Phase, found: _Found, best: T | None = None) -> MotionChange[T]:
        """The event's state as a :class:`MotionChange` showing ``found``."""
        return MotionChange(
            phase=phase,
            event=self.number,
            boxes=found.boxes,
            score=found.score,
            frames=self.frames,
            started=self.started,
            best=best,
        )


class MotionDetector(Generic[T]):
    """Frames in (BGR or grey, any size), :class:`MotionChange` steps out.

    ``T`` is whatever the caller wants back as the best frame of an event (the frame
    itself, or a handle on the matching frame of the snapshot stream).
    """

    def __init__(self, settings: MotionSection) -> None:
        self.settings = settings
        self._clahe = (
            cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
            if settings.contrast == "clahe"
            else None
        )
        self._background: npt.NDArray[np.float32] | None = None
        self._mask: Image | None = None
        self._allowed = 1
        self._settle = 0
        self._streak = 0
        self._events = 0
        self._event: _Event[T] | None = None
        self.recalibrations = 0
        """How often a global change made the background be re-learnt."""

    @property
    def active(self) -> bool:
        """An event is in progress."""
        return self._event is not None

    def prepare(self, frame: Image) -> Image:
        """The small, blurred, grey copy that is compared (contrast normalised with CLAHE).

        Grey first, then an integer area reduction (OpenCV's fast path, and it averages
        the noise away), then a linear step to the exact size: a direct area resize by
        2.5 costs ten times as much as the rest of the pipeline.
        """
        height, width = frame.shape[:2]
        rows = min(self.settings.analysis_height, height)
        cols = max(1, round(width * rows / height))
        grey: MatLike = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        step = height // rows
        if step >= 2:
            grey = cv2.resize(grey, (width // step, height // step), interpolation=cv2.INTER_AREA)
        if grey.shape[:2] != (rows, cols):
            grey = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_LINEAR)
        grey = cv2.GaussianBlur(grey, (5, 5), 0)
        if self._clahe is not None:
            grey = self._clahe.apply(grey)
        return np.asarray(grey, np.uint8)

    def feed(self, frame: Image, now: float, ref: T) -> list[MotionChange[T]]:
        """Analyse one frame taken at monotonic time ``now``; ``ref`` is kept if it is the best."""
        return self._track(self._detect(self.prepare(frame)), now, ref)

    def finish(self) -> list[MotionChange[T]]:
        """End the event in progress, if any (the stream is closing)."""
        event = self._event
        if event is None:
            return []
        return [self._end(event)]

    # -- detection ---------------------------------------------------------------------

    def _reset(self, small: Image) -> None:
        rows, cols = small.shape
        self._background = small.astype(np.float32)
        mask = np.full((rows, cols), 255, np.uint8)
        for polygon in self.settings.masks:
            points = np.array(
                [[round(x * (cols - 1)), round(y * (rows - 1))] for x, y in polygon], np.int32
            )
            cv2.fillPoly(mask, [points], 0)
        self._mask = mask if self.settings.masks else None
        self._allowed = int(np.count_nonzero(mask))

    def _detect(self, small: Image) -> _Found | None:
        """Boxes for this frame, or ``None`` when the frame cannot be judged (warm-up, lighting)."""
        background = self._background
        if background is None or background.shape != small.shape:
            self._reset(small)
            return None
        settings = self.settings
        reference = cv2.convertScaleAbs(background)
        binary, changed = self._changed(small, reference)
        if changed <= settings.recalibrate_fraction and settings.contrast == "gain":
            # judged on the raw difference above (a step in light is a recalibration,
            # clipped highlights and all); gradual gain drift is undone here
            matched = _match_gain(small, reference)
            if matched is not small:
                binary, changed = self._changed(matched, reference)
        if changed > settings.recalibrate_fraction:
            background[...] = small
            self._settle = settings.start_frames
            self.recalibrations += 1
            return None
        settling = self._settle > 0
        alpha = SETTLE_ALPHA if settling else settings.background_alpha
        cv2.accumulateWeighted(small, background, alpha)
        if settling:
            self._settle -= 1
            return None
        return self._regions(small, binary, changed)

    def _changed(self, small: Image, reference: MatLike) -> tuple[MatLike, float]:
        """Pixels differing from the background by more than the threshold, and their share."""
        diff = cv2.absdiff(small, reference)
        binary: MatLike
        _, binary = cv2.threshold(diff, self.settings.pixel_threshold, 255, cv2.THRESH_BINARY)
        if self._mask is not None:
            binary = cv2.bitwise_and(binary, self._mask)
        return binary, np.count_nonzero(binary) / max(self._allowed, 1)

    def _regions(self, small: Image, binary: MatLike, changed: float) -> _Found:
        rows, cols = small.shape
        min_px = self.settings.min_area * rows * cols
        if changed * self._allowed * _DILATE_KERNEL.size < min_px:
            # Even dilated, these few pixels cannot make a region of min_area: the idle
            # lane, most of an hour, costs no dilation and no contour search.
            return _Found((), 0.0, 0.0)
        grown = cv2.dilate(binary, _DILATE_KERNEL)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        rects = [cv2.boundingRect(c) for c in contours if cv2.contourArea(c) >= min_px]
        if not rects:
            return _Found((), 0.0, 0.0)
        rects.sort(key=lambda r: (r[0], r[1]))
        boxes = tuple((x / cols, y / rows, w / cols, h / rows) for x, y, w, h in rects)
        x0 = min(x for x, _, _, _ in rects)
        y0 = min(y for _, y, _, _ in rects)
        x1 = max(x + w for x, _, w, _ in rects)
        y1 = max(y + h for _, y, _, h in rects)
        region = small[y0:y1, x0:x1]
        sharpness = 0.0
        if region.size:  # variance of the Laplacian; meanStdDev is ~10x numpy's var() here
            _, std = cv2.meanStdDev(cv2.Laplacian(region, cv2.CV_32F))
            sharpness = float(std[0, 0]) ** 2
        area = sum(w * h for _, _, w, h in rects)
        return _Found(boxes, float(changed), area * sharpness)

    # -- events ------------------------------------------------------------------------

    def _track(self, found: _Found | None, now: float, ref: T) -> list[MotionChange[T]]:
        event = self._event
        if event is None:
            if found is None:
                return []
            if not found.boxes:
                self._streak = 0
                return []
            self._streak += 1
            if self._streak < self.settings.start_frames:
                return []
            return [self._start(found, now, ref)]
        out: list[MotionChange[T]] = []
        if found is not None and found.boxes:
            event.frames += 1
            event.last_motion = now
            event.current = found
            if found.quality > event.best_found.quality:
                event.best, event.best_found = ref, found
            if now - event.last_report >= MIN_UPDATE_GAP_S and _significant(found, event.reported):
                out.append(self._report(event, now))
        elif now - event.last_motion >= self.settings.end_quiet_s:
            return [self._end(event)]
        if not out and now - event.last_report >= self.settings.heartbeat_s:
            out.append(self._report(event, now))
        return out

    def _start(self, found: _Found, now: float, ref: T) -> MotionChange[T]:
        self._events += 1
        event = self._event = _Event(
            number=self._events,
            started=now,
            last_motion=now,
            last_report=now,
            reported=found,
            current=found,
            best=ref,
            best_found=found,
            frames=self._streak,
        )
        self._streak = 0
        return event.step("start", found)

    def _report(self, event: _Event[T], now: float) -> MotionChange[T]:
        event.last_report = now
        event.reported = event.current
        return event.step("update", event.current)

    def _end(self, event: _Event[T]) -> MotionChange[T]:
        self._event = None
        return event.step("end", event.best_found, event.best)


def _match_gain(small: Image, reference: MatLike) -> Image:
    """``small`` scaled so its mean brightness matches the background's (auto-exposure).

    A camera's gain and iris act multiplicatively on the whole picture; one ratio of means
    undoes them for the price of two sums. A truck entering moves the mean a little,
    which shifts every pixel by a few grey levels, far below ``pixel_threshold``.
    """
    mean = float(cv2.mean(small)[0])
    if mean < 1.0:
        return small
    gain = float(cv2.mean(reference)[0]) / mean
    if abs(gain - 1.0) < GAIN_DEADBAND:
        return small
    return np.asarray(cv2.convertScaleAbs(small, alpha=gain), np.uint8)


def _union(boxes: tuple[Box, ...]) -> Box:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two normalised boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    total = a[2] * a[3] + b[2] * b[3] - inter
    return inter / total if total > 0 else 0.0


def _significant(now: _Found, reported: _Found) -> bool:
    if iou(_union(now.boxes), _union(reported.boxes)) < SIGNIFICANT_IOU:
        return True
    low, high = sorted((now.score, reported.score))
    return low <= 0 or high / low > SIGNIFICANT_SCORE_RATIO
