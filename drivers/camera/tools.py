"""``gatewayctl camera check URL`` and ``gatewayctl camera snapshot URL PATH``.

A technician installing a camera wants to know, before editing the config: does the URL
answer, at what resolution, codec and real frame rate, and what does the picture look
like. Both helpers open the stream with the driver's own capture code, so a URL that
passes here behaves the same in the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drivers.camera.capture import Frame, StreamCapture
from drivers.camera.diagnose import diagnose, redact
from drivers.camera.readings import Snapshot
from drivers.camera.snapshot import encode_snapshot
from gateway.errors import DeviceInitError


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraCheck:
    """What ``gatewayctl camera check`` found.

    Attributes:
        url: the URL checked, password redacted.
        ok: frames arrived.
        verdict: one line: "ok" or why not.
        width: frame width (0 if no frame).
        height: frame height.
        codec: FourCC the decoder reports.
        fps: frames per second measured over ``seconds``.
        nominal_fps: frame rate the stream announces (0 if none).
        frames: frames received during the measurement.
        seconds: measurement length.
        snapshot: the last frame, as JPEG.
        snapshot_path: where the snapshot was saved, if asked.
    """

    url: str
    ok: bool
    verdict: str
    width: int = 0
    height: int = 0
    codec: str = ""
    fps: float = 0.0
    nominal_fps: float = 0.0
    frames: int = 0
    seconds: float = 0.0
    snapshot: Snapshot | None = None
    snapshot_path: Path | None = None

    def lines(self) -> list[str]:
        """The evidence, one fact per line."""
        if not self.ok:
            return [f"url: {self.url}"]
        out = [
            f"url: {self.url}",
            f"resolution: {self.width}x{self.height}",
            f"codec: {self.codec or 'unknown'}",
            f"fps: {self.fps:.1f} measured over {self.seconds:g} s "
            f"({self.frames} frames; stream announces {self.nominal_fps:g})",
        ]
        if self.snapshot is not None:
            where = f" saved to {self.snapshot_path}" if self.snapshot_path else ""
            out.append(
                f"snapshot: {self.snapshot.width}x{self.snapshot.height}, "
                f"{len(self.snapshot.jpeg)} bytes{where}"
            )
        return out

    def render(self) -> str:
        """Text for the terminal."""
        return "\n".join([f"camera check: {self.verdict}", *self.lines()])


async def _first_frame(capture: StreamCapture, open_timeout_s: float) -> Frame:
    """Start ``capture`` and wait for a frame; raises ``DeviceInitError`` with the reason."""
    capture.start()
    if not await asyncio.to_thread(capture.wait_first, open_timeout_s):
        reason = await diagnose(capture.source, open_timeout_s)
        raise DeviceInitError(
            f"no frame from {redact(capture.source)} within {open_timeout_s:g} s: {reason}"
        )
    frame = capture.latest()
    assert frame is not None
    return frame


async def _stop(capture: StreamCapture) -> None:
    capture.stop()
    await asyncio.to_thread(capture.join, capture.join_budget_s)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a JPEG.

    The temporary file is made by :func:`tempfile.mkstemp` in the target's directory
    (``O_CREAT|O_EXCL`` under an unpredictable name, mode 0600): another local user
    cannot plant a symlink there for it to follow, and the rename stays on one
    filesystem. The JPEG keeps that mode: a camera picture is nobody else's business.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


async def check_camera(
    url: str,
    seconds: float = 5.0,
    *,
    snapshot_path: Path | None = None,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
) -> CameraCheck:
    """Open ``url``, measure it for ``seconds``, optionally save a snapshot; never raises
    for a camera problem (the verdict says what is wrong)."""
    capture = StreamCapture(
        url, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s, name="camera-check"
    )
    try:
        try:
            first = await _first_frame(capture, open_timeout_s)
        except DeviceInitError as exc:
            return CameraCheck(url=redact(url), ok=False, verdict=f"failed: {exc}")
        await asyncio.sleep(seconds)  # the measurement window itself
        last = capture.latest() or first
        frames = last.seq - first.seq
        elapsed = last.at.mono - first.at.mono
        snapshot = await asyncio.to_thread(encode_snapshot, last.image, last.image.shape[0], 90)
        if snapshot_path is not None:
            await asyncio.to_thread(_write_atomically, snapshot_path, snapshot.jpeg)
        return CameraCheck(
            url=redact(url),
            ok=True,
            verdict="ok" if frames else "first frame only, then nothing (stalled?)",
            width=last.image.shape[1],
            height=last.image.shape[0],
            codec=capture.codec,
            fps=frames / elapsed if elapsed > 0 else 0.0,
            nominal_fps=capture.nominal_fps,
            frames=frames,
            seconds=seconds,
            snapshot=snapshot,
            snapshot_path=snapshot_path,
        )
    finally:
        await _stop(capture)


async def snapshot(
    url: str, path: Path, *, open_timeout_s: float = 10.0, quality: int = 90
) -> Snapshot:
    """Save one full-resolution JPEG from ``url`` at ``path``; raises ``DeviceInitError``."""
    capture = StreamCapture(
        url, open_timeout_s=open_timeout_s, read_timeout_s=open_timeout_s, name="camera-snapshot"
    )
    try:
        frame = await _first_frame(capture, open_timeout_s)
        picture = await asyncio.to_thread(
            encode_snapshot, frame.image, frame.image.shape[0], quality
        )
        await asyncio.to_thread(_write_atomically, path, picture.jpeg)
        return picture
    finally:
        await _stop(capture)
