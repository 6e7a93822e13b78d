"""Interface shared by every scale wire codec.

A codec is a pure object (no I/O, no clock): bytes go in with the time they
arrived, readings and frame errors come out. The serial driver moves bytes, the
simulator uses the same module's encoder, and tests feed it byte by byte.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from drivers.scale.readings import WeightMeasured
from drivers.stream import ByteStream
from gateway.errors import FrameError
from gateway.readings import Stamp

Decoded = WeightMeasured | FrameError
"""What a codec yields per frame: a reading, or the error that made it skip a frame."""

# A codec holds at most this many bytes while it waits for a frame end; anything
# longer without a frame end is garbage and is dropped (counted as one FrameError).
MAX_BUFFER = 256


class ScaleCodec(ByteStream, ABC):
    """Incremental decoder for one indicator protocol.

    Subclasses implement :meth:`_decode_buffer`; :meth:`feed` keeps the buffer bounded.
    """

    name: ClassVar[str]
    """Protocol name used in config (``scale.<name>``) and by the simulator."""

    @property
    def stream_name(self) -> str:  # type: ignore[override]
        """Error messages name the protocol."""
        return self.name

    poll_command: ClassVar[bytes | None] = None
    """Bytes the driver sends periodically to get a reading (command/response protocols)."""

    start_command: ClassVar[bytes | None] = None
    """Bytes the driver sends once after opening (e.g. start continuous output)."""

    def feed(self, data: bytes, at: Stamp) -> list[Decoded]:
        """Add bytes that arrived at ``at``; return the frames they completed, in order.

        Bad frames come back as :class:`FrameError` values (never raised), so one bad
        frame never hides the good ones that follow it in the same chunk.
        """
        self._buffer += data
        out = self._decode_buffer(at)
        if len(self._buffer) > MAX_BUFFER:
            dropped = len(self._buffer)
            self._buffer.clear()
            out.append(FrameError(f"{self.name}: {dropped} bytes without a frame end, dropped"))
        return out

    @abstractmethod
    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        """Consume every complete frame at the head of ``self._buffer``."""

    @classmethod
    @abstractmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode one reading as the indicator would send it (used by the simulator)."""
