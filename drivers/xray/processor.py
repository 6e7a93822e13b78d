"""X-ray scans: evidence records with a preview (originals: :mod:`.commands`).

A completed scan becomes two outbox items committed together: the preview JPEG on
``media/{media_id}`` and the ``event/xray_scan`` record that names the original's
SHA-256 (taken before anything else read the file) and the preview's ``media_id`` and
SHA-256. A scan that cannot be published (corrupt or empty image, a copy that
stalled, an orphan file, an unreadable sidecar) becomes ``event/xray_error`` with the
hash of whatever file there is: central learns that something arrived and what it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from drivers.xray.commands import ORIGINAL_COMMAND, OriginalServer
from drivers.xray.config import XrayFolderSection
from drivers.xray.readings import ScanCompleted, ScanFailed
from gateway.central_commands import Handler
from gateway.config import DeviceSection
from gateway.facts import FactBus, ScanRecorded
from gateway.family import FamilyContext, Processor, basic_runtime, unexpected
from gateway.readings import Reading
from gateway.records import Draft, Outgoing, Priority, jpeg_media, media_ref, rfc3339

SCAN_TOPIC = "event/xray_scan"
ERROR_TOPIC = "event/xray_error"


def printable(value: Any) -> Any:
    """``value`` with every file name that is not UTF-8 shown with escapes (``\\xff``).

    Python keeps such a name's bytes as lone surrogates, which no JSON record can carry;
    the record shows them escaped, the manifest keeps the bytes.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


class ScanProcessor:
    """Turns the X-ray driver's readings into records."""

    def __init__(self, device: str, *, bus: FactBus | None = None) -> None:
        self.device = device
        self.bus = bus or FactBus()

    def feed(self, reading: Reading) -> list[Outgoing]:
        """One scan in; its preview and record (or its error record) out."""
        if isinstance(reading, ScanFailed):
            return [self._failed(reading)]
        if not isinstance(reading, ScanCompleted):
            raise unexpected(self, reading)
        preview = jpeg_media(
            self.device, reading.preview_jpeg, Priority.EVENT, sha256=reading.preview_sha256
        )
        data: dict[str, Any] = {
            "scan_id": reading.scan_id,
            "scanner_id": reading.scanner_id,
            "lane": reading.lane,
            "scan_time": rfc3339(reading.scan_time) if reading.scan_time else None,
            "operator": reading.operator,
            "containers": [
                {"number": number, "check_digit_ok": ok} for number, ok in reading.containers
            ],
            "image": {
                "name": reading.image_name,
                "bytes": reading.image_bytes,
                "sha256": reading.image_sha256,
                "format": reading.image_format,
                "width": reading.width,
                "height": reading.height,
                "bit_depth": reading.bit_depth,
            },
            "sidecar": {"name": reading.sidecar_name, "sha256": reading.sidecar_sha256},
            "preview": {
                **media_ref(preview),
                "width": reading.preview_width,
                "height": reading.preview_height,
            },
            "duplicate_of": reading.duplicate_of,
            "problems": list(reading.problems),
        }
        record = Draft(
            topic=SCAN_TOPIC,
            schema="xray_scan/1",
            device=self.device,
            ts=reading.scan_time or reading.at.utc,
            data=printable(data),
            priority=Priority.EVENT,
        )
        self.bus.publish(
            ScanRecorded(
                device=self.device,
                at=reading.at,
                scan_id=reading.scan_id,
                sha256=reading.image_sha256,
                containers=tuple(number for number, _ok in reading.containers),
                record_id=record.id,
            )
        )
        return [preview, record]

    def _failed(self, failure: ScanFailed) -> Draft:
        return Draft(
            topic=ERROR_TOPIC,
            schema="xray_error/1",
            device=self.device,
            ts=failure.at.utc,
            data=printable(
                {
                    "reason": failure.reason,
                    "message": failure.message,
                    "stem": failure.stem,
                    "scan_id": failure.scan_id,
                    "image": {"name": failure.image_name, "sha256": failure.image_sha256},
                    "sidecar": {"name": failure.sidecar_name, "sha256": failure.sidecar_sha256},
                }
            ),
            priority=Priority.EVENT,
        )


def _processor(device: DeviceSection, context: FamilyContext) -> Processor:
    return ScanProcessor(device.id, bus=context.bus)


def _commands(devices: Sequence[DeviceSection]) -> Mapping[str, Handler]:
    manifests = {d.id: d.manifest_path for d in devices if isinstance(d, XrayFolderSection)}
    return {ORIGINAL_COMMAND: OriginalServer(manifests)} if manifests else {}


runtime = basic_runtime(_processor, _commands)
"""The X-ray family's runtime: scan processors and ``cmd/xray_original``."""
