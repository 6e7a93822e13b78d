"""``[[devices]]`` keys of the X-ray drop-folder driver (``driver = "xray.folder"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gateway.config import DeviceSection

DEFAULT_STATE_DIR = Path("/var/lib/edge-gateway")
"""The unit's ``StateDirectory=``; the drop folder may be read-only, this is ours."""


class XrayFolderSection(DeviceSection):
    """A scanner's drop folder, watched for image + sidecar pairs."""

    driver: Literal["xray.folder"]
    path: Path = Field(description="the drop folder the scanner writes into")
    scanner_id: str | None = Field(
        default=None, description="scanner id to report; default: the sidecar's"
    )
    settle_s: float = Field(
        default=2.0, gt=0, description="image and sidecar unchanged this long = complete"
    )
    orphan_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a lone image or sidecar (or a stalled copy) unchanged this long is "
        "reported once",
    )
    poll_s: float = Field(default=1.0, gt=0, description="polling interval without inotify")
    watch: Literal["auto", "inotify", "poll"] = Field(
        default="auto", description="auto: inotify where available, else polling"
    )
    manifest: Path | None = Field(
        default=None,
        description="append-only manifest; default /var/lib/edge-gateway/xray/{id}.jsonl",
    )
    archive_dir: Path | None = Field(
        default=None,
        description="move originals here once recorded; unset: originals are never touched",
    )
    preview_height: int = Field(default=512, ge=16, le=4096, description="preview height, px")
    preview_quality: int = Field(default=70, ge=1, le=100, description="preview JPEG quality")
    max_image_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="larger images are refused, not read"
    )
    max_pixels: int = Field(
        default=64_000_000,
        gt=0,
        description="images whose header declares more pixels are refused, not decoded",
    )

    @model_validator(mode="after")
    def _archive_elsewhere(self) -> XrayFolderSection:
        if self.archive_dir is not None and self.archive_dir.resolve() == self.path.resolve():
            raise ValueError("archive_dir must not be the drop folder itself")
        return self

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.manifest or DEFAULT_STATE_DIR / "xray" / f"{self.id}.jsonl"
