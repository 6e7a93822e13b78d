"""Geometry shared by the readers: boxes into lines, a vertical column into a row.

The engine returns boxes in detection order, which on tilted codes is not reading
order; readers therefore re-sort boxes into lines (top to bottom, then left to right).
Codes painted one character per line down a container's corner post read best when
the column is cut into characters laid out in a row, which :func:`column_to_row` does.
"""

from __future__ import annotations

import statistics

import cv2
import numpy as np

from drivers.camera.ocr.engine import Image, TextBox


def lines(boxes: list[TextBox], *, tolerance: float = 0.6) -> list[list[TextBox]]:
    """Group boxes into lines and sort them into reading order.

    A box joins a line when its centre is within ``tolerance`` times the median box
    height of that line's mean centre; lines are then ordered top to bottom and each
    line left to right.
    """
    if not boxes:
        return []
    limit = tolerance * statistics.median(b.height for b in boxes)
    grouped: list[list[TextBox]] = []
    for box in sorted(boxes, key=lambda b: b.centre[1]):
        cy = box.centre[1]
        for line in grouped:
            line_cy = sum(b.centre[1] for b in line) / len(line)
            if abs(cy - line_cy) <= limit:
                line.append(box)
                break
        else:
            grouped.append([box])
    for line in grouped:
        line.sort(key=lambda b: b.left)
    grouped.sort(key=lambda line: sum(b.centre[1] for b in line) / len(line))
    return grouped


def _ink_mask(gray: Image) -> Image:
    """Otsu binarisation with the text (the minority class) as 255."""
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if np.count_nonzero(mask) > mask.size / 2:
        mask = cv2.bitwise_not(mask)
    return np.asarray(mask, np.uint8)


def _runs(profile: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Half-open index ranges where ``profile`` exceeds ``threshold``."""
    runs, start = [], None
    for i, value in enumerate(profile):
        if value > threshold and start is None:
            start = i
        elif value <= threshold and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(profile)))
    return runs


def column_to_row(image: Image, *, min_chars: int = 6, height: int = 48) -> Image | None:
    """Cut a one-character-per-line column into characters laid out in a row.

    Returns ``None`` when the column does not split into at least ``min_chars``
    characters (not a vertical code, or too dirty to segment).
    """
    gray = np.asarray(
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image, np.uint8
    )
    mask = _ink_mask(gray)
    runs = _runs(mask.sum(axis=1) / 255.0, 0.04 * mask.shape[1])
    if not runs:
        return None
    typical = statistics.median(b - a for a, b in runs)
    if typical < 6:  # specks (noise, dirt), not characters: and a huge upscale would follow
        return None
    # Borders of the painted check-digit box and dirt give thin runs: not characters.
    chars = [(a, b) for a, b in runs if b - a >= 0.5 * typical]
    if len(chars) < min_chars:
        return None
    background = int(np.median(gray))
    scale = height / typical  # one scale for all, so a boxed digit keeps its size
    pieces = []
    for a, b in chars:
        cols = np.nonzero(mask[a:b].sum(axis=0))[0]
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        size = (max(1, round((x1 - x0) * scale)), max(1, round((b - a) * scale)))
        pieces.append(cv2.resize(gray[a:b, x0:x1], size, interpolation=cv2.INTER_AREA))
    tallest = max(p.shape[0] for p in pieces)
    row_parts = []
    for piece in pieces:
        top = (tallest - piece.shape[0]) // 2
        bottom = tallest - piece.shape[0] - top
        row_parts.append(
            cv2.copyMakeBorder(
                piece, top, bottom, 0, height // 3, cv2.BORDER_CONSTANT, value=background
            )
        )
    row = np.hstack(row_parts)
    if row.shape[1] > 40 * tallest:
        # Far wider than a code laid out in a row: the cut found blotches, not characters.
        # Bounding the size also bounds the engine's time and memory on this image.
        return None
    pad = height // 2
    row = cv2.copyMakeBorder(row, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=background)
    return np.asarray(cv2.cvtColor(row, cv2.COLOR_GRAY2BGR), np.uint8)


def erase_frames(image: Image) -> Image:
    """Paint over rectangles drawn around characters (the check-digit box).

    Most container misreads come from the box painted around the check digit: the
    engine reads the frame as ``1``, ``|`` or ``回``, or drops the digit. A frame is an
    outer contour that a polygon of four corners fits closely (a ``0`` or ``O`` does
    not) and that holds another contour (its digit); its outline is painted in the
    colour around it. Returns a new image; the input is untouched.
    """
    gray = np.asarray(
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image, np.uint8
    )
    mask = _ink_mask(gray)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return image
    out = image.copy()
    limit = 0.6 * min(gray.shape[:2])
    for index, contour in enumerate(contours):
        child, parent = hierarchy[0][index][2], hierarchy[0][index][3]
        x, y, w, h = cv2.boundingRect(contour)
        if parent != -1 or child == -1 or not 10 <= h <= limit or not 0.4 <= w / h <= 1.6:
            continue
        area = cv2.contourArea(contour)
        approx = cv2.approxPolyDP(contour, 0.04 * cv2.arcLength(contour, True), True)
        if len(approx) != 4 or area <= 0 or abs(cv2.contourArea(approx) / area - 1) > 0.08:
            continue
        # Only a hollow frame: its inner hole must hold other ink (the digit).
        if cv2.contourArea(contours[child]) < 0.4 * area:
            continue
        region = out[y : y + h, x : x + w]
        colour = np.median(region[mask[y : y + h, x : x + w] == 0], axis=0)
        thickness = max(3, h // 7)
        fill = tuple(int(c) for c in np.atleast_1d(colour))
        cv2.polylines(out, [approx], True, fill, thickness)
    return out
