"""Configuration of a camera: where its streams are, how to watch them, what to send."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config import DeviceSection

Point = tuple[float, float]
"""A polygon vertex in normalised image coordinates: (0, 0) top left, (1, 1) bottom right."""


class MotionSection(BaseModel):
    """The motion detector's parameters; the detector needs nothing else from the config.

    Kept as their own model (mixed into :class:`CameraSection`) so the pure detector and
    its tests can be built without a device id or a stream URL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    analysis_height: int = Field(
        default=144,
        ge=32,
        le=1080,
        description="rows of the small grayscale copy that is analysed (width keeps the aspect)",
    )
    contrast: Literal["gain", "clahe", "none"] = Field(
        default="gain",
        description="contrast normalisation before comparing: 'gain' matches the mean "
        "brightness to the background (auto-exposure), 'clahe' equalises the histogram "
        "locally (low-contrast night scenes; costs about a frame decode), 'none'",
    )
    pixel_threshold: int = Field(
        default=25,
        ge=1,
        le=254,
        description="grey-level difference from the background that counts a pixel as changed",
    )
    min_area: float = Field(
        default=0.005,
        gt=0,
        lt=1,
        description="smallest moving region, as a fraction of the frame, that counts as motion",
    )
    start_frames: int = Field(
        default=3,
        ge=1,
        le=100,
        description="consecutive analysed frames with motion before an event starts",
    )
    end_quiet_s: float = Field(
        default=2.0, gt=0, description="an event ends after this long without motion"
    )
    recalibrate_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="more than this fraction changing at once is lighting or auto-exposure: "
        "the background is re-learnt and no event is raised",
    )
    background_alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="weight of each new frame in the running-average background",
    )
    masks: tuple[tuple[Point, ...], ...] = Field(
        default=(),
        description="polygons excluded from detection (timestamp overlays, trees, flags), "
        "points as [x, y] in 0..1 of the frame width and height",
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="an 'update' at least this often during an event"
    )

    @field_validator("masks")
    @classmethod
    def _check_masks(cls, masks: tuple[tuple[Point, ...], ...]) -> tuple[tuple[Point, ...], ...]:
        for i, polygon in enumerate(masks):
            if len(polygon) < 3:
                raise ValueError(
                    f"mask {i} has {len(polygon)} point(s); a polygon needs at least 3"
                )
            for x, y in polygon:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(
                        f"mask {i} point [{x}, {y}] is outside the frame; "
                        "coordinates are fractions of width and height, 0..1"
                    )
        return masks


class OcrRegion(BaseModel):
    """Where container codes or plates appear at this lane, in the snapshot stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="region name, quoted in OCR results")
    kind: Literal["container", "plate"]
    box: tuple[float, float, float, float] = Field(
        description="[x, y, width, height] as fractions of the frame (0..1)"
    )

    @field_validator("box")
    @classmethod
    def _inside_the_frame(
        cls, box: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        x, y, w, h = box
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x + 1e-9 and 0 < h <= 1 - y + 1e-9):
            raise ValueError(f"box {list(box)} is not inside the frame (fractions 0..1)")
        return box


class CameraSection(DeviceSection, MotionSection):
    """``[[devices]]`` keys for ``driver = "camera.opencv"``."""

    driver: Literal["camera.opencv"]
    url: str = Field(
        min_length=1,
        description="stream to analyse: rtsp:// (over TCP), http(s):// MJPEG, a V4L2 device "
        "(/dev/video0 or its index 0), or a video file that loops (demos)",
    )
    snapshot_url: str | None = Field(
        default=None,
        description="main stream used for snapshots while 'url' is the analysed substream",
    )
    open_timeout_s: float = Field(
        default=10.0, gt=0, description="time allowed to connect and receive the first frame"
    )
    read_timeout_s: float = Field(
        default=5.0, gt=0, description="a blocked read on a network stream gives up after this"
    )
    stall_timeout_s: float = Field(
        default=15.0,
        ge=0,
        description="no frame this long = stalled, the device is restarted; "
        "0 disables (cameras that only stream on motion)",
    )
    analyse_fps: float = Field(
        default=5.0, gt=0, le=60, description="analysed frames per second (extra are dropped)"
    )
    snapshot_height: int = Field(
        default=540,
        ge=32,
        le=4320,
        description="snapshots are scaled down to this many rows (540 keeps a lane camera's "
        "uplink under 1 % of its 2 Mbit/s main stream, bench/motion.py)",
    )
    snapshot_on_start: bool = Field(
        default=False,
        description="also send a snapshot when an event starts (the end always carries the "
        "best frame of the event); doubles the picture bytes",
    )
    still_height: int = Field(
        default=360,
        ge=32,
        le=4320,
        description="idle-wall stills are scaled down to this many rows (a wall of 4-40 "
        "tiles needs no more; at 720 rows the stills alone would cost half the uplink "
        "budget of a camera)",
    )
    jpeg_quality: int = Field(default=70, ge=10, le=100, description="JPEG quality of snapshots")
    still_interval_s: float = Field(
        default=60.0, ge=0, description="one still for the idle wall this often; 0 disables"
    )
    stats_interval_s: float = Field(
        default=60.0, ge=0, description="camera health (fps, drops, resolution) this often"
    )
    ocr_regions: tuple[OcrRegion, ...] = Field(
        default=(), description="regions read by OCR when triggered (none: no OCR)"
    )
    ocr_on_motion: bool = Field(
        default=True, description="read the regions when motion in one of them ends"
    )
    ocr_on_weighing: tuple[str, ...] = Field(
        default=(), description="read the regions when a vehicle drives onto these scales"
    )
    ocr_frames: int = Field(default=3, ge=1, le=10, description="crops per region and passage")
    ocr_interval_s: float = Field(
        default=0.6, ge=0, description="between the crops of one passage (they are voted on)"
    )
