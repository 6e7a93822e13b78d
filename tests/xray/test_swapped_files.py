"""Files swapped in the drop folder between the listing and the open (issue 13).

The folder is listed with ``lstat`` (only regular files are scan files) but files used
to be opened by name, following symlinks and blocking on FIFOs: a symlink to
``/etc/passwd`` swapped in after the listing was read and hashed as the scan's image,
and a FIFO blocked a worker thread, and with it the lane, for good. Now every open is
``O_NOFOLLOW|O_NONBLOCK`` and checked with fstat to be the regular file listed.

The swap is made deterministic by doing it right after the driver's own listing
(the listing function is wrapped, the files are real); the daemon-level test plants
the same files before the gateway starts and checks the lane as central sees it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

import drivers.xray.driver as xray_driver
from drivers.xray.driver import XrayFolderDriver
from drivers.xray.folder import Listing, list_folder
from drivers.xray.imagefile import NotRegularFileError, hash_file, read_hashed
from drivers.xray.originals import read_chunks
from drivers.xray.readings import FAILURE_REASONS, ScanCompleted, ScanFailed
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess
from tests.xray.test_driver import Running, config
from tests.xray.test_hostile_files import json_sidecar, small_image

PASSWD = Path("/etc/passwd")


def passwd_sha256() -> str:
    return hashlib.sha256(PASSWD.read_bytes()).hexdigest()


def passwd_head() -> bytes:
    return PASSWD.read_bytes()[:64]


def swap_for_symlink(path: Path, target: Path) -> None:
    """Replace ``path`` by a symlink to ``target`` in one rename."""
    tmp = path.with_name(f".{path.name}.swap")
    tmp.symlink_to(target)
    os.replace(tmp, path)


def swap_for_fifo(path: Path) -> None:
    """Replace ``path`` by a FIFO nobody writes to, in one rename."""
    tmp = path.with_name(f".{path.name}.swap")
    os.mkfifo(tmp)
    os.replace(tmp, path)


def release(fifo: Path) -> None:
    """Let a reader blocked in open() on ``fifo`` go (open and close a writer)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def write_marked_scan(folder: Path, stem: str) -> None:
    """Image, sidecar and ``.done`` marker: due at once, no settle time to wait."""
    (folder / f"{stem}.png").write_bytes(small_image())
    (folder / f"{stem}.json").write_bytes(json_sidecar(stem))
    (folder / f"{stem}.done").write_bytes(b"")


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "drop"
    folder.mkdir()
    yield folder
    for path in folder.iterdir():  # a FIFO left with a blocked reader would hang the run
        if path.is_fifo():
            release(path)


async def test_a_symlink_or_fifo_swapped_in_after_the_listing_is_refused_as_that_scan(
    tmp_path: Path, drop: Path
) -> None:
    write_marked_scan(drop, "XR-link")
    write_marked_scan(drop, "XR-fifo")
    real_list = list_folder
    swapped: list[Listing] = []

    def list_then_swap(path: Path) -> Listing:
        listing = real_list(path)
        if not swapped and {"XR-link.png", "XR-fifo.json"} <= set(listing):
            swap_for_symlink(drop / "XR-link.png", PASSWD)  # listed as a regular file
            swap_for_fifo(drop / "XR-fifo.json")
            swapped.append(listing)
        return listing

    driver = XrayFolderDriver(config(tmp_path))
    try:
        with mock.patch.object(xray_driver, "list_folder", list_then_swap):
            async with Running(driver) as run:
                await run.idle({"XR-link", "XR-fifo"})
                write_marked_scan(drop, "XR-good")
                await run.idle({"XR-good"})
    finally:  # before the loop closes: it waits for its worker threads
        release(drop / "XR-fifo.json")
    assert swapped, "the swap happened after a listing that had both files"
    refused = {
        r.stem: r for r in run.got if isinstance(r, ScanFailed) and r.reason == "not_regular_file"
    }
    assert set(refused) == {"XR-link", "XR-fifo"}, run.got
    assert "symbolic link" in refused["XR-link"].message
    assert "FIFO" in refused["XR-fifo"].message
    assert [r.stem for r in run.got if isinstance(r, ScanCompleted)] == ["XR-good"]
    digests = {getattr(r, "image_sha256", None) for r in run.got}
    digests |= {getattr(r, "sidecar_sha256", None) for r in run.got}
    assert passwd_sha256() not in digests, "/etc/passwd was read as a scan file"
    assert "root:" not in repr(run.got)
    assert driver.counters.extra["not_regular_file"] == 2


def test_the_readers_refuse_symlinks_and_fifos_without_blocking(tmp_path: Path) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(PASSWD)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    try:
        for path in (link, fifo):
            with pytest.raises(NotRegularFileError):
                read_hashed(path, max_bytes=1 << 20)
            with pytest.raises(NotRegularFileError):
                hash_file(path)
            with pytest.raises(NotRegularFileError):
                next(read_chunks(path, 4096))
    finally:
        release(fifo)
    assert "not_regular_file" in FAILURE_REASONS


async def test_fifo_and_symlink_in_the_drop_folder_never_block_the_lane_nor_leak_a_file(
    tmp_path: Path, drop: Path, broker: Mosquitto, central: Central
) -> None:
    # Planted before the start, so the listing (lstat) already leaves them out; they
    # must never block the lane or get /etc/passwd published.
    image = small_image()
    (drop / "XR-link.png").symlink_to(PASSWD)
    (drop / "XR-link.json").write_bytes(json_sidecar("XR-link"))
    (drop / "XR-side.png").write_bytes(image)
    (drop / "XR-side.json").symlink_to(PASSWD)
    os.mkfifo(drop / "XR-fifo.png")
    (drop / "XR-fifo.json").write_bytes(json_sidecar("XR-fifo"))
    os.mkfifo(drop / "XR-pipe.json")
    (drop / "XR-pipe.png").write_bytes(image)
    device = {"id": "xray-1", "driver": "xray.folder", "path": drop,
              "manifest": tmp_path / "data" / "xray-1.jsonl", "settle_s": 0.3,
              "orphan_after_s": 0.5, "poll_s": 0.1, "preview_height": 64}  # fmt: skip
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path / "data", broker.port, [device]))
    gateway = GatewayProcess(path, tmp_path)
    try:
        await gateway.start()
        (drop / "XR-good.png").write_bytes(image)
        (drop / "XR-good.json").write_bytes(json_sidecar("XR-good"))
        await central.wait_for(lambda c: len(c.records("event/xray_scan")) >= 1, 30)
        await central.wait_for(lambda c: len(c.records("event/xray_error")) >= 4, 30)
        _, out = await run_ctl(path, "status", "--json")
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert [r["data"]["scan_id"] for r in central.records("event/xray_scan")] == ["XR-good"]
    errors = {r["data"]["stem"]: r["data"]["reason"] for r in central.records("event/xray_error")}
    assert errors == {
        "XR-link": "orphan_sidecar",
        "XR-side": "orphan_image",
        "XR-fifo": "orphan_sidecar",
        "XR-pipe": "orphan_image",
    }
    everything = b"".join(m.payload for m in central.snapshot())
    assert passwd_head() not in everything
    assert passwd_sha256().encode() not in everything
    state = json.loads(out)["devices"]["xray-1"]
    assert state["state"] == "up" and state["restarts_total"] == 0
