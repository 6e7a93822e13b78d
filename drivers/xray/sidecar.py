"""Scanner sidecars (XML or JSON): the scan's metadata, parsed without trusting it.

Both formats carry the same fields (see HARDWARE.md "X-ray scanners"): scan id, time,
lane, container number(s), operator and scanner id, and the image's file name. Text is
decoded as UTF-8 so a Vietnamese operator name survives byte for byte.

Nothing in a sidecar may do more than fail its own scan. XML is read with expat
directly: a DOCTYPE, an entity declaration or an entity reference is refused when the
parser meets it, whatever the document's encoding (a byte search for ``<!DOCTYPE``
misses one in UTF-16), which rules out entity expansion ("billion laughs") and
external entities; an unknown encoding is a parse error. Elements nest at most
:data:`MAX_DEPTH` deep. JSON is parsed by the standard library, whose failures on
hostile input (nesting 100k deep, a 5000-digit number) are taken as a bad sidecar like
any syntax error. A time the calendar cannot hold in UTC (year 1 at +01:00) is a
problem of the scan, not an error of the gateway.
"""

from __future__ import annotations

import json
import xml.parsers.expat
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import FrameError

MAX_SIDECAR_BYTES = 1024 * 1024
"""A sidecar is a few hundred bytes; anything this big is not one (never read whole)."""
MAX_DEPTH = 32
"""Deepest element nesting accepted in an XML sidecar (a real one nests two or three)."""
_CONTAINER_TAGS = ("Container", "ContainerNumber")

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
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, hostile nesting or digits
        raise FrameError(f"sidecar is not usable UTF-8 JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(document, dict):
        raise FrameError("sidecar JSON is not an object")
    return document


class _XmlFields:
    """Collects the fields' text from expat events; refuses DTDs and entities."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.containers: list[str] = []
        self._path: list[str] = []
        self._text: list[str] = []
        self._rank: dict[str, int] = {}

    def start(self, tag: str, _attrs: dict[str, str]) -> None:
        if len(self._path) >= MAX_DEPTH:
            raise FrameError(f"sidecar XML nests deeper than {MAX_DEPTH} elements")
        self._path.append(tag)
        self._text = []

    def end(self, tag: str) -> None:
        text = "".join(self._text).strip()
        self._text = []
        if tag in _CONTAINER_TAGS:
            self.containers.append(text)
        elif len(self._path) == 2:  # a child of the root, as the fields are
            for key, tags in _XML_FIELDS.items():
                # The first tag of a field's list wins when several are present.
                if tag in tags and tags.index(tag) < self._rank.get(key, len(tags)):
                    self._rank[key] = tags.index(tag)
                    self.fields[key] = text
        self._path.pop()

    def chars(self, text: str) -> None:
        self._text.append(text)

    @staticmethod
    def refuse(*_args: object) -> None:
        raise FrameError("sidecar XML has a DOCTYPE or entities (refused: entity expansion)")

    @staticmethod
    def refuse_external(*_args: object) -> int:
        raise FrameError("sidecar XML refers to an external entity (refused)")


def _xml_fields(data: bytes) -> dict[str, Any]:
    sink = _XmlFields()
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = sink.start
    parser.EndElementHandler = sink.end
    parser.CharacterDataHandler = sink.chars
    parser.StartDoctypeDeclHandler = sink.refuse
    parser.EntityDeclHandler = sink.refuse
    parser.ExternalEntityRefHandler = sink.refuse_external
    parser.SkippedEntityHandler = sink.refuse
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise FrameError(f"sidecar is not well-formed XML: {exc}") from exc
    except (ValueError, LookupError) as exc:  # e.g. encoding="x-bogus"
        raise FrameError(f"sidecar XML cannot be read: {type(exc).__name__}: {exc}") from exc
    return {**sink.fields, "containers": sink.containers}


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
        raise FrameError(f"sidecar time is not ISO 8601: {text[:64]!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:  # year 1 at +01:00 is before year 1 in UTC
        raise FrameError(f"sidecar time is out of range in UTC: {text[:64]!r}") from exc


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
