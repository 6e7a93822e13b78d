"""The technician's verbs for cameras, OCR and X-ray folders, run as a technician would."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import cv2

from simulators.camera.simulator import CameraSimulator
from simulators.xray import XraySimulator
from tests.helpers import config_text


async def gatewayctl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.gatewayctl", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_camera_check_and_snapshot_by_url_and_by_configured_id(tmp_path: Path) -> None:
    async with CameraSimulator(serve="mjpeg", seed=3, fps=5.0, first_truck_s=3600) as sim:
        code, out = await gatewayctl(
            "camera", "check", sim.urls["sub"], "--seconds", "2", "--save", str(tmp_path / "c.jpg")
        )
        assert code == 0, out
        assert "resolution: 640x360" in out and "codec: MJPG" in out
        saved = cv2.imread(str(tmp_path / "c.jpg"))
        assert saved is not None and saved.shape == (360, 640, 3)

        config = tmp_path / "gateway.toml"
        camera = {"id": "cam-1", "driver": "camera.opencv", "url": sim.urls["sub"],
                  "snapshot_url": sim.urls["main"]}  # fmt: skip
        config.write_text(config_text(tmp_path / "data", 1883, [camera]))
        shot = tmp_path / "now.jpg"
        code, out = await gatewayctl("--config", str(config), "camera", "snapshot", "cam-1",
                                     "-o", str(shot))  # fmt: skip
        assert code == 0, out
        snapshot = cv2.imread(str(shot))
        assert snapshot is not None and snapshot.shape == (720, 1280, 3), (
            "the main stream, by the id"
        )
        code, out = await gatewayctl("--config", str(config), "camera", "snapshot", "cam-9",
                                     "-o", str(shot))  # fmt: skip
        assert code != 0 and "no camera 'cam-9'; cameras: cam-1" in out


async def test_ocr_reads_a_container_door_and_says_why_it_is_verified(tmp_path: Path) -> None:
    sim = CameraSimulator(serve="file", out=tmp_path / "lane.avi", duration_s=1, seed=5)
    first = sim.scene.plan.get(0)
    assert first is not None
    truck: Any = sim.scene.truck_truth(first)  # a JSON document
    main, _ = sim.scene.frame(truck["stop_frame"] + 3)
    x, y, w, h = truck["containers"][0]["bbox"]
    cv2.imwrite(str(tmp_path / "door.png"), main[y - 20 : y + h + 20, x - 20 : x + w + 20])
    code, out = await gatewayctl("ocr", str(tmp_path / "door.png"), "--kind", "container")
    assert code == 0, out
    number = truck["containers"][0]["code"]
    spaced = f"{number[:4]} {number[4:10]} {number[10]}"
    assert f"container {spaced}: VERIFIED; check digit holds; owner {number[:4]} known" in out


async def test_xray_check_names_what_is_pending_and_what_failed(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    async with XraySimulator(dir=drop, scans=3, faults=["corrupt"], seed=2, interval_s=0,
                             settle_s=0.2, size=(64, 32)) as sim:  # fmt: skip
        await sim.finished.wait()
    code, out = await gatewayctl("xray", "check", str(drop), "--settle", "0")
    assert "failed: 1" in out and "corrupt" in out, out
    assert code == 1, "a failed scan is a problem for the technician"
