"""The device end of a pseudo-terminal, linked where a client expects a serial port.

A simulator opens a pty, keeps the master (non-blocking) and points a symlink at the
slave, which the gateway opens exactly as it would open ``/dev/ttyUSB0``. The slave is
not kept open here: that is what makes the master read EIO while no client has the
port, so a simulator can tell whether anyone listens (and drop what nobody would
hear, as on a real wire, instead of letting the kernel queue stale bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def point_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a client never sees it missing)."""
    if os.path.lexists(link) and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
    tmp = link.with_name(link.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


class PtyPort:
    """A pty whose slave is linked at ``link``; the client's bytes go to ``on_bytes``.

    Args:
        link: where the client finds the port.
        on_bytes: called on the event loop with what the client wrote.
        label: names the simulator in log lines.
        on_presence: called with True when a client opens the port, False when it leaves.
    """

    def __init__(
        self,
        link: Path,
        on_bytes: Callable[[bytes], None],
        label: str,
        on_presence: Callable[[bool], None] | None = None,
    ) -> None:
        self.link = link
        self.on_bytes = on_bytes
        self.label = label
        self.on_presence = on_presence
        self.master: int | None = None
        self.slave_name: str | None = None
        self._reading = False  # add_reader installed: a client has the slave open

    def open(self, *, link: bool = True) -> None:
        """Open a new pty; point the link at its slave now, or later with :meth:`point`."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing: bytes pass as on a UART
            name = os.ttyname(slave)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)  # the kernel keeps the raw settings
        os.set_blocking(master, False)
        self.master, self.slave_name, self._reading = master, name, False
        if link:
            self.point()

    def point(self) -> None:
        """Point the link at the open pty's slave (closing the pty if that fails)."""
        assert self.slave_name is not None
        try:
            point_link(self.link, self.slave_name)
        except OSError:
            self.close()
            self.slave_name = None
            raise

    def close(self) -> None:
        """Close the master (a cable pulled); the link stays until :meth:`unlink`."""
        self._stop_reading()
        master, self.master = self.master, None
        if master is not None:
            os.close(master)

    def unlink(self) -> None:
        """Remove the link if it still points at our pty."""
        with contextlib.suppress(OSError):
            if self.slave_name is not None and os.readlink(self.link) == self.slave_name:
                self.link.unlink()
        self.slave_name = None

    def client_present(self) -> bool:
        """Whether a client has the slave open; starts reading when one has arrived.

        While nobody has it open the master is always "readable" with EIO, so the
        reader is removed then and the caller's next look (its tick) checks again.
        """
        if self._reading:
            return True
        if self.master is None:
            return False
        try:
            data = os.read(self.master, 1024)
        except BlockingIOError:
            data = b""
        except OSError:
            return False
        asyncio.get_running_loop().add_reader(self.master, self._on_readable)
        self._reading = True
        if self.on_presence is not None:
            self.on_presence(True)
        if data:
            self.on_bytes(data)
        return True

    def _stop_reading(self) -> None:
        if self._reading and self.master is not None:
            asyncio.get_running_loop().remove_reader(self.master)
        if self._reading and self.on_presence is not None:
            self.on_presence(False)
        self._reading = False

    def _on_readable(self) -> None:
        if self.master is None:
            return
        try:
            data = os.read(self.master, 1024)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the last client closed the port
            if exc.errno != errno.EIO:
                log.warning("%s: reading the pty failed: %s", self.label, exc)
            self._stop_reading()
            return
        if not data:  # end of file: no client (never seen on Linux, where EIO comes)
            self._stop_reading()
            return
        self.on_bytes(data)
