"""OCR engines: a crop in, text boxes out.

The production engine is RapidOCR on onnxruntime with the PP-OCR models that ship
inside the rapidocr wheel. Nothing is downloaded: the model paths are given
explicitly (RapidOCR only downloads when a path is missing), checked to exist at
construction, and the recogniser must carry its character list inside the model (else
RapidOCR would fetch a dictionary file).

Settings measured on crops (issue 6): RapidOCR's defaults upscale small crops to at
least 736 px, find nothing and take seconds and over a gigabyte; limiting the longest
side to 960 px instead, with the rotation classifier off and one thread, reads crops in
tens of milliseconds. The first inference allocates the session's buffers, so the
engine warms up at construction rather than on the first truck.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.errors import DeviceInitError, DriverUnavailableError

Image = npt.NDArray[np.uint8]
"""A BGR (or grayscale) 8-bit image as OpenCV gives it."""

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextBox:
    """One line (or word) of text the engine found.

    Attributes:
        text: the characters read, as the engine gave them.
        confidence: the engine's score in [0, 1].
        quad: corners (top-left, top-right, bottom-right, bottom-left) in crop pixels.
    """

    text: str
    confidence: float
    quad: Quad

    @property
    def centre(self) -> tuple[float, float]:
        """Mean of the corners."""
        return (
            sum(p[0] for p in self.quad) / 4,
            sum(p[1] for p in self.quad) / 4,
        )

    @property
    def height(self) -> float:
        """Height of the box (mean of its left and right edges)."""
        (_, y0), (_, y1), (_, y2), (_, y3) = self.quad
        return max(1.0, ((y3 - y0) + (y2 - y1)) / 2)

    @property
    def left(self) -> float:
        """Leftmost x."""
        return min(p[0] for p in self.quad)

    @property
    def top(self) -> float:
        """Topmost y."""
        return min(p[1] for p in self.quad)


class OcrEngine(Protocol):
    """Anything that reads text boxes from an image."""

    name: str

    def recognise(self, image: Image) -> list[TextBox]:
        """All text boxes found in ``image`` (order unspecified)."""
        ...


DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"


def packaged_models() -> tuple[Path, Path]:
    """Paths of the detection and recognition models inside the installed rapidocr wheel.

    Raises:
        DriverUnavailableError: rapidocr is not installed or a model file is missing.
    """
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise DriverUnavailableError("OCR unavailable: install extra 'ocr' (rapidocr)")
    models = Path(spec.origin).parent / "models"
    det, rec = models / DET_MODEL, models / REC_MODEL
    for path in (det, rec):
        if not path.is_file():
            raise DriverUnavailableError(f"OCR model missing from the rapidocr package: {path}")
    return det, rec


class RapidOcrEngine:
    """RapidOCR + onnxruntime, tuned for crops, models from the wheel only.

    Args:
        threads: onnxruntime intra-op threads (1: one core per worker process).
        max_side: images larger than this are scaled down for detection, never up.
        warm_up: run one inference at construction so the first crop is not slow.
    """

    name = "rapidocr"

    def __init__(self, *, threads: int = 1, max_side: int = 960, warm_up: bool = True) -> None:
        try:
            from rapidocr import RapidOCR  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise DriverUnavailableError("OCR unavailable: install extra 'ocr'") from exc
        det, rec = packaged_models()
        params: dict[str, Any] = {
            "Global.use_cls": False,
            "Global.log_level": "error",
            "Det.limit_type": "max",
            "Det.limit_side_len": max_side,
            "Det.model_path": str(det),
            "Rec.model_path": str(rec),
            "Rec.rec_batch_num": 1,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        try:
            self._ocr = RapidOCR(params=params)
            # Models load lazily: load both now so a missing dictionary fails here.
            self._ocr._load_det_model()  # type: ignore[no-untyped-call]
            recogniser = self._ocr._load_rec_model()  # type: ignore[no-untyped-call]
        except Exception as exc:  # RapidOCR raises bare exceptions for bad models
            raise DeviceInitError(f"OCR engine failed to load: {exc}") from exc
        if not recogniser.session.have_key():
            raise DeviceInitError("OCR recogniser has no embedded character list")
        self.warm_up_s = 0.0
        if warm_up:
            started = time.perf_counter()
            self.recognise(_warm_up_image())
            self.warm_up_s = time.perf_counter() - started

    def recognise(self, image: Image) -> list[TextBox]:
        """Detect and recognise text lines in ``image``."""
        out = self._ocr(image)
        boxes = getattr(out, "boxes", None)
        txts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        if boxes is None or txts is None or scores is None:
            return []
        result = []
        for quad, text, score in zip(boxes, txts, scores, strict=True):
            corners = tuple((float(x), float(y)) for x, y in quad)
            result.append(TextBox(text=str(text), confidence=float(score), quad=corners))  # type: ignore[arg-type]
        return result


def _warm_up_image() -> Image:
    """A small synthetic crop with text, so warm-up runs detection and recognition."""
    import cv2  # noqa: PLC0415 - OpenCV comes with the ocr extra

    image = np.full((96, 320, 3), 255, np.uint8)
    cv2.putText(image, "ABCU 123456", (8, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    return image
