"""What makes a camera read its OCR regions besides motion: scales and the centre.

- A vehicle driving onto a scale a camera lists in ``ocr_on_weighing``: seen in the
  scale's weight telemetry crossing its ``min_weight_kg`` (the truck is on the scale,
  so in the lane camera's view).
- ``cmd/ocr`` from the centre: ``{"camera": "cam-1"}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from gateway.commands import Reply
from gateway.config import DeviceSection, GatewayConfig
from gateway.errors import CommandError, ConfigError
from gateway.records import Draft, Outgoing
from gateway.weighing import WeighingKeys

if TYPE_CHECKING:
    from gateway.supervisor import DeviceSupervisor

OCR_COMMAND = "ocr"


def ocr_regions(device: DeviceSection) -> tuple[Any, ...]:
    """A camera's OCR regions; empty for every other device."""
    regions: tuple[Any, ...] = getattr(device, "ocr_regions", ())
    return regions


def request_ocr(supervisor: DeviceSupervisor, trigger: str) -> bool:
    """Ask a running camera to read its regions; False when it cannot now."""
    driver = supervisor.driver
    request = getattr(driver, "request_ocr", None)
    return bool(request(trigger)) if request is not None else False


class WeighingTriggers:
    """Watches scale telemetry for vehicles driving on and triggers the cameras."""

    def __init__(self, config: GatewayConfig, supervisors: list[DeviceSupervisor]) -> None:
        scales = {d.id: d for d in config.devices if isinstance(d, WeighingKeys)}
        self._cameras: dict[str, list[DeviceSupervisor]] = {}
        for index, s in enumerate(supervisors):
            for scale in getattr(s.config, "ocr_on_weighing", ()):
                if scale not in scales:
                    raise ConfigError(
                        f"{config.source}: devices[{index}].ocr_on_weighing: no scale {scale!r}"
                        f"; scales: {', '.join(scales) or 'none'}"
                    )
                self._cameras.setdefault(scale, []).append(s)
        self._min_kg = {name: scales[name].min_weight_kg for name in self._cameras}
        self._on: dict[str, bool] = {}

    def observe(self, drafts: Sequence[Outgoing]) -> None:
        """Look at what was just stored for weights crossing a scale's threshold."""
        if not self._cameras:
            return
        for draft in drafts:
            if not isinstance(draft, Draft) or not draft.topic.endswith("/weight"):
                continue
            scale = draft.device
            if scale not in self._cameras:
                continue
            kg = draft.data.get("weight_kg")
            on = kg is not None and kg >= self._min_kg[scale]
            if on and not self._on.get(scale, False):
                for camera in self._cameras[scale]:
                    request_ocr(camera, f"weighing:{scale}")
            self._on[scale] = on


class OcrCommand:
    """``cmd/ocr``: ``{"camera": ID}`` reads that camera's regions now."""

    def __init__(self, supervisors: list[DeviceSupervisor]) -> None:
        self._cameras = {s.config.id: s for s in supervisors if ocr_regions(s.config)}

    async def __call__(self, request: dict[str, Any]) -> AsyncIterator[Reply]:
        """One reply: whether the camera took the request; results follow on event/ocr."""
        camera = request.get("camera")
        supervisor = self._cameras.get(camera) if isinstance(camera, str) else None
        if supervisor is None:
            raise CommandError(f"camera must be one of {sorted(self._cameras)}")
        if not request_ocr(supervisor, "command"):
            raise CommandError(f"camera {camera!r} is not running; see its device state")
        yield Reply.json({"status": "ok", "camera": camera, "results_on": "event/ocr"})
