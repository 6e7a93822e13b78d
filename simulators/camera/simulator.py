"""The camera simulator: a :class:`~simulators.camera.scene.Scene` played in real time.

Served as MJPEG over HTTP (the simulator's own server), as RTSP/H.264 (gst-rtsp-server
in a child process), or written to a clip file. Frame ``n`` is due ``n / fps`` seconds
after the start; a simulator that falls behind skips frames rather than drift, so
frame numbers stay wall-clock time and the truth's frame ranges mean the same for a
client as for the scene.

Faults (:data:`~simulators.camera.timeline.FAULTS`), on the windows of the truth:
``stall`` publishes nothing (connections stay open); ``disconnect`` drops every client
and closes the listening socket, reopening on the same port after the window;
``lighting`` is drawn by the scene. With ``motion_only`` frames are published only
while something moves, as cameras that stream on motion do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Self

import cv2

from simulators.camera import SERVE_MODES
from simulators.camera.mjpeg import MjpegServer
from simulators.camera.rtsp import RtspRelay
from simulators.camera.scene import MAIN_SIZE, SUB_SIZE, Scene
from simulators.camera.timeline import FaultPlan, TruckPlan
from simulators.lifecycle import PlayingSimulator

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simulators.camera.scene import Image

log = logging.getLogger(__name__)

TRUTH_EVERY_FRAMES = 100  # an endless run rewrites its truth file this often


def encode_jpeg(image: Image, quality: int) -> bytes:
    """A JPEG of ``image`` (BGR)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


class CameraSimulator(PlayingSimulator):
    """An IP camera watching a checkpoint lane; see the module docstring.

    Args:
        serve: ``mjpeg``, ``rtsp`` or ``file``.
        host, port: where to listen (port 0: a free one; see :attr:`port`).
        seed: seeds the scene and the faults; ``None`` picks one (see :attr:`seed`).
        fps: frames per second of both streams.
        trucks: how many trucks, then finish; ``None``: an endless lane.
        truck_every_s: mean seconds from one truck to the next (mostly empty lane).
        dwell_s: seconds a truck stands at the gate.
        first_truck_s: empty lane before the first truck.
        faults: names from :data:`~simulators.camera.timeline.FAULTS`.
        fault_first_s, fault_every_s, fault_duration_s: fault windows (see
            :class:`~simulators.camera.timeline.FaultPlan`).
        motion_only: publish frames only while something moves.
        duration_s: stop after this many seconds (``file``: the clip's length).
        out: the clip (``file``): an ``.avi`` of MJPEG frames of the main stream.
        truth_path: the ground-truth JSON; default for ``file``: next to the clip.
        jpeg_quality: of the MJPEG parts and the clip.
        day_period_s: period of the day/night brightness drift.

    Attributes:
        frame: the frame number due now (the next one to play).
        sent: frames published per stream (``main``, ``sub``); for ``file``, written.
        finished: set when every truck has played, the duration is over or the clip
            is written.
    """

    def __init__(
        self,
        *,
        serve: str = "mjpeg",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        fps: float = 5.0,
        trucks: int | None = None,
        truck_every_s: float = 120.0,
        dwell_s: float = 20.0,
        first_truck_s: float = 2.0,
        faults: Iterable[str] = (),
        fault_first_s: float = 10.0,
        fault_every_s: float = 60.0,
        fault_duration_s: float = 5.0,
        motion_only: bool = False,
        duration_s: float | None = None,
        out: Path | str | None = None,
        truth_path: Path | str | None = None,
        jpeg_quality: int = 85,
        day_period_s: float = 3600.0,
    ) -> None:
        if serve not in SERVE_MODES:
            raise ValueError(f"unknown serve mode {serve!r}; known: {SERVE_MODES}")
        if serve == "file" and (out is None or duration_s is None):
            raise ValueError("serve='file' needs out and duration_s")
        if fps <= 0 or (duration_s is not None and duration_s <= 0):
            raise ValueError("fps and duration_s must be positive")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError("jpeg_quality is 1..100")
        self.serve = serve
        self.host = host
        self.port = port
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.fps = fps
        self.motion_only = motion_only
        self.out = Path(out) if out is not None else None
        if truth_path is None and self.out is not None:
            truth_path = self.out.with_suffix(".truth.json")
        self.truth_path = Path(truth_path) if truth_path is not None else None
        self.jpeg_quality = jpeg_quality
        plan = TruckPlan(
            seed=self.seed,
            fps=fps,
            trucks=trucks,
            truck_every_s=truck_every_s,
            dwell_s=dwell_s,
            first_truck_s=first_truck_s,
        )
        fault_plan = FaultPlan(
            faults=faults,
            seed=self.seed,
            fps=fps,
            first_s=fault_first_s,
            every_s=fault_every_s,
            duration_s=fault_duration_s,
        )
        self.scene = Scene(plan, fault_plan, seed=self.seed, day_period_s=day_period_s)
        ends = [e for e in (plan.end_frame(), duration_s and round(duration_s * fps)) if e]
        self.end_frame: int | None = min(ends) if ends else None
        self.frame = 0
        self.sent: Counter[str] = Counter()
        self.skipped_late = 0
        self.finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._mjpeg: MjpegServer | None = None
        self._rtsp: RtspRelay | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._rtsp_down = False

    # -- where to look ----------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        """The streams' URLs by name (``main``, ``sub``, and ``snapshot`` for MJPEG)."""
        base = f"{self.host}:{self.port}"
        if self.serve == "mjpeg":
            return {
                "main": f"http://{base}/main.mjpg",
                "sub": f"http://{base}/sub.mjpg",
                "snapshot": f"http://{base}/snapshot.jpg",
            }
        if self.serve == "rtsp":
            return {"main": f"rtsp://{base}/main", "sub": f"rtsp://{base}/sub"}
        return {"main": str(self.out)}

    @property
    def mjpeg(self) -> MjpegServer | None:
        """The HTTP server (``serve='mjpeg'``), for its client and drop counters."""
        return self._mjpeg

    @property
    def rtsp_pid(self) -> int | None:
        """The RTSP server child's process id (``serve='rtsp'``, while running)."""
        proc = self._rtsp.proc if self._rtsp is not None else None
        return proc.pid if proc is not None else None

    def truth(self) -> dict[str, object]:
        """The ground truth: trucks, fault windows, and what was played so far."""
        horizon = self.end_frame if self.end_frame is not None else self.frame
        document = self.scene.truth(horizon)
        document.update(
            serve=self.serve,
            urls=self.urls,
            motion_only=self.motion_only,
            end_frame=self.end_frame,
            frames_played=self.frame,
            frames_sent=dict(self.sent),
            skipped_late=self.skipped_late,
        )
        return document

    def write_truth(self) -> None:
        """Write :meth:`truth` to ``truth_path`` atomically (if one is set)."""
        if self.truth_path is None:
            return
        self.truth_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.truth_path.with_name(self.truth_path.name + ".tmp")
        tmp.write_text(json.dumps(self.truth(), indent=2) + "\n", "utf-8")
        tmp.replace(self.truth_path)

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("simulator already running")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="camera-render")
        try:
            if self.serve == "mjpeg":
                self._mjpeg = MjpegServer(self.host, self.port)
                await self._mjpeg.accept()
                self.port = self._mjpeg.port
            elif self.serve == "rtsp":
                self._rtsp = RtspRelay(self.host, self.port, self.fps, MAIN_SIZE, SUB_SIZE)
                await self._rtsp.start()
                self.port = self._rtsp.port
        except BaseException:
            await self._teardown()
            raise
        self.write_truth()
        play = self._write_clip() if self.serve == "file" else self._play()
        self._task = asyncio.create_task(play, name=f"camera-simulator-{self.serve}")
        return self

    async def _teardown(self) -> None:
        if self._mjpeg is not None:
            await self._mjpeg.refuse()
            self._mjpeg = None
        if self._rtsp is not None:
            await self._rtsp.stop()
            self._rtsp = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with contextlib.suppress(OSError):
            self.write_truth()

    # -- playing ----------------------------------------------------------------------

    def _withheld(self, frame: int) -> bool:
        """Whether frame ``frame`` is played but not sent: a stall, or a still lane."""
        faults = self.scene.faults
        if faults.active("stall", frame) or faults.active("disconnect", frame):
            return True
        return self.motion_only and not self.scene.moving(frame)

    def _render(self, frame: int) -> tuple[bytes, bytes]:
        """The frame as the serving mode wants it: JPEGs, or raw BGR for the encoder."""
        main, sub = self.scene.frame(frame)
        if self.serve == "rtsp":
            return main.tobytes(), sub.tobytes()
        return encode_jpeg(main, self.jpeg_quality), encode_jpeg(sub, self.jpeg_quality)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with self._capture_crash(log, "camera simulator failed"):
            while self.end_frame is None or self.frame < self.end_frame:
                n = self.frame
                await asyncio.sleep(max(0.0, start + n / self.fps - loop.time()))
                await self._fault_transitions(n)
                if not self._withheld(n):
                    main, sub = await loop.run_in_executor(self._pool, self._render, n)
                    await self._publish(n, main, sub)
                behind = int((loop.time() - start) * self.fps)
                if behind > n + 1:  # rendering fell behind: skip to the frame due now
                    self.skipped_late += behind - n - 1
                self.frame = max(n + 1, behind)
                if (
                    self.end_frame is None
                    and n // TRUTH_EVERY_FRAMES != self.frame // TRUTH_EVERY_FRAMES
                ):
                    self.write_truth()  # playing forever: keep the file current
            self.write_truth()
        self.finished.set()

    async def _fault_transitions(self, frame: int) -> None:
        """Close or reopen the door at the edges of ``disconnect`` windows."""
        down = self.scene.faults.active("disconnect", frame) is not None
        if self._mjpeg is not None and down == self._mjpeg.accepting:
            await (self._mjpeg.refuse() if down else self._mjpeg.accept())
            log.info("camera %s at frame %d", "disconnected" if down else "reconnected", frame)
        if self._rtsp is not None and down != self._rtsp_down:
            await (self._rtsp.refuse() if down else self._rtsp.accept())
            self._rtsp_down = down

    async def _publish(self, frame: int, main: bytes, sub: bytes) -> None:
        if self._mjpeg is not None:
            self._mjpeg.publish("main", frame, main)
            self._mjpeg.publish("sub", frame, sub)
        elif self._rtsp is not None:
            await self._rtsp.publish(main, sub)
        self.sent.update(("main", "sub"))

    async def _write_clip(self) -> None:
        """Write the main stream to ``out`` as fast as it renders (no pacing)."""
        assert self.out is not None
        assert self.end_frame is not None
        loop = asyncio.get_running_loop()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(
            str(self.out), cv2.VideoWriter.fourcc(*"MJPG"), self.fps, MAIN_SIZE
        )
        try:
            with self._capture_crash(log, "camera simulator failed writing %s", self.out):
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write {self.out}")
                for n in range(self.end_frame):
                    self.frame = n
                    if not self._withheld(n):
                        await loop.run_in_executor(self._pool, self._write_frame, writer, n)
                        self.sent["main"] += 1
                self.frame = self.end_frame
        finally:
            writer.release()
        self.write_truth()
        self.finished.set()

    def _write_frame(self, writer: cv2.VideoWriter, frame: int) -> None:
        writer.write(self.scene.frame(frame)[0])
