"""What a device family plugs into the core, and what the core gives it.

A family is one package under ``drivers/`` (or any installed package) that exports a
:class:`Family` through the ``edge_gateway.families`` entry-point group. The core
never imports a family: it finds the descriptor by entry point and resolves the
``"module:attribute"`` references in it only when they are needed, so a family whose
optional dependency is missing costs nothing until one of its drivers is configured.

One daemon builds one :class:`FamilyRuntime` per family that has a configured device:
the runtime makes each device's :class:`Processor`, answers the commands central may
send it, and runs its long-lived :class:`~gateway.services.Service` (the OCR worker).
Families talk to each other only through facts on :attr:`FamilyContext.bus`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.facts import FactBus

if TYPE_CHECKING:
    import argparse

    from gateway.central_commands import Handler
    from gateway.config import DeviceSection, GatewayConfig
    from gateway.driver import Driver
    from gateway.readings import Reading
    from gateway.records import Outgoing, Record
    from gateway.services import Service

EXIT_PROBLEM = 1
"""``gatewayctl`` exit code: a problem was found (a family's verb returns it too)."""

Emit = Callable[[Sequence["Outgoing"]], Awaitable[list["Record"]]]
"""Makes drafts durable in the outbox (the daemon's); returns their records."""


class Processor(Protocol):
    """Turns one device's readings into drafts to publish.

    A processor may also define ``stored(drafts: Sequence[Outgoing]) -> None``, which
    the supervisor calls once the drafts of the last :meth:`feed` are durable (the
    outbox committed them), never after a refused append: what must not be remembered
    before its record is safe (the alarms a seal processor de-duplicates) goes there.
    """

    def feed(self, reading: Reading) -> Sequence[Outgoing]:
        """Process one reading."""
        ...


def unexpected(processor: object, reading: Reading) -> TypeError:
    """The error for a reading a processor does not take (a driver/processor mismatch)."""
    return TypeError(f"{type(processor).__name__} takes no {type(reading).__name__}")


async def _no_emit(drafts: Sequence[Outgoing]) -> list[Record]:
    raise RuntimeError("this context has no outbox (a processor built outside a daemon)")


@dataclass(slots=True)
class FamilyContext:
    """What the daemon lends every family runtime."""

    config: GatewayConfig | None = None
    bus: FactBus = field(default_factory=FactBus)
    emit: Emit = _no_emit
    state_dir: Path | None = None
    """Where a processor keeps what must survive a restart (the weighing in progress)."""
    drivers: Callable[[str], Driver | None] = lambda _device: None
    """The running driver of a device id, or None (not configured, or not open now)."""


class FamilyRuntime(Protocol):
    """One family's part of a running daemon."""

    def processor(self, device: DeviceSection) -> Processor:
        """The processor of one of this family's devices."""
        ...

    def commands(self) -> Mapping[str, Handler]:
        """``cmd/{name}`` handlers this family answers (empty: none)."""
        ...

    def services(self) -> Sequence[Service]:
        """Long-lived tasks this family needs, each supervised by the core."""
        ...

    def status(self) -> dict[str, Any]:
        """Blocks added to ``gatewayctl status`` (e.g. ``{"ocr": {...}}``)."""
        ...


RuntimeFactory = Callable[[FamilyContext, Sequence["DeviceSection"]], FamilyRuntime]


@dataclass(frozen=True, slots=True)
class DriverEntry:
    """One driver a family offers: where its class is, and the pip extra it needs."""

    target: str
    """``"module:Class"`` of the :class:`~gateway.driver.Driver` subclass."""
    extra: str | None = None


@dataclass(frozen=True, slots=True)
class Family:
    """A family's descriptor: names and ``"module:attribute"`` references only.

    Attributes:
        name: the family's name (``scale``); its driver names start with it.
        drivers: driver name (``scale.toledo``) -> where its class is.
        runtime: ``"module:attribute"`` of a :data:`RuntimeFactory`.
        cli: ``"module:attribute"`` of a function ``(verbs: CliVerbs) -> None`` that adds
            the family's ``gatewayctl`` verbs; ``None``: no verbs.
        describe: ``"module:attribute"`` of ``(device_status: dict) -> list[str]``:
            how ``gatewayctl status`` shows one of its devices, the last reading in a
            few words first, then any further lines; ``None``: the core's key=value
            rendering of the last reading.
    """

    name: str
    drivers: Mapping[str, DriverEntry]
    runtime: str
    cli: str | None = None
    describe: str | None = None


@dataclass(frozen=True, slots=True)
class CliVerbs:
    """Where a family adds its ``gatewayctl`` verbs.

    Attributes:
        commands: the top-level sub-command parsers (``gatewayctl camera ...``).
        probe: the ``gatewayctl probe`` sub-command parsers (``probe serial``).
    """

    commands: argparse._SubParsersAction[argparse.ArgumentParser]
    probe: argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(slots=True)
class BasicRuntime:
    """The runtime of a family without services: processors, and perhaps commands."""

    make: Callable[[DeviceSection, FamilyContext], Processor]
    context: FamilyContext
    handlers: Mapping[str, Handler] = field(default_factory=dict)

    def processor(self, device: DeviceSection) -> Processor:
        """See :class:`FamilyRuntime`."""
        return self.make(device, self.context)

    def commands(self) -> Mapping[str, Handler]:
        """The handlers it was given."""
        return self.handlers

    def services(self) -> Sequence[Service]:
        """None."""
        return ()

    def status(self) -> dict[str, Any]:
        """Nothing beyond the devices' own state."""
        return {}


def basic_runtime(
    make: Callable[[DeviceSection, FamilyContext], Processor],
    commands: Callable[[Sequence[DeviceSection]], Mapping[str, Handler]] | None = None,
) -> RuntimeFactory:
    """A :data:`RuntimeFactory` for a family without services.

    ``make`` builds a device's processor; ``commands`` the ``cmd/{name}`` handlers for
    the family's enabled devices.
    """

    def factory(context: FamilyContext, devices: Sequence[DeviceSection]) -> FamilyRuntime:
        handlers = dict(commands(devices)) if commands is not None else {}
        return BasicRuntime(make, context, handlers)

    return factory
