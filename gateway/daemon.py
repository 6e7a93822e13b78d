"""The daemon: outbox, uplink, control socket and one supervised task per device.

Start-up order: outbox (so nothing produced can be lost) -> uplink -> control socket
-> devices -> READY=1. Shutdown on SIGTERM/SIGINT: STOPPING=1, stop the devices,
record their ``stopped`` state, give the uplink a few seconds to drain, publish
``offline``, commit acknowledgements, exit 0. What could not be sent stays in the
outbox for the next start.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import structlog

from gateway import __version__
from gateway.config import DeviceSection, GatewayConfig
from gateway.control_socket import ControlServer
from gateway.driver import Driver
from gateway.errors import OutboxError
from gateway.facts import FactBus
from gateway.family import FamilyContext, FamilyRuntime
from gateway.health import DeviceState
from gateway.lanes import Lane
from gateway.manifests import MANIFEST_COMMAND, ManifestCommand, ManifestStore
from gateway.outbox import Outbox
from gateway.permissions import check_secrets, prepare_data_dir
from gateway.records import Outgoing, Record
from gateway.registry import build_runtimes, family_of
from gateway.sdnotify import notify, watchdog_interval_s, watchdog_loop
from gateway.services import ServiceSupervisor
from gateway.signing import load_or_create
from gateway.supervisor import DeviceSupervisor
from gateway.uplink import Uplink

log = structlog.get_logger(__name__)

STATE_INTERVAL_S = 60.0
STATUS_INTERVAL_S = 2.0
SERVICE_START_S = 120.0
"""Devices start once every service is up or has failed once, or after this long."""
DRAIN_TIMEOUT_S = 5.0
CANCEL_AGAIN_S = 1.0


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and see them end, cancelling again those that do not.

    A library can swallow a cancellation: ``asyncio.wait_for`` before Python 3.12 drops
    it when the awaited future completes at the same moment (seen in pymodbus's
    request path: a Modbus device kept polling and the shutdown never ended).
    """
    for task in tasks:
        task.cancel()
    while pending := [t for t in tasks if not t.done()]:
        await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
        for task in pending:
            if not task.done():
                log.warning(
                    "task still running after cancel; cancelling again", task=task.get_name()
                )
                task.cancel()


def dump_tasks() -> None:
    """``kill -USR1``: log every asyncio task and where it waits (a stuck shutdown)."""
    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=8, file=out)
        log.warning("task", name=task.get_name(), stack=out.getvalue())


class Daemon:
    """One gateway process."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        prepare_data_dir(config.gateway.data_dir, config.outbox_path)
        config.gateway.data_dir.mkdir(parents=True, exist_ok=True)
        self.signer = load_or_create(config.gateway.data_dir, config.gateway.signing_key)
        self.outbox = Outbox(
            config.outbox_path,
            site=config.gateway.site,
            gateway=config.gateway.id,
            max_bytes=config.outbox.max_bytes,
            signer=self.signer,
        )
        self.manifests = ManifestStore(config.gateway.data_dir)
        self.uplink: Uplink | None = None
        self.bus = FactBus()
        devices = [d for d in config.devices if d.enabled]
        self.context = FamilyContext(
            config=config,
            bus=self.bus,
            emit=self.emit,
            state_dir=config.gateway.data_dir / "state",
            drivers=self._driver_of,
        )
        self.runtimes = build_runtimes(self.context, devices)
        self.lanes = [
            Lane(lane, self.bus, self.emit, self.manifests, state_dir=self.context.state_dir)
            for lane in config.lanes
        ]
        self.supervisors = [
            DeviceSupervisor(device, self.emit, processor=self._runtime(device).processor(device))
            for device in devices
        ]
        self._by_id = {s.config.id: s for s in self.supervisors}
        self.services = [
            ServiceSupervisor(service)
            for runtime in self.runtimes.values()
            for service in runtime.services()
        ]
        self.stop = asyncio.Event()
        self.started_mono = time.monotonic()
        self.emit_errors = 0
        self._background: set[asyncio.Task[None]] = set()

    def _runtime(self, device: DeviceSection) -> FamilyRuntime:
        family = family_of(device.driver)
        assert family is not None  # build_runtimes checked every device
        return self.runtimes[family.name]

    def _driver_of(self, device: str) -> Driver | None:
        supervisor = self._by_id.get(device)
        return supervisor.driver if supervisor is not None else None

    async def emit(self, drafts: Sequence[Outgoing]) -> list[Record]:
        """Make drafts durable; the uplink picks them up from the outbox."""
        return await self.outbox.append(drafts)

    def status(self) -> dict[str, Any]:
        """Everything ``gatewayctl status`` prints (device counters as they are now)."""
        for supervisor in self.supervisors:
            if supervisor.driver is not None:
                supervisor.health.counters = supervisor.driver.counters.as_dict()
        uplink = self.uplink
        return {
            "gateway": {
                "site": self.config.gateway.site,
                "id": self.config.gateway.id,
                "root": self.config.gateway.root,
                "version": __version__,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_mono, 1),
                "signing_key": {
                    "fingerprint": self.signer.fingerprint,
                    "path": str(self.signer.path),
                },
            },
            "uplink": {
                **(uplink.stats.as_dict() if uplink else {}),
                "broker": f"{self.config.mqtt.host}:{self.config.mqtt.port}",
                "tls": self.config.mqtt.tls_ca is not None,
                "inflight": uplink.inflight if uplink else 0,
            },
            "outbox": {
                **asdict(self.outbox.stats),
                "max_bytes": self.outbox.max_bytes,
                "path": str(self.outbox.path),
            },
            "manifests": {"held": len(self.manifests.manifests), "path": str(self.manifests.path)},
            **(
                {"lanes": {lane.config.id: lane.status() for lane in self.lanes}}
                if self.lanes
                else {}
            ),
            "devices": {s.config.id: s.health.as_dict() for s in self.supervisors},
            **{k: v for r in self.runtimes.values() for k, v in r.status().items()},
            **(
                {"services": {s.service.name: s.as_dict() for s in self.services}}
                if self.services
                else {}
            ),
        }

    async def run(self) -> int:
        """Run until signalled; return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        log.info(
            "gateway starting",
            version=__version__,
            site=self.config.gateway.site,
            gateway=self.config.gateway.id,
            devices=len(self.supervisors),
            config=str(self.config.source),
        )
        mqtt = self.config.mqtt
        check_secrets({"mqtt.password_file": mqtt.password_file, "mqtt.tls_key": mqtt.tls_key})
        try:
            uplink = Uplink(self.config, self.outbox)
            uplink.key_message = self.signer.key_message()
            self.outbox.on_disk_full.append(self._disk_full)
            self._register_commands(uplink)
            async with self.outbox, uplink:
                self.uplink = uplink
                async with ControlServer(self.config.control_socket, self.status) as control:
                    uplink.on_acked.append(control.publish)
                    await self._serve()
                    await asyncio.gather(*self._background, return_exceptions=True)
                    for lane in self.lanes:
                        lane.stop()
                    notify("STOPPING=1")
                    notify(f"STATUS=stopping; {self.status_line()}")
                    log.info("gateway stopping")
                    await self.emit([s.stopped() for s in self.supervisors])
                    if not await uplink.drained(DRAIN_TIMEOUT_S):
                        log.warning(
                            "stopping with records still queued; they are sent on next start",
                            queued=self.outbox.stats.depth,
                        )
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
        log.info(
            "gateway stopped", last_seq=self.outbox.stats.last_seq, queued=self.outbox.stats.depth
        )
        return 0

    def _disk_full(self, full: bool) -> None:
        """The outbox's disk filled (or has room again): say so everywhere it is read."""
        for s in self.supervisors:
            s.health.storage = "disk_full" if full else "ok"
        if self.uplink is not None:
            self.uplink.update_status(disk_full=full)
        task = asyncio.get_running_loop().create_task(self._record_states(), name="disk-state")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_states(self) -> None:
        try:
            await self.emit([s.health.draft() for s in self.supervisors])
        except OutboxError as exc:
            log.warning("could not record device states", error=str(exc))

    def _register_commands(self, uplink: Uplink) -> None:
        """Commands central may send, for the devices configured."""
        uplink.commands[MANIFEST_COMMAND] = ManifestCommand(self.manifests)
        for runtime in self.runtimes.values():
            uplink.commands.update(runtime.commands())

    async def _services_settled(self) -> None:
        """Until every service is up or failed once, SERVICE_START_S, or a stop signal."""

        async def settled() -> None:
            for s in self.services:
                await s.settled.wait()

        waits = [asyncio.ensure_future(settled()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait(waits, timeout=SERVICE_START_S, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def _serve(self) -> None:
        # A child that raised would cancel all of them: supervisors retry whatever fails
        # (reporting a failure included), the state and watchdog loops skip a round.
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(s.run(), name=f"service-{s.service.name}") for s in self.services
            ]
            await self._services_settled()  # the OCR engine warm before the first passage
            await self._record_states()  # central forgets last run's retained `stopped` now
            for lane in self.lanes:
                lane.start()
            tasks += [
                group.create_task(s.run(), name=f"device-{s.config.id}") for s in self.supervisors
            ]
            tasks.append(group.create_task(self._state_loop(), name="device-state"))
            tasks.append(group.create_task(self._status_loop(), name="service-status"))
            interval = watchdog_interval_s()
            if interval is not None:
                tasks.append(group.create_task(watchdog_loop(interval), name="watchdog"))
            notify("READY=1")
            notify(f"STATUS={self.status_line()}")
            log.info("gateway ready", control=str(self.config.control_socket))
            await self.stop.wait()
            await cancel_all(tasks)

    def status_line(self) -> str:
        """One line for ``systemctl status``: devices, uplink, outbox."""
        states = [s.health.state for s in self.supervisors]
        up = sum(state is DeviceState.UP for state in states)
        others = Counter(str(state) for state in states if state is not DeviceState.UP)
        devices = f"{up}/{len(states)} devices up" + "".join(
            f", {count} {state}" for state, count in sorted(others.items())
        )
        link = self.uplink is not None and self.uplink.stats.connected
        return (
            f"{devices}; uplink {'connected' if link else 'DISCONNECTED'};"
            f" outbox {self.outbox.stats.depth} queued"
            + ("; DISK FULL" if self.outbox.stats.disk_full else "")
        )

    async def _status_loop(self) -> None:
        """Keep the service manager's STATUS= current (it is cheap: a datagram)."""
        shown = ""
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            line = self.status_line()
            if line != shown:
                notify(f"STATUS={line}")
                shown = line

    async def _state_loop(self) -> None:
        """Device states every minute; a round that cannot be recorded is not the end."""
        while True:
            await asyncio.sleep(STATE_INTERVAL_S)
            try:
                drafts = [d for s in self.supervisors if (d := s.refresh()) is not None]
                if drafts:
                    await self.emit(drafts)
            except Exception:  # raising here would end every device's task with this one
                log.exception("could not record device states; trying again next round")
