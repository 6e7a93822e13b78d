"""A real mosquitto broker for tests, and a 'central office' subscriber.

The broker (:class:`simulators.broker.Mosquitto`, re-exported here) runs with
persistence in a temp dir so it can be stopped and started again on the same port (a
broker outage) without the central subscriber's queued session being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.broker import Mosquitto, free_port, wait_port

__all__ = ["Central", "Message", "Mosquitto", "free_port", "mqtt_request", "wait_port"]


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
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
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
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), ctype))
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


async def mqtt_request(
    port: int,
    topic: str,
    request: dict[str, Any] | bytes,
    *,
    response_topic: str | None = None,
    user_properties: list[tuple[str, str]] | None = None,
    timeout_s: float = 30,
) -> list[mqtt.MQTTMessage]:
    """Central's side of a gateway command (MQTT 5 request/response): every reply part.

    The response topic defaults to ``{root}/reply/central-1``, under the gateway's
    reply prefix; ``request`` is a JSON object or the exact payload bytes.
    """
    reply_to = response_topic or topic.rsplit("/cmd/", 1)[0] + "/reply/central-1"
    loop = asyncio.get_running_loop()
    parts: list[mqtt.MQTTMessage] = []
    done = asyncio.Event()
    subscribed = asyncio.Event()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts.append(msg)
        if dict(getattr(msg.properties, "UserProperty", [])).get("last") == "true":
            loop.call_soon_threadsafe(done.set)

    def on_subscribe(*_: Any) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe(reply_to, qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.ResponseTopic = reply_to
        props.CorrelationData = b"req-42"
        if user_properties:
            props.UserProperty = user_properties
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        client.publish(topic, body, qos=1, properties=props)
        await asyncio.wait_for(done.wait(), timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return parts
