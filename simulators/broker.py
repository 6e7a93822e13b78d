"""A private mosquitto broker on a loopback port, and the port helpers that go with it.

The demo checkpoint, the tests and the benchmark all run their own broker: one
:class:`Mosquitto` process with its config in a folder of its own, which can be stopped
and started again on the same port (a broker outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on the loopback port.

    Raises the last connection error (``ConnectionRefusedError``, ...) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def end_with_parent() -> None:
    """In a child, before exec: SIGTERM when its parent dies, even by SIGKILL (Linux).

    The parent is the thread that forked: start such children from a thread that lives
    as long as they should (the event loop's), not from a worker thread.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Mosquitto:
    """One mosquitto process that can be stopped and restarted on the same port."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        persistence: bool = True,
        stock_inflight: bool = False,
        max_queued_messages: int | None = 100_000,
        detached: bool = False,
    ) -> None:
        """Write ``workdir/mosquitto.conf`` for a loopback listener on ``port`` (default:
        a free one), anonymous clients allowed, no log.

        ``persistence`` keeps the broker's state (sessions, queued messages) in
        ``workdir`` across :meth:`stop` and :meth:`start`. ``stock_inflight`` keeps
        mosquitto's default ``max_inflight_messages`` (20), which it announces as its
        MQTT 5 Receive Maximum and enforces with PUBACK "quota exceeded" (0x97): what a
        broker installed as it ships does; otherwise the in-flight window is unlimited.
        ``max_queued_messages`` per client (``None``: mosquitto's default, 1000).
        ``detached`` starts it in a session of its own (a Ctrl-C at the terminal does not
        reach it) and has it sent SIGTERM when the thread that started it dies.
        """
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = workdir
        self.detached = detached
        self.conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/"]
        if max_queued_messages is not None:
            lines.append(f"max_queued_messages {max_queued_messages}")
        if not stock_inflight:
            lines.append("max_inflight_messages 0")
        lines.append("log_dest none")
        if persistence and os.geteuid() == 0:
            # Started as root, mosquitto drops to user 'mosquitto', which cannot write its
            # persistence file into a private tmp dir: the sessions an outage relies on
            # would silently not survive the restart.
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._spawn()
        self._wait_listening()

    async def start_async(self) -> None:
        """:meth:`start` from an event loop: forked from the loop's thread (see
        ``detached``), waited for in a worker thread."""
        self._spawn()
        await asyncio.to_thread(self._wait_listening)

    def stop(self, timeout_s: float | None = 10.0) -> None:
        """Stop cleanly (SIGTERM: it saves its persistence file). Idempotent.

        One that has not exited within ``timeout_s`` is killed, then
        ``subprocess.TimeoutExpired`` raised; ``None`` waits as long as it takes.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own binary and config
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=self.detached,
            preexec_fn=end_with_parent if self.detached else None,  # noqa: PLW1509
        )

    def _wait_listening(self) -> None:
        """Wait for the listener; one that never comes up is not left running."""
        try:
            wait_port(self.port)
        except BaseException:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop()
            raise
