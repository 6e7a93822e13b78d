"""Interface shared by every scale wire codec.

A codec is a pure object (no I/O, no clock): bytes go in with the time they
arrived, readings and frame errors come out. The serial driver moves bytes, the
simulator uses the same module's encoder, and tests feed it byte by byte.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from gateway.errors import FrameError
from gateway.readings import Stamp, WeightMeasured

Decoded = WeightMeasured | FrameError
"""What a codec yields per frame: a reading, or the error that made it skip a frame."""

# A codec holds at most this many bytes while it waits for a frame end; anything
# longer without a frame end is garbage and is dropped (counted as one FrameError).
MAX_BUFFER = 256


class ScaleCodec(ABC):
    """Incremental decoder for one indicator protocol.

    Subclasses implement :meth:`_decode_buffer`; :meth:`feed` keeps the buffer bounded.
    """

    name: ClassVar[str]
    """Protocol name used in config (``scale.<name>``) and by the simulator."""

    poll_command: ClassVar[bytes | None] = None
    """Bytes the driver sends periodically to get a reading (command/response protocols)."""

    start_command: ClassVar[bytes | None] = None
    """Bytes the driver sends once after opening (e.g. start continuous output)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipped = 0  # noise bytes dropped since the last frame start
        self._in_error = False  # a bad frame was reported; its debris is not reported again

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

    def _resync(self, marker: int, label: str, out: list[Decoded]) -> bool:
        """Drop bytes before the next frame start ``marker``; report dropped noise once.

        Returns False when the buffer holds no frame start (everything was dropped).
        """
        buf = self._buffer
        start = buf.find(marker)
        if start != 0:
            dropped = len(buf) if start < 0 else start
            self._skipped += dropped
            del buf[:dropped]
            if start < 0:
                return False
        if self._skipped and not self._in_error:
            out.append(FrameError(f"{self.name}: {self._skipped} bytes of noise before {label}"))
            self._in_error = True
        self._skipped = 0
        return True

    @abstractmethod
    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        """Consume every complete frame at the head of ``self._buffer``."""

    @classmethod
    @abstractmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode one reading as the indicator would send it (used by the simulator)."""
