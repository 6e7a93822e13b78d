"""OCR through the whole gateway: a truck stops at the lane camera, central gets its codes.

The camera simulator paints a valid ISO 6346 code on each container and Vietnamese
plates on the tractor and trailer; the gateway's camera has OCR regions where they
stop; motion ending in a region triggers a burst of crops, read by the OCR worker
process and voted; central receives ``event/ocr`` with the crop as media.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from simulators.camera.simulator import CameraSimulator
from simulators.scale import ScaleSimulator
from tests.broker import Central, Mosquitto, mqtt_request
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
MAIN_W, MAIN_H = 1280, 720


def region(name: str, kind: str, bbox: list[int], margin: int) -> str:
    """A TOML ``[[devices.ocr_regions]]`` around a box of the main stream."""
    x, y, w, h = bbox
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(MAIN_W, x + w + margin), min(MAIN_H, y + h + margin)
    box = [round(x0 / MAIN_W, 4), round(y0 / MAIN_H, 4),
           round((x1 - x0) / MAIN_W, 4), round((y1 - y0) / MAIN_H, 4)]  # fmt: skip
    return f'[[devices.ocr_regions]]\nname = "{name}"\nkind = "{kind}"\nbox = {box}\n'


def ocr(central: Central) -> dict[str, dict[str, Any]]:
    """The first result of each region (the motion-triggered passage)."""
    first: dict[str, dict[str, Any]] = {}
    for r in central.records("event/ocr"):
        first.setdefault(r["data"]["region"], r["data"])
    return first


def first_truck(sim: CameraSimulator) -> dict[str, Any]:
    """The ground truth (a JSON document) of the first truck the scene plans."""
    truck = sim.scene.plan.get(0)
    assert truck is not None, "the scene plans a truck"
    return sim.scene.truck_truth(truck)


async def test_a_stopped_truck_is_read_and_verified_at_central(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    sim = CameraSimulator(serve="mjpeg", seed=5, fps=5.0, first_truck_s=1.0, dwell_s=8.0,
                          truck_every_s=3600)  # fmt: skip
    truck = first_truck(sim)
    config = tmp_path / "gateway.toml"
    gateway = GatewayProcess(config, tmp_path)
    async with sim:
        device = {
            "id": "cam-lane",
            "driver": "camera.opencv",
            "url": sim.urls["sub"],
            "snapshot_url": sim.urls["main"],
            "end_quiet_s": 1.0,
            "still_interval_s": 0,
            "stats_interval_s": 0,
            "ocr_frames": 3,
            "ocr_interval_s": 0.4,
        }
        regions = region("door", "container", truck["containers"][0]["bbox"], 24)
        regions += region("cab-plate", "plate", truck["plate"]["bbox"], 12)
        config.write_text(config_text(tmp_path / "data", broker.port, [device]) + regions)
        try:
            await gateway.start(timeout_s=60)  # the OCR worker loads its models first
            await central.wait_for(lambda c: {"door", "cab-plate"} <= set(ocr(c)), 60)
            # The centre can ask for a reading too (the truck is still there).
            replies = await mqtt_request(broker.port, f"{ROOT}/cmd/ocr", {"camera": "cam-lane"})
            assert json.loads(replies[-1].payload)["status"] == "ok"
            await central.wait_for(
                lambda c: any(r["data"]["trigger"] == "command" and r["data"]["verified"]
                              for r in c.records("event/ocr")), 60,
            )  # fmt: skip
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    results = ocr(central)
    door, plate = results["door"], results["cab-plate"]
    expected_code = truck["containers"][0]["code"]
    assert door["kind"] == "container" and door["verified"] is True
    assert door["text"] == expected_code and door["check_digit_ok"] and door["owner_known"]
    assert plate["kind"] == "plate" and plate["verified"] is True
    assert plate["text"] == truck["plate"]["text"]
    assert door["trigger"] == "motion" and door["frames"] == 3
    crop = next(m for m in central.snapshot() if m.topic == f"{ROOT}/media/{door['media_id']}")
    assert crop.content_type == "image/jpeg"
    assert hashlib.sha256(crop.payload).hexdigest() == door["sha256"]
    assert json.dumps(door, ensure_ascii=False)


def lane_simulators(tmp_path: Path) -> tuple[CameraSimulator, ScaleSimulator]:
    """A lane camera showing one truck for 30 s, and a Toledo scale playing trucks."""
    sim = CameraSimulator(serve="mjpeg", seed=5, fps=5.0, first_truck_s=1.0, dwell_s=30.0,
                          truck_every_s=3600)  # fmt: skip
    link = tmp_path / "ttyS-scale"
    return sim, ScaleSimulator(protocol="toledo", link=link, trucks=None, speed=4.0, seed=3)


def lane_config(tmp_path: Path, broker: Mosquitto, sim: CameraSimulator, extra: str = "") -> str:
    """The scale and the lane camera reading the plate when a truck drives on."""
    devices: list[dict[str, Any]] = [
        {"id": "scale-1", "driver": "scale.toledo", "port": str(tmp_path / "ttyS-scale"),
         "stable_window_s": 0.6, "silence_timeout_s": 20},  # a loaded CI box stalls
        {"id": "cam-lane", "driver": "camera.opencv", "url": sim.urls["sub"],
         "snapshot_url": sim.urls["main"], "still_interval_s": 0, "stats_interval_s": 0,
         "ocr_on_motion": False, "ocr_on_weighing": ["scale-1"], "ocr_frames": 2},
    ]  # fmt: skip
    regions = region("cab-plate", "plate", first_truck(sim)["plate"]["bbox"], 12)
    return config_text(tmp_path / "data", broker.port, devices) + regions + extra


def complete_weighings(central: Central) -> list[dict[str, Any]]:
    return [r for r in central.records("event/weighing") if r["data"]["status"] == "complete"]


async def test_a_truck_driving_onto_the_scale_makes_the_lane_camera_read(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    """``ocr_on_weighing``: the scale family's VehicleOnScale fact triggers the camera
    family's OCR (motion triggers are off, so every reading is the scale's doing)."""
    sim, scale = lane_simulators(tmp_path)
    config = tmp_path / "gateway.toml"
    gateway = GatewayProcess(config, tmp_path)
    async with sim, scale:
        config.write_text(lane_config(tmp_path, broker, sim))
        try:
            await gateway.start(timeout_s=60)
            # The scale plays trucks from before the gateway is up: the first weighing
            # may be the end of a passage already under way (no_stable_weight).
            await central.wait_for(lambda c: bool(complete_weighings(c)), 120)
            await central.wait_for(lambda c: bool(c.records("event/ocr")), 120)
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    triggers = {r["data"]["trigger"] for r in central.records("event/ocr")}
    assert triggers == {"weighing:scale-1"}
    assert complete_weighings(central)[0]["data"]["weight_kg"] > 0


async def test_a_camera_naming_a_device_that_is_no_scale_is_a_config_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    devices: list[dict[str, Any]] = [
        {"id": "cam-lane", "driver": "camera.opencv", "url": "http://127.0.0.1:9/x.mjpg",
         "ocr_on_weighing": ["scale-9"]},
    ]  # fmt: skip
    regions = region("cab-plate", "plate", [100, 100, 200, 80], 12)
    config.write_text(config_text(tmp_path / "data", 1883, devices) + regions)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.daemon_cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 78  # EX_CONFIG: systemd does not restart it in a loop
    assert "devices[0].ocr_on_weighing: no scale 'scale-9'; scales: none" in err.decode()
