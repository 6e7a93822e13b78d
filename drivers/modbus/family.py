"""The modbus family's descriptor (entry point ``edge_gateway.families``: ``modbus``).

Register-mapped devices over Modbus TCP and RTU.
Only names and references: importing this module imports nothing of the family.
"""

from __future__ import annotations

from gateway.family import DriverEntry, Family

FAMILY = Family(
    name="modbus",
    drivers={
        "modbus": DriverEntry("drivers.modbus.driver:ModbusDriver"),
    },
    runtime="drivers.modbus.processor:runtime",
    cli="drivers.modbus.cli:add_verbs",
    describe="drivers.modbus.cli:describe",
)
