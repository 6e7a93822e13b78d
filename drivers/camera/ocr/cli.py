"""``gatewayctl ocr IMAGE [--kind container|plate]``: what the OCR reads in a picture.

For technicians checking a camera's framing or a misread: prints the text lines the
engine saw, each container code with its check digit and owner verdict and the
candidates, or the plate with its format. Runs the engine in this process (no
daemon needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from drivers.camera.ocr.container import ContainerReading, read_container
from drivers.camera.ocr.engine import OcrEngine, RapidOcrEngine
from drivers.camera.ocr.plate import PlateReading, read_plate
from gateway import iso6346
from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What ``gatewayctl ocr`` found in one image."""

    path: str
    container: ContainerReading | None
    plate: PlateReading | None
    engine: str


def read_image(
    path: str | Path,
    kind: Literal["container", "plate"] | None = None,
    *,
    engine: OcrEngine | None = None,
) -> Report:
    """Read an image file as a container crop, a plate crop, or (``None``) both.

    Raises:
        ConfigError: the file is missing or not an image.
    """
    import cv2  # noqa: PLC0415 - OpenCV comes with the ocr extra

    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ConfigError(f"{path}: not a readable image")
    image = np.asarray(decoded, np.uint8)
    engine = engine or RapidOcrEngine()
    container = read_container(engine, image) if kind in (None, "container") else None
    plate = read_plate(engine, image) if kind in (None, "plate") else None
    return Report(path=str(path), container=container, plate=plate, engine=engine.name)


def render(report: Report) -> str:
    """Human-readable text of a report."""
    out = [f"{report.path} ({report.engine})"]
    if report.container is not None:
        reading = report.container
        out.append(f"text lines ({reading.layout}):")
        out.extend(f"  {line}" for line in reading.lines)
        if not reading.codes:
            out.append("container: no code found")
        for c in reading.codes:
            verdict = "VERIFIED" if c.verified else "unverified"
            digit = "holds" if c.check_digit_ok else "FAILS"
            if c.code.endswith("?"):
                digit = "not read"
            owner = "known" if c.owner_known else "UNKNOWN"
            out.append(
                f"container {iso6346.format_code(c.code)}: {verdict}; check digit {digit};"
                f" owner {c.code[:4]} {owner}; confidence {c.confidence:.2f}"
                + (f"; size/type {c.size_type}" if c.size_type else "")
            )
            if c.raw != c.code:
                out.append(f"  as read: {c.raw}")
            if c.candidates:
                out.append(f"  candidates: {', '.join(c.candidates)}")
    if report.plate is not None:
        p = report.plate
        fmt = f"valid {p.country} format" if p.valid else "no known format"
        extra = "; trailer (R series)" if p.trailer else ""
        extra += f"; {p.colour} plate" if p.colour else ""
        out.append(f"plate {p.text}: {fmt}; raw {p.raw!r}; confidence {p.confidence:.2f}{extra}")
    elif report.container is None:
        out.append("plate: no text found")
    return "\n".join(out)
