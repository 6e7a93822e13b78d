"""Hostile files in the X-ray drop folder: each fails its own scan, the lane goes on.

Issue 13, V1 and V2: one sidecar (an impossible time, JSON nested 100k deep, a
5000-digit number, XML in an unknown encoding, a DOCTYPE hidden in UTF-16), a file
name that is not UTF-8, or a small PNG declaring 10000x10000 16-bit pixels used to stop
every later scan and restart the device in a loop. Through the whole gateway: each
becomes its own ``event/xray_error``, a good scan dropped after all of them is
published, and the device never restarts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from simulators.xray import decompression_bomb_png
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess

SETTLE_S = 0.3


def small_image() -> bytes:
    ok, buf = cv2.imencode(".png", np.full((64, 128), 30000, dtype=np.uint16))
    assert ok
    return buf.tobytes()


def json_sidecar(scan_id: str, **extra: str) -> bytes:
    fields = {"scan_id": scan_id, "lane": "3", **extra}
    return ("{" + ", ".join(f'"{k}": "{v}"' for k, v in fields.items()) + "}").encode()


HOSTILE: dict[str, bytes] = {
    "XR-time.json": json_sidecar("XR-time", time="0001-01-01T00:00:00+01:00"),
    "XR-deep.json": b'{"scan_id": "XR-deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "XR-digits.json": b'{"scan_id": "XR-digits", "lane": ' + b"5" * 5000 + b"}",
    "XR-bogus.xml": (
        b'<?xml version="1.0" encoding="x-bogus"?><Scan><ScanId>XR-bogus</ScanId></Scan>'
    ),
    "XR-utf16.xml": (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE s [<!ENTITY a "aaaa">]>'
        "<Scan><ScanId>&a;</ScanId></Scan>"
    ).encode("utf-16"),
    "XR-big.json": b'{"scan_id": "XR-big", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
}


async def test_hostile_files_fail_their_own_scan_and_the_lane_goes_on(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = tmp_path / "gateway.toml"
    device = {"id": "xray-1", "driver": "xray.folder", "path": drop,
              "manifest": tmp_path / "data" / "xray-1.jsonl", "settle_s": SETTLE_S,
              "orphan_after_s": 30.0, "poll_s": 0.1, "preview_height": 64}  # fmt: skip
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    gateway = GatewayProcess(config, tmp_path)
    image = small_image()
    for name, sidecar in HOSTILE.items():
        (drop / name).write_bytes(sidecar)
        (drop / name).with_suffix(".png").write_bytes(image)
    (drop / "XR-bomb.png").write_bytes(decompression_bomb_png(10_000, 10_000))
    (drop / "XR-bomb.json").write_bytes(json_sidecar("XR-bomb"))
    odd = os.fsdecode(b"XR-\xff")  # a name that is not UTF-8, as a scanner may write it
    (drop / f"{odd}.png").write_bytes(image)
    (drop / f"{odd}.json").write_bytes(json_sidecar("XR-odd"))
    try:
        await gateway.start()
        await central.wait_for(lambda c: len(c.records("event/xray_error")) >= 6, 60)
        (drop / "XR-good.png").write_bytes(image)  # after all of them: still read
        (drop / "XR-good.json").write_bytes(json_sidecar("XR-good"))
        await central.wait_for(lambda c: len(c.records("event/xray_scan")) >= 3, 60)
        _, out = await run_ctl(config, "status", "--json")
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    errors = {r["data"]["stem"]: r["data"] for r in central.records("event/xray_error")}
    assert {stem: e["reason"] for stem, e in errors.items()} == {
        "XR-deep": "bad_sidecar",
        "XR-digits": "bad_sidecar",
        "XR-bogus": "bad_sidecar",
        "XR-utf16": "bad_sidecar",
        "XR-big": "bad_sidecar",
        "XR-bomb": "image_too_large",
    }
    assert "not read" in errors["XR-big"]["message"]
    assert "10000x10000" in errors["XR-bomb"]["message"]
    assert all(len(e["message"]) <= 300 for e in errors.values()), "nothing echoed at length"
    scans = {r["data"]["scan_id"]: r["data"] for r in central.records("event/xray_scan")}
    assert set(scans) == {"XR-time", "XR-odd", "XR-good"}
    assert scans["XR-time"]["scan_time"] is None  # the impossible time is a problem, kept
    assert any("out of range" in p for p in scans["XR-time"]["problems"])
    assert scans["XR-odd"]["image"]["name"] == "XR-\\xff.png"  # escaped, not dropped
    state = json.loads(out)["devices"]["xray-1"]
    assert state["state"] == "up" and state["restarts_total"] == 0
