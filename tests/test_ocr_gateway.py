"""OCR through the whole gateway: a truck stops at the lane camera, central gets its codes.

The camera simulator paints a valid ISO 6346 code on each container and Vietnamese
plates on the tractor and trailer; the gateway's camera has OCR regions where they
stop; motion ending in a region triggers a burst of crops, read by the OCR worker
process and voted; central receives ``event/ocr`` with the crop as media.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from simulators.camera.simulator import CameraSimulator
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


async def test_a_stopped_truck_is_read_and_verified_at_central(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    sim = CameraSimulator(serve="mjpeg", seed=5, fps=5.0, first_truck_s=1.0, dwell_s=8.0,
                          truck_every_s=3600)  # fmt: skip
    truck = sim.scene.truck_truth(sim.scene.plan.get(0))
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
