"""A real mosquitto broker for tests, and a 'central office' subscriber.

The broker runs with persistence in a temp dir so it can be stopped and started
again on the same port (a broker outage) without the central subscriber's queued
session being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on the port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Mosquitto:
    """One mosquitto process that can be stopped and restarted on the same port."""

    def __init__(
        self, workdir: Path, port: int | None = None, *, stock_inflight: bool = False
    ) -> None:
        """``stock_inflight`` keeps mosquitto's default ``max_inflight_messages`` (20),
        which it announces as its MQTT 5 Receive Maximum and enforces with PUBACK
        "quota exceeded" (0x97): what a broker installed as it ships does."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 100000\n"
            + ("" if stock_inflight else "max_inflight_messages 0\n")
            + "log_dest none\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            # Started as root, mosquitto drops to user 'mosquitto', which cannot write its
            # persistence file into pytest's private tmp dir: the sessions the outage
            # tests rely on would silently not survive the restart.
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: it saves its persistence file)."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class Message:
    """One message central received."""

    topic: str
    payload: bytes
    retain: bool
    content_type: str | None

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass
class Central:
    """A central-office subscriber with a persistent session (QoS 1)."""

    port: int
    topic: str = "#"
    client_id: str = "central-test"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._subscribed = threading.Event()
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        self._connect_props = props
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.reconnect_delay_set(1, 1)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ctype = getattr(msg.properties, "ContentType", None) if msg.properties else None
        with self._lock:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), ctype))
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(changed.set)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake :meth:`wait_for` on this loop when messages arrive."""
        self._loop = loop
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Connect (keeping the session across broker restarts) and subscribe."""
        self._client.connect(
            "127.0.0.1", self.port, clean_start=False, properties=self._connect_props
        )
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("central could not subscribe")

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def snapshot(self) -> list[Message]:
        """A copy of what arrived so far."""
        with self._lock:
            return list(self.messages)

    def records(self, suffix: str = "") -> list[dict[str, Any]]:
        """Distinct enveloped records (deduplicated by id), optionally by topic suffix."""
        seen: dict[str, dict[str, Any]] = {}
        for m in self.snapshot():
            if (
                m.topic.endswith(suffix)
                and not m.topic.endswith("/status")
                and "/media/" not in m.topic
            ):
                body = m.json()
                if isinstance(body, dict) and "seq" in body and body.get("seq") is not None:
                    seen.setdefault(body["id"], body)
        return sorted(seen.values(), key=lambda r: r["seq"])

    async def wait_for(self, predicate: Callable[[Central], bool], timeout_s: float) -> None:
        """Wait until ``predicate(self)`` holds, woken by each message (no polling)."""
        assert self._changed is not None, "start() the central inside the event loop"
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._changed.clear()
                if predicate(self):
                    return
                await self._changed.wait()


async def mqtt_request(port: int, topic: str, request: dict[str, Any]) -> list[mqtt.MQTTMessage]:
    """Central's side of a gateway command (MQTT 5 request/response): every reply part."""
    loop = asyncio.get_running_loop()
    parts: list[mqtt.MQTTMessage] = []
    done = asyncio.Event()
    subscribed = asyncio.Event()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts.append(msg)
        if dict(msg.properties.UserProperty).get("last") == "true":
            loop.call_soon_threadsafe(done.set)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: loop.call_soon_threadsafe(subscribed.set)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe("central/replies/1", qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.ResponseTopic = "central/replies/1"
        props.CorrelationData = b"req-42"
        client.publish(topic, json.dumps(request), qos=1, properties=props)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        client.disconnect()
        client.loop_stop()
    return parts
