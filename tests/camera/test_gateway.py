"""Cameras through the whole gateway: simulated MJPEG cameras -> daemon -> mosquitto -> central.

One gateway watches four cameras on three simulated lanes at once: a truck driving in
(one motion event, its best snapshot as media whose hash the event quotes), the same
lane with the road masked out (nothing), an empty lane with sensor noise and a lighting
step (nothing), and a camera that stalls then drops its clients (stalled, then up).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from simulators.camera.simulator import CameraSimulator
from tests.broker import Central, Mosquitto
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
FPS = 5.0


def camera(device_id: str, sim: CameraSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "driver": "camera.opencv",
        "url": sim.urls["sub"],
        "snapshot_url": sim.urls["main"],
        "analyse_fps": FPS,
        "end_quiet_s": 1.0,
        "still_interval_s": 1.0,
        "stats_interval_s": 0,
        "open_timeout_s": 5,
        "read_timeout_s": 2,
        **extra,
    }


def motion(central: Central, device: str) -> list[dict[str, Any]]:
    return [r["data"] for r in central.records("event/motion") if r["device"] == device]


def stills_after(central: Central, device: str, ts: str) -> int:
    return sum(1 for r in central.records(f"reading/{device}/still") if r["ts"] > ts)


def states(central: Central, device: str) -> list[str]:
    topic = f"{ROOT}/device/{device}/state"
    return [m.json()["data"]["state"] for m in central.snapshot() if m.topic == topic]


async def test_cameras_send_one_event_per_truck_and_nothing_for_noise_light_or_masks(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    # Cameras stream for as long as the test runs: the next truck comes after it ends.
    lane = CameraSimulator(serve="mjpeg", seed=5, fps=FPS, first_truck_s=1.0, dwell_s=2.0,
                           truck_every_s=3600)  # fmt: skip
    quiet = CameraSimulator(serve="mjpeg", seed=6, fps=FPS, first_truck_s=3600,
                            faults=["lighting"], fault_first_s=3.0,
                            fault_duration_s=3.0)  # fmt: skip
    flaky = CameraSimulator(serve="mjpeg", seed=7, fps=FPS, first_truck_s=3600,
                            faults=["stall", "disconnect"], fault_first_s=2.0,
                            fault_every_s=5.0, fault_duration_s=3.0)  # fmt: skip
    config = tmp_path / "gateway.toml"
    gateway = GatewayProcess(config, tmp_path)
    async with lane, quiet, flaky:
        road = [[0.0, 0.25], [1.0, 0.25], [1.0, 1.0], [0.0, 1.0]]
        devices = [
            camera("cam-lane", lane),
            camera("cam-masked", lane, masks=[road]),
            camera("cam-quiet", quiet),
            camera("cam-flaky", flaky, stall_timeout_s=1.5),
        ]
        config.write_text(config_text(tmp_path / "data", broker.port, devices))
        try:
            await gateway.start()
            # The truck drives in and stops: one event, ended after the quiet period.
            await central.wait_for(
                lambda c: any(m["type"] == "end" for m in motion(c, "cam-lane")), 60
            )
            first = motion(central, "cam-lane")
            end = next(m for m in first if m["type"] == "end")
            before_end = first[: first.index(end) + 1]
            assert [m["type"] for m in before_end].count("start") == 1
            assert {m["event_id"] for m in before_end} == {end["event_id"]}
            assert end["boxes"] and 0 < end["score"] <= 1
            # Its snapshot is on the media topic, byte for byte what the event quotes.
            media_topic = f"{ROOT}/media/{end['snapshot']['media_id']}"
            await central.wait_for(lambda c: any(m.topic == media_topic for m in c.snapshot()), 10)
            media = next(m for m in central.snapshot() if m.topic == media_topic)
            assert media.content_type == "image/jpeg"
            assert hashlib.sha256(media.payload).hexdigest() == end["snapshot"]["sha256"]
            picture = cv2.imdecode(np.frombuffer(media.payload, np.uint8), cv2.IMREAD_COLOR)
            assert picture is not None
            assert picture.shape[0] == end["snapshot"]["height"] == 540  # from the main stream

            # The lighting step has passed on the quiet lane; the truck has left the lane.
            quiet_truth: Any = quiet.truth()  # a JSON document
            lane_truth: Any = lane.truth()
            light_end = quiet_truth["faults"][0]["end_frame"]
            exit_frame = lane_truth["trucks"][0]["exit_frame"]
            await central.wait_for(
                lambda c: quiet.frame > light_end + FPS and lane.frame > exit_frame + FPS, 60
            )
            now = central.records()[-1]["ts"]
            await central.wait_for(
                lambda c: (
                    stills_after(c, "cam-quiet", now) > 0 and stills_after(c, "cam-masked", now) > 0
                ),
                30,
            )
            assert motion(central, "cam-quiet") == [], "noise and a lighting step are not motion"
            assert motion(central, "cam-masked") == [], "motion under a mask is ignored"

            # The flaky camera stalled and was reopened.
            await central.wait_for(
                lambda c: (
                    "stalled" in states(c, "cam-flaky") and states(c, "cam-flaky")[-1] == "up"
                ),
                60,
            )
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    still = central.records("reading/cam-quiet/still")[-1]["data"]["snapshot"]
    assert still["height"] == 360 and still["content_type"] == "image/jpeg"
