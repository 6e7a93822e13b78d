"""X-ray scans: evidence records with a preview, and originals served on request.

A completed scan becomes two outbox items committed together: the preview JPEG on
``media/{media_id}`` and the ``event/xray_scan`` record that names the original's
SHA-256 (taken before anything else read the file) and the preview's ``media_id`` and
SHA-256. A scan that cannot be published (corrupt or empty image, a copy that
stalled, an orphan file, an unreadable sidecar) becomes ``event/xray_error`` with the
hash of whatever file there is: central learns that something arrived and what it was.

``cmd/xray_original`` serves an original image: the request names the device and
the image's ``sha256`` (or a ``scan_id``); the answer is the file in chunks, then a
JSON part with the SHA-256 of the bytes actually sent, which must equal the one in
the scan record.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from drivers.xray.scan import ScanCompleted, ScanFailed
from gateway.commands import OCTETS, Reply
from gateway.errors import CommandError
from gateway.records import Draft, Outgoing, Priority, jpeg_media, media_ref, rfc3339

SCAN_TOPIC = "event/xray_scan"
ERROR_TOPIC = "event/xray_error"
ORIGINAL_COMMAND = "xray_original"
DEFAULT_CHUNK = 256 * 1024
MAX_CHUNK = 1024 * 1024


class ScanProcessor:
    """Turns the X-ray driver's readings into records."""

    def __init__(self, device: str) -> None:
        self.device = device

    def feed(self, reading: ScanCompleted | ScanFailed) -> list[Outgoing]:
        """One scan in; its preview and record (or its error record) out."""
        if isinstance(reading, ScanFailed):
            return [self._failed(reading)]
        preview = jpeg_media(self.device, reading.preview_jpeg, Priority.EVENT)
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
            data=data,
            priority=Priority.EVENT,
        )
        return [preview, record]

    def _failed(self, failure: ScanFailed) -> Draft:
        return Draft(
            topic=ERROR_TOPIC,
            schema="xray_error/1",
            device=self.device,
            ts=failure.at.utc,
            data={
                "reason": failure.reason,
                "message": failure.message,
                "stem": failure.stem,
                "scan_id": failure.scan_id,
                "image": {"name": failure.image_name, "sha256": failure.image_sha256},
                "sidecar": {"name": failure.sidecar_name, "sha256": failure.sidecar_sha256},
            },
            priority=Priority.EVENT,
        )


class OriginalServer:
    """The ``cmd/xray_original`` handler for the configured X-ray devices."""

    def __init__(self, manifests: Mapping[str, Path]) -> None:
        self.manifests = dict(manifests)

    async def __call__(self, request: dict[str, Any]) -> AsyncIterator[Reply]:
        """Chunks of the original, then ``{"status": "ok", "sha256": ..., "bytes": ...}``."""
        from drivers.xray.originals import find_original, read_chunks  # noqa: PLC0415

        device = request.get("device")
        if device is None and len(self.manifests) == 1:
            device = next(iter(self.manifests))
        if device not in self.manifests:
            raise CommandError(f"device must be one of {sorted(self.manifests)}")
        sha256, scan_id = request.get("sha256"), request.get("scan_id")
        if (sha256 is None) == (scan_id is None):
            raise CommandError("give exactly one of sha256 and scan_id")
        chunk = request.get("chunk_bytes", DEFAULT_CHUNK)
        if not isinstance(chunk, int) or not 1024 <= chunk <= MAX_CHUNK:
            raise CommandError(f"chunk_bytes must be an integer from 1024 to {MAX_CHUNK}")
        manifest = self.manifests[device]
        path = await asyncio.to_thread(find_original, manifest, sha256=sha256, scan_id=scan_id)
        digest = hashlib.sha256()
        size = 0
        chunks = read_chunks(path, chunk)
        while (data := await asyncio.to_thread(next, chunks, None)) is not None:
            digest.update(data)
            size += len(data)
            yield Reply(data, OCTETS)
        sent = digest.hexdigest()
        if sha256 is not None and sent != sha256:
            raise CommandError(f"{path.name} changed while it was sent: {sent} != {sha256}")
        yield Reply.json({"status": "ok", "name": path.name, "bytes": size, "sha256": sent})
