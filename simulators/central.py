"""A live view of what reaches the central office: subscribe and print, one line a message.

``python -m simulators central --port 1883`` is what a technician runs next to a
gateway to see, in plain words, what the centre receives: weighings, readings,
device health and the gateway's online/offline status.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

BOLD, DIM, RED, GREEN, RESET = "\033[1m", "\033[2m", "\033[31m", "\033[32m", "\033[0m"


def describe(topic: str, payload: bytes) -> tuple[str, str]:
    """A one-line summary of a message and its style (``bold``, ``dim``, ``alert``, ``ok``)."""
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return f"{topic}  <{len(payload)} bytes>", "dim"
    if not isinstance(body, dict):
        return f"{topic}  {body!r}", "dim"
    kind = topic.split("/", 3)[-1] if topic.count("/") >= 3 else topic
    data = body.get("data") or {}
    seq = f"#{body['seq']}" if body.get("seq") is not None else ""
    if topic.endswith("/status"):
        state = body.get("state")
        return f"gateway {body.get('site')}/{body.get('gateway')} is {state}", (
            "ok" if state == "online" else "alert"
        )
    if kind.startswith("event/weighing"):
        if data.get("status") == "complete":
            plateau = data.get("plateau") or {}
            return (
                f"{seq:>7} WEIGHING {body.get('device')}: {data.get('weight')} {data.get('unit')}"
                f"  (stable {plateau.get('duration_s')} s, {plateau.get('samples')} samples,"
                f" spread {plateau.get('min_kg')}-{plateau.get('max_kg')} kg)",
                "bold",
            )
        return f"{seq:>7} WEIGHING {body.get('device')}: no stable weight", "alert"
    if kind.startswith("reading/"):
        flag = {True: "stable", False: "motion", None: ""}.get(data.get("stable"), "")
        value = f"{data.get('weight')} {data.get('unit')} {flag}"
        return f"{seq:>7} reading  {body.get('device')}: {value}", "dim"
    if kind.startswith("device/"):
        state = data.get("state")
        error = f" - {data.get('last_error')}" if state != "up" and data.get("last_error") else ""
        return f"{seq:>7} device   {body.get('device')} is {state}{error}", (
            "ok" if state == "up" else "alert"
        )
    return f"{seq:>7} {kind}  {json.dumps(data, ensure_ascii=False)[:160]}", "bold"


class CentralView:
    """Subscribes to ``{root}/#`` and prints each message as it arrives."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "customs/#",
        out: TextIO = sys.stdout,
        color: bool | None = None,
    ) -> None:
        self.host, self.port, self.topic, self.out = host, port, topic, out
        self.color = out.isatty() if color is None else color
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        line, style = describe(msg.topic, bytes(msg.payload))
        if self.color:
            line = {"bold": BOLD, "dim": DIM, "alert": RED, "ok": GREEN}[style] + line + RESET
        print(line, file=self.out, flush=True)

    def start(self) -> None:
        """Connect (retrying in the background) and start printing."""
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
