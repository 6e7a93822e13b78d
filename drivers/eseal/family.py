"""The eseal family's descriptor (entry point ``edge_gateway.families``: ``eseal``).

Electronic seals: Hi-G-Tek gate readers and JT/T 808 e-locks.
Only names and references: importing this module imports nothing of the family.
"""

from __future__ import annotations

from gateway.family import DriverEntry, Family

FAMILY = Family(
    name="eseal",
    drivers={
        "eseal.reader": DriverEntry("drivers.eseal.driver_reader:SealReaderDriver"),
        "eseal.jt808": DriverEntry("drivers.eseal.driver_jt808:Jt808Driver"),
    },
    runtime="drivers.eseal.processor:runtime",
    cli="drivers.eseal.cli:add_verbs",
    describe="drivers.eseal.cli:describe",
)
