"""Which processor condenses which device's readings."""

from __future__ import annotations

from typing import Protocol

from gateway.config import DeviceSection
from gateway.readings import Reading
from gateway.records import Draft
from gateway.weighing import WeighingProcessor, WeighingSettings


class Processor(Protocol):
    """Turns one device's readings into drafts to publish."""

    def feed(self, reading: Reading) -> list[Draft]:
        """Process one reading."""
        ...


def processor_for(config: DeviceSection) -> Processor:
    """The processor for a device, chosen by its driver family."""
    family = config.driver.partition(".")[0]
    if family == "scale":
        values = config.model_dump()
        fields = WeighingSettings.__dataclass_fields__
        settings = WeighingSettings(**{k: values[k] for k in fields if k in values})
        return WeighingProcessor(config.id, settings)
    raise ValueError(f"no processor for driver family {family!r}")
