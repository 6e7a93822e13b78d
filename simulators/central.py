"""A live view of what reaches the central office: subscribe and print, one line a message.

``python -m simulators central --port 1883`` is what a technician runs next to a
gateway to see, in plain words, what the centre receives: weighings, seal alarms and
events, e-lock positions, X-ray scans, camera motion and stills, OCR results, media,
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

Line = tuple[str, str]
"""A message's one-line summary and its style (``bold``, ``dim``, ``alert``, ``ok``)."""

_STATE_HINTS = {
    "stalled": "connected but its stream stopped; reopening",
    "degraded": "bad frames arriving",
    "unavailable": "its driver cannot run on this box",
}
"""Plain words for device states a technician may not know, shown after the state."""


def _short(digest: object, n: int = 12) -> str:
    """The start of a SHA-256, enough to tell files apart by eye."""
    return str(digest)[:n] if digest else "-"


def _media_short(media_id: object) -> str:
    """A media id's random tail: a UUIDv7 starts with the clock, shared by ids made together."""
    return str(media_id)[-8:] if media_id else "-"


def _kb(size: object) -> str:
    return f"{size / 1024:.0f} KB" if isinstance(size, int) else "? KB"


def _tick(ok: object) -> str:
    return "\u2713" if ok else "\u2717"


def _picture(ref: Any) -> str:
    """``1024x512 18 KB`` for a record's snapshot or preview reference."""
    if not isinstance(ref, dict):
        return "no picture"
    return f"{ref.get('width')}x{ref.get('height')} {_kb(ref.get('bytes'))}"


def _seal_time(data: dict[str, Any], body: dict[str, Any]) -> str:
    return str(data.get("event_time") or data.get("received") or body.get("ts"))


def _seal_alarm(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    return (
        f"{seq:>7} SEAL ALARM {data.get('seal_id')}: {data.get('event')} at"
        f" {_seal_time(data, body)} ({data.get('source')}, {body.get('device')})",
        "alert",
    )


def _seal_event(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    return (
        f"{seq:>7} seal     {data.get('seal_id')}: {data.get('event')} at"
        f" {_seal_time(data, body)} ({data.get('source')}, {body.get('device')})",
        "bold",
    )


def _xray_scan(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    containers = ", ".join(
        f"{c.get('number')} {_tick(c.get('check_digit_ok'))}" for c in data.get("containers") or []
    )
    preview = data.get("preview") or {}
    image = data.get("image") or {}
    again = f" (again: {data['duplicate_of']})" if data.get("duplicate_of") else ""
    return (
        f"{seq:>7} X-RAY SCAN {data.get('scan_id')} lane {data.get('lane')}:"
        f" {containers or 'no container'}{again}, operator {data.get('operator')}"
        f"  image {_short(image.get('sha256'))}"
        f"  preview {_media_short(preview.get('media_id'))} {_picture(preview)}",
        "bold",
    )


def _xray_error(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    image = data.get("image") or {}
    sidecar = data.get("sidecar") or {}
    name = image.get("name") or sidecar.get("name") or data.get("stem")
    return (
        f"{seq:>7} X-RAY ERROR {data.get('reason')}: {name}"
        f" sha256 {_short(image.get('sha256') or sidecar.get('sha256'))}",
        "alert",
    )


def _motion(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    phase = data.get("type")
    snapshot = f", snapshot {_picture(data['snapshot'])}" if data.get("snapshot") else ""
    return (
        f"{seq:>7} motion   {data.get('camera') or body.get('device')}: {phase}"
        f" score {data.get('score')}{snapshot}",
        "dim" if phase == "update" else "bold",
    )


def _ocr(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    verified = f"verified {_tick(True)}" if data.get("verified") else "unverified"
    confidence = data.get("confidence")
    region = f", region {data['region']}" if data.get("region") else ""
    return (
        f"{seq:>7} OCR      {data.get('camera') or body.get('device')}: {data.get('kind')}"
        f" {data.get('text')} {verified} (confidence {confidence}){region}",
        "bold" if data.get("verified") else "alert",
    )


def _weighing(seq: str, body: dict[str, Any], data: dict[str, Any]) -> Line:
    if data.get("status") == "complete":
        plateau = data.get("plateau") or {}
        return (
            f"{seq:>7} WEIGHING {body.get('device')}: {data.get('weight')} {data.get('unit')}"
            f"  (stable {plateau.get('duration_s')} s, {plateau.get('samples')} samples,"
            f" spread {plateau.get('min_kg')}-{plateau.get('max_kg')} kg)",
            "bold",
        )
    return f"{seq:>7} WEIGHING {body.get('device')}: no stable weight", "alert"


def _seal_reading(data: dict[str, Any]) -> str:
    if data.get("in_range") is False:
        return "no seal in range"
    status = data.get("status") or {}
    state = "opened" if status.get("opened") or not data.get("sealed") else "sealed"
    tampered = ", TAMPERED" if status.get("tampered") else ""
    battery = data.get("battery_pct")
    return (
        f"seal {data.get('seal_id')} {state}{tampered},"
        f" battery {'?' if battery is None else battery}%"
    )


def _position_reading(data: dict[str, Any]) -> str:
    where = data.get("position") or {}
    lat, lon = where.get("lat"), where.get("lon")
    at = f"{lat:.5f},{lon:.5f}" if isinstance(lat, float) and isinstance(lon, float) else "?"
    alarms = f", alarms {','.join(data['alarms'])}" if data.get("alarms") else ""
    lock = "locked" if data.get("locked") else "UNLOCKED"
    return f"e-lock {data.get('terminal')} at {at} {lock}{alarms}"


def _still_reading(data: dict[str, Any]) -> str:
    return f"still {_picture(data.get('snapshot'))}"


def _weight_reading(data: dict[str, Any]) -> str:
    flag = {True: "stable", False: "motion", None: ""}.get(data.get("stable"), "")
    return f"{data.get('weight')} {data.get('unit')} {flag}"


_EVENTS = {
    "event/seal_alarm": _seal_alarm,
    "event/seal": _seal_event,
    "event/xray_scan": _xray_scan,
    "event/xray_error": _xray_error,
    "event/motion": _motion,
    "event/ocr": _ocr,
    "event/weighing": _weighing,
}
"""Event topics (below the root) and how to put them in words."""

_READINGS = {
    "seal": _seal_reading,
    "position": _position_reading,
    "still": _still_reading,
}
"""``reading/{device}/{kind}`` kinds; any other kind is a weight."""


def describe(topic: str, payload: bytes, content_type: str | None = None) -> Line:
    """A one-line summary of a message and its style (``bold``, ``dim``, ``alert``, ``ok``).

    ``content_type`` is the MQTT 5 property: media (JPEG snapshots and previews) are
    binary, not JSON, and are summarised by their size rather than parsed.
    """
    kind = topic.split("/", 3)[-1] if topic.count("/") >= 3 else topic
    if kind.startswith("media/") or (content_type and "json" not in content_type):
        what = f"media    {_media_short(kind[6:])}" if kind.startswith("media/") else kind
        return f"{'':>7} {what} {content_type or 'binary'} {_kb(len(payload))}", "dim"
    try:
        body: Any = json.loads(payload)
    except ValueError:
        return f"{topic}  <{len(payload)} bytes>", "dim"
    if not isinstance(body, dict):
        return f"{topic}  {body!r}", "dim"
    data = body.get("data") or {}
    seq = f"#{body['seq']}" if body.get("seq") is not None else ""
    if topic.endswith("/status"):
        state = body.get("state")
        return f"gateway {body.get('site')}/{body.get('gateway')} is {state}", (
            "ok" if state == "online" else "alert"
        )
    if event := _EVENTS.get(kind):
        return event(seq, body, data)
    if kind.startswith("reading/"):
        reading = _READINGS.get(kind.rsplit("/", 1)[-1], _weight_reading)
        return f"{seq:>7} reading  {body.get('device')}: {reading(data)}", "dim"
    if kind.startswith("device/"):
        state = data.get("state")
        hint = f" ({_STATE_HINTS[state]})" if state in _STATE_HINTS else ""
        error = f" - {data.get('last_error')}" if state != "up" and data.get("last_error") else ""
        return f"{seq:>7} device   {body.get('device')} is {state}{hint}{error}", (
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
        content_type = getattr(msg.properties, "ContentType", None) if msg.properties else None
        line, style = describe(msg.topic, bytes(msg.payload), content_type)
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
