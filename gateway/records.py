"""Records: what the gateway publishes, in the envelope central systems rely on.

A processor emits a :class:`Draft` (what happened, where it goes, how important);
the outbox turns it into a :class:`Record` by giving it its place in the gateway's
sequence (``seq``), a unique ``id`` and the hash chain link (``prev``), in the same
transaction that makes it durable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


def uuid7() -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits; sorts by time."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Priority(IntEnum):
    """How much a record matters when the outbox must drop something.

    The outbox evicts the lowest priority first and never evicts ``ALARM``.
    """

    TELEMETRY = 10
    """Periodic readings (weight every second): the next one replaces it."""
    STATE = 20
    """Device health snapshots."""
    EVENT = 30
    """Condensed events: weighings, scans, OCR results."""
    ALARM = 40
    """Tamper and open alarms: never evicted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A record before it has a place in the sequence.

    Attributes:
        topic: topic below the gateway's root, e.g. ``event/weighing``.
        schema: payload schema name and version, e.g. ``weighing/1``.
        device: the device it is about, if any.
        ts: when it happened (from the device reading, not publish time).
        data: the payload; must be JSON-serialisable.
        priority: eviction class.
        retain: publish with the MQTT retain flag (device state).
        id: the record's ``id`` (UUIDv7), chosen when the draft is made so that a fact
            about it can name the record it will be (a lane's evidence).
    """

    topic: str
    schema: str
    device: str | None
    ts: datetime
    data: dict[str, Any]
    priority: Priority
    retain: bool = False
    id: str = field(default_factory=uuid7)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDraft:
    """Binary media (a JPEG snapshot or preview) to publish on ``media/{media_id}``.

    Media travel through the outbox like records (durable before publish, evicted by
    priority) but are not records: they take no ``seq`` and no place in the hash
    chain. The record that refers to them carries ``media_id`` and ``sha256``, so
    the chain still vouches for every byte.

    Attributes:
        media_id: unique id (UUIDv7), also the last topic level.
        device: the device the media come from.
        content_type: MQTT 5 content type, e.g. ``image/jpeg``.
        body: the bytes, published as they are.
        priority: eviction class (stills for the idle wall are ``TELEMETRY``).
        sha256: hex SHA-256 of ``body``, as the referring record quotes it. Pass the
            digest taken when the bytes were made (it is not checked: every media item
            is hashed once); left empty, it is computed here.
    """

    media_id: str
    device: str | None
    content_type: str
    body: bytes
    priority: Priority
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.body).hexdigest())

    @property
    def topic(self) -> str:
        """Topic below the gateway's root."""
        return f"media/{self.media_id}"


def jpeg_media(
    device: str | None, jpeg: bytes, priority: Priority, *, sha256: str = ""
) -> MediaDraft:
    """A JPEG (snapshot, still, preview, crop) to publish, with a fresh media id.

    ``sha256``: the digest of ``jpeg`` taken when it was encoded, so it is not hashed
    again (see :class:`MediaDraft`).
    """
    return MediaDraft(
        media_id=uuid7(),
        device=device,
        content_type="image/jpeg",
        body=jpeg,
        priority=priority,
        sha256=sha256,
    )


def media_ref(media: MediaDraft) -> dict[str, str | int]:
    """How a record's ``data`` refers to media it was published with."""
    return {
        "media_id": media.media_id,
        "sha256": media.sha256,
        "content_type": media.content_type,
        "bytes": len(media.body),
    }


Outgoing = Draft | MediaDraft
"""What processors hand to the outbox."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A durable record or media item as stored in the outbox and published.

    Attributes:
        pos: place in the outbox queue (publish order, acknowledgement key).
        seq: the envelope's ``seq``; ``None`` for media, which take no sequence number.
        id: record id (UUIDv7), or the media id.
        content_type: ``None`` for JSON records, else the media type.
    """

    pos: int
    seq: int | None
    id: str
    topic: str
    payload: bytes
    priority: Priority
    retain: bool
    content_type: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 of the published payload: the next record's ``prev``."""
        return hashlib.sha256(self.payload).hexdigest()


GENESIS = "0" * 64
"""``prev`` of the very first record a gateway publishes."""


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z`` suffix."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(
    draft: Draft, *, seq: int, record_id: str, prev: str, site: str, gateway: str
) -> bytes:
    """Serialise a draft into the published JSON envelope (UTF-8, compact, stable key order)."""
    body = {
        "schema": draft.schema,
        "id": record_id,
        "seq": seq,
        "ts": rfc3339(draft.ts),
        "site": site,
        "gateway": gateway,
        "device": draft.device,
        "data": draft.data,
        "prev": prev,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
