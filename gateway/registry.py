"""Driver registry: config ``driver = "..."`` name -> driver class, imported on demand.

The core never imports a concrete driver. Built-in drivers are listed in
:data:`BUILTIN`; other packages add theirs through the ``edge_gateway.drivers``
entry-point group (name = driver name, value = ``module:Class``). A driver whose
optional dependency is missing fails with the extra to install, not an ImportError.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from gateway.errors import DriverUnavailableError

if TYPE_CHECKING:
    from drivers.base import Driver
    from gateway.config import DeviceSection

ENTRY_POINT_GROUP = "edge_gateway.drivers"

BUILTIN: dict[str, tuple[str, str, str | None]] = {
    # name: (module, class, pip extra needed or None)
    "scale.toledo": ("drivers.scale.driver", "SerialScaleDriver", None),
    "scale.sma": ("drivers.scale.driver", "SerialScaleDriver", None),
    "scale.xk3190": ("drivers.scale.driver", "SerialScaleDriver", None),
    "scale.mtsics": ("drivers.scale.driver", "SerialScaleDriver", None),
    "scale.modbus": ("drivers.modbus.driver", "ModbusScaleDriver", None),
    "modbus": ("drivers.modbus.driver", "ModbusDriver", None),
    "eseal.reader": ("drivers.eseal.reader_driver", "SealReaderDriver", None),
    "eseal.jt808": ("drivers.eseal.jt808_driver", "Jt808Driver", None),
    "xray.folder": ("drivers.xray.driver", "XrayFolderDriver", "video"),
    "camera.opencv": ("drivers.camera.driver", "CameraDriver", "video"),
}


def known_drivers() -> list[str]:
    """Every driver name this installation can resolve."""
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def driver_class(name: str, *, where: str = "driver") -> type[Driver]:
    """Import and return the class registered under ``name``."""
    if name in BUILTIN:
        module_name, class_name, extra = BUILTIN[name]
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise DriverUnavailableError(
                f"{where}: unknown driver {name!r}; known drivers: {', '.join(known_drivers())}"
            )
        module_name, _, class_name = found[0].value.partition(":")
        extra = None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f": pip install 'edge-gateway[{extra}]'" if extra else ""
        raise DriverUnavailableError(
            f"{where}: driver {name!r} unavailable ({exc.name} not installed){hint}"
        ) from exc
    cls: type[Driver] = getattr(module, class_name)
    return cls


def device_config_model(name: str, *, where: str = "driver") -> type[DeviceSection]:
    """The config model that validates a ``[[devices]]`` entry using driver ``name``."""
    return driver_class(name, where=where).config_model


def create_driver(config: DeviceSection) -> Driver:
    """Build the driver for a validated device section."""
    return driver_class(config.driver, where=f"device {config.id}")(config)
