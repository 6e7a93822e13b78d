"""Synthetic OCR test set: container code crops and licence plate crops, with truth.

Container crops show a door or side panel (corrugation, paint colours) with the code
as painted: owner + category, serial, and the check digit inside a painted box, the
size/type code on the next line; or one character per line down a post (vertical),
or two 20-foot boxes side by side on one chassis. Plates are Vietnamese (white or
yellow commercial, one or two rows, R-series trailers, older 4-digit) and Chinese
(blue, green new-energy with six characters). Text is drawn with OpenCV's Hershey
fonts; the Chinese province character needs a CJK TrueType font (Debian
``fonts-wqy-zenhei`` or ``fonts-noto-cjk``) drawn with Pillow.

Degradations: dirt blotches, blur, perspective, scale, night/IR-like low contrast and
noise. A *passage* is several frames of the same truck with fresh degradations, for
voting. Everything comes from ``seed``: the same seed gives the same pixels.

Run: ``python -m simulators.ocr_set OUT --containers 20 --plates 20 --seed 1``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gateway import iso6346

Image = npt.NDArray[np.uint8]

FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)
PAINT = (  # BGR container paints: red, blue, green, grey, white, orange, brown, teal
    (40, 40, 170), (150, 80, 30), (60, 120, 40), (140, 140, 140),
    (235, 235, 235), (30, 120, 230), (40, 60, 110), (120, 120, 20),
)  # fmt: skip
CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)
CN_PROVINCES = "桂粤云京沪苏浙川"
VN_SERIES = "ABCDEFGHKLMNPSTUVXYZ"
CN_TAIL = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CONTAINER_LAYOUTS = ("one_line", "two_lines", "vertical", "two_boxes")
PLATE_STYLES = (
    "vn_white",
    "vn_yellow",
    "vn_two_rows",
    "vn_trailer",
    "vn_old",
    "cn_blue",
    "cn_green",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One crop and what it shows.

    Attributes:
        kind: ``"container"`` or ``"plate"``.
        truth: container codes left to right (11 characters each), or the plate's
            normalised text (``29A-123.45``, ``桂A·12345``) as a one-element tuple.
        style: the layout or plate style drawn.
        image: the crop (BGR).
    """

    kind: str
    truth: tuple[str, ...]
    style: str
    image: Image


def cjk_font() -> Path | None:
    """An installed CJK font, or ``None`` (Chinese plates cannot be drawn without one)."""
    return next((p for p in CJK_FONTS if p.exists()), None)


def random_code(rng: random.Random) -> str:
    """A container code with a valid check digit and a known owner."""
    owner = rng.choice(sorted(iso6346.KNOWN_OWNERS))
    serial = f"{rng.randrange(10**6):06d}"
    return f"{owner}{serial}{iso6346.check_digit(owner + serial)}"


def _ink_for(paint: tuple[int, int, int]) -> tuple[int, int, int]:
    return (20, 20, 20) if sum(paint) / 3 > 150 else (245, 245, 245)


def _panel(rng: random.Random, w: int, h: int, paint: tuple[int, int, int]) -> Image:
    """A corrugated painted panel."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = paint
    pitch = rng.randint(18, 36)
    for x in range(0, w, pitch):
        shade = tuple(int(c * 0.8) for c in paint)
        cv2.rectangle(img, (x, 0), (x + pitch // 4, h), shade, -1)
    return img


def _text(
    img: Image,
    text: str,
    org: tuple[int, int],
    style: tuple[int, float, int],
    ink: tuple[int, int, int],
) -> int:
    """Draw text; return its width in pixels."""
    font, scale, thick = style
    cv2.putText(img, text, org, font, scale, ink, thick, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(text, font, scale, thick)
    return int(tw)


def _draw_code(
    img: Image,
    code: str,
    size: str,
    *,
    x: int,
    y: int,
    style: tuple[int, float, int],
    ink: tuple[int, int, int],
    two_lines: bool,
) -> None:
    """Owner+category, serial, boxed check digit; size/type code below."""
    font, scale, thick = style
    (_, th), _ = cv2.getTextSize("0", font, scale, thick)
    gap = int(th * 0.6)
    if two_lines:
        _text(img, code[:4], (x, y), style, ink)
        y2 = y + th + 2 * gap
        w = _text(img, code[4:10], (x, y2), style, ink)
        cx = x + w + gap
        baseline = y2
    else:
        w = _text(img, f"{code[:4]} {code[4:10]}", (x, y), style, ink)
        cx = x + w + gap
        baseline = y
    dw = _text(img, code[10], (cx, baseline), style, ink)
    pad = max(3, th // 4)
    cv2.rectangle(
        img,
        (cx - pad, baseline - th - pad),
        (cx + dw + pad, baseline + pad),
        ink,
        max(1, thick - 1),
    )
    _text(img, size, (x, baseline + th + 2 * gap), (font, scale * 0.8, thick), ink)


def container_crop(rng: random.Random, layout: str) -> Sample:
    """A clean container crop (before degradation) in ``layout``."""
    paint = rng.choice(PAINT)
    ink = _ink_for(paint)
    style = (rng.choice(FONTS), rng.uniform(1.0, 1.5), rng.randint(2, 3))
    size = rng.choice(("22G1", "42G1", "45G1", "45R1", "22R1", "L5G1"))
    if layout == "vertical":
        code = random_code(rng)
        font, scale, thick = style
        (cw, ch), _ = cv2.getTextSize("W", font, scale, thick)
        step = int(ch * 1.7)
        img = _panel(rng, cw * 3, step * 11 + ch * 2, paint)
        for i, c in enumerate(code):
            y = ch + step * (i + 1) - step // 3
            w = _text(img, c, (cw, y), style, ink)
            if i == 10:
                pad = max(3, ch // 4)
                cv2.rectangle(
                    img, (cw - pad, y - ch - pad), (cw + w + pad, y + pad), ink, max(1, thick - 1)
                )
        return Sample(kind="container", truth=(code,), style=layout, image=img)
    codes = [random_code(rng)] + ([random_code(rng)] if layout == "two_boxes" else [])
    per = 480 if layout != "two_lines" else 320
    img = _panel(rng, per * len(codes), 200, paint)
    for i, code in enumerate(codes):
        _draw_code(
            img,
            code,
            size,
            x=36 + per * i,
            y=70,
            style=style,
            ink=ink,
            two_lines=layout == "two_lines",
        )
    return Sample(kind="container", truth=tuple(codes), style=layout, image=img)


def _vn_plate(rng: random.Random, style: str) -> tuple[str, list[str]]:
    """Normalised text and the rows to draw."""
    prov = f"{rng.randint(11, 99):02d}"
    series = "R" if style == "vn_trailer" else rng.choice(VN_SERIES)
    if style == "vn_two_rows" and rng.random() < 0.5:
        series += str(rng.randint(1, 9))
    digits = 4 if style == "vn_old" else 5
    num = f"{rng.randrange(10**digits):0{digits}d}"
    shown = f"{num[:3]}.{num[3:]}" if digits == 5 else num
    text = f"{prov}{series}-{shown}"
    rows = [f"{prov}{series}", shown] if style == "vn_two_rows" else [text]
    return text, rows


def plate_crop(rng: random.Random, style: str) -> Sample:
    """A clean plate crop (before degradation) in ``style``."""
    if style.startswith("cn"):
        return _cn_plate(rng, style)
    text, rows = _vn_plate(rng, style)
    bg = (40, 200, 240) if style in ("vn_yellow", "vn_trailer") else (235, 235, 235)
    font = rng.choice(FONTS[:2])
    w, h = (360, 240) if len(rows) == 2 else (520, 120)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    cv2.rectangle(img, (4, 4), (w - 5, h - 5), (20, 20, 20), 3)
    for i, row in enumerate(rows):
        scale = 2.0 if len(rows) == 1 else 2.2
        (tw, th), _ = cv2.getTextSize(row, font, scale, 5)
        y = (h + th) // 2 if len(rows) == 1 else (i + 1) * h // 2 - (h // 2 - th) // 2
        cv2.putText(img, row, ((w - tw) // 2, y), font, scale, (20, 20, 20), 5, cv2.LINE_AA)
    return Sample(kind="plate", truth=(text,), style=style, image=img)


def _cn_plate(rng: random.Random, style: str) -> Sample:
    from PIL import Image as PilImage  # noqa: PLC0415 - only Chinese plates need Pillow
    from PIL import ImageDraw, ImageFont  # noqa: PLC0415

    path = cjk_font()
    if path is None:
        raise RuntimeError("no CJK font installed (Debian: fonts-wqy-zenhei)")
    n = 6 if style == "cn_green" else 5
    # Mostly digits, as issued; new-energy plates start with D or F.
    tail = "".join(
        rng.choice(CN_TAIL) if rng.random() < 0.25 else str(rng.randrange(10)) for _ in range(n)
    )
    if n == 6:
        tail = rng.choice("DF") + tail[1:]
    text = f"{rng.choice(CN_PROVINCES)}{rng.choice('ABCDEFGHJK')}·{tail}"
    bg, ink = ((90, 200, 60), (20, 20, 20)) if n == 6 else ((160, 60, 10), (245, 245, 245))
    w, h = 520 + 40 * (n - 5), 140
    pil = PilImage.new("RGB", (w, h), bg[::-1])
    draw = ImageDraw.Draw(pil)
    size = 84
    font = ImageFont.truetype(str(path), size)
    while draw.textlength(text, font=font) > w - 40:
        size -= 4
        font = ImageFont.truetype(str(path), size)
    draw.rectangle((4, 4, w - 5, h - 5), outline=ink[::-1], width=3)
    draw.text((w // 2, h // 2), text, font=font, fill=ink[::-1], anchor="mm")
    img = np.asarray(pil, np.uint8)[:, :, ::-1].copy()
    return Sample(kind="plate", truth=(text,), style=style, image=img)


def degrade(rng: random.Random, img: Image, *, hard: float = 1.0) -> Image:
    """Dirt, perspective, scale, blur, night/IR contrast and sensor noise."""
    h, w = img.shape[:2]
    out: npt.NDArray[Any] = img.copy()
    for _ in range(rng.randint(0, int(6 * hard))):  # dirt: dark translucent blotches
        overlay = out.copy()
        centre = (rng.randrange(w), rng.randrange(h))
        axes = (rng.randint(4, max(5, w // 12)), rng.randint(3, max(4, h // 10)))
        cv2.ellipse(overlay, centre, axes, rng.uniform(0, 180), 0, 360, (30, 40, 50), -1)
        alpha = rng.uniform(0.15, 0.45 * hard)
        out = cv2.addWeighted(overlay, alpha, out, 1 - alpha, 0)
    j = 0.06 * hard
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = np.array(
        [[x + rng.uniform(-j, j) * w, y + rng.uniform(-j, j) * h] for x, y in src], np.float32
    )
    m = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(out, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    scale = rng.uniform(0.55, 1.0)
    out = cv2.resize(
        out, (max(8, int(w * scale)), max(8, int(h * scale))), interpolation=cv2.INTER_AREA
    )
    sigma = rng.uniform(0, 1.3 * hard)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < 0.25 * hard:  # night / IR: grey, flat, noisy
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
        grey = 60 + grey * rng.uniform(0.35, 0.6)
        out = cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    noise = np.asarray(np.random.default_rng(rng.randrange(2**32)).normal(0, 6 * hard, out.shape))
    return np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Passage:
    """Several frames of one truck (same codes or plate), each degraded afresh."""

    kind: str
    truth: tuple[str, ...]
    style: str
    frames: tuple[Image, ...]


def passages(
    kind: str, count: int, *, frames: int = 3, seed: int = 0, hard: float = 1.0
) -> Iterator[Passage]:
    """``count`` passages of ``kind`` (``"container"`` or ``"plate"``), styles in rotation."""
    rng = random.Random(f"{kind}:{seed}")
    styles: tuple[str, ...] = CONTAINER_LAYOUTS if kind == "container" else PLATE_STYLES
    if kind == "plate" and cjk_font() is None:
        styles = tuple(s for s in styles if not s.startswith("cn"))
    for i in range(count):
        style = styles[i % len(styles)]
        clean = container_crop(rng, style) if kind == "container" else plate_crop(rng, style)
        shots = tuple(degrade(rng, clean.image, hard=hard) for _ in range(frames))
        yield Passage(kind=kind, truth=clean.truth, style=style, frames=shots)


def write(out: Path, containers: int, plates: int, frames: int, seed: int) -> int:
    """Write PNG frames and ``truth.json`` under ``out``; return the number of images."""
    out.mkdir(parents=True, exist_ok=True)
    truth = []
    for kind, count in (("container", containers), ("plate", plates)):
        for i, p in enumerate(passages(kind, count, frames=frames, seed=seed)):
            for k, frame in enumerate(p.frames):
                name = f"{kind}-{i:04d}-{k}.png"
                cv2.imwrite(str(out / name), frame)
                truth.append(
                    {
                        "file": name,
                        "passage": f"{kind}-{i:04d}",
                        "kind": kind,
                        "truth": list(p.truth),
                        "style": p.style,
                    }
                )
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out / "truth.json")
    return len(truth)


def main(argv: list[str] | None = None) -> int:
    """Command line: write a test set to a folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--plates", type=int, default=20)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = write(args.out, args.containers, args.plates, args.frames, args.seed)
    print(f"wrote {n} images and truth.json to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
