"""A synthetic checkpoint lane as an overview camera sees it, rendered with numpy/OpenCV.

The camera looks across the lane at the trucks' sides: sky and the customs yard's
fence at the top, the booth behind the lane, the asphalt with its markings, the boom
gate on the right. Trucks drive in from the left, stop at the gate for the dwell time,
the boom rises and they drive off to the right. Each carries one 40 ft or one or two
20 ft containers with their ISO 6346 number and size/type code painted large on the
side (the check digit boxed, as painted on real boxes), a yellow commercial plate on
the tractor and an R-series plate on the trailer's rear.

:meth:`Scene.frame` is a pure function of the frame number and the seed: the same
seed gives the same clip, frame for frame, whatever was rendered before. On top of
the drawing: a slow day/night drift of the brightness, the ``lighting`` fault's
sudden step, and fresh Gaussian sensor noise per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from simulators.camera.plates import Plate
from simulators.camera.timeline import DRIVE_S, GATE_S, FaultPlan, Truck, TruckPlan

if TYPE_CHECKING:
    import numpy.typing as npt

    Image = npt.NDArray[np.uint8]

MAIN_SIZE = (1280, 720)  # width, height
SUB_SIZE = (640, 360)
STOP_X = 1150  # where a stopped truck's front is, just short of the boom
GATE_X = 1200
GATE_DOWN = math.atan2(170, 60)  # the boom across the lane, foreshortened towards us
GATE_UP = math.atan2(-170, 10)
NOISE_SIGMA = 4.0  # grey levels of sensor noise
NOISE_PAD = 64  # noise fields are this much larger than a frame, each way
LIGHTING_GAIN = 1.45  # the lighting fault's step: headlights or an auto-exposure jump
FONT = cv2.FONT_HERSHEY_DUPLEX
# Container paint (BGR) and the colour its markings are painted in.
PAINTS = (
    ((40, 40, 150), (255, 255, 255)),  # red
    ((140, 70, 20), (255, 255, 255)),  # blue
    ((50, 110, 40), (255, 255, 255)),  # green
    ((30, 120, 220), (255, 255, 255)),  # orange
    ((150, 150, 150), (20, 20, 20)),  # grey
    ((215, 215, 210), (20, 20, 20)),  # white
)
KEY = np.array((255, 0, 255), np.uint8)  # a sprite's transparent colour
PLATE_YELLOW = (0, 200, 245)  # commercial vehicles' plates
CONTAINER_TOP, CONTAINER_BOTTOM = 300, 530
ROAD_TOP = 430
WHEEL_Y, WHEEL_R = 585, 32

Box = tuple[int, int, int, int]  # x, y, width, height in main-stream pixels


@dataclass(slots=True)
class Sprite:
    """A truck drawn once, pasted at its position in every frame it is in."""

    pixels: Image
    mask: npt.NDArray[np.bool_]
    top: int  # frame row of the sprite's first row
    code_boxes: list[Box]  # number + size/type; x from the rear of the truck, y frame rows
    plate_boxes: list[Box]  # tractor's plate, then the trailer's

    @property
    def length(self) -> int:
        return int(self.pixels.shape[1])


def _text(
    image: Image, text: str, org: tuple[int, int], scale: float, colour: tuple[int, ...]
) -> Box:
    """Draw ``text`` with its baseline at ``org``; return its box (x, y, w, h)."""
    thickness = max(2, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.putText(image, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)
    return (org[0], org[1] - h, w, h + base)


def _union(boxes: list[Box], margin: int = 6) -> Box:
    x0 = min(b[0] for b in boxes) - margin
    y0 = min(b[1] for b in boxes) - margin
    x1 = max(b[0] + b[2] for b in boxes) + margin
    y1 = max(b[1] + b[3] for b in boxes) + margin
    return (x0, y0, x1 - x0, y1 - y0)


def _plate(image: Image, p: Plate, right: int, bottom: int) -> Box:
    """A yellow plate with black characters, its bottom-right corner at (right, bottom)."""
    rows = p.rows
    scale = 1.0
    sizes = [cv2.getTextSize(r, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)[0] for r in rows]
    width = max(w for w, _ in sizes) + 20
    row_h = max(h for _, h in sizes) + 12
    height = row_h * len(rows) + 8
    x0, y0 = right - width, bottom - height
    cv2.rectangle(image, (x0, y0), (right, bottom), PLATE_YELLOW, cv2.FILLED)
    cv2.rectangle(image, (x0, y0), (right, bottom), (0, 0, 0), 2)
    for i, (row, (w, h)) in enumerate(zip(rows, sizes, strict=True)):
        org = (x0 + (width - w) // 2, y0 + 4 + row_h * i + (row_h + h) // 2)
        cv2.putText(image, row, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return (x0, y0, width + 1, height + 1)


def _container(image: Image, x0: int, length: int, *, code: str, size_type: str, paint: int) -> Box:
    """One container's side from ``x0``; return the box around its markings."""
    body, ink = PAINTS[paint]
    rib = tuple(max(0, c - 18) for c in body)
    cv2.rectangle(image, (x0, CONTAINER_TOP), (x0 + length, CONTAINER_BOTTOM), body, cv2.FILLED)
    for x in range(x0 + 12, x0 + length - 6, 18):  # corrugation
        cv2.line(image, (x, CONTAINER_TOP + 8), (x, CONTAINER_BOTTOM - 8), rib, 3)
    cv2.rectangle(image, (x0, CONTAINER_TOP), (x0 + length, CONTAINER_BOTTOM), (30, 30, 30), 3)
    # ISO 6346 markings: owner+category, serial, the check digit in a box; type below.
    left, base = x0 + 28, CONTAINER_TOP + 58
    boxes = [_text(image, f"{code[:4]} {code[4:10]}", (left, base), 1.5, ink)]
    digit = _text(image, code[10], (boxes[0][0] + boxes[0][2] + 18, base), 1.5, ink)
    cv2.rectangle(image, (digit[0] - 6, digit[1] - 6), (digit[0] + digit[2] + 6, base + 8), ink, 2)
    boxes += [digit, _text(image, size_type, (left, base + 60), 1.5, ink)]
    return _union(boxes, margin=10)


def render_truck(truck: Truck) -> Sprite:
    """The truck's side view: trailer with its containers at the rear, tractor in front."""
    lengths = (
        [440] * 2 if len(truck.containers) == 2 else [440 if truck.size_types[0][0] == "2" else 900]
    )
    deck = sum(lengths) + 10 * (len(lengths) - 1)
    cab_x0 = deck + 20
    total = cab_x0 + 190
    top = CONTAINER_TOP - 10
    # Drawn in frame rows on a key colour, so that black paint is not taken for empty.
    frame = np.empty((WHEEL_Y + WHEEL_R + 4, total, 3), np.uint8)
    frame[:] = KEY
    paint = truck.colour % len(PAINTS)
    code_boxes = []
    x = 0
    for code, size_type, length in zip(truck.containers, truck.size_types, lengths, strict=True):
        code_boxes.append(_container(frame, x, length, code=code, size_type=size_type, paint=paint))
        x += length + 10
    cv2.rectangle(
        frame, (0, CONTAINER_BOTTOM), (deck + 40, CONTAINER_BOTTOM + 22), (35, 35, 35), -1
    )
    cab_colour = ((60, 60, 170), (170, 120, 40), (200, 200, 200))[truck.colour // 7 % 3]
    cv2.rectangle(frame, (cab_x0, 360), (total - 2, 575), cab_colour, cv2.FILLED)
    cv2.rectangle(frame, (cab_x0 + 60, 375), (total - 14, 440), (90, 70, 50), cv2.FILLED)  # window
    cv2.rectangle(frame, (cab_x0, 360), (total - 2, 575), (25, 25, 25), 2)
    for wx in (270, 350, cab_x0 + 45, total - 45):
        cv2.circle(frame, (wx, WHEEL_Y), WHEEL_R, (20, 20, 20), cv2.FILLED)
        cv2.circle(frame, (wx, WHEEL_Y), WHEEL_R // 2, (110, 110, 110), cv2.FILLED)
    plates = [
        _plate(frame, truck.plate, total - 8, 548),
        _plate(frame, truck.trailer_plate, 8 + 186, CONTAINER_BOTTOM + 80),
    ]
    pixels = frame[top:].copy()
    return Sprite(
        pixels=pixels,
        mask=(pixels != KEY).any(axis=2),
        top=top,
        code_boxes=code_boxes,
        plate_boxes=plates,
    )


def _background(seed: int) -> Image:
    """The empty lane: sky, fence, booth, asphalt and markings, the boom's post."""
    w, h = MAIN_SIZE
    rng = np.random.default_rng([seed, 0xB6])
    image = np.empty((h, w, 3), np.uint8)
    sky = np.linspace(200, 150, 250)[:, None] + np.array([20, 0, -30])  # BGR, bluish
    image[:250] = sky.astype(np.uint8)[:, None, :]
    image[250:ROAD_TOP] = (95, 115, 105)  # the yard beyond the lane
    for x in range(0, w, 40):  # fence posts and wire
        cv2.line(image, (x, 200), (x, 300), (80, 80, 80), 3)
    for y in (210, 240, 270):
        cv2.line(image, (0, y), (w, y), (110, 110, 110), 1)
    cv2.rectangle(image, (960, 170), (1150, 420), (170, 190, 200), cv2.FILLED)  # booth
    cv2.rectangle(image, (985, 210), (1125, 300), (120, 90, 60), cv2.FILLED)
    cv2.rectangle(image, (950, 150), (1160, 175), (60, 60, 140), cv2.FILLED)
    cv2.putText(image, "HAI QUAN", (985, 168), FONT, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    road = rng.normal(75, 6, size=(h - ROAD_TOP, w)).clip(0, 255).astype(np.uint8)
    image[ROAD_TOP:] = road[:, :, None]
    cv2.line(image, (0, ROAD_TOP + 8), (w, ROAD_TOP + 8), (235, 235, 235), 5)
    for x in range(0, w, 120):  # the dashed centre line
        cv2.line(image, (x, 690), (x + 60, 690), (230, 230, 230), 6)
    cv2.line(image, (GATE_X + 30, ROAD_TOP), (GATE_X + 30, h), (40, 200, 230), 8)  # stop line
    cv2.rectangle(image, (GATE_X - 12, 420), (GATE_X + 12, 640), (60, 160, 230), cv2.FILLED)
    return image


class Scene:
    """The lane, its trucks and its faults, rendered frame by frame (module docstring).

    Args:
        plan: the trucks.
        faults: the fault windows (only ``lighting`` changes pixels).
        seed: seeds the background, the noise and the day/night phase.
        day_period_s: period of the brightness drift (a compressed day).
    """

    def __init__(
        self, plan: TruckPlan, faults: FaultPlan, *, seed: int, day_period_s: float = 3600.0
    ) -> None:
        self.plan = plan
        self.faults = faults
        self.seed = seed
        self.fps = plan.fps
        self.day_period_s = day_period_s
        self._background = _background(seed)
        self._phase = (seed % 1000) / 1000 * 2 * math.pi
        self._sprites: dict[int, Sprite] = {}
        self._noise_fields: list[npt.NDArray[np.float32]] = []

    def _noise(self, frame: int) -> npt.NDArray[np.float32]:
        """Frame ``frame``'s sensor noise: a window of a pre-drawn Gaussian field.

        Drawing 2.8 M normals per frame costs more than the rest of the frame; a window
        at a per-frame random offset into one of a few larger fields gives thousands
        of distinct noise frames at the cost of a view.
        """
        if not self._noise_fields:
            rng = np.random.default_rng([self.seed, 0x5E])
            shape = (MAIN_SIZE[1] + NOISE_PAD, MAIN_SIZE[0] + NOISE_PAD, 3)
            self._noise_fields = [
                rng.standard_normal(shape, dtype=np.float32) * NOISE_SIGMA for _ in range(2)
            ]
        pick = np.random.default_rng([self.seed, frame]).integers(0, NOISE_PAD, 3)
        field = self._noise_fields[int(pick[0]) % len(self._noise_fields)]
        y, x = int(pick[1]), int(pick[2])
        return field[y : y + MAIN_SIZE[1], x : x + MAIN_SIZE[0]]

    def sprite(self, truck: Truck) -> Sprite:
        """The truck's drawing, cached while it is the latest few."""
        if (sprite := self._sprites.get(truck.index)) is None:
            sprite = self._sprites[truck.index] = render_truck(truck)
            for old in [i for i in self._sprites if i < truck.index - 3]:
                del self._sprites[old]
        return sprite

    def front_x(self, truck: Truck, frame: int) -> int:
        """Where the truck's front is at ``frame``: easing in to the gate, out past it."""
        length = self.sprite(truck).length
        if frame < truck.stop_frame:  # braking towards the gate
            p = (frame - truck.entry_frame) / (truck.stop_frame - truck.entry_frame)
            return round(STOP_X * (1 - (1 - p) ** 2))
        if frame < truck.leave_frame:
            return STOP_X
        p = (frame - truck.leave_frame + 1) / (truck.exit_frame - truck.leave_frame)
        return round(STOP_X + (MAIN_SIZE[0] + length - STOP_X) * p**2)

    def gate_open(self, frame: int) -> float:
        """How far the boom has risen at ``frame``: 0 down, 1 up."""
        truck = self.plan.at(frame)
        if truck is None:
            return 0.0
        rise = round(GATE_S * self.fps)
        if frame < truck.leave_frame - rise:
            return 0.0
        return min(1.0, (frame - truck.leave_frame + rise + 1) / rise)

    def moving(self, frame: int) -> bool:
        """Whether anything moves at ``frame`` (a truck driving, the boom rising)."""
        truck = self.plan.at(frame)
        return truck is not None and (truck.moving(frame) or 0 < self.gate_open(frame) < 1)

    def gain(self, frame: int) -> float:
        """The global brightness at ``frame``: the day's drift times any lighting step."""
        t = frame / self.fps
        day = 0.8 + 0.2 * math.cos(2 * math.pi * t / self.day_period_s + self._phase)
        return day * (LIGHTING_GAIN if self.faults.active("lighting", frame) else 1.0)

    def clean(self, frame: int) -> Image:
        """Frame ``frame`` of the main stream before brightness and noise."""
        image = self._background.copy()
        truck = self.plan.at(frame)
        if truck is not None:
            sprite = self.sprite(truck)
            x0 = self.front_x(truck, frame) - sprite.length
            left, right = max(0, x0), min(MAIN_SIZE[0], x0 + sprite.length)
            if left < right:
                rows = slice(sprite.top, sprite.top + sprite.pixels.shape[0])
                src = slice(left - x0, right - x0)
                region = image[rows, left:right]
                np.copyto(region, sprite.pixels[:, src], where=sprite.mask[:, src, None])
        theta = GATE_DOWN + (GATE_UP - GATE_DOWN) * self.gate_open(frame)
        tip = (round(GATE_X + 180 * math.cos(theta)), round(425 + 180 * math.sin(theta)))
        cv2.line(image, (GATE_X, 425), tip, (30, 30, 210), 14, cv2.LINE_AA)
        cv2.line(image, (GATE_X, 425), tip, (240, 240, 240), 4, cv2.LINE_AA)
        return image

    def frame(self, frame: int) -> tuple[Image, Image]:
        """Frame ``frame`` of the main (1280x720) and sub (640x360) streams, BGR."""
        image = self.clean(frame).astype(np.float32)
        image *= self.gain(frame)
        image += self._noise(frame)
        main = image.clip(0, 255).astype(np.uint8)
        sub: Image = cv2.resize(main, SUB_SIZE, interpolation=cv2.INTER_AREA).astype(np.uint8)
        return main, sub

    def truck_truth(self, truck: Truck) -> dict[str, object]:
        """What a reader of the picture should find for ``truck``, boxes at the gate."""
        sprite = self.sprite(truck)
        x0 = STOP_X - sprite.length

        def place(box: Box) -> list[int]:
            return [box[0] + x0, box[1], box[2], box[3]]

        return {
            "index": truck.index,
            "entry_frame": truck.entry_frame,
            "stop_frame": truck.stop_frame,
            "leave_frame": truck.leave_frame,
            "exit_frame": truck.exit_frame,
            "containers": [
                {"code": code, "size_type": size_type, "bbox": place(box)}
                for code, size_type, box in zip(
                    truck.containers, truck.size_types, sprite.code_boxes, strict=True
                )
            ],
            "plate": {
                "text": truck.plate.text,
                "rows": len(truck.plate.rows),
                "bbox": place(sprite.plate_boxes[0]),
            },
            "trailer_plate": {
                "text": truck.trailer_plate.text,
                "rows": len(truck.trailer_plate.rows),
                "bbox": place(sprite.plate_boxes[1]),
            },
        }

    def truth(self, until_frame: int | None = None) -> dict[str, object]:
        """The ground truth up to ``until_frame`` (every planned truck when finite)."""
        end = self.plan.end_frame()
        horizon = until_frame if until_frame is not None else end
        if horizon is None:
            raise ValueError("an endless lane needs until_frame")
        return {
            "seed": self.seed,
            "fps": self.fps,
            "main_size": list(MAIN_SIZE),
            "sub_size": list(SUB_SIZE),
            "drive_s": DRIVE_S,
            "end_frame": end,
            "trucks": [self.truck_truth(t) for t in self.plan.until(horizon)],
            "faults": [
                {"kind": w.kind, "start_frame": w.start_frame, "end_frame": w.end_frame}
                for w in self.faults.until(horizon)
            ],
        }
