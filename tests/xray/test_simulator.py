"""The X-ray simulator's drop folder, checked file by file against its ground truth.

Runs are short (small intervals, a settle time of 0.1 s) and bounded by
``asyncio.timeout``; growth is observed from the simulator's ``on_write`` hook, which
the test answers with ``os.stat`` as a watcher woken by inotify would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from simulators.xray import (
    FAULTS,
    NON_ASCII_OPERATOR,
    Expected,
    ScanTruth,
    XraySimulator,
    container_number,
    iso6346_check_digit,
    iso6346_valid,
)

REPO = Path(__file__).resolve().parents[2]
RUN_LIMIT_S = 20.0
SETTLE_S = 0.1
MAGIC = {"tiff16": (b"II*\x00", b"MM\x00*"), "png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8",)}
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def fast(tmp_path: Path, **kwargs: object) -> XraySimulator:
    options: dict[str, object] = {
        "dir": tmp_path / "drop",
        "interval_s": 0.01,
        "seed": 42,
        "settle_s": SETTLE_S,
        "chunk_bytes": 128 * 1024,
        "chunk_interval_s": 0.002,
        **kwargs,
    }
    return XraySimulator(**options)  # type: ignore[arg-type]


async def play(sim: XraySimulator) -> None:
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await sim.finished.wait()


def decode(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def read_sidecar(path: Path) -> dict[str, object]:
    if path.suffix == ".json":
        data: dict[str, object] = json.loads(path.read_bytes().decode("utf-8"))
        return data
    root = ET.parse(path).getroot()
    assert root.tag == "Scan"
    return {
        "scan_id": root.findtext("ScanId"),
        "time": root.findtext("Time"),
        "lane": root.findtext("Lane"),
        "scanner_id": root.findtext("ScannerId"),
        "operator": root.findtext("Operator"),
        "containers": [c.text for c in root.iterfind("Containers/Container")],
        "image": root.findtext("Image"),
    }


# -- ISO 6346 ---------------------------------------------------------------------------


def test_check_digits_of_the_documented_examples() -> None:
    assert iso6346_check_digit("CSQU305438") == 3
    assert iso6346_check_digit("MSCU123456") == 6
    assert iso6346_valid("CSQU3054383")
    assert not iso6346_valid("CSQU3054384")
    assert not iso6346_valid("CSQU305438")
    assert not iso6346_valid("CSQ13054383")


def test_a_remainder_of_ten_gives_check_digit_zero() -> None:
    # Brute force a serial whose sum is 10 mod 11: its check digit must be 0.
    found = next(f"TGHU{n:06d}" for n in range(10**6) if _raw_sum(f"TGHU{n:06d}") % 11 == 10)
    assert iso6346_check_digit(found) == 0


def _raw_sum(head: str) -> int:
    values = {}
    v = 10
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        v += v % 11 == 0
        values[letter] = v
        v += 1
    assert (values["A"], values["B"], values["K"], values["L"], values["U"], values["Z"]) == (
        10, 12, 21, 23, 32, 38,
    )  # fmt: skip
    return sum((values.get(c) or int(c)) * 2**i for i, c in enumerate(head))


def test_generated_numbers_pass_or_fail_as_asked() -> None:
    rng = random.Random(1)
    for _ in range(500):
        good = container_number(rng)
        bad = container_number(rng, valid=False)
        assert good[3] == "U" and len(good) == 11 and iso6346_valid(good)
        assert not iso6346_valid(bad)


# -- the drop folder --------------------------------------------------------------------


def check_scan(drop: Path, scan: ScanTruth, earlier: list[ScanTruth]) -> None:
    """The files of one scan are exactly what its truth says."""
    fmt = scan.image_format
    if scan.image is None:
        assert not (drop / f"{scan.stem}.tif").exists()
    else:
        image = drop / scan.image
        data = image.read_bytes()
        assert len(data) == scan.image_bytes
        assert hashlib.sha256(data).hexdigest() == scan.image_sha256
        if scan.expected is Expected.COMPLETE or scan.expected is Expected.ORPHAN_IMAGE:
            pixels = decode(image)
            assert pixels is not None, scan
            assert pixels.shape == (scan.height, scan.width)
            assert pixels.dtype == (np.uint8 if fmt == "jpeg" else np.uint16)
        elif "zero_byte" in scan.faults:
            assert data == b""
        elif scan.expected is Expected.CORRUPT:
            assert data.startswith(MAGIC[fmt])  # a valid header, then garbage
            assert decode(image) is None
        elif scan.expected is Expected.NEVER_COMPLETES:
            assert data.startswith(MAGIC[fmt])
            if fmt != "jpeg":  # libjpeg pads a truncated JPEG with grey instead
                assert decode(image) is None
    if scan.sidecar is None:
        assert not any(
            p.stem == scan.stem and p.suffix in (".xml", ".json") for p in drop.iterdir()
        )
    else:
        sidecar = read_sidecar(drop / scan.sidecar)
        assert sidecar == {
            "scan_id": scan.scan_id,
            "time": scan.time,
            "lane": scan.lane,
            "scanner_id": scan.scanner_id,
            "operator": scan.operator,
            "containers": scan.containers,
            "image": scan.image or f"{scan.stem}{_ext(fmt)}",
        }
        codes = sidecar["containers"]
        assert isinstance(codes, list)
        assert [iso6346_valid(c) for c in codes] == scan.check_digits_valid
        assert all(scan.check_digits_valid) == ("bad_check_digit" not in scan.faults)
    assert (scan.operator == NON_ASCII_OPERATOR) == ("non_ascii" in scan.faults)
    if "duplicate_id" in scan.faults:
        assert scan.duplicate_of is not None
        assert earlier[scan.duplicate_of].scan_id == scan.scan_id
    else:
        assert scan.scan_id not in {e.scan_id for e in earlier}
    if scan.done is not None:
        assert (drop / scan.done).read_bytes() == b""
    names = {p.name for p in drop.iterdir() if p.stem == scan.stem}
    assert names == set(scan.write_order)


def _ext(fmt: str) -> str:
    return {"tiff16": ".tif", "png": ".png", "jpeg": ".jpg"}[fmt]


@pytest.mark.parametrize(("image_format", "sidecar_format"), [
    ("tiff16", "xml"), ("png", "json"), ("jpeg", "xml"),
])  # fmt: skip
async def test_every_fault_leaves_the_files_the_truth_describes(
    tmp_path: Path, image_format: str, sidecar_format: str
) -> None:
    sim = fast(
        tmp_path,
        scans=12,
        faults=FAULTS,
        image_format=image_format,
        sidecar_format=sidecar_format,
        size=(1024, 512),
    )
    expected_faults = [[], ["out_of_order"], ["half_written"], ["half_written"], ["zero_byte"],
                       ["corrupt"], ["sidecar_only"], ["image_only"], ["duplicate_id"],
                       ["non_ascii"], ["bad_check_digit"], []]  # fmt: skip
    assert [s.faults for s in sim.truth] == expected_faults  # planned before playing
    await play(sim)
    drop = tmp_path / "drop"
    for scan in sim.truth:
        check_scan(drop, scan, sim.truth[: scan.seq])
    by_state = {s.seq: s.expected for s in sim.truth}
    assert by_state == {
        0: Expected.COMPLETE, 1: Expected.COMPLETE, 2: Expected.COMPLETE,
        3: Expected.NEVER_COMPLETES, 4: Expected.CORRUPT, 5: Expected.CORRUPT,
        6: Expected.ORPHAN_SIDECAR, 7: Expected.ORPHAN_IMAGE, 8: Expected.COMPLETE,
        9: Expected.COMPLETE, 10: Expected.COMPLETE, 11: Expected.COMPLETE,
    }  # fmt: skip
    assert sim.truth[1].write_order[0] == sim.truth[1].sidecar  # out of order: sidecar first
    assert sim.truth[0].write_order == [
        sim.truth[0].image,
        sim.truth[0].sidecar,
        "XR-01_00000.done",
    ]
    assert sim.truth[3].done is None  # a copy that never ends gets no marker
    # The truth file is the same truth, finished, next to the drop folder.
    document = json.loads((tmp_path / "xray-truth.json").read_text("utf-8"))
    assert document["finished"] is True
    assert document["seed"] == 42
    assert document["scans"] == [s.as_json() for s in sim.truth]
    assert document["scans"][9]["operator"] == "Nguyễn Văn Ân"


async def test_sidecars_are_utf8_with_the_non_ascii_operator_verbatim(tmp_path: Path) -> None:
    for fmt in ("xml", "json"):
        sim = fast(tmp_path / fmt, scans=2, faults={"non_ascii"}, sidecar_format=fmt,
                   size=(128, 64))  # fmt: skip
        await play(sim)
        raw = (tmp_path / fmt / "drop" / f"XR-01_00001.{fmt}").read_bytes()
        assert NON_ASCII_OPERATOR.encode("utf-8") in raw
        if fmt == "xml":
            assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")


async def test_files_grow_in_chunks_and_appear_in_the_stated_order(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []

    def on_write(path: Path, size: int) -> None:
        seen = os.stat(path).st_size  # what a watcher woken now would see
        assert seen == size
        events.append((path.name, seen))

    sim = fast(tmp_path, scans=3, faults={"out_of_order", "done_marker"}, on_write=on_write,
               chunk_bytes=64 * 1024)  # fmt: skip
    await play(sim)
    first_seen = list(dict.fromkeys(name for name, _ in events))
    assert first_seen == [name for s in sim.truth for name in s.write_order]
    for scan in sim.truth:
        assert scan.image is not None and scan.sidecar is not None and scan.done is not None
        image = [size for name, size in events if name == scan.image]
        assert image == sorted(image) and len(set(image)) > 3  # grew in several steps
        assert image[0] == 0 and image[-1] == scan.image_bytes
        # The marker comes after the last write of the scan's files.
        done_at = events.index((scan.done, 0))
        last = max(i for i, (name, _) in enumerate(events) if name in (scan.image, scan.sidecar))
        assert last < done_at
    assert sim.truth[1].write_order[0] == sim.truth[1].sidecar


async def test_a_half_written_copy_stalls_past_the_settle_time_then_completes(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    growth: dict[str, list[tuple[float, int]]] = {}

    def on_write(path: Path, size: int) -> None:
        growth.setdefault(path.name, []).append((loop.time(), os.stat(path).st_size))

    sim = fast(tmp_path, scans=4, faults={"half_written", "done_marker"}, on_write=on_write)
    stalled, never = sim.truth[1], sim.truth[2]
    assert stalled.stall_s is not None and stalled.stall_s > SETTLE_S
    assert never.expected is Expected.NEVER_COMPLETES
    stable: set[int] = set()
    watch = asyncio.create_task(stable_sizes(tmp_path / "drop" / (stalled.image or ""), stable))
    try:
        await play(sim)
    finally:
        watch.cancel()
        await asyncio.wait([watch])
    steps = growth[stalled.image or ""]
    full = stalled.image_bytes or 0
    half = full // 2
    assert [s for _, s in steps] == sorted(s for _, s in steps)
    assert steps[-1][1] == full
    at_half = next(i for i, (_, s) in enumerate(steps) if s == half)
    assert steps[at_half + 1][0] - steps[at_half][0] >= stalled.stall_s * 0.9
    # A watcher polling with os.stat saw the half size hold for longer than settle_s.
    assert half in stable
    # The copy that never completes stays at half its size, without a .done marker.
    nev = tmp_path / "drop" / (never.image or "")
    assert growth[nev.name][-1][1] == never.image_bytes
    assert never.image_bytes is not None and never.image_bytes > 0
    await asyncio.sleep(SETTLE_S)
    assert nev.stat().st_size == never.image_bytes
    assert not (tmp_path / "drop" / f"{never.stem}.done").exists()
    assert (tmp_path / "drop" / f"{stalled.stem}.done").exists()


async def stable_sizes(path: Path, stable: set[int]) -> None:
    """Poll like a size-stability watcher: add sizes that hold for ``SETTLE_S`` to ``stable``."""
    loop = asyncio.get_running_loop()
    last, since = -1, loop.time()
    while True:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = -1
        now = loop.time()
        if size != last:
            last, since = size, now
        elif size > 0 and now - since > SETTLE_S:
            stable.add(size)
        await asyncio.sleep(0.01)


async def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        sim = fast(tmp_path / name, scans=4, seed=seed, start_time=START,
                   faults={"corrupt", "bad_check_digit", "duplicate_id"})  # fmt: skip
        await play(sim)
        drop = tmp_path / name / "drop"
        runs.append({p.name: p.read_bytes() for p in sorted(drop.iterdir())})
        assert sim.truth[0].time == "2026-01-02T03:04:05.000Z"
    assert runs[0] == runs[1]
    assert runs[0].keys() == runs[2].keys()
    assert all(runs[0][k] != runs[2][k] for k in runs[0] if k.endswith(".tif"))


async def test_playing_forever_stops_on_close_and_keeps_the_truth(tmp_path: Path) -> None:
    three = asyncio.Event()

    def on_write(path: Path, size: int) -> None:
        if path.name.startswith("XR-01_00003"):
            three.set()

    truth = tmp_path / "elsewhere" / "truth.json"
    sim = fast(tmp_path, faults={"image_only"}, truth_path=truth, on_write=on_write,
               size=(128, 64))  # fmt: skip
    assert sim.truth == []
    async with asyncio.timeout(RUN_LIMIT_S), sim:
        await three.wait()
    assert not sim.finished.is_set()
    document = json.loads(truth.read_text("utf-8"))
    assert document["finished"] is False
    assert [s["seq"] for s in document["scans"]] == list(range(len(document["scans"])))
    assert len(document["scans"]) >= 4
    assert document["scans"][1]["expected"] == "orphan_image"
    assert not list(truth.parent.glob("*.tmp"))


async def test_no_scans_finishes_at_once_with_an_empty_truth(tmp_path: Path) -> None:
    sim = fast(tmp_path, scans=0)
    await play(sim)
    assert json.loads((tmp_path / "xray-truth.json").read_text())["scans"] == []
    assert list((tmp_path / "drop").iterdir()) == []


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown faults"):
        XraySimulator(dir=tmp_path, faults={"melted"})
    with pytest.raises(ValueError, match="image format"):
        XraySimulator(dir=tmp_path, image_format="dicos")
    with pytest.raises(ValueError, match="sidecar"):
        XraySimulator(dir=tmp_path, sidecar_format="csv")


# -- the command line -------------------------------------------------------------------


def test_command_line_plays_and_exits_zero(tmp_path: Path) -> None:
    truth = tmp_path / "t.json"
    cmd = [sys.executable, "-m", "simulators", "xray", "--dir", str(tmp_path / "drop"),
           "--scans", "3", "--interval", "0.05", "--faults", "done_marker,bad_check_digit",
           "--format", "png", "--sidecar", "json", "--seed", "5", "--truth", str(truth),
           "--settle", "0.1"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"xray simulator writing to {tmp_path / 'drop'}")
    document = json.loads(truth.read_text("utf-8"))
    assert document["finished"] is True
    assert [s["faults"] for s in document["scans"]] == [[], ["bad_check_digit"], []]
    for scan in document["scans"]:
        pixels = decode(tmp_path / "drop" / scan["image"])
        assert pixels is not None and pixels.dtype == np.uint16
        sidecar = read_sidecar(tmp_path / "drop" / scan["sidecar"])
        assert sidecar["containers"] == scan["containers"]
        assert [iso6346_valid(c) for c in scan["containers"]] == scan["check_digits_valid"]
        assert (tmp_path / "drop" / scan["done"]).exists()


def test_command_line_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "simulators", "xray", "--dir", str(tmp_path / "drop"),
           "--interval", "0.05"]  # fmt: skip
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("xray simulator writing to")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert json.loads((tmp_path / "xray-truth.json").read_text())["finished"] is False


def test_command_line_refuses_unknown_faults(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "simulators", "xray", "--dir", str(tmp_path), "--faults", "x"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "unknown faults" in done.stderr
