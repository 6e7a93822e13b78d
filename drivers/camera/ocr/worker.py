"""OCR off the event loop: the engine in a worker process, latest request per camera wins.

OCR takes tens to hundreds of milliseconds of CPU per crop; it runs in a process pool
(one worker by default) so that it never blocks the event loop, does not share the
GIL with the daemon, and its memory is measurable on its own. Each worker loads the
engine once (warm-up included) when it starts.

Requests wait in a queue holding at most one request per camera: a newer crop from
the same camera replaces the waiting one, whose caller gets
:class:`RequestDroppedError`, and the drop is counted (``dropped``). Latency stays
bounded under load instead of growing; the newest view of a lane is the useful one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from drivers.camera.ocr.container import ContainerReading, read_container
from drivers.camera.ocr.engine import Image, OcrEngine, RapidOcrEngine
from drivers.camera.ocr.plate import PlateReading, read_plate
from gateway import iso6346
from gateway.errors import DeviceIOError, GatewayError

Kind = Literal["container", "plate"]


class RequestDroppedError(GatewayError):
    """A newer crop from the same camera replaced this request before it was read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OcrResult:
    """What one crop held.

    Attributes:
        camera: the camera the crop came from.
        kind: ``"container"`` or ``"plate"``.
        container: the container reading (``kind == "container"``).
        plate: the plate reading, ``None`` when no text was found or kind is container.
        elapsed_s: wall time the worker spent on this crop.
        cpu_s: CPU time the worker spent on it (differs from ``elapsed_s`` when other
            processes compete for the core).
    """

    camera: str
    kind: Kind
    container: ContainerReading | None = None
    plate: PlateReading | None = None
    elapsed_s: float = 0.0
    cpu_s: float = 0.0


_engine: OcrEngine | None = None
PR_SET_PDEATHSIG = 1


def _end_with_parent() -> None:
    """Linux: SIGTERM this worker when the daemon dies, even by SIGKILL (prctl
    PR_SET_PDEATHSIG), so no OCR process outlives it holding its 250 MB."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_worker(cpu: int | None, threads: int, max_side: int) -> None:
    """Worker process initializer: pin to ``cpu``, load and warm up the engine."""
    global _engine  # noqa: PLW0603 - one engine per worker process, by design
    _end_with_parent()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    _engine = RapidOcrEngine(threads=threads, max_side=max_side)


def _worker_pid() -> int:
    return os.getpid()


def recognise(
    engine: OcrEngine, camera: str, kind: Kind, crop: Image, owners: Collection[str]
) -> OcrResult:
    """Read one crop with ``engine`` (in the calling process)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    container = read_container(engine, crop, owners=owners) if kind == "container" else None
    plate = read_plate(engine, crop) if kind == "plate" else None
    return OcrResult(
        camera=camera,
        kind=kind,
        container=container,
        plate=plate,
        elapsed_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu_started,
    )


def _work(camera: str, kind: Kind, crop: Image, owners: frozenset[str]) -> OcrResult:
    assert _engine is not None, "worker started without its initializer"
    return recognise(_engine, camera, kind, crop, owners)


HEALTH_CHECK_S = 5.0
"""How often an idle worker pool is checked for a dead worker."""


@dataclass(slots=True)
class _Request:
    kind: Kind
    crop: Image
    future: asyncio.Future[OcrResult] = field(default_factory=asyncio.Future)


class OcrReader:
    """Async front of the OCR worker process(es).

    Use as ``async with OcrReader() as reader: result = await reader.read(cam, kind, crop)``.

    Args:
        workers: worker processes (each loads its own engine, ~250 MB).
        cpu: pin the workers to this CPU (``None``: leave the affinity alone).
        threads: onnxruntime threads per worker.
        max_side: detection scales larger crops down to this longest side.
        owners: known owner prefixes for container verification.
        max_cameras: at most this many requests wait; past it the oldest is dropped.
    """

    def __init__(
        self,
        *,
        workers: int = 1,
        cpu: int | None = None,
        threads: int = 1,
        max_side: int = 960,
        owners: Collection[str] = iso6346.KNOWN_OWNERS,
        max_cameras: int = 16,
    ) -> None:
        self._workers = workers
        self._cpu = cpu
        self._threads = threads
        self._max_side = max_side
        self._owners = frozenset(owners)
        self._max_cameras = max_cameras
        self._pending: dict[str, _Request] = {}
        self._wakeup = asyncio.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.completed = 0
        self.pids: tuple[int, ...] = ()
        self.broken: str | None = None
        """Why the worker pool broke (a worker died); ``None`` while it works."""
        self._broken = asyncio.Event()

    @property
    def started(self) -> bool:
        """The workers were started (and not closed since)."""
        return self._pool is not None

    async def wait_broken(self, check_every_s: float = HEALTH_CHECK_S) -> None:
        """Return when the pool broke: every later read would fail; start a new reader.

        A worker that dies between reads is noticed within ``check_every_s``: the pool
        is asked for a worker's pid that often (queued behind any read in progress).
        """
        loop = asyncio.get_running_loop()
        while not self._broken.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), check_every_s)
                return
            if self._pool is None:
                continue
            try:
                await loop.run_in_executor(self._pool, _worker_pid)
            except BrokenProcessPool as exc:
                self.broken = str(exc) or "a worker process ended abruptly"
                self._broken.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the workers and wait until each has loaded and warmed up its engine."""
        loop = asyncio.get_running_loop()
        self._pool = ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._cpu, self._threads, self._max_side),
        )
        try:
            pids = await asyncio.gather(
                *(loop.run_in_executor(self._pool, _worker_pid) for _ in range(self._workers))
            )
        except BrokenProcessPool as exc:
            await self.aclose()
            raise DeviceIOError(f"OCR worker failed to start: {exc}") from exc
        self.pids = tuple(sorted(set(pids)))
        self._tasks = [
            asyncio.create_task(self._serve(), name=f"ocr-worker-{i}") for i in range(self._workers)
        ]

    async def read(self, camera: str, kind: Kind, crop: Image) -> OcrResult:
        """Read a crop; the latest crop per camera wins.

        Raises:
            RequestDroppedError: a newer crop from ``camera`` replaced this one.
            DeviceIOError: the worker process died.
        """
        if self._pool is None:
            raise DeviceIOError("OCR reader is not started")
        old = self._pending.pop(camera, None)
        if old is not None:
            self._drop(old, camera)
        elif len(self._pending) >= self._max_cameras:
            oldest = next(iter(self._pending))
            self._drop(self._pending.pop(oldest), oldest)
        request = _Request(kind=kind, crop=crop)
        self._pending[camera] = request
        self._wakeup.set()
        return await request.future

    def _drop(self, request: _Request, camera: str) -> None:
        self.dropped += 1
        if not request.future.done():
            request.future.set_exception(RequestDroppedError(f"newer crop from {camera}"))

    async def _serve(self) -> None:
        """Feed waiting requests to the pool, one at a time per worker."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            camera = next(iter(self._pending))
            request = self._pending.pop(camera)
            if request.future.done():  # its caller gave up
                continue
            assert self._pool is not None
            try:
                result = await loop.run_in_executor(
                    self._pool, _work, camera, request.kind, request.crop, self._owners
                )
            except BrokenProcessPool as exc:
                if not request.future.done():
                    request.future.set_exception(DeviceIOError(f"OCR worker died: {exc}"))
                self.broken = str(exc) or "a worker process ended abruptly"
                self._broken.set()
                continue
            except asyncio.CancelledError:
                if not request.future.done():
                    request.future.cancel()
                raise
            except Exception as exc:  # the engine's own failure, reported to the caller
                if not request.future.done():
                    request.future.set_exception(DeviceIOError(f"OCR failed: {exc}"))
                continue
            self.completed += 1
            if not request.future.done():
                request.future.set_result(result)

    async def aclose(self) -> None:
        """Stop serving, fail waiting requests, and stop the worker processes. Idempotent."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for request in self._pending.values():
            request.future.cancel()
        self._pending.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            # Joins the workers (and the pool's manager thread): no process is left.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
