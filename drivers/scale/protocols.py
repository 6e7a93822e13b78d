"""Registry of scale wire codecs, keyed by the protocol name used in config.

``driver = "scale.<name>"`` in a ``[[devices]]`` section selects ``CODECS[name]``; the
probe tries every entry and the simulator encodes with the same classes.
"""

from __future__ import annotations

from drivers.scale.codec import ScaleCodec
from drivers.scale.codec_mtsics import MtSicsCodec
from drivers.scale.codec_sma import SmaCodec
from drivers.scale.codec_toledo import ToledoCodec
from drivers.scale.codec_xk3190 import Xk3190Codec

CODECS: dict[str, type[ScaleCodec]] = {
    codec.name: codec for codec in (ToledoCodec, SmaCodec, Xk3190Codec, MtSicsCodec)
}
"""Protocol name -> codec class. Every class builds with no arguments (defaults)."""

__all__ = ["CODECS", "MtSicsCodec", "SmaCodec", "ToledoCodec", "Xk3190Codec"]
