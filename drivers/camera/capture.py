"""Reading one video stream in its own thread, keeping only the latest frame.

``cv2.VideoCapture.read`` blocks (network, decoder), so each stream gets a dedicated
thread. The thread overwrites a slot of one frame: a consumer that falls behind sees the
newest picture, never a growing backlog, and every frame overwritten before it was taken
is counted as dropped.

Network streams use the FFmpeg backend with open/read timeouts, so a silent camera
unblocks the thread after ``read_timeout_s``; after a failed read the stream is reopened
(counted in ``reconnects``). Whether the camera is *stalled* is the driver's judgement
(``stall_timeout_s`` since the last frame), and its restart with backoff is the
supervisor's. Video files loop and are paced at their own frame rate, as a camera would be.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from gateway.readings import Stamp

Image = npt.NDArray[np.uint8]

RTSP_OVER_TCP = "rtsp_transport;tcp"
REOPEN_DELAY_S = 1.0
"""Pause before reopening a stream whose read failed (a rebooting camera refuses at once)."""
FILE_FPS_FALLBACK = 25.0
JOIN_SLACK_S = 2.0
"""A stopping reader thread gets its open or read timeout plus this to end."""
RATE_WINDOW = 50
"""Frame times kept for the measured rates: 10 s at 5 fps, 2 s at 25 fps."""


def use_rtsp_over_tcp() -> None:
    """Ask FFmpeg for RTSP over TCP (UDP loses packets on busy checkpoint networks).

    ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is process-wide and read when a capture opens, so
    it is set once, before the first open, and an operator's own options are kept: the
    transport is only appended when they do not choose one.
    """
    current = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
    if "rtsp_transport" in current:
        return
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = (
        f"{current}|{RTSP_OVER_TCP}" if current else RTSP_OVER_TCP
    )


def source_kind(source: str) -> str:
    """``network``, ``device`` (V4L2 path or index) or ``file``."""
    if "://" in source:
        return "network"
    if source.isdigit() or source.startswith("/dev/video"):
        return "device"
    return "file"


def open_capture(source: str, open_timeout_s: float, read_timeout_s: float) -> cv2.VideoCapture:
    """A ``VideoCapture`` on ``source`` with the right backend; check ``isOpened()``."""
    kind = source_kind(source)
    if kind == "device":
        if source.isdigit():
            return cv2.VideoCapture(int(source), cv2.CAP_V4L2)
        return cv2.VideoCapture(source, cv2.CAP_V4L2)
    use_rtsp_over_tcp()
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        round(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        round(read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


def fourcc(capture: cv2.VideoCapture) -> str:
    """The codec FourCC the backend reports, as text (``""`` when unknown)."""
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text.strip("\x00 ") if text.isprintable() else ""


class RateMeter:
    """Events per second over the last :data:`RATE_WINDOW` events."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=RATE_WINDOW)

    def tick(self, now: float) -> None:
        """Count one event at monotonic time ``now``."""
        self._times.append(now)

    def rate(self, now: float) -> float:
        """Recent rate; decays to 0 when events stop (``now`` past the last one)."""
        if len(self._times) < 2:
            return 0.0
        span = max(now, self._times[-1]) - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded picture and when it arrived."""

    image: Image
    at: Stamp
    seq: int


class StreamCapture:
    """One stream read by one thread into a slot of one frame.

    ``frames_in``, ``dropped``, ``reconnects`` and the stream description are written by
    the reader thread and read by others without a lock: each is a single reference or
    int assignment, and a reader only needs a recent value.
    """

    def __init__(
        self, source: str, *, open_timeout_s: float, read_timeout_s: float, name: str
    ) -> None:
        self.source = source
        self.kind = source_kind(source)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.name = name
        self.frames_in = 0
        self.dropped = 0
        self.reconnects = 0
        self.width = 0
        self.height = 0
        self.codec = ""
        self.nominal_fps = 0.0
        self.rate_in = RateMeter()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken = 0  # seq of the last frame handed to take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- consumer side -----------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the reader to finish (it releases the capture itself); does not wait."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def join_budget_s(self) -> float:
        """Longest a stopped reader can take to end: a blocked open or read runs out first."""
        return max(self.open_timeout_s, self.read_timeout_s) + JOIN_SLACK_S

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread; True when it has ended."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def last_mono(self) -> float | None:
        """Monotonic arrival time of the newest frame, ``None`` before the first."""
        latest = self._latest
        return None if latest is None else latest.at.mono

    def latest(self) -> Frame | None:
        """The newest frame without consuming it (snapshot stream, stills)."""
        return self._latest

    def take(self, timeout: float) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` s; ``None`` if none."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                latest = self._latest
                if latest is not None and latest.seq > self._taken:
                    self._taken = latest.seq
                    return latest
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return None

    def wait_first(self, timeout: float) -> bool:
        """Block until a first frame arrived (or ``timeout``/stop); True if one did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._latest is not None

    # -- reader thread -----------------------------------------------------------------

    def _put(self, image: Image) -> None:
        self.frames_in += 1
        at = Stamp.now()
        self.rate_in.tick(at.mono)
        with self._cond:
            latest = self._latest
            if latest is not None and latest.seq > self._taken:
                self.dropped += 1
            self._latest = Frame(image, at, self.frames_in)
            self._cond.notify_all()

    def _describe(self, capture: cv2.VideoCapture) -> None:
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.codec = fourcc(capture)
        self.nominal_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            capture = open_capture(self.source, self.open_timeout_s, self.read_timeout_s)
            try:
                got = 0
                if capture.isOpened():
                    self._describe(capture)
                    got = self._pump(capture)
            finally:
                capture.release()
            if self._stop.is_set():
                break
            if got == 0 or self.kind != "file":  # a file that played just loops at once
                if self.frames_in:
                    self.reconnects += 1
                self._stop.wait(REOPEN_DELAY_S)
        with self._cond:
            self._cond.notify_all()

    def _pump(self, capture: cv2.VideoCapture) -> int:
        """Read until the stream fails or stop; returns frames read."""
        pace = self.kind == "file"
        period = 1.0 / (self.nominal_fps if self.nominal_fps > 0 else FILE_FPS_FALLBACK)
        due = time.monotonic()
        got = 0
        while not self._stop.is_set():
            ok, image = capture.read()
            if not ok or image is None:
                break
            got += 1
            if pace:
                due += period
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                if delay < -1.0:  # fell far behind (loaded machine): do not race to catch up
                    due = time.monotonic()
            self._put(np.asarray(image, np.uint8))
        return got
