"""Signed records: central tells what the gateway published from anything else.

Issue 13, V4: another broker client could publish seq N+1 with ``prev`` = SHA-256 of
the last payload and pass the chain check. Now every record carries an Ed25519
signature over its bytes (rule in ``gateway/signing.py`` and docs/asyncapi.yaml), and
``gatewayctl verify`` checks a capture with nothing but the public key. Tested on a
stream captured from a running gateway through a real mosquitto, then tampered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import stat
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.signing import RECORD_CONTEXT, RecordSigner
from simulators.modbus import ModbusSimulator
from tests.broker import Central, Message, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"


def sensor_config(data: Path, broker_port: int, modbus_port: int) -> str:
    text = config_text(data, broker_port)
    for unit in (1, 2):
        text += (
            f'[[devices]]\nid = "sensor-{unit}"\ndriver = "modbus"\n'
            f'target = "tcp://127.0.0.1:{modbus_port}"\nunit = {unit}\n'
            "telemetry_interval_s = 0.2\n"
            '[[devices.points]]\nname = "heartbeat"\naddress = 258\n'
            'function = "holding"\ntype = "uint16"\ninterval_s = 0.1\n'
        )
    return text


def capture_lines(messages: list[Message]) -> list[dict[str, object]]:
    """What central's subscriber stored, in the documented capture format."""
    lines: list[dict[str, object]] = []
    for m in messages:
        try:
            payload = m.payload.decode("utf-8")
        except UnicodeDecodeError:
            continue  # media are bytes, not records
        lines.append({"topic": m.topic, "payload": payload, "retain": m.retain})
    return lines


def write_capture(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def publish_as_another_client(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
async def captured(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> tuple[list[dict[str, object]], str, Path]:
    """A real gateway's stream at central, a forged alarm injected by another client,
    the public key as ``gatewayctl keys show`` prints it, and the config."""
    data = tmp_path / "data"
    async with ModbusSimulator(profile="sensors", tcp_port=0, units=(1, 2), seed=5) as sim:
        assert sim.port is not None
        config = tmp_path / "gateway.toml"
        config.write_text(sensor_config(data, broker.port, sim.port))
        gateway = GatewayProcess(config, tmp_path)
        try:
            await gateway.start()
            await central.wait_for(lambda c: len(c.records()) >= 30, 30)
            code, shown = await run_ctl(config, "keys", "show")
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    assert code == 0, shown
    key = re.search(r"public key\s+(\S+)", shown)
    assert key is not None, shown
    assert stat.S_IMODE((data / "signing-key.pem").stat().st_mode) == 0o600
    await central.wait_for(lambda c: any(m.topic == f"{ROOT}/key" for m in c.snapshot()), 10)
    last = central.records()[-1]
    last_payload = next(
        m.payload
        for m in central.snapshot()
        if m.payload.startswith(b"{") and last["id"].encode() in m.payload
    )
    forged = {  # what V4's attacker published: the next seq, a correct prev, no key
        **last,
        "seq": last["seq"] + 1,
        "id": "01900000-0000-7000-8000-000000000001",
        "schema": "seal_alarm/1",
        "data": {"alarm": "opened"},
        "prev": hashlib.sha256(last_payload).hexdigest(),
    }
    forged.pop("sig", None)
    body = json.dumps(forged, separators=(",", ":")).encode()
    attacker = RecordSigner(Ed25519PrivateKey.generate(), Path("attacker.pem"))
    publish_as_another_client(broker.port, f"{ROOT}/event/seal_alarm", attacker.sign(body))
    await central.wait_for(lambda c: any(b"01900000" in m.payload for m in c.snapshot()), 10)
    return capture_lines(central.snapshot()), key.group(1), config


def record_lines(lines: list[dict[str, object]]) -> list[int]:
    """Indexes of live enveloped records in a capture, in arrival order."""
    return [
        i
        for i, line in enumerate(lines)
        if not line["retain"]
        and str(line["payload"]).startswith('{"schema"')
        and '"seq":' in str(line["payload"])
    ]


async def verify(
    tmp_path: Path, config: Path, name: str, lines: list[dict[str, object]], key: str
) -> tuple[int, str]:
    capture = write_capture(tmp_path / f"{name}.jsonl", lines)
    return await run_ctl(config, "verify", str(capture), "--public-key", key)


async def test_a_genuine_capture_verifies_and_each_tampering_is_named_by_seq(
    tmp_path: Path, captured: tuple[list[dict[str, object]], str, Path]
) -> None:
    lines, key, config = captured
    forged_at = next(i for i, line in enumerate(lines) if "01900000" in str(line["payload"]))
    genuine = lines[:forged_at] + lines[forged_at + 1 :]

    code, out = await verify(tmp_path, config, "genuine", genuine, key)
    assert code == 0, out
    assert "OK: every record authentic" in out

    code, out = await verify(tmp_path, config, "forged", lines, key)
    forged_seq = json.loads(str(lines[forged_at]["payload"]))["seq"]
    assert code == 1
    assert re.search(rf"bad_signature\s+seq {forged_seq}\b", out), out

    records = record_lines(genuine)
    middle = records[len(records) // 2]
    seq = json.loads(str(genuine[middle]["payload"]))["seq"]

    altered = [dict(line) for line in genuine]
    altered[middle]["payload"] = str(altered[middle]["payload"]).replace(
        '"data":{', '"data":{"x":1,', 1
    )
    code, out = await verify(tmp_path, config, "altered", altered, key)
    assert code == 1 and re.search(rf"bad_signature\s+seq {seq}\b", out), out

    removed = genuine[:middle] + genuine[middle + 1 :]
    code, out = await verify(tmp_path, config, "removed", removed, key)
    assert code == 1 and re.search(rf"gap\s+seq {seq}\b", out), out

    swapped = list(genuine)
    after = records[records.index(middle) + 1]
    swapped[middle], swapped[after] = swapped[after], swapped[middle]
    code, out = await verify(tmp_path, config, "swapped", swapped, key)
    assert code == 1 and re.search(rf"reordered\s+seq {seq}\b", out), out

    unsigned = [dict(line) for line in genuine]
    payload = str(unsigned[middle]["payload"])
    unsigned[middle]["payload"] = payload[: payload.rindex(',"sig":"')] + "}"
    code, out = await verify(tmp_path, config, "unsigned", unsigned, key)
    assert code == 1 and re.search(rf"unsigned\s+seq {seq}\b", out), out


async def test_verify_takes_the_key_from_the_capture_and_says_whose_it_is(
    tmp_path: Path, captured: tuple[list[dict[str, object]], str, Path], broker: Mosquitto
) -> None:
    lines, key, config = captured
    key_line = next(line for line in lines if str(line["topic"]) == f"{ROOT}/key")
    message = json.loads(str(key_line["payload"]))
    late = Central(port=broker.port, topic=f"{ROOT}/key", client_id="late-subscriber")
    late.attach(asyncio.get_running_loop())
    await asyncio.to_thread(late.start)
    try:
        await late.wait_for(lambda c: bool(c.snapshot()), 10)
    finally:
        await asyncio.to_thread(late.stop)
    assert late.snapshot()[0].retain, "the key is retained for whoever subscribes later"
    assert json.loads(late.snapshot()[0].payload) == message
    assert message["schema"] == "key/1" and message["alg"] == "ed25519"
    assert message["public_key"] == key
    raw = base64.b64decode(key)
    assert message["fingerprint"] == hashlib.sha256(raw).hexdigest()
    genuine = [line for line in lines if "01900000" not in str(line["payload"])]
    capture = write_capture(tmp_path / "genuine.jsonl", genuine)
    code, out = await run_ctl(config, "verify", str(capture))
    assert code == 0, out
    assert f"fingerprint {message['fingerprint']}" in out


async def test_the_documented_byte_rule_verifies_a_record_without_the_gateway_code(
    captured: tuple[list[dict[str, object]], str, Path],
) -> None:
    lines, key, _config = captured
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key))
    payload = str(lines[record_lines(lines)[0]]["payload"]).encode()
    # As docs/asyncapi.yaml says: drop the final ,"sig":"<88 chars>" member, keep the brace.
    assert payload[-98:].startswith(b',"sig":"') and payload.endswith(b'"}')
    signature = base64.b64decode(payload[-90:-2])
    public.verify(signature, RECORD_CONTEXT + payload[:-98] + b"}")  # raises if not


async def test_a_key_that_is_not_ed25519_stops_the_daemon_with_the_fix(
    tmp_path: Path, broker: Mosquitto
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    config = tmp_path / "gateway.toml"
    text = config_text(tmp_path / "data", broker.port).replace(
        "[mqtt]", f'signing_key = "{bad}"\n[mqtt]', 1
    )
    config.write_text(text)
    gateway = GatewayProcess(config, tmp_path)
    try:
        with pytest.raises(RuntimeError, match="openssl genpkey -algorithm ed25519"):
            await gateway.start()
        assert await gateway.stop() == 78  # EX_CONFIG: systemd does not restart it in a loop
    finally:
        await gateway.ensure_stopped()
