"""The motion detector on synthetic frames: a lane scene, sensor noise, objects, lighting."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from drivers.camera.config import CameraSection, MotionSection
from drivers.camera.motion import MotionChange, MotionDetector, iou

Image = npt.NDArray[np.uint8]
WIDTH, HEIGHT = 256, 144
FPS = 5.0
BOX = 40  # object side in pixels


def scene(seed: int = 1) -> Image:
    """A static, textured grey background (asphalt, lane markings)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 140, (HEIGHT // 8, WIDTH // 8), dtype=np.uint8)
    image = np.kron(coarse, np.ones((8, 8), np.uint8)).astype(np.uint8)
    image[HEIGHT // 2 - 2 : HEIGHT // 2 + 2, :] = 200  # lane marking
    return image


def with_object(background: Image, x: int, y: int = 50) -> Image:
    """``background`` with a textured (checkered) object whose left edge is at ``x``."""
    image = background.copy()
    yy, xx = np.mgrid[0:BOX, 0:BOX]
    patch = np.where(((yy // 5) + (xx // 5)) % 2 == 0, 240, 20).astype(np.uint8)
    x0, x1 = max(x, 0), min(x + BOX, WIDTH)
    if x1 > x0:
        image[y : y + BOX, x0:x1] = patch[:, x0 - x : x1 - x]
    return image


def noisy(image: Image, rng: np.random.Generator, sigma: float = 6.0) -> Image:
    """Sensor noise on top of a clean frame."""
    noise = rng.normal(0.0, sigma, image.shape)
    return np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def run(
    detector: MotionDetector[int], frames: Iterable[Image], start: int = 0
) -> list[MotionChange[int]]:
    """Feed frames at 5 fps; each frame's reference is its index."""
    out: list[MotionChange[int]] = []
    for i, frame in enumerate(frames, start):
        out.extend(detector.feed(frame, i / FPS, i))
    return out


def crossing(background: Image, rng: np.random.Generator, y: int = 50) -> list[Image]:
    """An object entering on the left, crossing, leaving on the right, then 3 s of calm."""
    xs = range(-BOX, WIDTH + 8, 8)
    moving = [noisy(with_object(background, x, y), rng) for x in xs]
    return moving + [noisy(background, rng) for _ in range(15)]


def settings(**overrides: object) -> MotionSection:
    values: dict[str, object] = {"end_quiet_s": 1.0, "heartbeat_s": 60.0}
    values.update(overrides)
    return MotionSection.model_validate(values)


def warm(detector: MotionDetector[int], background: Image, rng: np.random.Generator) -> int:
    """Let the background settle on the empty scene; returns the next frame index."""
    assert run(detector, [noisy(background, rng) for _ in range(10)]) == []
    return 10


def test_object_crossing_gives_one_event_with_boxes_around_it() -> None:
    rng = np.random.default_rng(2)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    first = warm(detector, background, rng)
    steps = run(detector, crossing(background, rng), first)
    phases = [s.phase for s in steps]
    assert phases[0] == "start" and phases[-1] == "end"
    assert phases.count("start") == 1 and phases.count("end") == 1
    assert {s.event for s in steps} == {1}
    end = steps[-1]
    assert end.frames >= 20 and not detector.active
    # the object's rows are 50..90 of 144: every box is in that band (with dilation slack)
    for step in steps:
        for x, y, w, h in step.boxes:
            assert x >= 0 and x + w <= 1 and 0.25 < y + h / 2 < 0.55
            assert 40 / HEIGHT * 0.8 < h < 40 / HEIGHT * 1.6


def test_static_noise_gives_no_event() -> None:
    rng = np.random.default_rng(3)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    assert run(detector, [noisy(background, rng, sigma=10.0) for _ in range(100)]) == []


@pytest.mark.parametrize("contrast", ["gain", "clahe"])
def test_lighting_step_gives_no_event_and_detection_recovers(contrast: str) -> None:
    rng = np.random.default_rng(4)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings(contrast=contrast))
    first = warm(detector, background, rng)
    # headlights / auto-exposure: the whole frame brightens by 70 grey levels, then stays
    bright = np.clip(background.astype(np.int16) + 70, 0, 255).astype(np.uint8)
    steps = run(detector, [noisy(bright, rng) for _ in range(30)], first)
    assert steps == []
    steps = run(detector, crossing(bright, rng), first + 30)
    assert [s.phase for s in steps if s.phase != "update"] == ["start", "end"]


def test_auto_exposure_ramp_gives_no_event() -> None:
    rng = np.random.default_rng(11)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    first = warm(detector, background, rng)
    # the camera opens its iris over 6 s: +1.5 % brightness per frame, up to x1.5
    ramp = [
        np.clip(background * (1 + min(0.015 * i, 0.5)), 0, 255).astype(np.uint8) for i in range(60)
    ]
    assert run(detector, [noisy(frame, rng) for frame in ramp], first) == []


def test_darkening_step_recalibrates() -> None:
    rng = np.random.default_rng(5)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings(recalibrate_fraction=0.3))
    first = warm(detector, background, rng)
    # a non-uniform change (half the frame in shadow) that equalisation cannot undo
    dark = background.copy()
    dark[:, : WIDTH * 2 // 3] //= 3
    assert run(detector, [noisy(dark, rng) for _ in range(20)], first) == []
    assert detector.recalibrations >= 1


def test_mask_suppresses_motion_inside_it() -> None:
    rng = np.random.default_rng(6)
    background = scene()
    # the object crosses rows 50..90; mask that band entirely
    band = ((0.0, 0.3), (1.0, 0.3), (1.0, 0.7), (0.0, 0.7))
    detector: MotionDetector[int] = MotionDetector(settings(masks=(band,)))
    first = warm(detector, background, rng)
    assert run(detector, crossing(background, rng), first) == []
    # the same object in the unmasked upper part is still seen
    steps = run(detector, crossing(background, rng, y=2), first + 100)
    assert [s.phase for s in steps if s.phase != "update"] == ["start", "end"]


def test_heartbeat_updates_while_motion_continues() -> None:
    rng = np.random.default_rng(7)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings(heartbeat_s=2.0))
    first = warm(detector, background, rng)
    # an object jiggling in place for 10 s: the boxes barely change, so updates are heartbeats
    frames = [noisy(with_object(background, 100 + (i % 2) * 6), rng) for i in range(50)]
    steps = run(detector, frames, first)
    assert steps[0].phase == "start"
    updates = [s for s in steps if s.phase == "update"]
    assert 3 <= len(updates) <= 6
    # 2 s apart = 10 analysed frames at 5 fps, all of them with motion
    gaps = [b.frames - a.frames for a, b in itertools.pairwise([steps[0], *updates])]
    assert all(gap == 2.0 * FPS for gap in gaps)


def test_significant_change_is_reported_but_not_every_frame() -> None:
    rng = np.random.default_rng(8)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    first = warm(detector, background, rng)
    steps = run(detector, crossing(background, rng), first)
    updates = [s for s in steps if s.phase == "update"]
    moving_frames = len(range(-BOX, WIDTH + 8, 8))
    assert 1 <= len(updates) < moving_frames // 3
    assert all(s.best is None for s in steps if s.phase != "end")


def test_best_frame_has_the_object_fully_in_view() -> None:
    rng = np.random.default_rng(9)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    first = warm(detector, background, rng)
    steps = run(detector, crossing(background, rng), first)
    best = steps[-1].best
    assert best is not None
    x = list(range(-BOX, WIDTH + 8, 8))[best - first]
    assert x >= 0 and x + BOX <= WIDTH


def test_finish_ends_an_open_event() -> None:
    rng = np.random.default_rng(10)
    background = scene()
    detector: MotionDetector[int] = MotionDetector(settings())
    first = warm(detector, background, rng)
    frames = [noisy(with_object(background, x), rng) for x in range(0, 80, 8)]
    steps = run(detector, frames, first)
    assert steps[0].phase == "start" and detector.active
    (end,) = detector.finish()
    assert end.phase == "end" and end.best is not None and not detector.active


def test_iou() -> None:
    assert iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == pytest.approx(1.0)
    assert iou((0, 0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)) == 0.0
    assert iou((0, 0, 0.5, 0.5), (0.25, 0, 0.5, 0.5)) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ([[[0, 0], [1, 1]]], "mask 0 has 2 point(s); a polygon needs at least 3"),
        ([[[0, 0], [1, 1], [1.5, 0]]], "outside the frame"),
    ],
)
def test_bad_masks_are_rejected_with_a_clear_message(masks: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CameraSection.model_validate(
            {"id": "cam-1", "driver": "camera.opencv", "url": "rtsp://x/", "masks": masks}
        )


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="threshhold"):
        CameraSection.model_validate(
            {"id": "cam-1", "driver": "camera.opencv", "url": "0", "threshhold": 3}
        )
