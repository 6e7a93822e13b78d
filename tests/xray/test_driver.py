"""The X-ray drop-folder driver against the real simulator writing into a real folder.

The simulator plays every fault with small images and short settle times; the driver
runs at the same time (inotify and polling alike) until it is idle, and every scan must
end as the simulator's ground truth says. Hashes are recomputed here from the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import AsyncGenerator, Set
from datetime import datetime
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest

from drivers.xray.check import check_folder, render
from drivers.xray.config import XrayFolderSection
from drivers.xray.driver import XrayFolderDriver
from drivers.xray.manifest import Manifest
from drivers.xray.originals import find_original, read_chunks
from drivers.xray.processor import ScanProcessor
from drivers.xray.readings import ScanCompleted, ScanFailed
from drivers.xray.sidecar import parse_sidecar
from drivers.xray.structure import Shape, walk
from gateway.errors import DeviceIOError, FrameError, OriginalUnavailableError
from gateway.readings import Reading
from gateway.records import Draft, MediaDraft
from simulators.xray import (
    FAULTS,
    NON_ASCII_OPERATOR,
    Expected,
    XraySimulator,
    encode_image,
    radiograph,
)

RUN_LIMIT_S = 20.0
SETTLE_S = 0.2
ORPHAN_S = 1.0  # longer than the simulator's stall (3 * SETTLE_S): a stall is no orphan
SIZE = (256, 128)
PREVIEW_H = 64

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def config(tmp_path: Path, watch: str = "poll", **kwargs: object) -> XrayFolderSection:
    options: dict[str, object] = {
        "id": "xray1",
        "driver": "xray.folder",
        "path": tmp_path / "drop",
        "manifest": tmp_path / "state" / "xray1.jsonl",
        "settle_s": SETTLE_S,
        "orphan_after_s": ORPHAN_S,
        "poll_s": 0.05,
        "watch": watch,
        "preview_height": PREVIEW_H,
        **kwargs,
    }
    return XrayFolderSection.model_validate(options)


def simulator(tmp_path: Path, **kwargs: object) -> XraySimulator:
    options: dict[str, object] = {
        "dir": tmp_path / "drop",
        "interval_s": 0.02,
        "seed": 42,
        "settle_s": SETTLE_S,
        "chunk_bytes": 8 * 1024,
        "chunk_interval_s": 0.002,
        "size": SIZE,
        "truth_path": tmp_path / "truth.json",
        **kwargs,
    }
    return XraySimulator(**options)  # type: ignore[arg-type]


class Running:
    """A driver read in a background task, its readings collected in ``got``."""

    def __init__(self, driver: XrayFolderDriver) -> None:
        self.driver = driver
        self.got: list[Reading] = []
        self.task: asyncio.Task[None] | None = None

    async def _collect(self) -> None:
        readings = self.driver.readings()
        assert isinstance(readings, AsyncGenerator)  # closed below, not left to the GC
        async with contextlib.aclosing(readings):
            async for reading in readings:
                self.got.append(reading)

    async def __aenter__(self) -> Running:
        await self.driver.open()
        self.task = asyncio.create_task(self._collect(), name="xray-driver-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait([self.task])
        await self.driver.close()
        if not self.task.cancelled() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]

    async def idle(self, stems: Set[str] = frozenset()) -> None:
        """Wait for an idle pass after every stem in ``stems`` has been reported."""
        async with asyncio.timeout(RUN_LIMIT_S):
            while True:
                self.driver.idle.clear()
                await self.driver.idle.wait()
                if stems <= set(stems_of(self.got)):
                    return


Scan = ScanCompleted | ScanFailed


def stems_of(readings: list[Reading]) -> list[str]:
    return [r.stem for r in readings if isinstance(r, Scan)]


def by_stem(readings: list[Reading]) -> dict[str, list[Scan]]:
    out: dict[str, list[Scan]] = {}
    for r in readings:
        assert isinstance(r, Scan)
        out.setdefault(r.stem, []).append(r)
    return out


def file_facts(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


# JPEG matters: libjpeg decodes a half-written JPEG (padding it with grey), so only the
# structure walk keeps the copy that never completes from being published.
@pytest.mark.parametrize(
    ("watch", "image_format", "sidecar_format"),
    [("poll", "tiff16", "xml"), ("inotify", "tiff16", "xml"), ("inotify", "jpeg", "json")],
)
async def test_every_fault_ends_as_the_truth_says(
    tmp_path: Path, watch: str, image_format: str, sidecar_format: str
) -> None:
    faults = set(FAULTS) - {"done_marker"}  # the marker would hide the settle logic
    sim = simulator(
        tmp_path,
        scans=12,
        faults=faults,
        image_format=image_format,
        sidecar_format=sidecar_format,
    )
    driver = XrayFolderDriver(config(tmp_path, watch))
    (tmp_path / "drop").mkdir()
    async with Running(driver) as run:
        assert driver.watch.active == watch
        async with asyncio.timeout(RUN_LIMIT_S), sim:
            await sim.finished.wait()
        await run.idle({s.stem for s in sim.truth})
    assert (driver.watch.events > 0) == (watch == "inotify")
    drop = tmp_path / "drop"
    got = by_stem(run.got)
    for scan in sim.truth:
        readings = got.get(scan.stem, [])
        assert len(readings) == 1, (scan.stem, scan.faults, readings)
        reading = readings[0]
        if scan.expected is Expected.COMPLETE:
            assert isinstance(reading, ScanCompleted), (scan, reading)
            image = (drop / reading.image_name).read_bytes()
            assert reading.image_sha256 == hashlib.sha256(image).hexdigest() == scan.image_sha256
            sidecar = (drop / reading.sidecar_name).read_bytes()
            assert reading.sidecar_sha256 == hashlib.sha256(sidecar).hexdigest()
            assert reading.scan_id == scan.scan_id
            assert reading.lane == scan.lane and reading.scanner_id == scan.scanner_id
            assert reading.operator == scan.operator
            assert reading.scan_time is not None and scan.time is not None
            assert reading.scan_time == datetime.fromisoformat(scan.time)
            assert reading.containers == tuple(
                zip(scan.containers, scan.check_digits_valid, strict=True)
            )
            depth, fmt = (8, "jpeg") if image_format == "jpeg" else (16, "tiff")
            assert (reading.width, reading.height, reading.bit_depth) == (*SIZE, depth)
            assert reading.image_format == fmt
            preview = cv2.imdecode(
                np.frombuffer(reading.preview_jpeg, np.uint8), cv2.IMREAD_UNCHANGED
            )
            assert reading.preview_jpeg.startswith(b"\xff\xd8") and preview is not None
            assert preview.shape == (PREVIEW_H, PREVIEW_H * SIZE[0] // SIZE[1])
            assert preview.dtype == np.uint8 and int(preview.max()) - int(preview.min()) > 100
            assert reading.preview_sha256 == hashlib.sha256(reading.preview_jpeg).hexdigest()
        else:
            assert isinstance(reading, ScanFailed), (scan, reading)
    fails = {
        s.seq: getattr(got[s.stem][0], "reason", None)
        for s in sim.truth
        if s.expected is not Expected.COMPLETE
    }
    assert fails == {
        3: "stalled_image",  # never completes: never a ScanCompleted
        4: "empty_image",
        5: "corrupt_image",
        6: "orphan_sidecar",
        7: "orphan_image",
    }
    corrupt = got[sim.truth[5].stem][0]
    assert isinstance(corrupt, ScanFailed)
    assert corrupt.image_sha256 == sim.truth[5].image_sha256
    assert corrupt.scan_id == sim.truth[5].scan_id
    assert got[sim.truth[4].stem][0].image_sha256 == hashlib.sha256(b"").hexdigest()
    assert got[sim.truth[6].stem][0].image_sha256 is None
    # The stall-then-complete copy is published whole, not at its half size.
    stalled_then_whole = got[sim.truth[2].stem][0]
    assert isinstance(stalled_then_whole, ScanCompleted)
    assert stalled_then_whole.image_bytes == sim.truth[2].image_bytes
    non_ascii = got[sim.truth[9].stem][0]
    assert isinstance(non_ascii, ScanCompleted) and non_ascii.operator == NON_ASCII_OPERATOR
    bad = got[sim.truth[10].stem][0]
    assert isinstance(bad, ScanCompleted)
    wrong = [c for c, ok in bad.containers if not ok]
    assert len(wrong) == 1 and f"container {wrong[0]}: check digit wrong" in bad.problems

    # Originals untouched; a restart with the same manifest publishes nothing again.
    before = file_facts(drop)
    for scan in sim.truth:
        if scan.image is not None:
            assert before[scan.image][0] == scan.image_sha256
    async with Running(XrayFolderDriver(config(tmp_path, watch))) as again:
        await again.idle()
    assert again.got == []
    assert file_facts(drop) == before
    lines = (tmp_path / "state" / "xray1.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 12


async def test_a_repeated_scan_id_with_another_image_is_flagged_the_same_image_is_not_resent(
    tmp_path: Path,
) -> None:
    sim = simulator(tmp_path, scans=2, faults={"duplicate_id", "done_marker"}, scanner_id="XR-02")
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()
    first, second = sim.truth
    assert second.duplicate_of == 0 and second.scan_id == first.scan_id
    drop = tmp_path / "drop"
    async with Running(XrayFolderDriver(config(tmp_path))) as run:
        await run.idle({first.stem, second.stem})
        # The scanner drops the first scan again under another name: same id, same image.
        for name in (first.image, first.sidecar):
            assert name is not None
            shutil.copy(drop / name, drop / name.replace(first.stem, "XR-02_again"))
        await run.idle()
    assert [r.stem for r in run.got] == [first.stem, second.stem]  # type: ignore[attr-defined]
    one, two = run.got
    assert isinstance(one, ScanCompleted) and isinstance(two, ScanCompleted)
    assert one.duplicate_of is None
    assert two.duplicate_of == one.image_sha256 != two.image_sha256
    assert f"scan id {first.scan_id} seen before with another image" in two.problems
    lines = (tmp_path / "state" / "xray1.jsonl").read_text(encoding="utf-8").splitlines()
    outcomes = [json.loads(line)["outcome"] for line in lines]
    assert outcomes == ["complete", "complete", "repeat"]

    # Originals are served by hash or scan id, and refused once they change.
    manifest = tmp_path / "state" / "xray1.jsonl"
    path = find_original(manifest, sha256=one.image_sha256)
    assert path == drop / one.image_name
    assert find_original(manifest, scan_id=first.scan_id) == drop / two.image_name
    data = b"".join(read_chunks(path, 1000))
    assert hashlib.sha256(data).hexdigest() == one.image_sha256
    with pytest.raises(OriginalUnavailableError, match="not in"):
        find_original(manifest, scan_id="nope")
    (drop / two.image_name).write_bytes(b"tampered")
    with pytest.raises(OriginalUnavailableError, match="changed since"):
        find_original(manifest, sha256=two.image_sha256)


async def test_a_torn_manifest_line_is_skipped_and_reported_not_fatal(tmp_path: Path) -> None:
    sim = simulator(tmp_path, scans=2, faults={"done_marker"})
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()
    manifest = tmp_path / "state" / "xray1.jsonl"
    async with Running(XrayFolderDriver(config(tmp_path))) as run:
        await run.idle({s.stem for s in sim.truth})
    good = manifest.read_bytes()
    assert len(good.splitlines()) == 2
    # A crash in the middle of writing the second line leaves it torn.
    first_line, second_line = good.splitlines(keepends=True)
    manifest.write_bytes(first_line + second_line[:25])
    loaded = Manifest.load(manifest)
    assert len(loaded.entries) == 1
    assert loaded.problems == [f"{manifest}: torn last line ignored (25 bytes)"]
    driver = XrayFolderDriver(config(tmp_path))
    async with Running(driver) as again:
        await again.idle({sim.truth[1].stem})
    assert [r.stem for r in again.got] == [sim.truth[1].stem]  # type: ignore[attr-defined]
    assert driver.counters.extra["manifest_problems"] == 1
    reloaded = Manifest.load(manifest)
    assert [e.stem for e in reloaded.entries] == [s.stem for s in sim.truth]
    assert len(reloaded.problems) == 1  # the torn fragment stays one bad line of its own


async def test_archive_dir_moves_originals_only_after_recording(tmp_path: Path) -> None:
    sim = simulator(tmp_path, scans=1, faults={"done_marker"})
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()
    archive = tmp_path / "archive"
    async with Running(XrayFolderDriver(config(tmp_path, archive_dir=archive))) as run:
        await run.idle({sim.truth[0].stem})
        await run.idle()  # the next _read() records the batch, then archives it
    (scan,) = run.got
    assert isinstance(scan, ScanCompleted)
    assert sorted(p.name for p in archive.iterdir()) == sorted(sim.truth[0].write_order)
    assert list((tmp_path / "drop").iterdir()) == []
    found = find_original(tmp_path / "state" / "xray1.jsonl", sha256=scan.image_sha256)
    assert found == archive / scan.image_name


def write_scan(folder: Path, stem: str, image: bytes, *, age_s: float) -> None:
    sidecar = json.dumps({"scan_id": stem, "containers": ["CSQU3054383"]}).encode()
    for name, data in ((f"{stem}.tif", image), (f"{stem}.json", sidecar)):
        path = folder / name
        path.write_bytes(data)
        when = path.stat().st_mtime - age_s
        os.utime(path, (when, when))


def test_check_folder_lists_pending_failed_and_ready_without_writing(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    tiff = encode_image(radiograph(1, 64, 32), "tiff16")
    garbage = tiff[:8] + bytes(len(tiff) - 8)
    write_scan(folder, "good", tiff, age_s=10)
    write_scan(folder, "bad", garbage, age_s=10)
    write_scan(folder, "half", tiff[: len(tiff) // 2], age_s=10)
    (folder / "fresh.tif").write_bytes(tiff)
    before = file_facts(folder)
    report = check_folder(folder, settle_s=2.0, manifest=tmp_path / "none.jsonl")
    text = render(report)
    assert [line.stem for line in report.ready] == ["good"]
    assert [line.stem for line in report.failed] == ["bad"]
    assert f"sha256 {hashlib.sha256(garbage).hexdigest()}" in report.failed[0].detail
    assert "corrupt image" in report.failed[0].detail
    pending = {line.stem: line.detail for line in report.pending}
    assert pending["fresh"].startswith("waiting for sidecar")
    assert pending["half"].startswith("image truncated")
    assert "pending: 2" in text and "failed: 1" in text and "bad: corrupt image" in text
    assert file_facts(folder) == before
    assert not (tmp_path / "none.jsonl").exists()
    with pytest.raises(DeviceIOError, match="cannot list"):
        check_folder(tmp_path / "nope", settle_s=2.0, manifest=None)


@pytest.mark.parametrize("fmt", ["tiff16", "png", "jpeg"])
def test_structure_tells_a_stalled_copy_from_a_corrupt_file(fmt: str) -> None:
    data = encode_image(radiograph(5, 128, 64), fmt)
    assert walk(data) is Shape.WHOLE
    assert walk(data[: len(data) // 2]) is Shape.TRUNCATED
    assert walk(data[:-1]) is Shape.TRUNCATED
    assert walk(b"") is Shape.EMPTY
    head = {"tiff16": 8, "png": 33, "jpeg": 20}[fmt]
    rng = np.random.default_rng(0)
    for _ in range(20):
        garbage = data[:head] + rng.integers(0, 256, len(data) - head, dtype=np.uint8).tobytes()
        assert walk(garbage) is Shape.CORRUPT


def test_sidecars_parse_and_refuse_entities() -> None:
    xml = (
        "<?xml version='1.0' encoding='utf-8'?><Scan><ScanId>S1</ScanId>"
        "<Time>2026-01-02T10:04:05+07:00</Time><Operator>Nguyễn Văn Ân</Operator>"
        "<Containers><Container>CSQU3054383</Container></Containers></Scan>"
    ).encode()
    parsed = parse_sidecar(xml, ".xml")
    assert parsed.scan_id == "S1" and parsed.operator == NON_ASCII_OPERATOR
    assert parsed.time is not None and parsed.time.isoformat() == "2026-01-02T03:04:05+00:00"
    assert parsed.containers == ("CSQU3054383",)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Scan><ScanId>&a;</ScanId></Scan>'
    )
    with pytest.raises(FrameError, match="DOCTYPE"):
        parse_sidecar(bomb, ".xml")
    with pytest.raises(FrameError, match="no scan id"):
        parse_sidecar(b'{"lane": "L1"}', ".json")
    with pytest.raises(FrameError):
        parse_sidecar(b"{not json", ".json")


async def test_probe_describes_the_folder_without_waiting_for_scans(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "lonely.xml").write_bytes(b"<Scan><ScanId>S9</ScanId></Scan>")
    result = await XrayFolderDriver(config(tmp_path, "auto")).probe()
    assert result.ok, result
    assert result.details[0] == "watching with inotify"
    assert any(line.startswith("  lonely: waiting for image") for line in result.details)
    assert not (tmp_path / "state").exists()  # read-only
    missing = await XrayFolderDriver(config(tmp_path, path=tmp_path / "nope")).probe()
    assert not missing.ok and "missing" in missing.verdict


async def test_a_reading_not_followed_by_another_read_is_emitted_again_after_restart(
    tmp_path: Path,
) -> None:
    """At-least-once: the manifest line waits until the consumer asks for more."""
    sim = simulator(tmp_path, scans=1, faults={"done_marker"})
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()
    manifest = tmp_path / "state" / "xray1.jsonl"
    for _ in range(2):  # taken, then a crash before asking for the next: not recorded
        driver = XrayFolderDriver(config(tmp_path))
        async with driver, asyncio.timeout(RUN_LIMIT_S):
            readings = driver.readings()
            assert isinstance(readings, AsyncGenerator)
            async with contextlib.aclosing(readings):
                first = await anext(readings)
        assert isinstance(first, ScanCompleted) and first.stem == sim.truth[0].stem
        assert not manifest.exists()
    async with Running(XrayFolderDriver(config(tmp_path))) as run:
        await run.idle({sim.truth[0].stem})
        await run.idle()
    assert stems_of(run.got) == [sim.truth[0].stem]
    async with Running(XrayFolderDriver(config(tmp_path))) as after:
        await after.idle()
    assert after.got == []


async def test_a_preview_is_hashed_once_from_the_scan_to_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulator(tmp_path, scans=1, faults={"done_marker"})
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()
    sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", spy := mock.Mock(wraps=sha256))
    async with Running(XrayFolderDriver(config(tmp_path))) as run:
        await run.idle({sim.truth[0].stem})
    (scan,) = run.got
    assert isinstance(scan, ScanCompleted)
    preview, record = ScanProcessor("xray1").feed(scan)
    assert isinstance(preview, MediaDraft) and isinstance(record, Draft)
    hashed = [c.args[0] for c in spy.call_args_list if c.args]
    assert hashed.count(scan.preview_jpeg) == 1  # when it was encoded, not again
    assert preview.sha256 == record.data["preview"]["sha256"] == scan.preview_sha256
    assert scan.preview_sha256 == sha256(preview.body).hexdigest()
