"""Family registry: a driver name -> its family, driver class, config model and runtime.

Families are found through the ``edge_gateway.families`` entry-point group (name =
family name, value = ``module:attribute`` of a :class:`~gateway.family.Family`). The
built-in families are declared there too, in ``pyproject.toml``; the core names none
of them. A reference inside a descriptor is imported only when it is needed, and a
driver whose optional dependency is missing fails with the extra to install, not an
ImportError.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from gateway.errors import DriverUnavailableError
from gateway.family import DriverEntry, Family, FamilyContext, FamilyRuntime, Processor

if TYPE_CHECKING:
    from gateway.config import DeviceSection
    from gateway.driver import Driver

ENTRY_POINT_GROUP = "edge_gateway.families"


def resolve(reference: str, *, extra: str | None = None, where: str = "family") -> Any:
    """Import ``"module:attribute"`` and return the attribute."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise  # the module itself is missing: a broken installation, not an extra
        hint = f": pip install 'edge-gateway[{extra}]'" if extra else ""
        raise DriverUnavailableError(
            f"{where} unavailable ({exc.name} not installed){hint}"
        ) from exc
    return getattr(module, attribute)


@cache
def families() -> dict[str, Family]:
    """Every installed family by name."""
    found: dict[str, Family] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        family = ep.load()
        if not isinstance(family, Family):
            raise DriverUnavailableError(
                f"entry point {ep.name} = {ep.value!r} in {ENTRY_POINT_GROUP} is not a Family"
            )
        found[family.name] = family
    return found


def known_drivers() -> list[str]:
    """Every driver name this installation can resolve."""
    return sorted(name for f in families().values() for name in f.drivers)


def family_of(driver: str) -> Family | None:
    """The family offering driver ``driver``, or None."""
    return next((f for f in families().values() if driver in f.drivers), None)


def _entry(name: str, where: str) -> DriverEntry:
    family = family_of(name)
    if family is None:
        raise DriverUnavailableError(
            f"{where}: unknown driver {name!r}; known drivers: {', '.join(known_drivers())}"
        )
    return family.drivers[name]


def driver_class(name: str, *, where: str = "driver") -> type[Driver]:
    """Import and return the class registered under ``name``."""
    entry = _entry(name, where)
    cls: type[Driver] = resolve(entry.target, extra=entry.extra, where=f"{where}: driver {name!r}")
    return cls


def device_config_model(name: str, *, where: str = "driver") -> type[DeviceSection]:
    """The config model that validates a ``[[devices]]`` entry using driver ``name``."""
    return driver_class(name, where=where).config_model


def create_driver(config: DeviceSection) -> Driver:
    """Build the driver for a validated device section."""
    return driver_class(config.driver, where=f"device {config.id}")(config)


def build_runtimes(
    context: FamilyContext, devices: Sequence[DeviceSection]
) -> dict[str, FamilyRuntime]:
    """One runtime per family that has at least one of ``devices``."""
    by_family: dict[str, list[DeviceSection]] = {}
    for device in devices:
        family = family_of(device.driver)
        if family is None:  # validated configs name known drivers only
            raise DriverUnavailableError(f"device {device.id}: unknown driver {device.driver!r}")
        by_family.setdefault(family.name, []).append(device)
    runtimes: dict[str, FamilyRuntime] = {}
    for name, members in by_family.items():
        factory = resolve(families()[name].runtime, where=f"family {name!r}")
        runtimes[name] = factory(context, members)
    return runtimes


def processor_for(device: DeviceSection, context: FamilyContext | None = None) -> Processor:
    """A processor for one device outside a daemon (tests, tools): a runtime of its own."""
    runtime = build_runtimes(context or FamilyContext(), [device])
    return next(iter(runtime.values())).processor(device)
