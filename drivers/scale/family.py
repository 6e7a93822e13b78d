"""The scale family's descriptor (entry point ``edge_gateway.families``: ``scale``).

Weighbridge indicators: serial (Toledo, SMA, XK3190, MT-SICS) and Modbus.
Only names and references: importing this module imports nothing of the family.
"""

from __future__ import annotations

from gateway.family import DriverEntry, Family

FAMILY = Family(
    name="scale",
    drivers={
        "scale.toledo": DriverEntry("drivers.scale.driver:SerialScaleDriver"),
        "scale.sma": DriverEntry("drivers.scale.driver:SerialScaleDriver"),
        "scale.xk3190": DriverEntry("drivers.scale.driver:SerialScaleDriver"),
        "scale.mtsics": DriverEntry("drivers.scale.driver:SerialScaleDriver"),
        "scale.modbus": DriverEntry("drivers.scale.driver_modbus:ModbusScaleDriver"),
    },
    runtime="drivers.scale.processor:runtime",
    cli="drivers.scale.cli:add_verbs",
    describe="drivers.scale.cli:describe",
)
