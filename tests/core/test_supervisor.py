"""Supervisor: a device that comes back is retried at once; a failure to report is not fatal."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.scale.driver import ScaleSection
from drivers.scale.readings import WeightMeasured
from gateway import daemon as daemon_module
from gateway.backoff import Backoff
from gateway.config import DeviceSection
from gateway.daemon import Daemon
from gateway.driver import Driver
from gateway.errors import DeviceInitError, FrameError, OutboxFullError
from gateway.presence import PathPresence, Presence, TcpPresence, port_presence
from gateway.readings import Reading, Stamp
from gateway.records import Draft, Outgoing, Priority
from gateway.supervisor import DeviceSupervisor
from simulators.scale import ScaleSimulator
from tests.broker import free_port
from tests.helpers import make_config

SLOW = Backoff(base_s=30.0, cap_s=30.0)
"""A backoff no test waits out: a retry within seconds came from the presence watch."""


class _Nothing:
    """The processor of a test driver that never yields a reading."""

    def feed(self, reading: Reading) -> list[Outgoing]:
        raise AssertionError(f"a failing driver yielded {reading!r}")


NOTHING = _Nothing()


def failing_driver(
    attempted: asyncio.Event, attempts: list[float], presence: Presence | None = None
) -> type[Driver]:
    """A driver whose open always fails, with a new error each time, and the presence given."""

    class Failing(Driver):
        config_model = DeviceSection

        @classmethod
        def presence(cls, config: DeviceSection) -> Presence | None:
            return presence

        async def _open(self) -> None:
            attempts.append(asyncio.get_running_loop().time())
            attempted.set()
            raise DeviceInitError(f"{self.config.id}: attempt {len(attempts)} refused")

        async def _read(self) -> list[Reading | FrameError]:
            raise AssertionError("never opened")

        async def _close(self) -> None:
            pass

    return Failing


class Streaming(Driver):
    """A driver that reads a weight every 10 ms."""

    config_model = DeviceSection

    async def _open(self) -> None:
        pass

    async def _read(self) -> list[Reading | FrameError]:
        await asyncio.sleep(0.01)  # the device's own pace
        return [WeightMeasured(weight=1000.0, unit="kg", stable=True, at=Stamp.now())]

    async def _close(self) -> None:
        pass


async def until(event: asyncio.Event, predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds, woken by ``event``."""
    while not predicate():
        event.clear()
        await event.wait()


async def test_a_failure_that_cannot_be_recorded_ends_no_device() -> None:
    attempted, attempts = asyncio.Event(), list[float]()
    produced, reports = asyncio.Event(), list[Draft]()
    refused = 0

    async def full_outbox(drafts: Sequence[Outgoing]) -> None:
        nonlocal refused
        refused += 1
        raise OutboxFullError("outbox full: only protected records remain")

    async def emit(drafts: Sequence[Outgoing]) -> None:
        reports.extend(d for d in drafts if isinstance(d, Draft))
        produced.set()

    failing = DeviceSupervisor(
        DeviceSection(id="scale-1", driver="test.failing"),
        full_outbox,
        processor=NOTHING,
        backoff=Backoff(base_s=0.01, cap_s=0.02),
        driver_factory=failing_driver(attempted, attempts),
    )
    sibling = DeviceSupervisor(
        ScaleSection(id="scale-2", driver="scale.toledo", port="/dev/null", telemetry_interval_s=0),
        emit,
        driver_factory=Streaming,
    )
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(s.run()) for s in (failing, sibling)]
        try:
            async with asyncio.timeout(10):
                await until(attempted, lambda: len(attempts) >= 5)
                mark = len(reports)
                await until(produced, lambda: len(reports) >= mark + 5)
            assert not any(t.done() for t in tasks)
        finally:
            for task in tasks:
                task.cancel()
    assert refused >= 4  # every failure was reported, and every report was refused
    assert failing.health.state == "down"
    assert "refused" in (failing.health.last_error or "")
    assert failing.health.restarts_total >= 4
    assert sibling.health.state == "up"


async def test_the_state_loop_survives_a_round_that_cannot_be_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = Daemon(make_config(tmp_path, free_port()))
    monkeypatch.setattr(daemon_module, "STATE_INTERVAL_S", 0.01)
    called = asyncio.Event()
    rounds: list[Sequence[Outgoing]] = []

    class Supervisor:
        def refresh(self) -> Draft:
            return Draft(
                topic="device/x/state",
                schema="device_state/1",
                device="x",
                ts=datetime.now(UTC),
                data={},
                priority=Priority.STATE,
            )

    async def emit(drafts: Sequence[Outgoing]) -> list[object]:
        rounds.append(drafts)
        called.set()
        if len(rounds) <= 2:
            raise OutboxFullError("outbox full")
        return []

    daemon.supervisors = [Supervisor()]  # type: ignore[list-item]
    daemon.emit = emit  # type: ignore[method-assign,assignment]
    loop_task = asyncio.create_task(daemon._state_loop())
    try:
        third = asyncio.create_task(until(called, lambda: len(rounds) >= 3))
        async with asyncio.timeout(5):
            await asyncio.wait({loop_task, third}, return_when=asyncio.FIRST_COMPLETED)
        assert not loop_task.done(), loop_task.exception()
        assert third.done()
    finally:
        for task in (loop_task, third):
            task.cancel()
        await asyncio.gather(loop_task, third, return_exceptions=True)


async def test_a_missing_port_that_appears_is_opened_at_once(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-late"
    states: list[str] = []
    changed = asyncio.Event()

    async def emit(drafts: Sequence[Outgoing]) -> None:
        states.extend(
            d.data["state"] for d in drafts if isinstance(d, Draft) and d.topic.endswith("/state")
        )
        changed.set()

    supervisor = DeviceSupervisor(
        ScaleSection(id="scale-1", driver="scale.toledo", port=str(link)), emit, backoff=SLOW
    )
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(5):
            await until(changed, lambda: "down" in states)
        async with ScaleSimulator(protocol="toledo", link=link, seed=4):
            loop = asyncio.get_running_loop()
            back = loop.time()
            async with asyncio.timeout(5):
                await until(changed, lambda: states[-1] == "up")
            assert loop.time() - back < 2.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert supervisor.health.restarts_total == 1


async def test_a_present_port_that_fails_waits_for_its_backoff(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB-wrong"
    port.touch()
    attempted, attempts = asyncio.Event(), list[float]()
    supervisor = DeviceSupervisor(
        DeviceSection(id="scale-1", driver="test.failing"),
        lambda drafts: asyncio.sleep(0),
        processor=NOTHING,
        backoff=SLOW,
        driver_factory=failing_driver(attempted, attempts, PathPresence(str(port))),
    )
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(5):
            await until(attempted, lambda: len(attempts) == 1)
        await asyncio.sleep(1.0)  # four looks at the port: none may retry
        assert len(attempts) == 1, "a present, failing device retried in a loop"
        port.unlink()  # unplugged, then plugged again: one retry, at once
        await asyncio.sleep(0.6)
        port.touch()
        back = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await until(attempted, lambda: len(attempts) == 2)
        assert attempts[1] - back < 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_tcp_device_is_retried_when_it_accepts_and_not_probed_while_it_does() -> None:
    port = free_port()
    attempted, attempts = asyncio.Event(), list[float]()
    accepted = 0

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    supervisor = DeviceSupervisor(
        DeviceSection(id="seal-1", driver="test.failing"),
        lambda drafts: asyncio.sleep(0),
        processor=NOTHING,
        backoff=SLOW,
        driver_factory=failing_driver(attempted, attempts, TcpPresence("127.0.0.1", port)),
    )
    task = asyncio.create_task(supervisor.run())
    server: asyncio.Server | None = None
    try:
        async with asyncio.timeout(5):
            await until(attempted, lambda: len(attempts) == 1)  # refused: absent
        server = await asyncio.start_server(on_connect, "127.0.0.1", port)
        back = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await until(attempted, lambda: len(attempts) == 2)
        assert attempts[1] - back < 1.5
        await asyncio.sleep(1.2)  # accepting but failing: left to the backoff, not probed
        assert len(attempts) == 2
        assert accepted == 2  # the look that found it back, the next wait's first look
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if server is not None:
            server.close()
            await server.wait_closed()


def test_port_presence_by_kind_of_port() -> None:
    assert isinstance(port_presence("/dev/ttyUSB0"), PathPresence)
    tcp = port_presence("socket://10.0.0.7:4001")
    assert isinstance(tcp, TcpPresence)
    assert (tcp.host, tcp.port) == ("10.0.0.7", 4001)
    assert isinstance(port_presence("rfc2217://[::1]:2217?logging=debug"), TcpPresence)
    assert port_presence("loop://") is None
    assert port_presence("socket://host:notaport") is None


async def test_a_dangling_link_is_absent(tmp_path: Path) -> None:
    link = tmp_path / "ttyS-link"
    os.symlink(tmp_path / "gone", link)
    assert not await PathPresence(str(link)).present()
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


async def test_a_retry_in_progress_shows_no_frozen_countdown() -> None:
    """Status said "retry in 0.54 s" while the device was already being reopened."""
    countdowns: list[float | None] = []
    attempted = asyncio.Event()
    supervisor: DeviceSupervisor | None = None

    class Reopening(Driver):
        config_model = DeviceSection

        async def _open(self) -> None:
            assert supervisor is not None
            countdowns.append(supervisor.health.next_retry_s)  # what status shows now
            attempted.set()
            raise DeviceInitError("refused")

        async def _read(self) -> list[Reading | FrameError]:
            raise AssertionError("never opened")

        async def _close(self) -> None:
            pass

    async def emit(drafts: Sequence[Outgoing]) -> None:
        pass

    supervisor = DeviceSupervisor(
        DeviceSection(id="scale-1", driver="test.failing"),
        emit,
        processor=NOTHING,
        backoff=Backoff(base_s=0.01, cap_s=0.02),
        driver_factory=Reopening,
    )
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(10):
            await until(attempted, lambda: len(countdowns) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert countdowns[:3] == [None, None, None], countdowns
