"""Which processor condenses which device's readings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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
    """Turns one device's readings into drafts to publish.

    A processor may also define ``stored(drafts: Sequence[Outgoing]) -> None``, which
    the supervisor calls once the drafts of the last :meth:`feed` are durable (the
    outbox committed them), never after a refused append: what must not be remembered
    before its record is safe (the alarms a seal processor de-duplicates) goes there.
    """

    def feed(self, reading: Reading) -> Sequence[Outgoing]:
        """Process one reading."""
        ...


class _Dispatch:
    """Routes each reading type to the processor for it (a device yields one type)."""

    def __init__(
        self, config: DeviceSection, ocr: OcrSubmit | None, state_dir: Path | None
    ) -> None:
        self.weighing = (
            WeighingProcessor(config.id, config.weighing_settings(), state_dir=state_dir)
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

    def stored(self, drafts: Sequence[Outgoing]) -> None:
        """``drafts`` are durable (see :class:`Processor`)."""
        # Points, scans and cameras keep no state that waits for durability.
        if self.seals is not None:
            self.seals.stored(drafts)
        if self.weighing is not None:
            self.weighing.stored(drafts)


def processor_for(
    config: DeviceSection, *, ocr: OcrSubmit | None = None, state_dir: Path | None = None
) -> Processor:
    """The processor for a device, chosen by the keys its config model carries.

    ``ocr`` receives the OCR crops a camera captures (the daemon's OCR service);
    ``state_dir`` keeps what must survive a restart (the weighing in progress).
    """
    return _Dispatch(config, ocr, state_dir)
