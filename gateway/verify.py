"""Central's check of what a gateway published: authentic records in a whole chain.

Usable without a gateway or its config: ``gatewayctl verify FILE [--public-key KEY]``,
or from Python per record (:func:`check_record`) or per stream (:func:`verify_stream`).

A stream is a sequence of :class:`Message` (topic, exact payload bytes, MQTT 5 user
properties, retain flag), as a subscriber received them. Records are the enveloped
messages (everything but ``status``, ``key``, ``media/…`` and command replies, which
are skipped and counted). For each record it checks:

- **signature**: the ``sig`` member against the gateway's public key
  (:mod:`gateway.signing`): missing is ``unsigned``, wrong is ``bad_signature`` (altered
  after signing, or forged by someone without the key);
- **order**: ``seq`` one more than the last one seen (``reordered`` if it went back;
  the same ``seq`` again is ``duplicate`` when the bytes are the same, which
  at-least-once delivery allows, and ``conflict`` when they differ);
- **gaps**: missing seqs are ``gap``, unless an authentic ``event/outbox_evicted``
  report in the stream lists them (then counted as evicted, announced gaps);
- **chain**: when the previous seq was received, ``prev`` must be the SHA-256 of its
  payload (``chain_break`` otherwise).

Retained messages (device state delivered at subscribe time) are older than the live
stream: they are checked for their signature only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.signing import KEY_SCHEMA, public_key_from_text, signature_valid

EVICTION_SCHEMA = "outbox_evicted/1"
FAILING = frozenset(
    {"unsigned", "bad_signature", "reordered", "conflict", "gap", "chain_break", "not_json"}
)
"""Problem kinds that make a stream fail; ``duplicate`` is allowed by at-least-once."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a subscriber received it."""

    topic: str
    payload: bytes
    properties: dict[str, str] = field(default_factory=dict)
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with one record (or a run of missing ones)."""

    kind: str
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "-"
        return f"{self.kind:14s} {where:>12s}  {self.detail}"


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """What one record says about itself."""

    seq: int
    prev: str
    digest: str
    schema: str
    signed: bool | None
    """``True`` authentic, ``False`` bad signature, ``None`` unsigned."""
    data: dict[str, Any]


def is_record_topic(topic: str) -> bool:
    """Whether messages on ``topic`` are enveloped records.

    Not records: ``{root}/status``, ``{root}/key``, ``{root}/media/{id}`` and anything
    under ``{root}/reply/`` or ``{root}/cmd/``. A level named like those after
    ``device/`` or ``reading/`` is a device id, whose topics are records.
    """
    levels = topic.split("/")
    if levels[-1] in {"status", "key"}:
        return False
    for n, level in enumerate(levels[1:-1], start=1):
        if level == "media" and levels[n - 1] not in {"device", "reading"}:
            return False
    for n, level in enumerate(levels[1:], start=1):
        if level in {"reply", "cmd"} and levels[n - 1] not in {"device", "reading"}:
            return False
    return True


def check_record(payload: bytes, key: Ed25519PublicKey) -> RecordCheck:
    """Parse and authenticate one record; raises ``ValueError`` if it is no envelope."""
    envelope = json.loads(payload)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("seq"), int):
        raise ValueError("not an enveloped record (no integer seq)")
    data = envelope.get("data")
    return RecordCheck(
        seq=envelope["seq"],
        prev=str(envelope.get("prev", "")),
        digest=hashlib.sha256(payload).hexdigest(),
        schema=str(envelope.get("schema", "")),
        signed=signature_valid(payload, key),
        data=data if isinstance(data, dict) else {},
    )


@dataclass(slots=True)
class Report:
    """The outcome of a stream."""

    records: int = 0
    authentic: int = 0
    skipped: int = 0
    """Messages that are not records (status, key, media, replies)."""
    evicted: int = 0
    """Missing seqs that an authentic eviction report announced."""
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every record authentic and the chain whole (announced evictions allowed)."""
        return not any(p.kind in FAILING for p in self.problems)


@dataclass(slots=True)
class _Stream:
    key: Ed25519PublicKey
    report: Report = field(default_factory=Report)
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)
    """seq -> (digest, prev) of every live record received."""
    evicted: set[int] = field(default_factory=set)
    holes: list[int] = field(default_factory=list)
    last: int | None = None

    def problem(self, kind: str, seq: int | None, detail: str) -> None:
        self.report.problems.append(Problem(kind, seq, detail))

    def add(self, message: Message) -> None:
        if not is_record_topic(message.topic):
            self.report.skipped += 1
            return
        self.report.records += 1
        try:
            record = check_record(message.payload, self.key)
        except ValueError as exc:
            self.problem("not_json", None, f"{message.topic}: {exc}")
            return
        if record.signed is None:
            self.problem("unsigned", record.seq, f"{message.topic}: no sig member")
        elif not record.signed:
            self.problem("bad_signature", record.seq, f"{message.topic}: altered or forged")
        else:
            self.report.authentic += 1
            if record.schema == EVICTION_SCHEMA:
                for low, high in record.data.get("seq_ranges", []):
                    self.evicted.update(range(int(low), int(high) + 1))
        if not message.retain:
            self.follow(record, message.topic)

    def follow(self, record: RecordCheck, topic: str) -> None:
        seq = record.seq
        if seq in self.seen:
            if self.seen[seq][0] == record.digest:
                self.problem("duplicate", seq, f"{topic}: received again (same bytes)")
            else:
                self.problem("conflict", seq, f"{topic}: a different record with this seq")
            return
        report = self.report
        if self.last is not None and seq < self.last:
            self.problem("reordered", seq, f"{topic}: after seq {self.last}")
        elif self.last is not None and seq > self.last + 1:
            self.holes.extend(range(self.last + 1, seq))
        before = self.seen.get(seq - 1)
        if before is not None and record.prev != before[0]:
            self.problem("chain_break", seq, f"prev does not match seq {seq - 1}'s payload")
        after = self.seen.get(seq + 1)  # arrived first: its link to this one is checked now
        if after is not None and after[1] != record.digest:
            self.problem("chain_break", seq + 1, f"prev does not match seq {seq}'s payload")
        self.seen[seq] = (record.digest, record.prev)
        self.last = seq if self.last is None else max(self.last, seq)
        report.first_seq = seq if report.first_seq is None else min(report.first_seq, seq)
        report.last_seq = self.last

    def finish(self) -> Report:
        missing = [s for s in self.holes if s not in self.seen]
        announced = [s for s in missing if s in self.evicted]
        self.report.evicted = len(announced)
        for low, high in _runs([s for s in missing if s not in self.evicted]):
            span = f"seq {low}" if low == high else f"seqs {low}-{high}"
            self.problem("gap", low, f"{span} never arrived ({high - low + 1} missing)")
        self.report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
        return self.report


def _runs(seqs: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted ``seqs``."""
    start = prev = None
    for s in sorted(seqs):
        if prev is not None and s == prev + 1:
            prev = s
            continue
        if start is not None and prev is not None:
            yield start, prev
        start = prev = s
    if start is not None and prev is not None:
        yield start, prev


def verify_stream(messages: Iterable[Message], key: Ed25519PublicKey) -> Report:
    """Check every record of ``messages`` in the order received."""
    stream = _Stream(key)
    for message in messages:
        stream.add(message)
    return stream.finish()


def read_capture(path: Path) -> Iterator[Message]:
    """The messages of a JSON-lines capture (see ``gatewayctl verify --help``).

    Raises ``ValueError`` naming the line that is not a message.
    """
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                topic, payload = item["topic"], item["payload"]
                if not isinstance(topic, str) or not isinstance(payload, str):
                    raise TypeError("topic and payload must be strings")
                properties = item.get("properties") or {}
                if not isinstance(properties, dict):
                    raise TypeError("properties must be an object")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a captured message ({exc})") from None
            yield Message(
                topic,
                payload.encode("utf-8"),
                {str(k): str(v) for k, v in properties.items()},
                bool(item.get("retain", False)),
            )


def key_from_capture(messages: Iterable[Message]) -> Ed25519PublicKey | None:
    """The public key a capture carries on ``{root}/key``, if any."""
    for message in messages:
        if message.topic.endswith("/key"):
            try:
                return public_key_from_text(message.payload.decode())
            except ValueError:
                continue
    return None


__all__ = [
    "KEY_SCHEMA",
    "Message",
    "Problem",
    "RecordCheck",
    "Report",
    "check_record",
    "key_from_capture",
    "read_capture",
    "verify_stream",
]
