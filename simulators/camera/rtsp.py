"""RTSP through a real server: gst-rtsp-server in a child process fed raw frames.

The venv has no GStreamer bindings, so :mod:`simulators.camera.rtsp_child` runs under
the system Python (Debian's python3-gi). Frames travel down its stdin as records (see
that module); closing stdin, or the parent dying (``PR_SET_PDEATHSIG``), ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from fractions import Fraction
from pathlib import Path

from gateway.errors import DeviceInitError

SYSTEM_PYTHON = "/usr/bin/python3"
HEADER = struct.Struct("<cI")  # the child's record header: kind byte, payload length
CHILD = Path(__file__).with_name("rtsp_child.py")
DEBIAN_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-plugins-bad",
)
START_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 2.0


def rtsp_unavailable() -> str | None:
    """Why RTSP cannot be served here (missing Debian packages), or ``None``."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    libdirs = [*Path("/usr/lib").glob("*/gstreamer-1.0"), Path("/usr/lib/gstreamer-1.0")]
    typelibs = [*Path("/usr/lib").glob("*/girepository-1.0"), Path("/usr/lib/girepository-1.0")]
    needed = {
        "GstRtspServer-1.0.typelib": typelibs,
        **{f"libgst{name}.so": libdirs for name in ("app", "x264", "rtp", "videoparsersbad")},
    }
    missing = [n for n, dirs in needed.items() if not any((d / n).exists() for d in dirs)]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install {' '.join(DEBIAN_PACKAGES)}"
    return None


class RtspRelay:
    """The child process and the pipe of frames into it.

    Args:
        host, port: where the RTSP server listens (port 0: a free one, see :attr:`port`).
        fps: the streams' frame rate.
        main_size, sub_size: (width, height) of the raw frames.
    """

    def __init__(
        self,
        host: str,
        port: int,
        fps: float,
        main_size: tuple[int, int],
        sub_size: tuple[int, int],
    ) -> None:
        self.host = host
        self.port = port
        self.fps = fps
        self.main_size = main_size
        self.sub_size = sub_size
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the child and wait until it listens."""
        if (why := rtsp_unavailable()) is not None:
            raise DeviceInitError(f"cannot serve RTSP: {why}")
        rate = Fraction(self.fps).limit_denominator(1000)
        self.proc = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON,
            str(CHILD),
            f"--host={self.host}",
            f"--port={self.port}",
            f"--fps={rate.numerator}/{rate.denominator}",
            f"--main={self.main_size[0]}x{self.main_size[1]}",
            f"--sub={self.sub_size[0]}x{self.sub_size[1]}",
            f"--parent={os.getpid()}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            line = b""
        if not line.startswith(b"PORT "):
            await self.stop()
            raise DeviceInitError(f"the RTSP server child did not start (said {line!r})")
        self.port = int(line.split()[1])

    async def _send(self, kind: bytes, payload: bytes = b"") -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        self.proc.stdin.write(HEADER.pack(kind, len(payload)) + payload)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await self.proc.stdin.drain()

    async def publish(self, main: bytes, sub: bytes) -> None:
        """One frame of each stream, raw BGR."""
        await self._send(b"M", main)
        await self._send(b"S", sub)

    async def refuse(self) -> None:
        """Drop every client and stop listening (the ``disconnect`` fault)."""
        await self._send(b"D")

    async def accept(self) -> None:
        """Listen again on the same port."""
        await self._send(b"A")

    async def stop(self) -> None:
        """Close the pipe; the child quits on end of file (killed if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(3.0):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
