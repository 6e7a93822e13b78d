"""A lane in a running daemon: the scale and the lane camera joined into one crossing.

Real scale simulator on a pty, real camera simulator over HTTP (MJPEG), the real
OCR worker, real mosquitto, the manifest pushed by central on cmd/manifest; the
correlator works on the families' facts, never on their topics.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.broker import Central, Mosquitto, mqtt_request
from tests.camera.test_ocr_gateway import first_truck, lane_config, lane_simulators
from tests.core.test_daemon import run_ctl
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
LANE = """
[[lanes]]
id = "lane-3"
scale = "scale-1"
cameras = ["cam-lane"]
close_after_s = 5
"""


def weighed_crossings(central: Central) -> list[dict[str, Any]]:
    """Crossings (any revision) with both the weight and the plate."""
    return [
        r
        for r in central.records("event/crossing")
        if r["data"]["gross_kg"] is not None and r["data"]["plate"] is not None
    ]


async def test_a_truck_on_the_scale_and_the_camera_is_one_crossing_citing_its_records(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    sim, scale = lane_simulators(tmp_path)
    config = tmp_path / "gateway.toml"
    gateway = GatewayProcess(config, tmp_path)
    async with sim, scale:
        truck = first_truck(sim)
        config.write_text(lane_config(tmp_path, broker, sim, LANE))
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        try:
            await gateway.start(timeout_s=60)
            put = await mqtt_request(broker.port, f"{ROOT}/cmd/manifest", {"op": "put",
                                     "manifests": [{"id": "M-1", "plate": truck["plate"]["text"],
                                                    "scan_required": False,
                                                    "valid_until": until}]})  # fmt: skip
            await central.wait_for(lambda c: bool(weighed_crossings(c)), 120)
            _, status = await run_ctl(config, "status", "--json")
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    assert json.loads(put[-1].payload)["status"] == "ok"
    crossing = weighed_crossings(central)[0]["data"]
    weighing = next(
        r for r in central.records("event/weighing") if r["id"] == crossing["weighing_id"]
    )
    assert crossing["gross_kg"] == weighing["data"]["weight_kg"]
    published = {r["id"] for r in central.records()}
    assert crossing["evidence"] and set(crossing["evidence"]) <= published
    ocr_ids = {r["id"] for r in central.records("event/ocr")}
    assert crossing["plate"] is not None and ocr_ids & set(crossing["evidence"])
    assert crossing["result"] in {"clear", "review", "discrepancy"}
    versions = [
        (r["data"]["crossing_id"], r["data"]["revision"]) for r in central.records("event/crossing")
    ]
    assert len(versions) == len(set(versions)), "a late read is a revision of its crossing"
    assert json.loads(status)["lanes"]["lane-3"]["crossings_total"] >= 1
