"""Shared fixtures: a real broker, a central subscriber, and leak checks."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.broker import Central, Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free port, stopped after the test."""
    b = Mosquitto(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def central(broker: Mosquitto) -> AsyncIterator[Central]:
    """Central's subscriber on ``#`` with a persistent session."""
    c = Central(port=broker.port)
    c.attach(asyncio.get_running_loop())
    await asyncio.to_thread(c.start)
    try:
        yield c
    finally:
        await asyncio.to_thread(c.stop)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (paho loops, executors, simulators)."""
    before = set(threading.enumerate())
    yield
    leaked = []
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2)
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"test left threads running: {leaked}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every coroutine test also gets the task-leak check."""
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.fixturenames.append("no_leaked_tasks")  # type: ignore[attr-defined]


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks pending on its loop."""
    yield
    me = asyncio.current_task()
    for _ in range(3):  # let tasks finishing their cancellation complete
        await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    names = [t.get_name() for t in pending]
    for t in pending:
        t.cancel()
    assert not pending, f"test left tasks pending: {names}"
