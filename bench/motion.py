"""Camera motion pipeline on one core: decode cost, cameras per core, bytes sent upstream.

Run from the repository root: ``.venv/bin/python bench/motion.py [--seconds 120] [--runs 3]``.

The clip is a lane from the camera simulator (``simulators.camera``, file mode: 1280x720
MJPEG main stream, trucks arriving about every ``--truck-every`` s and standing at the
gate), transcoded to the 640x360 substream that the gateway analyses. Without the
simulator, a similar lane is synthesised here. Everything runs pinned to CPU 0 with
OpenCV single-threaded, which is what one camera's share of a small box looks like.

(a) frames/s of decoding the substream alone vs decoding + the motion pipeline
    (:class:`~drivers.camera.motion.MotionDetector`, plus the JPEG snapshots and stills
    the driver would encode); ratio, target >= 0.8 (paths alternate, medians);
(b) cameras one core can analyse at 640x360 and 5 fps: (decode + motion) fps / 5;
(c) bytes sent upstream per camera-hour (motion records with the end-of-event snapshot
    from the main stream (``--snapshot-on-start``: start too), one still a minute, one
    health record a minute, ~400 B JSON envelope each) against the raw stream: the
    clip's own MJPEG bitrate and typical H.264 bitrates (stated); target <= 1 %.

A measurement, not a test: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from drivers.camera.config import MotionSection
from drivers.camera.motion import MotionDetector
from drivers.camera.snapshot import encode_snapshot

SUB = (640, 360)
MAIN = (1280, 720)
FPS = 5.0
ENVELOPE_BYTES = 400  # a record's JSON envelope (schema, id, seq, ts, site, ..., prev hash)
STILL_INTERVAL_S = 60.0
STATS_INTERVAL_S = 60.0
ON_START = False
"""Whether (c) counts a snapshot at the start of each event (``snapshot_on_start``)."""
SNAPSHOT_HEIGHTS = (540, 720, 360)
"""``snapshot_height`` values compared in (c); 540 is the default."""
STILL_HEIGHT = 360  # the driver's default ``still_height``
JPEG_QUALITY = 70
SUB_H264 = "substream 640x360 H.264"
H264_KBPS = {SUB_H264: 512, "main 1280x720 H.264": 2048}
"""Typical camera settings (constant bitrate) for the raw-stream comparison."""


async def _simulated_clip(path: Path, seconds: float, truck_every: float) -> bool:
    """Write the simulator's main-stream clip; False when the simulator is unavailable."""
    try:
        from simulators.camera.simulator import CameraSimulator  # noqa: PLC0415
    except ImportError as exc:
        print(f"camera simulator unavailable ({exc}); synthesising the lane")
        return False
    sim = CameraSimulator(
        serve="file",
        seed=7,
        fps=FPS,
        duration_s=seconds,
        out=path,
        truck_every_s=truck_every,
        dwell_s=20.0,
        first_truck_s=10.0,
    )
    async with sim:
        await sim.finished.wait()
    return sim.sent["main"] > 0


def _synthetic_clip(path: Path, seconds: float, truck_every: float) -> None:
    """A lane without the simulator: textured road, noise, a box-shaped truck now and then."""
    rng = np.random.default_rng(7)
    road = cv2.resize(
        rng.integers(70, 130, (MAIN[1] // 16, MAIN[0] // 16, 3), dtype=np.uint8),
        MAIN,
        interpolation=cv2.INTER_LINEAR,
    )
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, MAIN)
    period = round(truck_every * FPS)
    for n in range(round(seconds * FPS)):
        image = road.copy()
        phase = n % period
        if phase < round(30 * FPS):  # 30 s: drive in, stand, drive out
            x = int(MAIN[0] * (phase / (30 * FPS)) * 1.6) - 500
            cv2.rectangle(image, (x, 250), (x + 500, 560), (40, 60, 180), -1)
            cv2.putText(image, "MSCU 123456 7", (x + 20, 320), 0, 1.5, (255, 255, 255), 3)
        noise = rng.normal(0, 4, image.shape)
        writer.write(np.clip(image + noise, 0, 255).astype(np.uint8))
    writer.release()


def _transcode(main: Path, sub: Path) -> None:
    """The 640x360 substream the gateway analyses (MJPEG, as the camera simulator sends it)."""
    reader = cv2.VideoCapture(str(main))
    writer = cv2.VideoWriter(str(sub), cv2.VideoWriter.fourcc(*"MJPG"), FPS, SUB)
    while True:
        ok, image = reader.read()
        if not ok:
            break
        writer.write(cv2.resize(image, SUB, interpolation=cv2.INTER_AREA))
    reader.release()
    writer.release()


def _h264(sub: Path, out: Path) -> bool:
    """``sub`` re-encoded as H.264 at the substream bitrate (GStreamer x264), if available.

    OpenCV's wheels cannot write H.264, and an IP camera's substream is H.264, whose
    decoding costs more than MJPEG's: the ratio in (a) depends on it.
    """
    tool = shutil.which("gst-launch-1.0")
    if tool is None:
        return False
    pipeline = (
        f"filesrc location={sub} ! avidemux ! jpegdec ! videoconvert ! "
        f"x264enc bitrate={H264_KBPS[SUB_H264]} speed-preset=veryfast key-int-max=50 ! "
        f"h264parse ! mp4mux ! filesink location={out}"
    )
    done = subprocess.run([tool, "-q", *pipeline.split()], capture_output=True, check=False)
    return done.returncode == 0 and out.exists() and out.stat().st_size > 0


def decode_only(clip: Path) -> tuple[float, int]:
    """Frames/s decoding the clip; and the frame count."""
    capture = cv2.VideoCapture(str(clip))
    frames = 0
    start = time.process_time()
    while capture.read()[0]:
        frames += 1
    elapsed = time.process_time() - start
    capture.release()
    return frames / elapsed, frames


@dataclass
class Upstream:
    """What the driver would send for the clip."""

    records: dict[str, int] = field(default_factory=dict)
    jpeg_bytes: dict[int, int] = field(default_factory=lambda: dict.fromkeys(SNAPSHOT_HEIGHTS, 0))
    events: int = 0

    def add(self, kind: str, picture: np.ndarray | None = None) -> None:
        """Count one record; with ``picture``, its snapshot at each compared height."""
        self.records[kind] = self.records.get(kind, 0) + 1
        if picture is None:
            return
        for height in SNAPSHOT_HEIGHTS:
            rows = STILL_HEIGHT if kind == "still" else height
            self.jpeg_bytes[height] += len(encode_snapshot(picture, rows, JPEG_QUALITY).jpeg)

    def total(self, height: int) -> int:
        """Bytes upstream with snapshots ``height`` rows high."""
        return self.jpeg_bytes[height] + ENVELOPE_BYTES * sum(self.records.values())


def decode_and_analyse(clip: Path, main: Path | None = None) -> tuple[float, Upstream]:
    """Frames per CPU-second decoding + motion + JPEG snapshots; and what would go upstream.

    Without ``main`` this is the timed path: snapshots are encoded once, from the analysed
    frame, as the driver does without ``snapshot_url``. With ``main``, the same frame of the
    main stream is read in step and encoded at every compared height (for the byte counts
    only; the rate is then meaningless).
    """
    detector: MotionDetector[int] = MotionDetector(MotionSection())
    capture = cv2.VideoCapture(str(clip))
    main_capture = cv2.VideoCapture(str(main)) if main is not None else None
    up = Upstream()
    next_still = next_stats = 0.0
    frames = 0
    start = time.process_time()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        picture = image
        if main_capture is not None:
            ok, big = main_capture.read()
            picture = big if ok else image
        now = frames / FPS
        # As the capture thread does: a decoded frame is 8-bit BGR (no copy is made).
        for change in detector.feed(np.asarray(image, np.uint8), now, frames):
            # The driver's default: the end of an event carries its best frame; the start
            # carries one only with snapshot_on_start.
            pictured = change.phase == "end" or (change.phase == "start" and ON_START)
            if main_capture is None and pictured:
                encode_snapshot(picture, SNAPSHOT_HEIGHTS[0], JPEG_QUALITY)
            snapshot = pictured and main_capture is not None
            up.add(f"motion {change.phase}", picture if snapshot else None)
            up.events += change.phase == "start"
        if now >= next_still:
            next_still = now + STILL_INTERVAL_S
            if main_capture is None:
                encode_snapshot(picture, STILL_HEIGHT, JPEG_QUALITY)
            up.add("still", picture if main_capture is not None else None)
        if now >= next_stats:
            next_stats = now + STATS_INTERVAL_S
            up.add("stats")
        frames += 1
    elapsed = time.process_time() - start
    capture.release()
    if main_capture is not None:
        main_capture.release()
    return frames / elapsed, up


def main() -> int:
    """Parse arguments, make the clip, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="clip length")
    parser.add_argument("--truck-every", type=float, default=60.0, metavar="S")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="do not use the simulator")
    parser.add_argument(
        "--snapshot-on-start", action="store_true", help="count start snapshots too"
    )
    args = parser.parse_args()
    global ON_START  # noqa: PLW0603 - one switch for the whole measurement
    ON_START = args.snapshot_on_start
    os.sched_setaffinity(0, {0})
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        main_clip, sub_clip = Path(tmp) / "main.avi", Path(tmp) / "sub.avi"
        made = False
        if not args.synthetic:
            made = asyncio.run(_simulated_clip(main_clip, args.seconds, args.truck_every))
        if not made:
            _synthetic_clip(main_clip, args.seconds, args.truck_every)
        source = "camera simulator" if made else "synthetic lane"
        _transcode(main_clip, sub_clip)
        os.sched_setaffinity(0, {0})  # the simulator's pool threads inherited it; be sure
        clips = {"MJPEG": sub_clip}
        h264_clip = Path(tmp) / "sub.mp4"
        if _h264(sub_clip, h264_clip):
            clips["H.264"] = h264_clip
        rates: dict[str, tuple[list[float], list[float]]] = {}
        frames = 0
        for codec, clip in clips.items():
            decode_only(clip)  # warm-up: codec init, page cache
            plain, full = rates.setdefault(codec, ([], []))
            for i in range(args.runs):
                rate, frames = decode_only(clip)
                plain.append(rate)
                full.append(decode_and_analyse(clip)[0])
                print(
                    f"  {codec:5s} run {i + 1}: decode {plain[-1]:7.1f} frames/s   "
                    f"decode+motion {full[-1]:7.1f} frames/s"
                )
        _, up = decode_and_analyse(sub_clip, main_clip)
        clip_s = frames / FPS
        sizes = {name: path.stat().st_size for name, path in clips.items()}
        main_bytes = main_clip.stat().st_size
    hour = 3600.0 / clip_s
    print("-" * 72)
    print(
        f"clip                               {source}, {clip_s:.0f} s at {FPS:g} fps, "
        f"{frames} frames, {SUB[0]}x{SUB[1]} analysed, snapshots from {MAIN[0]}x{MAIN[1]}"
    )
    print("rates are frames per CPU-second of this process, pinned to CPU 0, 1 OpenCV thread")
    for codec, (plain, full) in rates.items():
        p, f = statistics.median(plain), statistics.median(full)
        ratio = f / p
        verdict = "PASS" if ratio >= 0.8 else "FAIL"
        print(f"(a) {codec:5s} decode only, frames/s    {p:8.1f}   (median of {len(plain)})")
        print(f"    {codec:5s} decode + motion         {f:8.1f}")
        print(f"    {codec:5s} ratio                   {ratio:8.2f}   target >= 0.80 {verdict}")
        print(f"    {codec:5s} motion cost per frame   {1000 / f - 1000 / p:8.2f} ms")
        print(f"(b) {codec:5s} 640x360@5fps cams/core  {f / FPS:8.1f}")
    print(f"(c) motion events in clip           {up.events:8d}")
    print(f"    records in clip                 {dict(sorted(up.records.items()))}")
    raw = {
        f"clip substream {codec} ({size * 8 / clip_s / 1000:.0f} kbit/s)": size * hour
        for codec, size in sizes.items()
    }
    raw[f"clip main MJPEG ({main_bytes * 8 / clip_s / 1000:.0f} kbit/s)"] = main_bytes * hour
    raw.update({f"{k} at {v} kbit/s": v * 1000 / 8 * 3600 for k, v in H264_KBPS.items()})
    for height in SNAPSHOT_HEIGHTS:
        up_hour = up.total(height) * hour
        print(
            f"    snapshot_height={height}: upstream {up_hour / 1e6:6.2f} MB per camera-hour "
            f"(JPEG {up.jpeg_bytes[height] * hour / 1e6:.2f} MB, q{JPEG_QUALITY}, "
            f"stills {STILL_HEIGHT} rows)"
        )
        for name, raw_bytes in raw.items():
            share = up_hour / raw_bytes
            verdict = "PASS" if share <= 0.01 else "FAIL"
            print(f"      vs {name:42s} {raw_bytes / 1e9:5.2f} GB/h -> {share:6.2%}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
