"""The broker ACL the design depends on (systemd/mosquitto.acl), run as shipped.

Issue 13, V3/V4: with a permissive broker any client could command the gateway and
publish in its name. With the shipped ACL, a third client (a valid broker user that is
neither the gateway nor central) can do neither, while the gateway and central work.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.broker import Mosquitto
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
ACL = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto.acl"
USERS = {"gate-3": "gw-secret", "central": "central-secret", "lane-pc": "intruder-secret"}


class AclBroker(Mosquitto):
    """mosquitto with passwords for :data:`USERS` and the shipped ACL file."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        passwd = workdir / "passwd"
        for n, (user, password) in enumerate(USERS.items()):
            create = ["-c"] if n == 0 else []
            subprocess.run(
                [shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", *create,
                 str(passwd), user, password],
                check=True, capture_output=True,
            )  # fmt: skip
        text = self.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
        self.conf.write_text(text + f"password_file {passwd}\nacl_file {ACL}\n")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = AclBroker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Client:
    """A broker user: subscribes to everything it may read, records what arrives."""

    def __init__(self, port: int, user: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.arrived = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, USERS[user])
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("#", qos=1)
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.append(msg)
        self.arrived.set()

    def publish(self, topic: str, payload: bytes, response: str | None = None) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if response is not None:
            props.ResponseTopic = response
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def topics(self) -> set[str]:
        return {m.topic for m in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def wait_until(client: Client, topic: str, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while topic not in client.topics():
            client.arrived.clear()
            if topic in client.topics():
                return
            await asyncio.to_thread(client.arrived.wait, 1)


async def test_only_the_gateway_publishes_in_its_name_and_only_central_commands_it(
    tmp_path: Path, broker: Mosquitto
) -> None:
    password = tmp_path / "mqtt.password"
    password.write_text(USERS["gate-3"] + "\n")
    password.chmod(0o600)
    drop = tmp_path / "drop"
    drop.mkdir()
    device = {"id": "xray-1", "driver": "xray.folder", "path": drop,
              "manifest": tmp_path / "data" / "xray-1.jsonl", "poll_s": 0.1}  # fmt: skip
    text = config_text(tmp_path / "data", broker.port, [device]).replace(
        "[mqtt]\n", f'[mqtt]\nusername = "gate-3"\npassword_file = "{password}"\n', 1
    )
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    gateway = GatewayProcess(config, tmp_path)
    central = Client(broker.port, "central")
    intruder = Client(broker.port, "lane-pc")
    try:
        await gateway.start()
        await wait_until(central, f"{ROOT}/key")
        forged = b'{"schema":"seal_alarm/1","seq":999999,"data":{"alarm":"opened"}}'
        intruder.publish(f"{ROOT}/event/seal_alarm", forged)
        intruder.publish(f"{ROOT}/cmd/xray_original", b'{"scan_id": "x"}',
                         response=f"{ROOT}/reply/lane-pc")  # fmt: skip
        # Central's own request is answered: the intruder's, published before, was not.
        central.publish(f"{ROOT}/cmd/xray_original", b'{"scan_id": "x"}',
                        response=f"{ROOT}/reply/central")  # fmt: skip
        await wait_until(central, f"{ROOT}/reply/central")
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
        central.close()
        intruder.close()
    assert f"{ROOT}/event/seal_alarm" not in central.topics(), "the forged alarm was dropped"
    assert f"{ROOT}/reply/lane-pc" not in central.topics() | intruder.topics()
    assert not intruder.messages, "the intruder reads nothing of the gateway's"
    replies = [m for m in central.messages if m.topic == f"{ROOT}/reply/central"]
    assert len(replies) == 1, "central's command reached the gateway and was answered"
    assert json.loads(replies[0].payload)["status"] == "error"  # no scan x, as it should say
