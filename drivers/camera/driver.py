"""``driver = "camera.opencv"``: a camera watched locally, only what matters sent on.

The heavy work (decoding, motion analysis, JPEG encoding) runs in the camera's threads
(:class:`~drivers.camera.worker.CameraWorker`); the event loop only receives finished
readings, through a bounded hand-off (:class:`~drivers.camera.worker.Handoff`: the
latest still and stats, and motion steps and OCR crops never silently lost). A camera
that stops sending frames for ``stall_timeout_s`` raises :class:`DeviceStalledError` so
the supervisor restarts it with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from drivers.camera.config import CameraSection
from drivers.camera.diagnose import diagnose, redact
from drivers.camera.tools import check_camera
from drivers.camera.worker import CameraWorker
from gateway.config import DeviceSection
from gateway.driver import Driver, ProbeResult
from gateway.errors import DeviceInitError, DeviceIOError, DeviceStalledError, FrameError
from gateway.readings import Reading

log = structlog.get_logger(__name__)

PROBE_SECONDS = 3.0
"""How long ``gatewayctl probe`` measures a camera's frame rate."""


def _threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any]) -> Callable[..., None]:
    """``fn`` made callable from another thread: it runs on ``loop``."""

    def call(*args: Any) -> None:
        loop.call_soon_threadsafe(fn, *args)

    return call


class CameraDriver(Driver):
    """Motion events with snapshots, idle-wall stills and health from one camera."""

    config_model = CameraSection

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, CameraSection)
        super().__init__(config)
        self.camera = config
        self._worker: CameraWorker | None = None
        self._wake = asyncio.Event()  # the worker handed something over
        self._opened_at = 0.0
        self._failure: DeviceIOError | DeviceStalledError | None = None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._failure = None
        ready = asyncio.Event()
        worker = CameraWorker(
            self.camera,
            wake=_threadsafe(loop, self._wake.set),
            ready=_threadsafe(loop, ready.set),
        )
        self._worker = worker
        self._opened_at = time.monotonic()
        worker.start()
        try:
            async with asyncio.timeout(self.camera.open_timeout_s):
                await ready.wait()
        except TimeoutError:
            await self._stop_worker()
            url = self.camera.url
            reason = await diagnose(url, self.camera.open_timeout_s)
            raise DeviceInitError(
                f"{self.config.id}: no frame from {redact(url)} within "
                f"{self.camera.open_timeout_s:g} s: {reason}"
            ) from None
        except BaseException:
            await self._stop_worker()
            raise

    async def _close(self) -> None:
        await self._stop_worker()

    def request_ocr(self, trigger: str) -> bool:
        """Read the OCR regions soon; False when the camera is not running or has none."""
        worker = self._worker
        if worker is None or not self.camera.ocr_regions:
            return False
        worker.request_ocr(trigger)
        return True

    async def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.stop()
        if not await asyncio.to_thread(worker.join, worker.join_budget_s):
            log.warning("camera threads still running after close", device=self.config.id)

    def _update_counters(self) -> None:
        if self._worker is not None:
            self.counters.extra.update(self._worker.counters())

    async def _read(self) -> list[Reading | FrameError]:
        stall = self.camera.stall_timeout_s
        while True:
            worker = self._worker
            if worker is None:
                raise DeviceIOError(f"{self.config.id}: camera is closed")
            if self._failure is not None:
                raise self._failure
            self._wake.clear()  # before taking: a hand-over from now on wakes the wait
            taken = self._drain(worker)
            if taken:
                return taken
            timeout: float | None = None
            if stall:
                last = worker.analysed.last_mono or self._opened_at
                silent = time.monotonic() - last
                if silent >= stall:
                    self._update_counters()
                    stalled = DeviceStalledError(
                        f"{self.config.id}: no frame for {silent:.1f} s "
                        f"from {redact(self.camera.url)} (stall_timeout_s={stall:g})"
                    )
                    # An event in progress is ended first, with its best frame: the
                    # record of a truck must not stay open because the camera froze.
                    ended = await asyncio.to_thread(worker.finish_events)
                    if ended:
                        self._failure = stalled
                        return ended
                    raise stalled
                timeout = stall - silent
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _drain(self, worker: CameraWorker) -> list[Reading | FrameError]:
        """Everything handed over so far, in order; a worker failure is raised after it."""
        out, failure = worker.handoff.take()
        if failure is not None:
            self._failure = failure
        self._update_counters()
        if not out and self._failure is not None:
            raise self._failure
        return out

    async def probe(self) -> ProbeResult:
        """Resolution, codec and frame rate measured over a few seconds (no events)."""
        result = await check_camera(
            self.camera.url,
            PROBE_SECONDS,
            open_timeout_s=self.camera.open_timeout_s,
            read_timeout_s=self.camera.read_timeout_s,
        )
        return ProbeResult(ok=result.ok, verdict=result.verdict, details=result.lines())
