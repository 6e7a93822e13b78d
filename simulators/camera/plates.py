"""Vietnamese licence plates: drawing the text a camera would see (HARDWARE.md "Licence plates").

Cars and tractor units read ``DDL-DDD.DD`` (``29C-123.45``), older ones ``DDL-DDDD``;
trailers and semi-trailers (the container chassis) use series R (``51R-141.39``).
Commercial vehicles carry yellow plates with black characters; some vehicles have a
two-row plate (series on the top row, number below). Pure: text and layout only.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Province codes of the northern border gates, the Hai Phong and Ho Chi Minh City ports
# and the corridors between them: Lang Son 12, Quang Ninh 14, Hai Phong 15/16, Hanoi
# 29/30, Lao Cai 24, Da Nang 43, Binh Duong 61, Ba Ria-Vung Tau 72, HCMC 51.
PROVINCES = ("12", "14", "15", "16", "24", "29", "30", "43", "51", "61", "72")
TRUCK_SERIES = "CDH"  # series letters seen on lorries and tractor units
TRAILER_SERIES = "R"

PLATE_RE = re.compile(r"^\d{2}[A-Z]-(\d{3}\.\d{2}|\d{4})$")
"""Any plate this module draws, as its one-line text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plate:
    """One plate: its canonical text and how it is laid out."""

    text: str
    two_row: bool

    @property
    def rows(self) -> tuple[str, ...]:
        """The printed rows: ``("29C-123.45",)`` or ``("29C", "123.45")``."""
        if not self.two_row:
            return (self.text,)
        series, number = self.text.split("-")
        return (series, number)


def plate(rng: random.Random, *, trailer: bool = False) -> Plate:
    """A plate of a tractor unit, or (``trailer``) of its semi-trailer, series R."""
    series = TRAILER_SERIES if trailer else rng.choice(TRUCK_SERIES)
    province = rng.choice(PROVINCES)
    if rng.random() < 0.2:  # an older four-digit registration
        number = f"{rng.randrange(10**4):04d}"
    else:
        serial = rng.randrange(1, 10**5)
        number = f"{serial // 100:03d}.{serial % 100:02d}"
    return Plate(text=f"{province}{series}-{number}", two_row=rng.random() < 0.3)
