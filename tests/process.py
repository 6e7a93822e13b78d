"""The daemon as a real process, watched through its systemd notify socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path


class GatewayProcess:
    """``edge-gateway run`` in a subprocess, with NOTIFY_SOCKET pointing at the test."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.notify_path = workdir / f"notify-{os.getpid()}-{id(self)}.sock"
        self.proc: asyncio.subprocess.Process | None = None
        self.notes: list[str] = []
        self._sock: socket.socket | None = None
        self._ready: asyncio.Event | None = None
        self._noted: asyncio.Event | None = None
        self.log = workdir / "gateway.log"

    async def start(self, timeout_s: float = 20) -> None:
        """Start and wait for READY=1."""
        loop = asyncio.get_running_loop()
        self.notify_path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.notify_path))
        self._sock.setblocking(False)
        self._ready = asyncio.Event()
        self._noted = asyncio.Event()
        loop.add_reader(self._sock.fileno(), self._on_note)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "WATCHDOG_USEC": "2000000"}
        env.pop("WATCHDOG_PID", None)
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.daemon_cli",
                "run",
                "--config",
                str(self.config),
                "--log-format",
                "json",
                stdout=log,
                stderr=log,
                env=env,
            )
        wait_ready = asyncio.ensure_future(self._ready.wait())
        exited = asyncio.ensure_future(self.proc.wait())
        async with asyncio.timeout(timeout_s):
            await asyncio.wait({wait_ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not wait_ready.done():
            wait_ready.cancel()
            raise RuntimeError(f"gateway exited before READY=1:\n{self.log.read_text()}")
        exited.cancel()

    def _on_note(self) -> None:
        assert self._sock is not None
        assert self._ready is not None
        try:
            data = self._sock.recv(4096).decode()
        except BlockingIOError:
            return
        self.notes.append(data)
        if self._noted is not None:
            self._noted.set()
        if "READY=1" in data:
            self._ready.set()

    async def wait_note(self, predicate: Callable[[str], bool], timeout_s: float = 20) -> str:
        """The first sd_notify datagram (received so far or next) that fits ``predicate``."""
        assert self._noted is not None, "start() first"
        async with asyncio.timeout(timeout_s):
            while True:
                self._noted.clear()
                found = next((n for n in self.notes if predicate(n)), None)
                if found is not None:
                    return found
                await self._noted.wait()

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
        self._close_notify()
        return code

    def _close_notify(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self.notify_path.unlink(missing_ok=True)

    async def ensure_stopped(self) -> None:
        """Kill if still running (test cleanup)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._close_notify()
