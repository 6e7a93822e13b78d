"""``cmd/ocr`` from central: ``{"camera": ID}`` reads that camera's OCR regions now."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from types import MappingProxyType
from typing import Any

from gateway.central_commands import FieldRule, Reply, RequestSchema
from gateway.errors import CommandError

OCR_COMMAND = "ocr"


class OcrCommand:
    """The ``cmd/ocr`` handler; ``request`` asks a running camera to read its regions."""

    schema: RequestSchema = MappingProxyType({"camera": FieldRule(str, required=True)})

    def __init__(self, cameras: Collection[str], request: Callable[[str, str], bool]) -> None:
        self._cameras = sorted(cameras)
        self._request = request

    async def __call__(self, request: dict[str, Any]) -> AsyncIterator[Reply]:
        """One reply: whether the camera took the request; results follow on event/ocr."""
        camera = request.get("camera")
        if not isinstance(camera, str) or camera not in self._cameras:
            raise CommandError(f"camera must be one of {self._cameras}")
        if not self._request(camera, "command"):
            raise CommandError(f"camera {camera!r} is not running; see its device state")
        yield Reply.json({"status": "ok", "camera": camera, "results_on": "event/ocr"})
