"""JPEG encoding of a frame, done only when a picture is actually sent."""

from __future__ import annotations

import hashlib

import cv2
from cv2.typing import MatLike

from drivers.camera.readings import Snapshot
from gateway.errors import FrameError


def encode_snapshot(image: MatLike, max_height: int, quality: int) -> Snapshot:
    """Scale ``image`` down to at most ``max_height`` rows (never up) and encode it as JPEG."""
    height, width = image.shape[:2]
    if height > max_height:
        width = max(1, round(width * max_height / height))
        height = max_height
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrameError(f"JPEG encoding failed for a {width}x{height} frame")
    jpeg = buf.tobytes()
    return Snapshot(jpeg=jpeg, width=width, height=height, sha256=hashlib.sha256(jpeg).hexdigest())
