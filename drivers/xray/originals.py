"""Serving an original on request: find it through the manifest, prove it unchanged.

Central asks for the original of a scan by its image hash or scan id. The manifest
says where the file was (or, after archiving, where it went); the file is hashed again
before it is served, so what central receives is provably the file the published
SHA-256 describes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from drivers.xray.imagefile import hash_file, open_regular
from drivers.xray.manifest import Manifest
from gateway.errors import OriginalUnavailableError


def find_original(
    manifest_path: Path, *, sha256: str | None = None, scan_id: str | None = None
) -> Path:
    """Where the original image with ``sha256`` (or of scan ``scan_id``) is now.

    With ``scan_id`` the latest completed scan with that id is meant. Raises
    :class:`OriginalUnavailableError` when unknown, missing, or changed since recorded.
    """
    if (sha256 is None) == (scan_id is None):
        raise ValueError("give exactly one of sha256 and scan_id")
    manifest = Manifest.load(manifest_path)
    wanted = sha256
    if scan_id is not None:
        hashes = manifest.images_by_scan_id.get(scan_id)
        if not hashes:
            raise OriginalUnavailableError(f"scan id {scan_id!r} is not in {manifest_path}")
        wanted = hashes[-1]
    # Where copies with this content were recorded, the most authoritative last: the
    # scan as published, then a repeat drop of it, then where archiving moved them.
    rank = {"repeat": 0, "complete": 1, "archived": 2}
    places = [
        (rank[e.outcome], i, Path(e.path))
        for i, e in enumerate(manifest.entries)
        if e.outcome in rank
        and (
            e.sha256 == wanted
            if e.outcome == "archived"
            else e.image is not None and e.image.sha256 == wanted
        )
    ]
    if not places:
        raise OriginalUnavailableError(f"no image with sha256 {wanted} in {manifest_path}")
    problems: list[str] = []
    for _, _, where in sorted(places, reverse=True):
        try:
            actual = hash_file(where)
        except OSError as exc:
            problems.append(f"{where} is unreadable: {exc}")
            continue
        if actual == wanted:
            return where
        problems.append(f"{where} changed since it was recorded: sha256 {actual}, not {wanted}")
    raise OriginalUnavailableError(f"original {wanted} unavailable: {'; '.join(problems)}")


def read_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    """The file's bytes in chunks of at most ``chunk_size`` (for chunked MQTT replies)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    fd = open_regular(path)  # no symlink or FIFO swapped in after the hash check
    try:
        while chunk := os.read(fd, chunk_size):
            yield chunk
    finally:
        os.close(fd)
