"""Scanner sidecars (XML or JSON): the scan's metadata, parsed without trusting it.

Both formats carry the same fields (see HARDWARE.md "X-ray scanners"): scan id, time,
lane, container number(s), operator and scanner id, and the image's file name. XML is
read with the standard library's ElementTree; defusedxml is not a dependency, so a
document with a DOCTYPE is refused outright, which rules out entity expansion ("billion
laughs") and external entities. Text is decoded as UTF-8 so a Vietnamese operator name
survives byte for byte.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import FrameError

MAX_SIDECAR_BYTES = 1024 * 1024
"""A sidecar is a few hundred bytes; anything this big is not one."""

# Element names (XML) and keys (JSON) per field; the first one present wins.
_XML_FIELDS = {
    "scan_id": ("ScanId", "ScanID", "Id"),
    "time": ("Time", "ScanTime", "Timestamp"),
    "lane": ("Lane",),
    "scanner_id": ("ScannerId", "ScannerID", "Scanner"),
    "operator": ("Operator",),
    "image": ("Image", "ImageFile"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sidecar:
    """What a sidecar says about its scan; every field but ``scan_id`` may be absent."""

    scan_id: str
    time: datetime | None
    lane: str | None
    scanner_id: str | None
    operator: str | None
    containers: tuple[str, ...]
    image: str | None
    problems: tuple[str, ...] = ()


def parse_sidecar(data: bytes, suffix: str) -> Sidecar:
    """Parse a ``.xml`` or ``.json`` sidecar; raises :class:`FrameError` when unusable."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise FrameError(f"sidecar of {len(data)} bytes is too big")
    if suffix.lower() == ".json":
        fields = _json_fields(data)
    elif suffix.lower() == ".xml":
        fields = _xml_fields(data)
    else:
        raise FrameError(f"unknown sidecar type {suffix!r}")
    return _build(fields)


def _json_fields(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"sidecar is not UTF-8 JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise FrameError("sidecar JSON is not an object")
    return document


def _xml_fields(data: bytes) -> dict[str, Any]:
    if b"<!DOCTYPE" in data.upper():
        raise FrameError("sidecar XML has a DOCTYPE (refused: entity expansion)")
    try:
        root = ET.fromstring(data)  # noqa: S314 - DOCTYPE refused above, no entities left
    except ET.ParseError as exc:
        raise FrameError(f"sidecar is not well-formed XML: {exc}") from exc
    fields: dict[str, Any] = {}
    for key, tags in _XML_FIELDS.items():
        for tag in tags:
            text = root.findtext(tag)
            if text is not None:
                fields[key] = text.strip()
                break
    fields["containers"] = [
        (c.text or "").strip() for c in root.iter() if c.tag in ("Container", "ContainerNumber")
    ]
    return fields


def _text(fields: dict[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)):
        raise FrameError(f"sidecar field {key!r} is not text: {value!r}")
    return str(value)


def parse_time(text: str) -> datetime:
    """ISO 8601 to an aware UTC datetime; a time without offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise FrameError(f"sidecar time is not ISO 8601: {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _build(fields: dict[str, Any]) -> Sidecar:
    scan_id = _text(fields, "scan_id")
    if scan_id is None:
        raise FrameError("sidecar has no scan id")
    problems: list[str] = []
    time_text = _text(fields, "time")
    when = None
    if time_text is not None:
        try:
            when = parse_time(time_text)
        except FrameError as exc:
            problems.append(str(exc))
    raw = fields.get("containers", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise FrameError(f"sidecar containers is not a list of text: {raw!r}")
    return Sidecar(
        scan_id=scan_id,
        time=when,
        lane=_text(fields, "lane"),
        scanner_id=_text(fields, "scanner_id"),
        operator=_text(fields, "operator"),
        containers=tuple(c.strip().upper() for c in raw if c.strip()),
        image=_text(fields, "image"),
        problems=tuple(problems),
    )
