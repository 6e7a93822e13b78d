"""The camera family's descriptor (entry point ``edge_gateway.families``: ``camera``).

Cameras (RTSP, HTTP MJPEG, V4L2): motion, stills, OCR of codes and plates.
Only names and references: importing this module imports nothing of the family.
"""

from __future__ import annotations

from gateway.family import DriverEntry, Family

FAMILY = Family(
    name="camera",
    drivers={
        "camera.opencv": DriverEntry("drivers.camera.driver:CameraDriver", extra="video"),
    },
    runtime="drivers.camera.processor:runtime",
    cli="drivers.camera.cli:add_verbs",
)
