"""Resynchronising on a byte stream: the part every framed wire codec shares."""

from __future__ import annotations

from typing import Any

from gateway.errors import FrameError


class ByteStream:
    """A receive buffer that skips noise up to the next frame start, reporting it once.

    Codecs keep their bytes in ``self._buffer`` and call :meth:`_resync` before
    parsing each frame. ``stream_name`` prefixes the error messages.
    """

    stream_name = "stream"

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipped = 0  # noise bytes dropped since the last frame start
        self._in_error = False  # a bad frame was reported; its debris is not reported again

    def _resync(self, marker: int, label: str, out: list[Any]) -> bool:
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
            out.append(
                FrameError(f"{self.stream_name}: {self._skipped} bytes of noise before {label}")
            )
            self._in_error = True
        self._skipped = 0
        return True
