"""The camera simulator, seen the way the gateway will see it: OpenCV and raw HTTP clients.

Frame numbers are wall-clock time (frame ``n`` is due ``n / fps`` s after start), so a
client can line what it received up with the truth's fault windows; every MJPEG part
carries its frame number in ``X-Frame``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from simulators.camera.plates import PLATE_RE
from simulators.camera.rtsp import rtsp_unavailable
from simulators.camera.scene import MAIN_SIZE, Scene
from simulators.camera.simulator import CameraSimulator
from simulators.camera.timeline import FaultPlan, TruckPlan
from simulators.xray import iso6346_valid

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 15.0


def _scene(seed: int, *, trucks: int | None = 3, faults: tuple[str, ...] = ()) -> Scene:
    plan = TruckPlan(seed=seed, fps=5, trucks=trucks, truck_every_s=40, dwell_s=4, first_truck_s=1)
    fault_plan = FaultPlan(faults=faults, seed=seed, fps=5, first_s=2, every_s=20, duration_s=2)
    return Scene(plan, fault_plan, seed=seed)


def _grab(url: str, frames: int = 2) -> list[tuple[int, ...]]:
    """Open ``url`` with OpenCV's FFmpeg backend and read ``frames`` frames' shapes."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        shapes = []
        for _ in range(frames):
            ok, image = cap.read()
            assert ok, f"no frame from {url}"
            shapes.append(image.shape)
        return shapes
    finally:
        cap.release()


class MjpegClient:
    """A raw multipart client: every part's frame number and arrival time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str = "/sub.mjpg") -> MjpegClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"multipart/x-mixed-replace" in head
        return cls(reader, writer)

    async def part(self) -> tuple[int, float, bytes]:
        """The next part: (frame number, monotonic arrival time, JPEG)."""
        headers = (await self.reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        fields = dict(h.split(": ", 1) for h in headers if ": " in h)
        jpeg = await self.reader.readexactly(int(fields["Content-Length"]) + 2)
        return int(fields["X-Frame"]), time.monotonic(), jpeg[:-2]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


# -- the scene ------------------------------------------------------------------------


def test_scene_is_a_pure_function_of_seed_and_frame() -> None:
    a, b = _scene(11), _scene(11)
    stopped = a.plan.get(0)
    assert stopped is not None
    n = stopped.stop_frame + 1
    b.frame(n + 40)  # rendering other frames first changes nothing
    for frame in (0, n):
        main_a, sub_a = a.frame(frame)
        main_b, sub_b = b.frame(frame)
        assert main_a.shape == (720, 1280, 3)
        assert sub_a.shape == (360, 640, 3)
        assert np.array_equal(main_a, main_b)
        assert np.array_equal(sub_a, sub_b)
    assert not np.array_equal(a.frame(n)[0], _scene(12).frame(n)[0])
    assert not np.array_equal(a.frame(0)[0], a.frame(1)[0])  # fresh sensor noise


def test_every_truck_has_valid_code_and_vn_plates_between_empty_lanes() -> None:
    scene = _scene(5, trucks=40)
    truth = scene.truth()
    trucks = truth["trucks"]
    assert isinstance(trucks, list)
    assert len(trucks) == 40
    previous_exit = -1
    for truck in trucks:
        assert truck["entry_frame"] > previous_exit  # an empty lane between trucks
        previous_exit = truck["exit_frame"]
        assert truck["entry_frame"] < truck["stop_frame"] < truck["leave_frame"]
        for container in truck["containers"]:
            assert iso6346_valid(container["code"]), container
            assert container["code"][3] == "U"
            assert container["size_type"] in {"22G1", "42G1", "45G1", "45R1"}
        assert PLATE_RE.match(truck["plate"]["text"]), truck["plate"]
        assert PLATE_RE.match(truck["trailer_plate"]["text"])
        assert truck["trailer_plate"]["text"][2] == "R"
        for box in [c["bbox"] for c in truck["containers"]] + [truck["plate"]["bbox"]]:
            x, y, w, h = box
            assert x >= 0 and x + w <= MAIN_SIZE[0] and y >= 0 and y + h <= MAIN_SIZE[1]
    assert {len(t["containers"]) for t in trucks} == {1, 2}
    assert {t["plate"]["rows"] for t in trucks} == {1, 2}


def test_markings_are_painted_where_the_truth_says() -> None:
    scene = _scene(3, trucks=1)
    truck = scene.plan.get(0)
    assert truck is not None
    truth = scene.truck_truth(truck)
    stopped = scene.clean(truck.stop_frame)
    empty = scene.clean(0)
    for box in (truth["containers"][0]["bbox"], truth["plate"]["bbox"]):  # type: ignore[index]
        x, y, w, h = box
        patch = stopped[y : y + h, x : x + w]
        assert not np.array_equal(patch, empty[y : y + h, x : x + w])
        assert patch.std() > 30  # dark characters on a plain field: high contrast


def test_lighting_fault_is_a_brightness_step_without_motion() -> None:
    scene = _scene(8, trucks=0, faults=("lighting",))
    window = scene.faults.window(0)
    before = scene.frame(window.start_frame - 1)[1].astype(float).mean()
    during = scene.frame(window.start_frame)[1].astype(float).mean()
    after = scene.frame(window.end_frame)[1].astype(float).mean()
    assert during > before * 1.3
    assert abs(after - before) < 2
    assert not scene.moving(window.start_frame)


# -- MJPEG ----------------------------------------------------------------------------


async def test_opencv_reads_main_and_sub_with_several_clients() -> None:
    async with asyncio.timeout(LIMIT_S), CameraSimulator(seed=1, fps=5) as sim:
        shapes = await asyncio.gather(
            asyncio.to_thread(_grab, sim.urls["main"]),
            asyncio.to_thread(_grab, sim.urls["sub"]),
            asyncio.to_thread(_grab, sim.urls["sub"]),
        )
        assert shapes[0] == [(720, 1280, 3)] * 2
        assert shapes[1] == shapes[2] == [(360, 640, 3)] * 2
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(b"GET /snapshot.jpg HTTP/1.0\r\n\r\n")
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
        snapshot = cv2.imdecode(np.frombuffer(response.split(b"\r\n\r\n", 1)[1], np.uint8), 1)
        assert snapshot is not None
        assert snapshot.shape == (720, 1280, 3)


async def test_stall_keeps_the_connection_but_sends_nothing() -> None:
    sim = CameraSimulator(
        seed=2, fps=5, faults=["stall"], fault_first_s=1, fault_every_s=4, fault_duration_s=1.5
    )
    stall = sim.scene.faults.window(0)
    async with asyncio.timeout(LIMIT_S), sim:
        client = await MjpegClient.connect(sim.port)
        parts: list[tuple[int, float, bytes]] = []
        while not parts or parts[-1][0] < stall.end_frame + 2:
            parts.append(await client.part())
        await client.close()
    frames = [n for n, _, _ in parts]
    assert not [n for n in frames if stall.covers(n)]
    assert any(n < stall.start_frame for n in frames)
    gap = max(b[1] - a[1] for a, b in itertools.pairwise(parts))
    assert gap >= (stall.end_frame - stall.start_frame) / sim.fps * 0.8


async def test_disconnect_drops_clients_and_refuses_then_comes_back() -> None:
    sim = CameraSimulator(
        seed=3, fps=5, faults=["disconnect"], fault_first_s=1, fault_every_s=4, fault_duration_s=1.5
    )
    down = sim.scene.faults.window(0)
    async with asyncio.timeout(LIMIT_S), sim:
        client = await MjpegClient.connect(sim.port)
        last = -1
        with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
            while True:
                last = (await client.part())[0]
        await client.close()
        assert last < down.start_frame
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", sim.port)
        while True:  # no event to await from outside: poll until the camera is back
            try:
                client = await MjpegClient.connect(sim.port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        first, _, _ = await client.part()
        await client.close()
    assert first >= down.end_frame


# -- file -----------------------------------------------------------------------------


async def test_clip_reads_back_with_every_frame_and_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "lane.avi"
    sim = CameraSimulator(serve="file", out=out, duration_s=2, fps=5, seed=4, first_truck_s=0)
    async with asyncio.timeout(LIMIT_S), sim:
        await sim.finished.wait()
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        assert image.shape == (720, 1280, 3)
        frames += 1
    cap.release()
    assert frames == 10
    truth = json.loads(out.with_suffix(".truth.json").read_text())
    assert truth["frames_sent"] == {"main": 10}
    assert truth["trucks"][0]["entry_frame"] == 0


async def test_motion_only_sends_just_the_moving_frames(tmp_path: Path) -> None:
    out = tmp_path / "motion.avi"
    sim = CameraSimulator(
        serve="file", out=out, duration_s=12, fps=2, seed=6, trucks=1, dwell_s=2, motion_only=True
    )
    async with asyncio.timeout(LIMIT_S), sim:
        await sim.finished.wait()
    truck = sim.scene.plan.get(0)
    assert truck is not None
    moving = sum(sim.scene.moving(n) for n in range(24))
    assert moving >= truck.stop_frame - truck.entry_frame + truck.exit_frame - truck.leave_frame
    assert sim.sent["main"] == moving < 24
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == moving
    cap.release()


# -- RTSP -----------------------------------------------------------------------------

RTSP_SKIP = rtsp_unavailable()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(RTSP_SKIP is not None, reason=f"RTSP server unavailable: {RTSP_SKIP}")
async def test_opencv_reads_both_rtsp_paths_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg probes 20 frames to guess an H.264 stream's rate (4 s at 5 fps) before it
    # opens; fpsprobesize=0 skips that, as the gateway's camera driver should.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|fpsprobesize;0")
    async with asyncio.timeout(LIMIT_S * 2), CameraSimulator(serve="rtsp", seed=1, fps=5) as sim:
        child = sim.rtsp_pid
        assert child is not None
        shapes = await asyncio.gather(
            asyncio.to_thread(_grab, sim.urls["main"], 3),
            asyncio.to_thread(_grab, sim.urls["sub"], 3),
            asyncio.to_thread(_grab, sim.urls["sub"], 3),
        )
    assert list(shapes) == [[(720, 1280, 3)] * 3] + [[(360, 640, 3)] * 3] * 2
    assert _gone(child)  # the server child ends with the simulator


def _read_until_dropped(url: str) -> int:
    """Frames read from ``url`` until the server drops the connection."""
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    frames = 0
    try:
        while cap.read()[0]:
            frames += 1
    finally:
        cap.release()
    return frames


@pytest.mark.skipif(RTSP_SKIP is not None, reason=f"RTSP server unavailable: {RTSP_SKIP}")
async def test_rtsp_disconnect_drops_and_refuses_then_serves_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|fpsprobesize;0")
    sim = CameraSimulator(
        serve="rtsp",
        seed=3,
        fps=5,
        faults=["disconnect"],
        fault_first_s=3,
        fault_every_s=8,
        fault_duration_s=2,
    )
    down = sim.scene.faults.window(0)
    async with asyncio.timeout(LIMIT_S * 2), sim:
        frames = await asyncio.to_thread(_read_until_dropped, sim.urls["sub"])
        assert frames > 0
        assert down.covers(sim.frame)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", sim.port)
        # The window's end is a time on the simulator's clock (frame / fps), not an event.
        await asyncio.sleep((down.end_frame + 1 - sim.frame) / sim.fps)
        assert await asyncio.to_thread(_grab, sim.urls["sub"], 2) == [(360, 640, 3)] * 2


CHILD_PROBE = """
import asyncio, sys
from simulators.camera.simulator import CameraSimulator
async def main():
    async with CameraSimulator(serve="rtsp", fps=5) as sim:
        print(sim.rtsp_pid, flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


@pytest.mark.skipif(RTSP_SKIP is not None, reason=f"RTSP server unavailable: {RTSP_SKIP}")
def test_rtsp_child_dies_with_a_sigkilled_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_PROBE], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=5)
        deadline = time.monotonic() + 5
        while not _gone(child) and time.monotonic() < deadline:  # no event: poll
            time.sleep(0.05)
        assert _gone(child)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
