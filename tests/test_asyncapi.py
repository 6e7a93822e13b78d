"""docs/asyncapi.yaml: well formed, and what the gateway really publishes fits its schemas."""

from __future__ import annotations

import functools
import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.outbox import EVICTION_TOPIC, Outbox
from gateway.readings import Stamp, WeightMeasured
from gateway.records import Priority
from gateway.uplink import Uplink
from gateway.weighing import WeighingProcessor, WeighingSettings
from simulators.modbus import ModbusSimulator
from simulators.scale import ScaleSimulator
from tests.broker import Central, Message, Mosquitto
from tests.helpers import config_text, make_config
from tests.process import GatewayProcess
from tests.test_daemon import ROOT

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
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

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        datetime.fromisoformat(value)  # a real calendar date and time
        return RFC3339.fullmatch(value) is not None

    return checker


@dataclass(frozen=True)
class Channel:
    name: str
    address: re.Pattern[str]
    content_type: str
    retain: bool
    validator: Draft202012Validator


@functools.cache
def channels() -> dict[str, Channel]:
    """Each channel: its address as a regex, its message's schema, and the operation's flags."""
    doc = document()
    registry = Registry().with_resource(DOC_URI, Resource(contents=doc, specification=DRAFT202012))
    checker = format_checker()
    out: dict[str, Channel] = {}
    for name, channel in doc["channels"].items():
        (message_name,) = channel["messages"]
        message_ref = channel["messages"][message_name]["$ref"]
        message = pointer(message_ref)
        (operation,) = [
            op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{name}"
        ]
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(channel["address"]))
        out[name] = Channel(
            name=name,
            address=re.compile(regex),
            content_type=message.get("contentType", doc["defaultContentType"]),
            retain=operation["bindings"]["mqtt"]["retain"],
            validator=Draft202012Validator(
                {"$ref": f"{DOC_URI}{message_ref}/payload"},
                registry=registry,
                format_checker=checker,
            ),
        )
    return out


def schema_errors(topic: str, payload: Any) -> tuple[Channel, list[str]]:
    """The channel ``topic`` belongs to, and every way ``payload`` breaks the contract."""
    matches = [(c, m) for c in channels().values() if (m := c.address.fullmatch(topic)) is not None]
    assert len(matches) == 1, f"{topic}: matches {len(matches)} channels of the document"
    channel, match = matches[0]
    problems = []
    for error in channel.validator.iter_errors(payload):
        cause = best_match([error])  # inside oneOf/anyOf: the branch that came closest
        where = "/".join(map(str, cause.absolute_path)) or "<root>"
        problems.append(f"{where}: {cause.message[:300]}")
    if isinstance(payload, dict):
        for param, value in match.groupdict().items():
            if payload.get(param) != value:
                problems.append(f"topic says {param}={value!r}, payload {payload.get(param)!r}")
    return channel, problems


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


def test_every_channel_message_is_sent_by_an_operation() -> None:
    doc = document()
    sent: set[str] = set()
    for name, op in doc["operations"].items():
        assert op["action"] == "send", name
        channel_ref = op["channel"]["$ref"]
        assert op["bindings"]["mqtt"]["qos"] == 1, name
        for message in op["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), (name, message)
            sent.add(message["$ref"])
    for name, channel in doc["channels"].items():
        params = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert params == set(channel.get("parameters", {})), name
        for message in channel["messages"]:
            assert f"#/channels/{name}/messages/{message}" in sent, f"{name}/{message} unsent"


def test_schemas_are_valid_json_schema_and_examples_fit_them() -> None:
    doc = document()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
        Draft7Validator.check_schema(schema)  # AsyncAPI's default schema format
    for name, channel in doc["channels"].items():
        for message in map(deref, channel["messages"].values()):
            assert message["contentType"] == "application/json", name
            assert message["examples"], name
            for example in message["examples"]:
                topic = channel["address"].format(
                    site=example["payload"]["site"],
                    gateway=example["payload"]["gateway"],
                    device=example["payload"].get("device"),
                )
                _, problems = schema_errors(topic, example["payload"])
                assert not problems, f"{name} example {example['name']}: {problems}"


# -- real messages ---------------------------------------------------------------------


CONTENT_TYPE_GAPS: frozenset[str] = frozenset()


def fits(messages: list[Message], content_type_gaps: frozenset[str] = frozenset()) -> None:
    """Every message: payload valid for its topic's channel, content type and retain right."""
    failures = []
    for m in messages:
        channel, problems = schema_errors(m.topic, m.json())
        if m.content_type != channel.content_type and channel.name not in content_type_gaps:
            problems.append(f"content type {m.content_type!r}, not {channel.content_type!r}")
        if m.retain and not channel.retain:
            problems.append("retained, but the channel is not")
        failures += [f"{m.topic}: {p}\n    payload {m.payload.decode()}" for p in problems]
    assert not failures, "\n".join(failures)


def states(central: Central, topic: str) -> list[str]:
    """The ``state`` of each status or device state message on ``topic``, in arrival order."""
    bodies = [m.json() for m in central.snapshot() if m.topic == topic]
    return [b["state"] if topic.endswith("/status") else b["data"]["state"] for b in bodies]


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

    await central.wait_for(
        lambda c: (
            states(c, f"{ROOT}/status")[-1:] == ["offline"]
            and states(c, f"{ROOT}/device/scale-1/state")[-1:] == ["stopped"]
        ),
        5,
    )
    messages = central.snapshot()
    fits(messages, CONTENT_TYPE_GAPS)
    seen = {schema_errors(m.topic, m.json())[0].name for m in messages}
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

    await central.wait_for(
        lambda c: (
            states(c, f"{ROOT}/status")[-1:] == ["offline"]
            and states(c, state_topic)[-1:] == ["stopped"]
        ),
        5,
    )
    messages = central.snapshot()
    fits(messages, CONTENT_TYPE_GAPS)
    seen = {schema_errors(m.topic, m.json())[0].name for m in messages}
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
    async with Outbox(path, site=site, gateway=gateway, max_bytes=64 * 1024) as box:
        for start in range(0, len(drafts), 50):
            await box.append(drafts[start : start + 50])
        assert box.stats.evicted_total > 0
    async with Outbox(path, site=site, gateway=gateway, max_bytes=64 * 1024) as box:
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
        Outbox(config.outbox_path, site="s", gateway="g", max_bytes=10**6) as box,
        Uplink(config, box),
    ):
        await central.wait_for(lambda c: len(c.snapshot()) >= 1, 10)
    await central.wait_for(lambda c: len(c.snapshot()) >= 2, 5)  # online, then offline
    messages = central.snapshot()
    assert [m.json()["state"] for m in messages] == ["online", "offline"]
    fits(messages)


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (f"{ROOT}/status", {"schema": "status/1", "state": "away", "ts": "x"}),
        (f"{ROOT}/event/weighing", {"schema": "weighing/1"}),
    ],
)
def test_the_schemas_do_reject(topic: str, payload: dict[str, Any]) -> None:
    _, problems = schema_errors(topic, payload)
    assert problems
