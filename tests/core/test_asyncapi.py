"""docs/asyncapi.yaml: well formed, and what the gateway really publishes fits its schemas."""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import re
import signal
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from drivers.camera.ocr.container import ContainerCode, ContainerReading
from drivers.camera.ocr.plate import parse_plate
from drivers.camera.ocr.service import OcrService, _Passage, _Region
from drivers.camera.processor import CameraProcessor
from drivers.camera.readings import (
    CameraStats,
    CropsCaptured,
    MotionObserved,
    RegionCrop,
    StillCaptured,
)
from drivers.camera.snapshot import encode_snapshot
from drivers.eseal.processor import SealProcessor
from drivers.eseal.readings import PositionReported, SealAlert, SealRead
from drivers.scale.processor import WeighingProcessor, WeighingSettings
from drivers.scale.readings import WeightMeasured
from drivers.xray.processor import ScanProcessor
from drivers.xray.readings import ScanCompleted, ScanFailed
from gateway.central_commands import OCTETS
from gateway.driver import DriverCounters
from gateway.health import DeviceHealth
from gateway.outbox import EVICTION_TOPIC, Outbox
from gateway.readings import Stamp
from gateway.records import (
    GENESIS,
    MediaDraft,
    Outgoing,
    Priority,
    envelope,
    rfc3339,
    uuid7,
)
from gateway.uplink import Uplink
from simulators.camera.simulator import CameraSimulator
from simulators.eseal import PROTOCOL_FAULTS, TIMED_FAULTS, EsealSimulator
from simulators.modbus import ModbusSimulator
from simulators.scale import ScaleSimulator
from simulators.xray import FAULTS, Expected, XraySimulator
from tests.broker import Central, Message, Mosquitto, free_port, mqtt_request
from tests.camera.test_gateway import camera
from tests.camera.test_ocr_gateway import region
from tests.core.test_daemon import ROOT
from tests.eseal.test_durability import AUTH_CODE, ELOCKS
from tests.helpers import config_text, ephemeral_signer, make_config
from tests.process import GatewayProcess

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
DOC_URI = DOC_PATH.as_uri()
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@functools.cache
def document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    return doc


def pointer(ref: str) -> Any:
    """The node a local ``#/a/b`` reference points at."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any) -> Any:
    return pointer(node["$ref"]) if isinstance(node, dict) and "$ref" in node else node


def format_checker() -> FormatChecker:
    """jsonschema's checkers, plus an RFC 3339 ``date-time`` that needs no extra package."""
    checker = FormatChecker()

    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        datetime.fromisoformat(value)  # a real calendar date and time
        return RFC3339.fullmatch(value) is not None

    # Registered by a call, not as a decorator: jsonschema has no types, and an untyped
    # decorator would leave the function unchecked.
    checker.checks("date-time", raises=ValueError)(_date_time)
    return checker


JSON = "application/json"
BINARY_TYPES = frozenset({"image/jpeg", "application/octet-stream"})
"""Content types of messages that are raw bytes: no JSON schema, no JSON example."""


@dataclass(frozen=True)
class Kind:
    """One message of a channel: its content type and, for JSON, its schema.

    ``payload`` is None for binary messages (media, reply chunks): JSON Schema cannot
    say anything about raw bytes, so :func:`binary_errors` checks them instead.
    """

    name: str
    content_type: str
    doc: dict[str, Any]
    payload: Draft202012Validator | None
    headers: Draft202012Validator | None


@dataclass(frozen=True)
class Channel:
    name: str
    address: re.Pattern[str] | None
    """None: the requester chooses the topic (command replies)."""
    messages: dict[str, Kind]
    """Content type -> the channel's message of that type."""
    retain: bool

    @property
    def json(self) -> Kind:
        return self.messages[JSON]


def _validator(ref: str) -> Draft202012Validator:
    doc = document()
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    return Draft202012Validator(
        {"$ref": f"{DOC_URI}{ref}"}, registry=registry, format_checker=format_checker()
    )


def _operation(name: str) -> dict[str, Any]:
    """The operation that sends or receives on channel ``name``, or replies on it."""
    ref = f"#/channels/{name}"
    operations: list[dict[str, Any]] = [
        op
        for op in document()["operations"].values()
        if ref in (op["channel"]["$ref"], op.get("reply", {}).get("channel", {}).get("$ref"))
    ]
    assert len(operations) == 1, f"{name}: {len(operations)} operations"
    return operations[0]


@functools.cache
def channels() -> dict[str, Channel]:
    """Each channel: its address as a regex, its messages' schemas, and the operation's flags."""
    doc = document()
    out: dict[str, Channel] = {}
    for name, channel in doc["channels"].items():
        kinds: dict[str, Kind] = {}
        for message_name, ref in channel["messages"].items():
            message = deref(ref)
            content_type = message.get("contentType", doc["defaultContentType"])
            assert content_type not in kinds, f"{name}: two {content_type} messages"
            binary = content_type in BINARY_TYPES
            kinds[content_type] = Kind(
                name=message_name,
                content_type=content_type,
                doc=message,
                payload=None if binary else _validator(f"{ref['$ref']}/payload"),
                headers=_validator(f"{ref['$ref']}/headers") if "headers" in message else None,
            )
        operation = _operation(name)
        address = channel["address"]
        regex = None
        if address is not None:
            regex = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(address)))
        out[name] = Channel(
            name=name,
            address=regex,
            messages=kinds,
            # Replies inherit nothing from the request's operation: never retained.
            retain=regex is not None and operation["bindings"]["mqtt"]["retain"],
        )
    return out


Replies = Mapping[str, str]
"""Response topic -> the reply channel (its address is the requester's choice)."""


def channel_of(topic: str, replies: Replies = MappingProxyType({})) -> Channel:
    """The channel ``topic`` belongs to; a topic in ``replies`` is that reply channel's."""
    if topic in replies:
        channel = channels()[replies[topic]]
        assert channel.address is None, f"{channel.name} has a fixed address"
        return channel
    matches = [c for c in channels().values() if c.address and c.address.fullmatch(topic)]
    assert len(matches) == 1, f"{topic}: matches {len(matches)} channels of the document"
    return matches[0]


def payload_errors(validator: Draft202012Validator, payload: Any) -> list[str]:
    problems = []
    for error in validator.iter_errors(payload):
        cause = best_match([error])  # inside oneOf/anyOf: the branch that came closest
        where = "/".join(map(str, cause.absolute_path)) or "<root>"
        problems.append(f"{where}: {cause.message[:300]}")
    return problems


def schema_errors(
    topic: str, payload: Any, replies: Replies = MappingProxyType({})
) -> tuple[Channel, list[str]]:
    """The channel ``topic`` belongs to, and every way JSON ``payload`` breaks the contract."""
    channel = channel_of(topic, replies)
    validator = channel.json.payload
    assert validator is not None
    problems = payload_errors(validator, payload)
    match = channel.address.fullmatch(topic) if channel.address else None
    if match is not None and isinstance(payload, dict):
        # Records and status repeat the topic's names; a command request need not.
        for param, value in match.groupdict().items():
            if param in payload and payload[param] != value:
                problems.append(f"topic says {param}={value!r}, payload {payload[param]!r}")
    return channel, problems


def binary_errors(kind: Kind, body: bytes) -> list[str]:
    """What is wrong with the raw bytes of a binary message."""
    if not body:
        return ["empty binary payload"]
    if kind.content_type == "image/jpeg" and not (
        body.startswith(b"\xff\xd8\xff") and body.endswith(b"\xff\xd9")
    ):
        return [f"not a JPEG (starts {body[:4].hex()}, ends {body[-2:].hex()})"]
    return []


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# -- the document itself ---------------------------------------------------------------


def test_document_is_asyncapi_3_for_mqtt_5() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(doc["info"])
    assert any(
        s["protocol"] == "mqtt" and str(s["protocolVersion"]) == "5"
        for s in doc["servers"].values()
    )
    for node in walk(doc):
        if isinstance(node, dict) and "$ref" in node:
            pointer(node["$ref"])  # every reference resolves inside the document


def test_every_channel_message_is_used_by_an_operation() -> None:
    """The gateway sends on its own topics, receives commands and replies where asked."""
    doc = document()
    used: set[str] = set()
    for name, op in doc["operations"].items():
        channel_ref = op["channel"]["$ref"]
        command = "/cmd/" in pointer(channel_ref)["address"]
        assert op["action"] == ("receive" if command else "send"), name
        assert ("reply" in op) == command, f"{name}: a command is answered, nothing else is"
        assert op["bindings"]["mqtt"]["qos"] == 1, name
        for message in op["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), (name, message)
            used.add(message["$ref"])
        if command:
            reply_ref = op["reply"]["channel"]["$ref"]
            assert pointer(reply_ref)["address"] is None, f"{name}: the requester picks it"
            assert op["reply"]["address"]["location"].startswith("$message.header#/")
            for message in op["reply"]["messages"]:
                assert message["$ref"].startswith(f"{reply_ref}/messages/"), (name, message)
                used.add(message["$ref"])
    for name, channel in doc["channels"].items():
        params = set(re.findall(r"\{(\w+)\}", channel["address"] or ""))
        assert params == set(channel.get("parameters", {})), name
        for message in channel["messages"]:
            assert f"#/channels/{name}/messages/{message}" in used, f"{name}/{message} unused"


def example_topic(name: str, payload: dict[str, Any]) -> str:
    """Channel ``name``'s address, filled from the payload or the parameters' examples."""
    doc = document()
    channel = doc["channels"][name]
    values = {
        param: payload.get(param) or deref(ref)["examples"][0]
        for param, ref in channel.get("parameters", {}).items()
    }
    return str(channel["address"]).format(**values)


def test_schemas_are_valid_json_schema_and_examples_fit_them() -> None:
    doc = document()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
        Draft7Validator.check_schema(schema)  # AsyncAPI's default schema format
    for name, channel in channels().items():
        assert JSON in channel.messages or set(channel.messages) <= BINARY_TYPES, name
        for kind in channel.messages.values():
            where = f"{name}/{kind.name}"
            if kind.payload is None:  # raw bytes: a JSON example would say nothing
                payload_schema = deref(kind.doc["payload"])
                assert payload_schema["format"] == "binary", where
                assert payload_schema["contentMediaType"] == kind.content_type, where
                assert "examples" not in kind.doc, where
                continue
            assert kind.content_type == JSON, where
            assert kind.doc["examples"], where
            for example in kind.doc["examples"]:
                payload = example["payload"]
                if channel.address is None:
                    problems = payload_errors(kind.payload, payload)
                else:
                    problems = schema_errors(example_topic(name, payload), payload)[1]
                if kind.headers is not None:
                    problems += payload_errors(kind.headers, example["headers"])
                assert not problems, f"{where} example {example['name']}: {problems}"


# -- real messages ---------------------------------------------------------------------


CONTENT_TYPE_GAPS: frozenset[str] = frozenset()


def fits(
    messages: list[Message],
    content_type_gaps: frozenset[str] = frozenset(),
    replies: Replies = MappingProxyType({}),
) -> None:
    """Every message: payload valid for its topic's channel, content type and retain right.

    Binary messages are told apart by their content type (a channel has at most one
    message per content type); a channel in ``content_type_gaps`` may omit it, and its
    payload is then taken as JSON. ``replies`` names the channel of each response topic.
    """
    failures = []
    for m in messages:
        channel = channel_of(m.topic, replies)
        kind = channel.messages.get(m.content_type or "")
        problems = []
        if kind is None:
            if channel.name not in content_type_gaps or JSON not in channel.messages:
                expected = sorted(channel.messages)
                problems.append(f"content type {m.content_type!r}, not one of {expected}")
            kind = channel.messages.get(JSON)
        shown = f"{len(m.payload)} bytes"
        if kind is not None and kind.payload is None:
            problems += binary_errors(kind, m.payload)
        elif kind is not None:
            problems += schema_errors(m.topic, m.json(), replies)[1]
            shown = m.payload.decode()
        if m.retain and not channel.retain:
            problems.append("retained, but the channel is not")
        failures += [f"{m.topic}: {p}\n    payload {shown}" for p in problems]
    assert not failures, "\n".join(failures)


def reply_errors(parts: list[mqtt.MQTTMessage], correlation: bytes, channel: str) -> list[str]:
    """Every way a command's reply parts, with their MQTT 5 properties, break the contract."""
    problems = []
    lasts = []
    for number, part in enumerate(parts):
        props = part.properties
        content_type = getattr(props, "ContentType", None)
        headers = dict(getattr(props, "UserProperty", []))
        lasts.append(headers.get("last"))
        kind = channel_of(part.topic, {part.topic: channel}).messages.get(content_type or "")
        found: list[str] = []
        if kind is None:
            found.append(f"content type {content_type!r} is not a reply's")
        elif kind.payload is None:
            found += binary_errors(kind, bytes(part.payload))
        else:
            found += payload_errors(kind.payload, json.loads(part.payload))
        if kind is not None and kind.headers is not None:
            found += [f"user properties {p}" for p in payload_errors(kind.headers, headers)]
        if headers.get("part") != str(number):
            found.append(f"part {headers.get('part')!r}, sent as number {number}")
        if getattr(props, "CorrelationData", None) != correlation:
            found.append("correlation data not echoed")
        problems += [f"reply part {number}: {p}" for p in found]
    if lasts != ["false"] * (len(parts) - 1) + ["true"]:
        problems.append(f"only the final part may be last: {lasts}")
    return problems


def states(central: Central, topic: str) -> list[str]:
    """The ``state`` of each status or device state message on ``topic``, in arrival order."""
    bodies = [m.json() for m in central.snapshot() if m.topic == topic]
    return [b["state"] if topic.endswith("/status") else b["data"]["state"] for b in bodies]


async def after_shutdown(
    central: Central, devices: tuple[str, ...], replies: Replies = MappingProxyType({})
) -> tuple[list[Message], set[str]]:
    """Once central has the final ``offline`` and each device's ``stopped``: everything it
    received, checked with :func:`fits`, and the names of the channels it came on."""
    await central.wait_for(
        lambda c: (
            states(c, f"{ROOT}/status")[-1:] == ["offline"]
            and all(states(c, f"{ROOT}/device/{d}/state")[-1:] == ["stopped"] for d in devices)
        ),
        5,
    )
    messages = central.snapshot()
    fits(messages, CONTENT_TYPE_GAPS, replies)
    return messages, {channel_of(m.topic, replies).name for m in messages}


async def test_what_the_daemon_publishes_fits_the_document(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    link = tmp_path / "scale-1"
    config = tmp_path / "gateway.toml"
    device = {
        "id": "scale-1",
        "driver": "scale.toledo",
        "port": str(link),
        "telemetry_interval_s": 0.5,
        "stable_window_s": 0.6,
        "silence_timeout_s": 3.0,
    }
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    gateway = GatewayProcess(config, tmp_path)
    try:
        async with ScaleSimulator(protocol="toledo", link=link, trucks=2, speed=3.0, seed=3):
            await gateway.start()
            await central.wait_for(lambda c: len(c.records("event/weighing")) >= 2, 20)
            assert await gateway.stop(signal.SIGTERM) == 0
    finally:
        await gateway.ensure_stopped()

    _, seen = await after_shutdown(central, ("scale-1",))
    assert {"status", "deviceState", "weightReading", "weighingEvent"} <= seen
    assert {"online", "offline"} <= set(states(central, f"{ROOT}/status"))


def modbus_device(target: str) -> str:
    """A ``driver = "modbus"`` device on the ``sensors`` profile, plus a point it lacks.

    ``config_text`` cannot write ``[[devices.points]]`` tables, hence the TOML text.
    """
    return f"""
[[devices]]
id = "io-1"
driver = "modbus"
target = "{target}"
telemetry_interval_s = 0.5

[[devices.points]]
name = "temperature"
address = 0x0100
type = "float32"
unit = "degC"
interval_s = 0.5

[[devices.points]]
name = "heartbeat"
address = 0x0102
type = "uint16"
interval_s = 0.5
bits = {{ odd = 0 }}

[[devices.points]]
name = "vehicles"
address = 0x0000
function = "input"
type = "uint32"
interval_s = 0.5

[[devices.points]]
name = "barrier0_open"
address = 0
function = "discrete"
type = "bool"
interval_s = 0.5

[[devices.points]]
name = "missing"
address = 0x4000
interval_s = 0.5
"""


async def test_what_a_modbus_device_publishes_fits_the_document(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = tmp_path / "gateway.toml"
    state_topic = f"{ROOT}/device/io-1/state"
    gateway = GatewayProcess(config, tmp_path)
    try:
        async with ModbusSimulator(profile="sensors", tcp_port=0, seed=5) as sim:
            config.write_text(
                config_text(tmp_path / "data", broker.port)
                + modbus_device(f"tcp://127.0.0.1:{sim.port}")
            )
            await gateway.start()
            await central.wait_for(
                lambda c: (
                    len(c.records("reading/io-1/points")) >= 3 and "up" in states(c, state_topic)
                ),
                10,
            )
            assert await gateway.stop(signal.SIGTERM) == 0
    finally:
        await gateway.ensure_stopped()

    _, seen = await after_shutdown(central, ("io-1",))
    assert {"status", "deviceState", "pointsReading"} <= seen
    # What the test means to cover really was published: values of every type, a
    # named bit, a per-point error; a points summary and Modbus counters in the state.
    points = [r["data"] for r in central.records("reading/io-1/points")]
    assert any(isinstance(d["values"].get("temperature"), float) for d in points)
    assert any(isinstance(d["values"].get("barrier0_open"), bool) for d in points)
    assert any("heartbeat.odd" in d["bits"] for d in points)
    assert any(d["values"].get("missing", 0) is None and "missing" in d["errors"] for d in points)
    stopped = central.records("device/io-1/state")[-1]["data"]
    assert set(stopped["last_reading"]) == {"values", "errors"}
    assert {"requests", "timeouts", "crc_errors", "exceptions"} <= set(stopped["counters"])


async def test_an_outbox_eviction_report_fits_the_document(tmp_path: Path) -> None:
    processor = WeighingProcessor("scale-1", WeighingSettings(telemetry_interval_s=0))
    t0 = Stamp.now()
    drafts = [
        draft
        for i in range(600)
        for draft in processor.feed(
            WeightMeasured(
                weight=float(i * 10),
                unit="kg",
                stable=True,
                tare=0.0,
                at=Stamp(mono=t0.mono + i / 10, utc=t0.utc + timedelta(seconds=i / 10)),
            )
        )
    ]
    assert {d.priority for d in drafts} == {Priority.TELEMETRY}
    path = tmp_path / "outbox.sqlite3"
    site, gateway = ROOT.split("/")[1:]
    signer = ephemeral_signer()
    async with Outbox(path, site=site, gateway=gateway, max_bytes=64 * 1024, signer=signer) as box:
        for start in range(0, len(drafts), 50):
            await box.append(drafts[start : start + 50])
        assert box.stats.evicted_total > 0
    async with Outbox(path, site=site, gateway=gateway, max_bytes=64 * 1024, signer=signer) as box:
        records = await box.read_after(0, 10_000)
    reports = [r for r in records if r.topic == EVICTION_TOPIC]
    assert reports, "the outbox evicted without reporting it"
    failures = []
    for record in records:
        _, problems = schema_errors(f"{ROOT}/{record.topic}", json.loads(record.payload))
        failures += [f"{record.topic} seq {record.seq}: {p}" for p in problems]
    assert not failures, "\n".join(failures)


async def test_status_messages_carry_the_json_content_type(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = make_config(tmp_path, broker.port)
    async with (
        Outbox(
            config.outbox_path, site="s", gateway="g", max_bytes=10**6, signer=ephemeral_signer()
        ) as box,
        Uplink(config, box),
    ):
        await central.wait_for(lambda c: len(c.snapshot()) >= 1, 10)
    await central.wait_for(lambda c: len(c.snapshot()) >= 2, 5)  # online, then offline
    messages = central.snapshot()
    assert [m.json()["state"] for m in messages] == ["online", "offline"]
    fits(messages)


DROP = object()
"""In a change to an example: remove the key."""


def example_payload(channel: str, name: str) -> dict[str, Any]:
    """A copy of the document's example ``name`` of channel ``channel``'s JSON message."""
    examples = channels()[channel].json.doc["examples"]
    payload: dict[str, Any] = next(e["payload"] for e in examples if e["name"] == name)
    return copy.deepcopy(payload)


def message_errors(channel: str, payload: dict[str, Any]) -> list[str]:
    """Every way ``payload`` breaks channel ``channel``'s JSON message (replies too)."""
    if channels()[channel].address is None:
        return schema_errors(REPLY_TOPIC, payload, {REPLY_TOPIC: channel})[1]
    return schema_errors(example_topic(channel, payload), payload)[1]


def with_change(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``payload`` with the one field at ``path`` set to ``value`` (or removed: DROP)."""
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("channel", "example", "path", "value", "expected"),
    [
        ("status", "online", ("state",), "away", "state: 'away' is not one of"),
        # the example whose other fields fit any status but `complete`: only the enum rejects
        ("weighingEvent", "noStableWeight", ("data", "status"), "partial",
         "data/status: 'partial' is not one of"),
        ("deviceState", "up", ("data", "state"), "sleeping", "data/state: 'sleeping' is not one"),
        ("deviceState", "up", ("data", "storage"), "full", "data/storage: 'full' is not one of"),
        ("xrayError", "orphanImage", ("data", "reason"), "lost_image",
         "data/reason: 'lost_image' is not one of"),
        ("motionEvent", "update", ("data", "type"), "stop", "data/type: 'stop' is not one of"),
        ("xrayScan", "scan", ("data", "image", "format"), "bmp",
         "data/image/format: 'bmp' is not one of"),
        # alarms are never evicted, so a report never counts one
        ("outboxEvicted", "telemetryDropped", ("data", "by_priority"), {"alarm": 1},
         "data/by_priority: 'alarm' is not one of"),
        # the e-lock's alarm branch of a oneOf: no branch fits an event it does not list
        ("sealAlarm", "elockGpsLost", ("data", "event"), "door_open", "'door_open'"),
        # a reader's allowed state (event/seal) is no alarm (event/seal_alarm) and the
        # other way round: each channel's own list of events keeps them apart
        ("sealAlarm", "readerOpenedWithoutApproval", ("data", "event"), "opened_approved",
         "'opened_approved'"),
        ("sealEvent", "sealed", ("data", "event"), "wire_tampered",
         "data/event: 'wire_tampered' is not one of"),
        ("xrayOriginalRequest", "bySha256", ("scan_id",), "S1", "is valid under each of"),
        ("xrayOriginalRequest", "byScanId", ("scan_id",), DROP, "not valid under any of"),
        ("xrayOriginalRequest", "byScanId", ("chunk_bytes",), 512,
         "chunk_bytes: 512 is less than the minimum of 1024"),
        # without sha256 only the error reply's branch comes close, and it wants `error`
        ("xrayOriginalReply", "sent", ("sha256",), DROP, "status: 'error' was expected"),
        ("ocrRequest", "readLane", ("camera",), DROP, "'camera' is a required property"),
        ("ocrRequest", "readLane", ("region",), "door", "('region' was unexpected)"),
    ],
)  # fmt: skip
def test_the_schemas_reject_one_wrong_field_of_a_valid_message(
    channel: str, example: str, path: tuple[str, ...], value: Any, expected: str
) -> None:
    """Each case starts from a documented example that fits and changes one field only,
    so what rejects it is the rule for that field (an enum, a bound, oneOf, required)."""
    payload = example_payload(channel, example)
    assert message_errors(channel, payload) == [], "the starting point must fit"
    problems = message_errors(channel, with_change(payload, path, value))
    assert any(expected in p for p in problems), problems


def fit_drafts(drafts: Sequence[Outgoing]) -> list[tuple[str, dict[str, Any]]]:
    """Processor output as the outbox would publish it, checked against the document:
    records enveloped and validated, media by their bytes. Returns each record's channel
    name and ``data``, for the test to say which shapes it meant to cover."""
    site, gateway = ROOT.split("/")[1:]
    signer = ephemeral_signer()
    failures, records = [], []
    for seq, draft in enumerate(drafts, start=1):
        topic = f"{ROOT}/{draft.topic}"
        if isinstance(draft, MediaDraft):
            channel = channel_of(topic)
            problems = binary_errors(channel.messages[draft.content_type], draft.body)
        else:
            body = signer.sign(envelope(draft, seq=seq, record_id=uuid7(), prev=GENESIS,
                                        site=site, gateway=gateway))  # fmt: skip
            channel, problems = schema_errors(topic, json.loads(body))
            records.append((channel.name, draft.data))
        failures += [f"{draft.topic}: {p}" for p in problems]
    assert not failures, "\n".join(failures)
    return records


# -- seals, e-locks, X-ray scans, media and a command ------------------------------------

REPLY_TOPIC = f"{ROOT}/reply/central-1"  # under the reply prefix, as mqtt_request sends
"""Where :func:`tests.broker.mqtt_request` asks for its replies."""


XRAY_SETTLE_S = 0.4

SEAL_AND_SCAN_CHANNELS = {
    "sealAlarm",
    "sealEvent",
    "sealReading",
    "positionReading",
    "xrayScan",
    "xrayError",
    "media",
    "xrayOriginalRequest",
    "xrayOriginalReply",
}


def seal_and_scan_devices(
    tmp_path: Path, reader_link: Path, jt808_port: int
) -> list[dict[str, Any]]:
    """A gate reader on a pty, a JT/T 808 platform and an X-ray drop folder, all on one gateway."""
    (tmp_path / "drop").mkdir()
    return [
        {"id": "seal-gate-1", "driver": "eseal.reader", "port": str(reader_link),
         "poll_interval_s": 0.5, "silence_timeout_s": 0},
        {"id": "elock-gw", "driver": "eseal.jt808", "listen_host": "127.0.0.1",
         "listen_port": jt808_port, "seal_interval_s": 0, "terminals": ELOCKS},
        {"id": "xray-1", "driver": "xray.folder", "path": tmp_path / "drop",
         "manifest": tmp_path / "data" / "xray-1.jsonl", "settle_s": XRAY_SETTLE_S,
         "orphan_after_s": 2.0, "poll_s": 0.1, "preview_height": 128},
    ]  # fmt: skip


def seen_everything(c: Central, reader: EsealSimulator, scans: XraySimulator) -> bool:
    """Central has each kind of record the simulators' scenarios call for."""
    alarms = c.records("event/seal_alarm")
    alerts = [s for s in reader.sent if isinstance(s, SealAlert)]
    failing = [s for s in scans.truth if s.expected is not Expected.COMPLETE]
    complete = [s for s in scans.truth if s.expected is Expected.COMPLETE]
    return (
        len([a for a in alarms if a["data"]["source"] == "reader"]) >= sum(a.alarm for a in alerts)
        and any(a["data"]["source"] == "jt808" for a in alarms)
        and len(c.records("event/seal")) >= sum(not a.alarm for a in alerts)
        and {r["data"]["in_range"] for r in c.records("seal-gate-1/seal")} == {True, False}
        and len(c.records("elock-gw/position")) >= 3
        and len(c.records("event/xray_scan")) >= len(complete)
        and len(c.records("event/xray_error")) >= len(failing)
    )


async def test_seals_elocks_scans_media_and_originals_fit_the_document(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    link = tmp_path / "seal-gate-1"
    jt808_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(
            tmp_path / "data", broker.port, seal_and_scan_devices(tmp_path, link, jt808_port)
        )
    )
    gateway = GatewayProcess(config, tmp_path)
    reader = EsealSimulator(  # the manual's plain alerts: out-of-order times need times
        protocol="reader", link=link, events=40,
        faults=sorted(PROTOCOL_FAULTS["reader"] - TIMED_FAULTS), seed=7, speed=8,
    )  # fmt: skip
    elock = EsealSimulator(
        protocol="jt808", tcp_port=jt808_port, events=20, faults=sorted(PROTOCOL_FAULTS["jt808"]),
        seed=9, speed=8, register=True, auth_code=AUTH_CODE,
    )  # fmt: skip
    faults = [f for f in FAULTS if f != "done_marker"]
    scans = XraySimulator(
        dir=tmp_path / "drop", scans=len(faults) + 2, faults=faults, seed=42, interval_s=0.05,
        settle_s=XRAY_SETTLE_S, chunk_bytes=16 * 1024, chunk_interval_s=0.002, size=(320, 160),
    )  # fmt: skip
    try:
        async with reader:  # the pty exists before the gateway opens it
            await gateway.start()
            async with elock, scans:  # the e-lock dials the running gateway
                await asyncio.wait_for(
                    asyncio.gather(reader.finished.wait(), elock.finished.wait(),
                                   scans.finished.wait()), 30,
                )  # fmt: skip
            await central.wait_for(lambda c: seen_everything(c, reader, scans), 30)
        wanted = central.records("event/xray_scan")[0]["data"]["image"]
        command = f"{ROOT}/cmd/xray_original"
        request = {"sha256": wanted["sha256"], "chunk_bytes": 4096}
        sent = await mqtt_request(broker.port, command, request)
        refused = await mqtt_request(broker.port, command, {"sha256": "0" * 64})
        assert await gateway.stop(signal.SIGTERM) == 0
    finally:
        await gateway.ensure_stopped()
    devices = ("seal-gate-1", "elock-gw", "xray-1")
    messages, seen = await after_shutdown(central, devices, {REPLY_TOPIC: "xrayOriginalReply"})
    assert not SEAL_AND_SCAN_CHANNELS - seen, f"never seen: {SEAL_AND_SCAN_CHANNELS - seen}"
    # Both alarm sources, and a reader's own alert, were really exercised.
    alarms = central.records("event/seal_alarm")
    assert {a["data"]["source"] for a in alarms} == {"reader", "jt808"}
    reader_alerts = [a["data"] for a in alarms if "sequence" in a["data"]]
    assert reader_alerts, "a reader's own alert"
    assert all(a["event_time"] is None and a["sequence"] is None for a in reader_alerts), (
        "the manual's plain record: no event time, no EV#"
    )
    # Media: the bytes of each preview arrived on the topic its record names.
    media = {m.topic.rsplit("/", 1)[1]: m.payload for m in messages if "/media/" in m.topic}
    for record in central.records("event/xray_scan"):
        preview = record["data"]["preview"]
        body = media[preview["media_id"]]
        assert hashlib.sha256(body).hexdigest() == preview["sha256"]
        assert len(body) == preview["bytes"]
    # The command: chunks then the result, or a single error, as documented.
    problems = reply_errors(sent, b"req-42", "xrayOriginalReply")
    problems += reply_errors(refused, b"req-42", "xrayOriginalReply")
    assert not problems, "\n".join(problems)
    assert [getattr(p.properties, "ContentType", None) for p in sent[-2:]] == [OCTETS, JSON]
    assert json.loads(sent[-1].payload)["sha256"] == wanted["sha256"]
    assert len(refused) == 1 and json.loads(refused[0].payload)["status"] == "error"


def test_seal_and_scan_records_the_simulators_rarely_make_fit_the_document() -> None:
    """Shapes the seeded scenarios above need not produce: an e-lock's alarms without a
    device time, a reader alert in the gateway's own extended record (event time, EV#;
    the simulator sends the manual's plain one), a tamper seen only in a plain read, a
    scan whose sidecar left everything optional out."""
    t0 = Stamp.now()
    sealed_at = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    seals = SealProcessor("seal-gate-1", interval_s=60)
    elocks = SealProcessor("elock-gw", interval_s=60)
    jpeg = cv2.imencode(".jpg", np.zeros((16, 24), np.uint8))[1].tobytes()
    drafts = [
        *seals.feed(SealRead(at=t0, seal_id="HG0012ABCD", opened=False, tampered=True,
                             battery_pct=None, seal_time=sealed_at, reader=2)),
        *seals.feed(SealAlert(at=t0, seal_id="HG0012ABCD", event="closed", opened=False,
                              tampered=True, event_time=sealed_at, sequence=255, reader=2)),
        *seals.feed(SealRead(at=t0, seal_id="HG0099BEEF", opened=True, tampered=False,
                             battery_pct=100, seal_time=sealed_at, reader=2, reader_status=7)),
        *elocks.feed(PositionReported(at=t0, terminal="000000000001", serial=65535, lat=0.0,
                                      lon=0.0, altitude_m=0, speed_kmh=0.0, heading_deg=0,
                                      device_time=None, located=False,
                                      flags=frozenset({"gnss_fault", "lock_cut", "emergency"}),
                                      alarms=frozenset({"gnss_fault", "lock_cut", "emergency"}),
                                      alarm_bits=0x20011, status_bits=0)),
        *ScanProcessor("xray-1").feed(ScanCompleted(
            at=t0, stem="s1", scan_id="S1", scanner_id=None, lane=None, scan_time=None,
            operator=None, containers=(), image_name="s1.png", image_bytes=1, image_mtime_ns=0,
            image_sha256="1" * 64, sidecar_name="s1.json", sidecar_sha256="2" * 64, width=24,
            height=16, bit_depth=8, image_format="png", preview_jpeg=jpeg,
            preview_sha256=hashlib.sha256(jpeg).hexdigest(), preview_width=24,
            preview_height=16, duplicate_of="3" * 64, problems=("sidecar time missing",),
        )),
        *ScanProcessor("xray-1").feed(ScanFailed(at=t0, stem="s2", reason="bad_sidecar",
                                                 message="s2.xml: not XML", image_name="s2.png",
                                                 image_sha256="4" * 64, sidecar_name="s2.xml",
                                                 sidecar_sha256="5" * 64)),
    ]  # fmt: skip
    shapes = {(name, d.get("event"), d.get("event_time")) for name, d in fit_drafts(drafts)}
    assert {
        ("sealAlarm", "tampered", None),  # from a plain read: no event time
        ("sealAlarm", "opened_without_approval", None),
        ("sealAlarm", "closed", rfc3339(sealed_at)),  # any event of a tampered seal
        ("sealAlarm", "gps_lost", None),  # the e-lock sent no time
        ("sealAlarm", "emergency", None),
        ("positionReading", None, None),
    } <= shapes


# -- cameras, OCR and cmd/ocr ----------------------------------------------------------

CAMERA_AND_OCR_CHANNELS = {
    "deviceState",
    "motionEvent",
    "stillReading",
    "ocrEvent",
    "media",
    "ocrRequest",
    "ocrReply",
}


def ocr_kinds(c: Central, trigger: str) -> set[str]:
    """The kinds of ``event/ocr`` results central has for passages of ``trigger``."""
    return {r["data"]["kind"] for r in c.records("event/ocr") if r["data"]["trigger"] == trigger}


def media_refs(central: Central) -> dict[str, dict[str, Any]]:
    """media_id -> what the record that published it says about it (its ``data`` part)."""
    refs: dict[str, dict[str, Any]] = {}
    for record in central.records("event/motion") + central.records("/still"):
        if record["data"]["snapshot"] is not None:
            refs[record["data"]["snapshot"]["media_id"]] = record["data"]["snapshot"]
    for record in central.records("event/ocr"):
        if "media_id" in record["data"]:
            refs[record["data"]["media_id"]] = record["data"]
    return refs


def camera_seen_everything(c: Central) -> bool:
    """A motion event ended with its snapshot delivered, stills came, both kinds were read."""
    ends = [r["data"] for r in c.records("event/motion") if r["data"]["type"] == "end"]
    topics = {m.topic for m in c.snapshot()}
    return (
        any(e["snapshot"] and f"{ROOT}/media/{e['snapshot']['media_id']}" in topics for e in ends)
        and len(c.records("reading/cam-lane/still")) >= 2
        and ocr_kinds(c, "motion") == {"container", "plate"}
    )


async def test_cameras_ocr_and_ocr_commands_fit_the_document(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    """One lane camera with a container and a plate region: a truck drives in and stops."""
    sim = CameraSimulator(serve="mjpeg", seed=5, fps=5.0, first_truck_s=1.0, dwell_s=10.0,
                          truck_every_s=3600)  # fmt: skip
    first = sim.scene.plan.get(0)
    assert first is not None
    truck: Any = sim.scene.truck_truth(first)
    config = tmp_path / "gateway.toml"
    gateway = GatewayProcess(config, tmp_path)
    async with sim:
        device = camera("cam-lane", sim, snapshot_on_start=True, still_interval_s=0.5,
                        stats_interval_s=0.5, ocr_frames=3, ocr_interval_s=0.4)  # fmt: skip
        regions = region("door", "container", truck["containers"][0]["bbox"], 24)
        regions += region("cab-plate", "plate", truck["plate"]["bbox"], 12)
        config.write_text(config_text(tmp_path / "data", broker.port, [device]) + regions)
        try:
            await gateway.start(timeout_s=60)  # the OCR worker loads its models first
            await central.wait_for(camera_seen_everything, 40)
            command = f"{ROOT}/cmd/ocr"
            taken = await mqtt_request(broker.port, command, {"camera": "cam-lane"})
            refused = await mqtt_request(broker.port, command, {"camera": "cam-gone"})
            await central.wait_for(lambda c: bool(ocr_kinds(c, "command")), 30)
            assert await gateway.stop(signal.SIGTERM) == 0
        finally:
            await gateway.ensure_stopped()
    messages, seen = await after_shutdown(central, ("cam-lane",), {REPLY_TOPIC: "ocrReply"})
    assert not CAMERA_AND_OCR_CHANNELS - seen, f"never seen: {CAMERA_AND_OCR_CHANNELS - seen}"
    # What JSON Schema cannot say: each record's camera is its device, and every JPEG
    # on the media topic is the one a record names, byte for byte.
    camera_records = [*central.records("event/motion"), *central.records("event/ocr"),
                      *central.records("/still")]  # fmt: skip
    assert {(r["device"], r["data"]["camera"]) for r in camera_records} == {("cam-lane",) * 2}
    media = {m.topic.rsplit("/", 1)[1]: m.payload for m in messages if "/media/" in m.topic}
    refs = media_refs(central)
    assert set(media) == set(refs), "every image is named by one record, and arrived"
    for media_id, ref in refs.items():
        assert hashlib.sha256(media[media_id]).hexdigest() == ref["sha256"]
        assert len(media[media_id]) == ref.get("bytes", len(media[media_id]))
    assert any(d["snapshot"] for d in (r["data"] for r in central.records("event/motion"))
               if d["type"] == "start"), "snapshot_on_start"  # fmt: skip
    counters = central.records("device/cam-lane/state")[-1]["data"]["counters"]
    assert {"frames_in", "frames_analysed", "fps_in"} <= set(counters)
    # The command: one JSON part either way, as documented.
    problems = reply_errors(taken, b"req-42", "ocrReply")
    problems += reply_errors(refused, b"req-42", "ocrReply")
    assert not problems, "\n".join(problems)
    assert json.loads(taken[0].payload) == {
        "status": "ok", "camera": "cam-lane", "results_on": "event/ocr"
    }  # fmt: skip
    assert len(refused) == 1 and json.loads(refused[0].payload)["status"] == "error"


def crop(kind: Literal["container", "plate"], name: str) -> RegionCrop:
    """A grey crop of region ``name``: the pixels are never read here, only published."""
    image = np.full((40, 120, 3), 128, np.uint8)
    return RegionCrop(region=name, kind=kind, image=image, jpeg=encode_snapshot(image, 40, 70))


def test_camera_and_ocr_records_the_simulator_rarely_makes_fit_the_document() -> None:
    """Shapes a clean simulated lane need not produce: a motion update without a snapshot,
    a container region where no code (or no check digit) was read, a plate region with
    no reading of a plate's shape, a region whose every crop was lost, and the device
    state of a camera after each kind of reading."""
    t0 = Stamp.now()
    picture = crop("plate", "wall").jpeg
    cameras = CameraProcessor("cam-lane")
    event = str(uuid.uuid4())
    drafts: list[Outgoing] = [
        *cameras.feed(MotionObserved(at=t0, phase="update", event_id=event, boxes=(),
                                     score=0.0, snapshot=None, started_at=t0, frames=0)),
        *cameras.feed(MotionObserved(at=t0, phase="end", event_id=event,
                                     boxes=((0.0, 0.0, 1.0, 1.0),), score=1.0,
                                     snapshot=None, started_at=t0, frames=7)),
        *cameras.feed(StillCaptured(at=t0, snapshot=picture)),
    ]  # fmt: skip
    unchecked = ContainerCode(
        code="MSKU123456?",
        raw="MSKU123456",
        confidence=0.61,
        check_digit_ok=False,
        owner_known=True,
        verified=False,
    )
    unknown = ContainerCode(code="QQQU1234561", raw="QQQU1234561", confidence=0.9,
                            check_digit_ok=False, owner_known=False, verified=False,
                            size_type="22G1")  # fmt: skip
    nothing = ContainerReading(codes=(), lines=())
    readings: dict[str, tuple[Literal["container", "plate"], list[Any]]] = {
        "door-blank": ("container", [nothing, None, nothing]),
        "door-no-digit": ("container", [ContainerReading(codes=(unchecked,), lines=()), None]),
        "door-two": ("container", [ContainerReading(codes=(unchecked, unknown), lines=())]),
        "plate-mud": ("plate", [parse_plate(["XX"], 0.3), None, parse_plate(["7 7"], 0.2)]),
        "plate-lost": ("plate", []),
        "door-lost": ("container", []),
    }
    service = OcrService(emit=lambda drafts: asyncio.sleep(0))  # never started: no worker
    passage = _Passage("cam-lane", str(uuid.uuid4()), "weighing:scale-1", 3, started=t0)
    for name, (kind, found) in readings.items():
        region_ = _Region(kind)
        for reading in found:
            region_.add(reading, crop(kind, name))
        drafts += service._decide(passage, name, region_)
    health = DeviceHealth(device="cam-lane", driver="camera.opencv")
    stats = CameraStats(at=t0, width=0, height=0, codec="", fps_in=0.0, fps_analysed=0.0,
                        frames_in=0, frames_analysed=0, frames_dropped=0, reconnects=0,
                        recalibrations=0)  # fmt: skip
    burst = CropsCaptured(at=t0, passage_id=passage.passage_id, trigger="command", frame=1,
                          frames=3, crops=(crop("plate", "cab-plate"),))  # fmt: skip
    motion = MotionObserved(at=t0, phase="start", event_id=event, boxes=((0.1, 0.2, 0.3, 0.4),),
                            score=0.25, snapshot=picture, started_at=t0, frames=1)  # fmt: skip
    for reading in (stats, burst, motion, StillCaptured(at=t0, snapshot=picture)):
        health.last_reading, health.last_reading_at = reading.summary(), t0.utc
        health.counters = DriverCounters(
            readings=1, extra={"frames_in": 0, "fps_in": 0, "reconnects": 2}
        ).as_dict()
        drafts.append(health.draft())

    shapes = {
        (name, d.get("kind") or d.get("type"), d.get("text"), "media_id" in d)
        for name, d in fit_drafts(drafts)
    }
    assert {
        ("motionEvent", "update", None, False),
        ("ocrEvent", "container", None, True),  # read, but no code in it
        ("ocrEvent", "container", None, False),  # every crop lost
        ("ocrEvent", "container", "MSKU123456?", True),  # no check digit read
        ("ocrEvent", "plate", None, True),  # nothing with a plate's shape
        ("ocrEvent", "plate", None, False),
    } <= shapes


@pytest.mark.parametrize(
    ("example", "change"),
    [
        ("containerVerified", {"country": "VN"}),  # a plate's field
        ("containerVerified", {"text": "MSKU12345"}),
        ("containerVerified", {"text": "msku1234565"}),
        ("containerVerified", {"check_digit_ok": DROP}),
        ("containerVerified", {"size_type": "45X1"}),
        ("nothingRead", {"votes": 0}),  # nothing read has no code fields
        ("nothingRead", {"verified": True}),
        ("plateVerified", {"votes": 3}),  # a container's field
        ("plateVerified", {"colour": "purple"}),
        ("plateVerified", {"text": None}),  # no plate read: no raw, country, ...
        ("plateVerified", {"country": None}),
        ("plateVerified", {"sha256": DROP}),  # the crop is named by both or neither
        ("plateVerified", {"media_id": DROP}),
        ("plateVerified", {"trigger": "scale"}),
        ("plateVerified", {"kind": "barcode"}),
    ],
)
def test_the_ocr_schema_keeps_containers_and_plates_apart(
    example: str, change: dict[str, Any]
) -> None:
    payload = example_payload("ocrEvent", example)
    assert message_errors("ocrEvent", payload) == [], "the starting point must fit"
    ((key, value),) = change.items()
    assert message_errors("ocrEvent", with_change(payload, ("data", key), value))
