"""The xray family's descriptor (entry point ``edge_gateway.families``: ``xray``).

X-ray scanners that drop their images in a folder.
Only names and references: importing this module imports nothing of the family.
"""

from __future__ import annotations

from gateway.family import DriverEntry, Family

FAMILY = Family(
    name="xray",
    drivers={
        "xray.folder": DriverEntry("drivers.xray.driver:XrayFolderDriver", extra="video"),
    },
    runtime="drivers.xray.processor:runtime",
    cli="drivers.xray.cli:add_verbs",
)
