"""Readings the X-ray drop-folder driver yields: a scan completed, or a scan failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.readings import Reading


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanCompleted(Reading):
    """A scan whose image and sidecar are whole: metadata, hashes and a preview.

    Attributes:
        stem: the file name shared by the scan's files, without extension.
        scan_id: the scanner's id for the scan, from the sidecar.
        scanner_id: from the sidecar, or the configured one.
        lane: from the sidecar.
        scan_time: when the scanner says it scanned (UTC), ``None`` if not given.
        operator: as written (UTF-8; non-ASCII names kept verbatim).
        containers: (number, check digit right) per container number in the sidecar.
        image_name, image_bytes, image_mtime_ns, image_sha256: the original image.
        sidecar_name, sidecar_sha256: the original sidecar.
        width, height, bit_depth, image_format: the decoded original.
        preview_jpeg, preview_sha256, preview_width, preview_height: the preview.
        duplicate_of: SHA-256 of an earlier, different image with the same scan id.
        problems: what is wrong but did not stop the scan (bad check digit, bad time).
        at: when the scan was found complete.
    """

    stem: str
    scan_id: str
    scanner_id: str | None
    lane: str | None
    scan_time: datetime | None
    operator: str | None
    containers: tuple[tuple[str, bool], ...]
    image_name: str
    image_bytes: int
    image_mtime_ns: int
    image_sha256: str
    sidecar_name: str
    sidecar_sha256: str
    width: int
    height: int
    bit_depth: int
    image_format: str
    preview_jpeg: bytes = field(repr=False)
    preview_sha256: str
    preview_width: int
    preview_height: int
    duplicate_of: str | None = None
    problems: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        return {
            "scan_id": self.scan_id,
            "lane": self.lane,
            "containers": [number for number, _ in self.containers],
            "sha256": self.image_sha256,
            "problems": list(self.problems),
        }


FAILURE_REASONS = (
    "corrupt_image",  # whole but does not decode
    "empty_image",  # zero bytes
    "stalled_image",  # truncated and unchanged for orphan_after_s: a copy that stopped
    "orphan_sidecar",  # a sidecar whose image never came
    "orphan_image",  # an image without a sidecar
    "bad_sidecar",  # the sidecar cannot be parsed (or is over the size cap)
    "image_too_large",  # its header declares more pixels than max_pixels: never decoded
    "unreadable",  # the files cannot be read as they are (permissions, I/O errors)
    "not_regular_file",  # a symlink, FIFO or device swapped in after the listing: refused
    "unprocessable",  # anything else that went wrong with this scan alone
)
"""``ScanFailed.reason`` codes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanFailed(Reading):
    """A scan that cannot be published as complete, reported once per file state.

    Attributes:
        stem: the file name shared by the scan's files, without extension.
        reason: one of :data:`FAILURE_REASONS`.
        message: for a person: what is wrong, with file names and sizes.
        scan_id: when a sidecar was readable.
        image_name, image_sha256: the image, when there is one.
        sidecar_name, sidecar_sha256: the sidecar, when there is one.
        at: when the failure was decided.
    """

    stem: str
    reason: str
    message: str
    scan_id: str | None = None
    image_name: str | None = None
    image_sha256: str | None = None
    sidecar_name: str | None = None
    sidecar_sha256: str | None = None

    def summary(self) -> dict[str, object]:
        return {"stem": self.stem, "reason": self.reason, "sha256": self.image_sha256}
