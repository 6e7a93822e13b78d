"""The camera driver on real streams: a looping MJPG/AVI file and MJPEG over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from unittest import mock

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from drivers.camera.config import CameraSection
from drivers.camera.diagnose import redact
from drivers.camera.driver import CameraDriver
from drivers.camera.ocr.service import OcrService, _Passage, _Region
from drivers.camera.processor import CameraProcessor
from drivers.camera.readings import (
    CameraStats,
    MotionObserved,
    RegionCrop,
    Snapshot,
    StillCaptured,
)
from drivers.camera.snapshot import encode_snapshot
from drivers.camera.tools import check_camera, snapshot
from drivers.camera.worker import Handoff
from gateway.errors import DeviceInitError, DeviceIOError, DeviceStalledError, FrameError
from gateway.readings import Reading, Stamp
from gateway.records import MediaDraft
from simulators.camera.simulator import CameraSimulator

Image = npt.NDArray[np.uint8]
WIDTH, HEIGHT, FPS = 320, 180, 25


def lane(seed: int = 1) -> Image:
    """A static colour lane scene."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 140, (HEIGHT // 10, WIDTH // 10, 3), dtype=np.uint8)
    image = np.ascontiguousarray(
        cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST), dtype=np.uint8
    )
    image[HEIGHT // 2 - 2 : HEIGHT // 2 + 2] = 220
    return image


def truck(background: Image, x: int) -> Image:
    """``background`` with a 70x50 checkered box whose left edge is at ``x``."""
    image = background.copy()
    cv2.rectangle(image, (x, 60), (x + 70, 110), (30, 30, 200), -1)
    for i in range(0, 70, 10):
        cv2.rectangle(image, (x + i, 60), (x + i + 4, 110), (240, 240, 240), -1)
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.2 s of MJPG in AVI: 1 s empty lane, a truck crossing in 1.6 s, 0.6 s empty."""
    path = tmp_path_factory.mktemp("camera") / "lane.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    background = lane()
    frames = [background] * FPS
    frames += [truck(background, x) for x in range(-70, WIDTH + 10, 10)]
    frames += [background] * 15
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def config(url: str, **overrides: object) -> CameraSection:
    values: dict[str, object] = {
        "id": "cam-1",
        "driver": "camera.opencv",
        "url": url,
        "analyse_fps": 10,
        "end_quiet_s": 0.5,
        "open_timeout_s": 2,
        "read_timeout_s": 1,
        "still_interval_s": 0.5,
        "stats_interval_s": 1,
        "snapshot_on_start": True,
        "snapshot_height": 720,
    }
    values.update(overrides)
    return CameraSection.model_validate(values)


async def collect(
    driver: CameraDriver, done: Callable[[list[Reading]], bool], within_s: float = 10.0
) -> list[Reading]:
    """Readings until ``done`` says enough (or fail after ``within_s``)."""
    got: list[Reading] = []
    async with asyncio.timeout(within_s):
        async for reading in driver.readings():
            got.append(reading)
            if done(got):
                return got
    raise AssertionError("readings ended")


def decodes(snap: Snapshot | None) -> Image:
    assert snap is not None
    image = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[:2] == (snap.height, snap.width)
    return np.asarray(image, np.uint8)


def has_end(got: list[Reading]) -> bool:
    return any(isinstance(r, MotionObserved) and r.phase == "end" for r in got)


async def test_file_gives_motion_event_with_snapshots_and_stills(clip: Path) -> None:
    driver = CameraDriver(config(str(clip)))
    async with driver:
        got = await collect(driver, has_end)
        counters = dict(driver.counters.extra)
    motion = [r for r in got if isinstance(r, MotionObserved)]
    start, end = motion[0], motion[-1]
    assert (start.phase, end.phase) == ("start", "end")
    assert {m.event_id for m in motion} == {start.event_id}
    assert end.started_at == start.started_at and end.frames >= 5
    # the truck is in rows 60..110 of 180
    for x, y, w, h in end.boxes:
        assert 0.2 < y + h / 2 < 0.7 and 0 <= x <= 1 and w > 0.05
    assert decodes(start.snapshot).shape == (HEIGHT, WIDTH, 3)
    best = decodes(end.snapshot)
    # the best frame shows the whole truck: red spans (nearly) its 70 px length
    red_columns = np.flatnonzero(((best[:, :, 2] > 150) & (best[:, :, 0] < 90)).any(axis=0))
    assert red_columns.size and red_columns[-1] - red_columns[0] >= 60
    stills = [r for r in got if isinstance(r, StillCaptured)]
    assert len(stills) >= 2
    decodes(stills[0].snapshot)
    gaps = [b.at.mono - a.at.mono for a, b in itertools.pairwise(stills)]
    assert all(0.4 < gap < 0.9 for gap in gaps)
    stats = [r for r in got if isinstance(r, CameraStats)]
    assert stats and stats[0].width == WIDTH and stats[0].codec == "MJPG"
    assert counters["frames_in"] > counters["frames_analysed"] > 10
    assert counters["frames_dropped"] > 0  # 25 fps in, 10 analysed: decimation is counted
    assert 8 <= counters["fps_analysed"] <= 11


async def test_by_default_only_the_end_of_an_event_carries_a_picture(clip: Path) -> None:
    driver = CameraDriver(config(str(clip), snapshot_on_start=False))
    async with driver:
        got = await collect(driver, has_end)
    motion = [r for r in got if isinstance(r, MotionObserved)]
    assert motion[0].phase == "start" and motion[0].snapshot is None
    assert motion[-1].phase == "end" and motion[-1].snapshot is not None


async def test_snapshot_stream_supplies_the_pictures(clip: Path, tmp_path: Path) -> None:
    # the main stream is twice the size of the analysed one
    big = tmp_path / "main.avi"
    writer = cv2.VideoWriter(str(big), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (640, 360))
    for _ in range(FPS):
        writer.write(cv2.resize(lane(2), (640, 360)))
    writer.release()
    driver = CameraDriver(config(str(clip), snapshot_url=str(big), still_height=300))
    async with driver:
        got = await collect(driver, lambda g: any(isinstance(r, StillCaptured) for r in g))
    still = next(r for r in got if isinstance(r, StillCaptured))
    assert decodes(still.snapshot).shape == (300, 533, 3)


@contextlib.asynccontextmanager
async def mjpeg_server(
    frames_first_connection: int, *, truck_after: int | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """An MJPEG-over-HTTP camera on a free port that sends some frames, then stalls.

    ``/video`` streams ``frames_first_connection`` JPEGs on the first connection and
    then keeps the socket open silently (later connections get only silence);
    ``/secret`` answers 401 and anything else 404. Yields the base URL and the list of
    connection counts (one entry per request to ``/video``). With ``truck_after``, a
    truck drives in from that frame on and the stream freezes while it moves.
    """
    background = lane(3)
    still = cv2.imencode(".jpg", background)[1].tobytes()

    def jpeg(n: int) -> bytes:
        if truck_after is None or n < truck_after:
            return still
        return cv2.imencode(".jpg", truck(background, -70 + 8 * (n - truck_after)))[1].tobytes()

    stop = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split()[1].decode()
            if path != "/video":
                status = "401 Unauthorized" if path == "/secret" else "404 Not Found"
                writer.write(f"HTTP/1.0 {status}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
                return
            connections.append(len(connections) + 1)
            writer.write(
                b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n"
            )
            count = frames_first_connection if len(connections) == 1 else 0
            for n in range(count):
                picture = jpeg(n)
                writer.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(picture)}\r\n\r\n".encode()
                    + picture
                    + b"\r\n"
                )
                await writer.drain()
                await asyncio.sleep(1 / FPS)  # a camera's frame period
            await stop.wait()  # the stall: connection open, nothing sent
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


async def test_http_mjpeg_stream_then_stall_raises_timeout() -> None:
    async with mjpeg_server(frames_first_connection=40) as (base, connections):
        driver = CameraDriver(config(f"{base}/video", stall_timeout_s=3, still_interval_s=0.3))
        async with driver:
            got: list[Reading] = []
            with pytest.raises(DeviceStalledError, match=r"cam-1: no frame for 3\.\d s"):
                async with asyncio.timeout(15):
                    async for reading in driver.readings():
                        got.append(reading)
        stills = [r for r in got if isinstance(r, StillCaptured)]
        assert stills and decodes(stills[0].snapshot).shape == (HEIGHT, WIDTH, 3)
        assert not [r for r in got if isinstance(r, MotionObserved)]
        # the read timed out after 1 s and the capture reopened the silent stream
        assert len(connections) >= 2
        assert driver.counters.extra["reconnects"] >= 1


async def test_a_stall_in_the_middle_of_an_event_ends_it_with_its_best_frame() -> None:
    async with mjpeg_server(frames_first_connection=30, truck_after=15) as (base, _):
        driver = CameraDriver(config(f"{base}/video", stall_timeout_s=2, still_interval_s=0))
        async with driver:
            got: list[Reading] = []
            with pytest.raises(DeviceStalledError):
                async with asyncio.timeout(15):
                    async for reading in driver.readings():
                        got.append(reading)
    motion = [r for r in got if isinstance(r, MotionObserved)]
    assert motion[0].phase == "start" and motion[-1].phase == "end"
    assert len({m.event_id for m in motion}) == 1
    assert decodes(motion[-1].snapshot).shape == (HEIGHT, WIDTH, 3)


async def open_error(url: str) -> str:
    with pytest.raises(DeviceInitError) as info:
        async with CameraDriver(config(url, open_timeout_s=0.5)):
            pass
    return str(info.value)


async def test_open_errors_say_what_is_wrong(tmp_path: Path) -> None:
    async with mjpeg_server(frames_first_connection=0) as (base, _):
        assert "401 Unauthorized: check the user and password" in await open_error(f"{base}/secret")
        assert "404 Not Found: check the stream path" in await open_error(f"{base}/nothing")
        assert "sent no decodable video" in await open_error(f"{base}/video")
    assert "no such file" in await open_error(str(tmp_path / "missing.avi"))
    (tmp_path / "notes.avi").write_text("not a video")
    assert "not a video" in await open_error(str(tmp_path / "notes.avi"))
    # nothing listens on port 9 of localhost (discard): refused at once
    assert "unreachable" in await open_error("rtsp://user:pw@127.0.0.1:9/stream")


def test_passwords_are_redacted() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/sub") == "rtsp://admin:***@10.0.0.5:554/sub"
    assert redact("http://10.0.0.5/mjpg") == "http://10.0.0.5/mjpg"


async def test_check_and_snapshot_tools(clip: Path, tmp_path: Path) -> None:
    saved = tmp_path / "check.jpg"
    result = await check_camera(str(clip), 1.0, snapshot_path=saved)
    assert result.ok, result.render()
    assert (result.width, result.height, result.codec) == (WIDTH, HEIGHT, "MJPG")
    assert 20 <= result.fps <= 30 and result.nominal_fps == FPS
    assert cv2.imread(str(saved)) is not None
    assert "resolution: 320x180" in result.render()
    target = tmp_path / "snap.jpg"
    snap = await snapshot(str(clip), target)
    assert target.read_bytes() == snap.jpeg and (snap.width, snap.height) == (WIDTH, HEIGHT)
    failed = await check_camera(str(tmp_path / "missing.avi"), 1.0, open_timeout_s=0.5)
    assert not failed.ok and "no such file" in failed.render()


async def test_probe_reports_the_stream(clip: Path) -> None:
    result = await CameraDriver(config(str(clip))).probe()
    assert result.ok and any("codec: MJPG" in line for line in result.details)


async def test_camera_simulator_truck_is_seen_with_main_stream_snapshot() -> None:
    sim = CameraSimulator(serve="mjpeg", seed=5, fps=10.0, trucks=1, first_truck_s=1.5, dwell_s=2.0)
    async with sim:
        urls = sim.urls
        driver = CameraDriver(config(urls["sub"], snapshot_url=urls["main"], open_timeout_s=5))
        async with driver:
            got = await collect(
                driver,
                lambda g: any(isinstance(r, MotionObserved) for r in g),
                within_s=15,
            )
    start = next(r for r in got if isinstance(r, MotionObserved))
    assert start.phase == "start" and start.boxes
    # the snapshot comes from the 1280x720 main stream, the analysis from the 640x360 sub
    assert decodes(start.snapshot).shape == (720, 1280, 3)


# -- the hand-off from the analysis thread to the loop -----------------------------------


def at(n: int) -> Stamp:
    return Stamp(mono=float(n), utc=datetime.now(UTC))


def step(phase: Literal["start", "update", "end"], n: int) -> MotionObserved:
    """A motion step of event ``e1``; ``frames`` tells the steps apart."""
    return MotionObserved(at=at(n), phase=phase, event_id="e1", boxes=(), score=0.1,
                          snapshot=None, started_at=at(0), frames=n)  # fmt: skip


PICTURE = Snapshot(jpeg=b"\xff\xd8\xff\xd9", width=1, height=1, sha256="0" * 64)


def stats(n: int) -> CameraStats:
    return CameraStats(at=at(n), width=WIDTH, height=HEIGHT, codec="MJPG", fps_in=25.0,
                       fps_analysed=10.0, frames_in=n, frames_analysed=n, frames_dropped=0,
                       reconnects=0, recalibrations=0)  # fmt: skip


def test_a_flooded_handoff_stays_bounded_keeps_the_latest_still_and_every_start_and_end() -> None:
    wakes: list[None] = []
    handoff = Handoff(lambda: wakes.append(None), bound=8)
    for n in range(100):  # 100 analysed frames while the loop takes nothing
        batch: list[Reading | FrameError] = [
            step("update", n), StillCaptured(at=at(n), snapshot=PICTURE), stats(n)
        ]  # fmt: skip
        if n == 10:
            batch.insert(0, step("start", n))
        if n == 50:
            batch.append(FrameError("JPEG encoding failed"))
        if n == 90:
            batch.append(step("end", n))
        handoff.put(batch)
        assert len(handoff) <= 8
    handoff.fail(DeviceIOError("cam-1: analysis failed"))
    assert len(wakes) == 1  # woken once until it takes, not once per hand-over
    got, failure = handoff.take()
    assert isinstance(failure, DeviceIOError) and len(handoff) == 0
    motion = [r for r in got if isinstance(r, MotionObserved)]
    # start and end kept, in order; the oldest updates (and the frame error) made room
    assert [(m.phase, m.frames) for m in motion] == [
        ("start", 10), ("end", 90), *(("update", n) for n in range(94, 100))
    ]  # fmt: skip
    assert not [r for r in got if isinstance(r, FrameError)]
    assert [r.at.mono for r in got if isinstance(r, StillCaptured)] == [99.0]
    assert [r.frames_in for r in got if isinstance(r, CameraStats)] == [99]
    assert handoff.dropped == 99 + 99 + (100 + 1 - 6)  # stills, stats, updates + error
    handoff.put([StillCaptured(at=at(100), snapshot=PICTURE)])
    assert len(wakes) == 2


def test_a_handoff_full_of_what_must_be_kept_makes_the_analysis_thread_wait() -> None:
    handoff = Handoff(lambda: None, bound=2)
    handoff.put([step("start", 1), step("end", 2)])
    handoff.put([step("update", 3)])  # nothing that may go is queued: the update goes
    assert (handoff.dropped, len(handoff)) == (1, 2)

    def waiting(thread: threading.Thread, waits: int) -> None:
        deadline = time.monotonic() + 5
        while handoff.waits < waits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.is_alive() and handoff.waits == waits and len(handoff) == 2

    producer = threading.Thread(target=handoff.put, args=([step("start", 4)],))
    producer.start()
    waiting(producer, 1)
    first, _ = handoff.take()
    producer.join(5)
    second, _ = handoff.take()
    taken = first + second
    assert all(isinstance(m, MotionObserved) for m in taken)
    assert [m.frames for m in taken if isinstance(m, MotionObserved)] == [1, 2, 4]
    assert handoff.dropped == 1
    # a camera being closed does not leave its analysis thread waiting
    handoff.put([step("end", 5), step("start", 6)])
    stuck = threading.Thread(target=handoff.put, args=([step("end", 7)],))
    stuck.start()
    waiting(stuck, 2)
    handoff.close()
    stuck.join(5)
    assert not stuck.is_alive()


async def test_a_slow_loop_gets_the_latest_still_the_whole_event_and_the_drop_count(
    clip: Path,
) -> None:
    driver = CameraDriver(config(str(clip), still_interval_s=0.2, stats_interval_s=0.2))
    async with driver:
        # The loop is blocked: nothing is taken while the truck passes.
        time.sleep(4.0)  # noqa: ASYNC251 - on purpose
        unblocked = time.monotonic()
        kinds = (MotionObserved, StillCaptured, CameraStats)
        got = await collect(
            driver, lambda g: has_end(g) and all(any(isinstance(r, k) for r in g) for k in kinds)
        )
        counters = driver.counters.as_dict()
    motion = [r for r in got if isinstance(r, MotionObserved)]
    assert (motion[0].phase, motion[-1].phase) == ("start", "end")
    assert motion[0].at.mono < unblocked  # handed over while nothing was taken, and kept
    # ~20 stills and stats were made meanwhile; only the latest of each came through
    for kind in kinds[1:]:
        arrived = [r.at.mono for r in got if isinstance(r, kind)]
        assert arrived and min(arrived) > unblocked - 0.6, kind
    assert counters["handoff_dropped"] >= 20
    assert counters["handoff_waits"] == 0


# -- hashing -------------------------------------------------------------------------------


def test_every_picture_is_hashed_once_when_it_is_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", spy := mock.Mock(wraps=sha256))
    picture = encode_snapshot(lane(), HEIGHT, 70)
    cut = np.ascontiguousarray(lane()[60:110, 100:220])
    crop = RegionCrop(region="door", kind="container", image=cut,
                      jpeg=encode_snapshot(cut, 50, 90))  # fmt: skip
    assert [c.args for c in spy.call_args_list] == [(picture.jpeg,), (crop.jpeg.jpeg,)]
    spy.reset_mock()
    camera = CameraProcessor("cam-1")
    out = [
        *camera.feed(MotionObserved(at=at(1), phase="end", event_id="e1", boxes=(), score=0.2,
                                    snapshot=picture, started_at=at(0), frames=5)),
        *camera.feed(StillCaptured(at=at(2), snapshot=picture)),
    ]  # fmt: skip
    service = OcrService(emit=lambda drafts: asyncio.sleep(0))  # never started: no worker
    passage = _Passage("cam-1", "p1", "command", 1, started=at(3))
    region = _Region("container")
    region.add(None, crop)
    out += service._decide(passage, "door", region)
    spy.assert_not_called()  # publishing them took the digests taken at encoding
    media = [m for m in out if isinstance(m, MediaDraft)]
    assert (
        [m.sha256 for m in media]
        == [sha256(m.body).hexdigest() for m in media]
        == [picture.sha256, picture.sha256, crop.jpeg.sha256]
    )
    refs = [d.data.get("snapshot") or d.data for d in out if not isinstance(d, MediaDraft)]
    assert [r["sha256"] for r in refs] == [m.sha256 for m in media]
