"""The lifecycle every simulator shares: a play task, an orderly teardown, errors surfaced.

Also the command line's side of it: :func:`stop_on_signals` and
:func:`until_done_or_stopped`, which every ``python -m simulators`` device runs under.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Self


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (call it with the event loop running)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def until_done_or_stopped(finished: asyncio.Event, stop: asyncio.Event) -> None:
    """Wait until the simulator has played everything or a signal asked it to stop."""
    done = asyncio.create_task(finished.wait(), name="finished")
    stopped = asyncio.create_task(stop.wait(), name="stopped")
    try:
        await asyncio.wait([done, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (done, stopped):
            task.cancel()
        await asyncio.wait([done, stopped])


class PlayingSimulator(ABC):
    """Base of simulators that play a scenario in a task while serving a transport.

    Subclasses set ``self._task`` in ``__aenter__``, record a crash of their play task
    in ``self._error`` (it is raised from :meth:`aclose`; :meth:`_capture_crash` does
    it), set ``finished`` when done, and release their transport in :meth:`_teardown`.
    """

    finished: asyncio.Event
    _task: asyncio.Task[None] | None
    _error: BaseException | None

    @abstractmethod
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop playing and release the transport. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # our own cancellation still propagates
        await self._teardown()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    @contextlib.contextmanager
    def _capture_crash(self, log: logging.Logger, message: str, *args: object) -> Iterator[None]:
        """Around a play task's body: an ``Exception`` (a bug) ends the block, is logged
        with its traceback as ``message % args`` and kept to be raised from
        :meth:`aclose`, so waiters on ``finished`` do not hang. Cancellation passes."""
        try:
            yield
        except Exception as exc:
            self._error = exc
            log.exception(message, *args)

    async def run(self) -> None:
        """Play every truck, then clean up; when playing forever, run until cancelled."""
        async with self:
            await self.finished.wait()

    @abstractmethod
    async def _teardown(self) -> None:
        """Close servers, ptys and links."""
