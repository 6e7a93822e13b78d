"""The OCR worker process: results off the event loop, latest-wins drops, clean shutdown."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from drivers.camera.ocr.worker import OcrReader, RequestDroppedError
from gateway.errors import DeviceIOError
from simulators.ocr_set import passages


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_reader_reads_drops_superseded_requests_and_leaves_no_process() -> None:
    (plate,) = list(passages("plate", 1, frames=1, seed=3))
    crop = plate.frames[0]
    reader = OcrReader()
    async with reader:
        (pid,) = reader.pids
        assert _alive(pid)
        result = await reader.read("lane1", "plate", crop)
        assert result.plate is not None and result.plate.text == plate.truth[0]

        # Two crops from one camera queued back to back: the older is dropped.
        first = asyncio.create_task(reader.read("lane2", "plate", crop))
        second = asyncio.create_task(reader.read("lane2", "plate", crop))
        with pytest.raises(RequestDroppedError):
            await first
        assert (await second).plate is not None
        assert reader.dropped == 1 and reader.completed == 2
    assert not _alive(pid)
    assert multiprocessing.active_children() == []
    with pytest.raises(DeviceIOError):
        await reader.read("lane1", "plate", crop)
    await reader.aclose()  # idempotent
