"""X-ray drop folder through the whole gateway: scans, previews, errors, originals on request.

The scanner simulator writes every HARDWARE.md fault into a real folder; the gateway
runs as a process; central receives over a real mosquitto and asks for an original
with an MQTT 5 request (response topic + correlation data).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from simulators.xray import FAULTS, Expected, XraySimulator
from tests.broker import Central, Mosquitto, mqtt_request
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
SETTLE_S = 0.4
ORPHAN_S = 2.0


def xray_config(tmp_path: Path, broker: Mosquitto) -> Path:
    config = tmp_path / "gateway.toml"
    device = {
        "id": "xray-1",
        "driver": "xray.folder",
        "path": tmp_path / "drop",
        "manifest": tmp_path / "data" / "xray-1.jsonl",
        "settle_s": SETTLE_S,
        "orphan_after_s": ORPHAN_S,
        "poll_s": 0.1,
        "preview_height": 128,
    }
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    (tmp_path / "drop").mkdir()
    return config


async def test_every_scanner_fault_reaches_central_as_a_scan_or_an_error(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    gateway = GatewayProcess(xray_config(tmp_path, broker), tmp_path)
    faults = [f for f in FAULTS if f != "done_marker"]
    sim = XraySimulator(
        dir=tmp_path / "drop", scans=len(faults) + 2, faults=faults, seed=42, interval_s=0.05,
        settle_s=SETTLE_S, chunk_bytes=16 * 1024, chunk_interval_s=0.002, size=(320, 160),
        truth_path=tmp_path / "truth.json",
    )  # fmt: skip
    try:
        await gateway.start()
        async with sim:
            await asyncio.wait_for(sim.finished.wait(), 60)
        truth = sim.truth
        complete = [s for s in truth if s.expected is Expected.COMPLETE]
        # Repeats of a scan id with the same image are not published twice.
        await central.wait_for(lambda c: len(c.records("event/xray_scan")) >= len(complete), 60)
        failing = [s for s in truth if s.expected is not Expected.COMPLETE]
        await central.wait_for(lambda c: len(c.records("event/xray_error")) >= len(failing), 60)
        scans = central.records("event/xray_scan")
        by_stem = {s.stem: s for s in truth}

        for record in scans:
            data = record["data"]
            scan = by_stem[Path(data["image"]["name"]).stem]
            assert scan.expected is Expected.COMPLETE, f"{scan.stem} published: {scan.faults}"
            image = (tmp_path / "drop" / data["image"]["name"]).read_bytes()
            assert data["image"]["sha256"] == hashlib.sha256(image).hexdigest() == scan.image_sha256
            assert data["operator"] == scan.operator
            assert [c["check_digit_ok"] for c in data["containers"]] == scan.check_digits_valid
            media = [
                m
                for m in central.snapshot()
                if m.topic == f"{ROOT}/media/" + data["preview"]["media_id"]
            ]
            assert len(media) >= 1 and media[0].content_type == "image/jpeg"
            assert hashlib.sha256(media[0].payload).hexdigest() == data["preview"]["sha256"]
            preview = cv2.imdecode(np.frombuffer(media[0].payload, np.uint8), cv2.IMREAD_COLOR)
            assert preview is not None and preview.shape[0] == 128
        assert any("Nguyễn" in (r["data"]["operator"] or "") for r in scans), "non-ASCII kept"
        assert any(not c["check_digit_ok"] for r in scans for c in r["data"]["containers"])

        errors = {r["data"]["stem"]: r["data"] for r in central.records("event/xray_error")}
        for scan in failing:
            error = errors[scan.stem]
            if scan.expected in (Expected.CORRUPT, Expected.NEVER_COMPLETES):
                image = (tmp_path / "drop" / scan.image).read_bytes() if scan.image else b""
                assert error["image"]["sha256"] == hashlib.sha256(image).hexdigest()
        reasons = {errors[s.stem]["reason"] for s in failing}
        assert {"orphan_sidecar", "orphan_image"} <= reasons
        assert reasons & {"corrupt_image", "empty_image"}

        # The original, fetched over MQTT in chunks, is byte for byte the scanner's file.
        wanted = scans[0]["data"]["image"]
        request = {"sha256": wanted["sha256"], "chunk_bytes": 4096}
        parts = await mqtt_request(broker.port, f"{ROOT}/cmd/xray_original", request)
        assert all(getattr(p.properties, "CorrelationData", None) == b"req-42" for p in parts)
        final = json.loads(parts[-1].payload)
        body = b"".join(p.payload for p in parts[:-1])
        assert final == {"status": "ok", "name": wanted["name"], "bytes": len(body),
                         "sha256": wanted["sha256"]}  # fmt: skip
        assert hashlib.sha256(body).hexdigest() == wanted["sha256"]
        assert len(parts) > 2, "answered in chunks"
        unknown = await mqtt_request(broker.port, f"{ROOT}/cmd/xray_original", {"sha256": "0" * 64})
        assert json.loads(unknown[-1].payload)["status"] == "error"
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert all(s.image_sha256 is None or
               hashlib.sha256((tmp_path / "drop" / s.image).read_bytes()).hexdigest()
               == s.image_sha256 for s in sim.truth if s.image)  # fmt: skip
