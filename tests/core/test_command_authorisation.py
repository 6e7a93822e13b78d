"""Commands only from who may send them, with replies only where they belong.

Issue 13, V3 and V8-V10: any client could ask for an X-ray original with the response
topic ``attacker/loot`` and get the file there, or make the gateway publish a
non-record on its own alarm topic; wrong types got no reply; a 10 MB request was
echoed into a 10 MB reply; 200 concurrent original requests added 339 MB. Through a
real gateway process and a real mosquitto.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.command_guard import signed_bytes
from tests.broker import Central, Mosquitto, mqtt_request
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
ORIGINAL = f"{ROOT}/cmd/xray_original"
REPLIES = f"{ROOT}/reply/central-1"


def xray_gateway(tmp_path: Path, broker: Mosquitto, commands: str = "") -> GatewayProcess:
    drop = tmp_path / "drop"
    drop.mkdir()
    device = {"id": "xray-1", "driver": "xray.folder", "path": drop,
              "manifest": tmp_path / "data" / "xray-1.jsonl", "settle_s": 0.3,
              "orphan_after_s": 30.0, "poll_s": 0.1, "preview_height": 64}  # fmt: skip
    config = tmp_path / "gateway.toml"
    extra = f"[commands]\n{commands}" if commands else ""
    config.write_text(config_text(tmp_path / "data", broker.port, [device], extra=extra))
    return GatewayProcess(config, tmp_path)


async def drop_scan(tmp_path: Path, central: Central, side: int = 64) -> str:
    """A scan in the drop folder, published; returns the original's sha256."""
    noise = np.random.default_rng(1).integers(0, 65535, (side, side), dtype=np.uint16)
    ok, png = cv2.imencode(".png", noise)
    assert ok
    (tmp_path / "drop" / "XR-1.png").write_bytes(png.tobytes())
    (tmp_path / "drop" / "XR-1.json").write_text('{"scan_id": "XR-1", "lane": "3"}')
    await central.wait_for(lambda c: bool(c.records("event/xray_scan")), 30)
    return hashlib.sha256(png.tobytes()).hexdigest()


def final_json(parts: list[mqtt.MQTTMessage]) -> dict[str, Any]:
    last = parts[-1]
    assert dict(getattr(last.properties, "UserProperty", [])).get("last") == "true"
    body: dict[str, Any] = json.loads(last.payload)
    return body


async def status_of(config: Path) -> dict[str, Any]:
    _, out = await run_ctl(config, "status", "--json")
    status: dict[str, Any] = json.loads(out)
    return status


async def test_replies_go_only_under_the_reply_prefix_and_bad_requests_get_short_errors(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    gateway = xray_gateway(tmp_path, broker)
    try:
        await gateway.start()
        sha256 = await drop_scan(tmp_path, central)
        # Elsewhere: nothing is published there, not even an error.
        for elsewhere in ("attacker/loot", f"{ROOT}/event/seal_alarm"):
            with pytest.raises(TimeoutError):
                await mqtt_request(broker.port, ORIGINAL, {"sha256": sha256},
                                   response_topic=elsewhere, timeout_s=1)  # fmt: skip
        good = await mqtt_request(broker.port, ORIGINAL, {"sha256": sha256})
        wrong_type = await mqtt_request(broker.port, ORIGINAL, {"sha256": 5})
        unknown = await mqtt_request(broker.port, ORIGINAL, {"sha256": sha256, "path": "/etc"})
        huge = await mqtt_request(broker.port, ORIGINAL, b'{"sha256": "' + b"a" * 10**7 + b'"}')
        status = await status_of(gateway.config)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert final_json(good)["status"] == "ok"
    assert b"".join(p.payload for p in good[:-1]) == (tmp_path / "drop" / "XR-1.png").read_bytes()
    assert final_json(wrong_type)["error"] == "field 'sha256' must be a string"
    assert "unknown field 'path'" in final_json(unknown)["error"]
    assert final_json(huge)["error"] == "request is 10000014 bytes; at most 65536"
    assert len(huge[-1].payload) < 200, "nothing of a big request is echoed"
    assert not any(m.topic.startswith("attacker/") for m in central.snapshot())
    assert not central.records("event/seal_alarm")
    assert not [m for m in central.snapshot() if m.topic.endswith("/event/seal_alarm")]
    assert status["uplink"]["commands_refused"] == 2
    log = gateway.log.read_text()
    assert max(len(line) for line in log.splitlines()) < 2000, "no request logged whole"


class Requester:
    """One central client sending many requests at once, collecting each one's answer."""

    def __init__(self, port: int) -> None:
        self.finals: dict[bytes, dict[str, Any]] = {}
        self.order: list[dict[str, Any]] = []
        """Every final reply, in arrival order."""
        self._lock = threading.Lock()
        self._all = threading.Event()
        self.expected = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(REPLIES, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        if dict(getattr(props, "UserProperty", [])).get("last") != "true":
            return
        with self._lock:
            self.finals[getattr(props, "CorrelationData", b"")] = json.loads(msg.payload)
            self.order.append(json.loads(msg.payload))
            if len(self.order) >= self.expected:
                self._all.set()

    def send(
        self,
        topic: str,
        payloads: list[bytes],
        sigs: list[str] | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Publish; each request's correlation data is ``req-{count}`` unless given."""
        self._all.clear()
        for n, payload in enumerate(payloads):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = REPLIES
            props.CorrelationData = correlation or f"req-{self.expected + n}".encode()
            if sigs is not None:
                props.UserProperty = [("sig", sigs[n])]
            self.client.publish(topic, payload, qos=1, properties=props)
        self.expected += len(payloads)

    async def answered(self, timeout_s: float) -> dict[bytes, dict[str, Any]]:
        assert await asyncio.to_thread(self._all.wait, timeout_s), (
            f"{len(self.finals)} of {self.expected} requests answered"
        )
        return self.finals

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_200_concurrent_original_requests_each_get_an_answer_and_most_are_refused(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    gateway = xray_gateway(tmp_path, broker, "rate_per_s = 1000\nburst = 1000\n")
    try:
        await gateway.start()
        sha256 = await drop_scan(tmp_path, central, side=1024)  # a 2 MB original
        request = json.dumps({"sha256": sha256, "chunk_bytes": 4096}).encode()
        requester = Requester(broker.port)
        try:
            requester.send(ORIGINAL, [request] * 200)
            finals = await requester.answered(120)
        finally:
            requester.close()
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    outcomes = [f.get("status") for f in finals.values()]
    busy = [f for f in finals.values() if "busy" in f.get("error", "")]
    assert len(finals) == 200, "each request has its own correlation data and one answer"
    assert outcomes.count("ok") >= 4, "those admitted are served whole"
    assert outcomes.count("ok") + len(busy) == 200
    assert len(busy) >= 150, "at most 4 in progress: the rest are told to ask again"


async def test_with_a_central_key_only_fresh_signed_commands_run(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    centre = Ed25519PrivateKey.generate()
    public = base64.b64encode(centre.public_key().public_bytes_raw()).decode()
    gateway = xray_gateway(tmp_path, broker, f'central_public_key = "{public}"\n')

    def sign(payload: bytes, correlation: bytes) -> str:
        message = signed_bytes(ORIGINAL, REPLIES, correlation, payload)
        return base64.b64encode(centre.sign(message)).decode()

    try:
        await gateway.start()
        sha256 = await drop_scan(tmp_path, central)
        soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        fresh = json.dumps({"sha256": sha256, "expires": soon}).encode()
        stale = json.dumps({"sha256": sha256, "expires": past}).encode()
        altered = fresh.replace(b"}", b', "chunk_bytes": 2048}')
        requester = Requester(broker.port)
        try:
            for payload, sig, correlation in (
                (fresh, None, b"c-1"),  # unsigned
                (fresh, sign(fresh, b"c-2"), b"c-2"),  # signed and fresh
                (fresh, sign(fresh, b"c-2"), b"c-2"),  # the same again: a replay
                (stale, sign(stale, b"c-3"), b"c-3"),  # expired
                (altered, sign(fresh, b"c-4"), b"c-4"),  # changed after signing
                (fresh, sign(fresh, b"c-5"), b"c-5"),  # a new correlation: a new command
            ):
                requester.send(ORIGINAL, [payload], None if sig is None else [sig], correlation)
                await requester.answered(30)
        finally:
            requester.close()
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    answers = requester.order
    assert "must be signed" in answers[0]["error"]
    assert answers[1]["status"] == "ok"
    assert "replay" in answers[2]["error"]
    assert "expired" in answers[3]["error"]
    assert "does not verify" in answers[4]["error"]
    assert answers[5]["status"] == "ok"
