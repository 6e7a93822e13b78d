"""``cmd/xray_original``: an original X-ray image, sent to central on request.

The request names the device and the image's ``sha256`` (or a ``scan_id``); the
answer is the file in chunks, then a JSON part with the SHA-256 of the bytes actually
sent, which must equal the one in the scan record.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.central_commands import OCTETS, FieldRule, Reply, RequestSchema
from gateway.errors import CommandError

ORIGINAL_COMMAND = "xray_original"
DEFAULT_CHUNK = 256 * 1024
MAX_CHUNK = 1024 * 1024


class OriginalServer:
    """The ``cmd/xray_original`` handler for the configured X-ray devices."""

    schema: RequestSchema = MappingProxyType(
        {
            "device": FieldRule(str),
            "sha256": FieldRule(str, max_chars=64),
            "scan_id": FieldRule(str),
            "chunk_bytes": FieldRule(int),
        }
    )

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
