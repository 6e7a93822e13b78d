"""Which processor condenses which device's readings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from drivers.camera.readings import CameraStats, CropsCaptured, MotionObserved, StillCaptured
from drivers.xray.scan import ScanCompleted, ScanFailed
from gateway.cameras import CameraProcessor, OcrSubmit
from gateway.config import DeviceSection
from gateway.points import PointsKeys, PointsProcessor
from gateway.readings import PointsRead, Reading, WeightMeasured
from gateway.records import Outgoing
from gateway.scans import ScanProcessor
from gateway.seals import SealKeys, SealProcessor
from gateway.weighing import WeighingKeys, WeighingProcessor


class Processor(Protocol):
    """Turns one device's readings into drafts to publish."""

    def feed(self, reading: Reading) -> Sequence[Outgoing]:
        """Process one reading."""
        ...


class _Dispatch:
    """Routes each reading type to the processor for it (a device yields one type)."""

    def __init__(self, config: DeviceSection, ocr: OcrSubmit | None) -> None:
        self.weighing = (
            WeighingProcessor(config.id, config.weighing_settings())
            if isinstance(config, WeighingKeys)
            else None
        )
        self.seals = (
            SealProcessor(config.id, config.seal_interval_s)
            if isinstance(config, SealKeys)
            else None
        )
        self.points = (
            PointsProcessor(config.id, config.telemetry_interval_s)
            if isinstance(config, PointsKeys)
            else None
        )
        self.scans = ScanProcessor(config.id)
        self.cameras = CameraProcessor(config.id, ocr)

    def feed(self, reading: Reading) -> Sequence[Outgoing]:
        if isinstance(reading, WeightMeasured) and self.weighing is not None:
            return self.weighing.feed(reading)
        if isinstance(reading, PointsRead) and self.points is not None:
            return self.points.feed(reading)
        if isinstance(reading, ScanCompleted | ScanFailed):
            return self.scans.feed(reading)
        if isinstance(reading, MotionObserved | StillCaptured | CameraStats | CropsCaptured):
            return self.cameras.feed(reading)
        if self.seals is not None:
            return self.seals.feed(reading)
        raise TypeError(f"no processor for {type(reading).__name__}")


def processor_for(config: DeviceSection, *, ocr: OcrSubmit | None = None) -> Processor:
    """The processor for a device, chosen by the keys its config model carries.

    ``ocr`` receives the OCR crops a camera captures (the daemon's OCR service).
    """
    return _Dispatch(config, ocr)
