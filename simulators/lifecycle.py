"""The lifecycle every simulator shares: a play task, an orderly teardown, errors surfaced."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class PlayingSimulator(ABC):
    """Base of simulators that play a scenario in a task while serving a transport.

    Subclasses set ``self._task`` in ``__aenter__``, record a crash of their play task
    in ``self._error`` (it is raised from :meth:`aclose`), set ``finished`` when done,
    and release their transport in :meth:`_teardown`.
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

    async def run(self) -> None:
        """Play every truck, then clean up; when playing forever, run until cancelled."""
        async with self:
            await self.finished.wait()

    @abstractmethod
    async def _teardown(self) -> None:
        """Close servers, ptys and links."""
