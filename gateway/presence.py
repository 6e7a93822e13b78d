"""Seeing an absent device come back, so that its supervisor retries at once.

After a failure the supervisor waits out a capped exponential backoff (up to 60 s). A
device that was unplugged or switched off and comes back would otherwise go unread
for as long as the backoff had grown to, and a truck can cross a scale in that time.
A driver therefore says, through :meth:`gateway.driver.Driver.presence`, how to tell
that its device is there: a cheap look the supervisor repeats while it waits.

Only a *return* ends the wait early: the device seen absent (port path missing,
connection refused) and then present. A device that is there but failing (wrong
protocol or baud rate on an existing port, a Modbus server that accepts but does
not answer) never wakes its supervisor early, so it cannot be retried in a hot loop;
normal backoff applies to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import ABC, abstractmethod
from urllib.parse import urlsplit

TCP_URL_SCHEMES = frozenset({"socket", "rfc2217"})
"""pyserial URL schemes that are a TCP connection to ``host:port``."""


class Presence(ABC):
    """How to see that a device is there; looked at every :attr:`interval_s`."""

    interval_s: float = 0.25
    watch_while_present: bool = True
    """False: a device present at the first look is not looked at again in this wait."""

    @abstractmethod
    async def present(self) -> bool:
        """One cheap look: is the device there now? Never raises for an absent device."""

    async def returned(self) -> None:
        """Return as soon as the device is present after having been seen absent.

        A device present at the first look has to disappear first (or, without
        :attr:`watch_while_present`, is left alone). While the device stays away, or
        stays there, this never returns: the caller's backoff timeout ends the wait.
        """
        absent = not await self.present()
        if not absent and not self.watch_while_present:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(self.interval_s)
            if not await self.present():
                absent = True
            elif absent:
                return


class PathPresence(Presence):
    """A port that is a path (``/dev/ttyUSB0``, a by-id or pty symlink).

    Present when the path resolves and this process may open it for reading and
    writing (``os.access``, which follows symlinks). Checking access and not mere
    existence also waits out udev, which creates a node owned by root and gives it
    its group a moment later.

    A stat every 0.25 s rather than inotify on the parent directory: the names that
    matter are often symlinks (``/dev/serial/by-id/...``, a simulator's pty link)
    whose target vanishes while the link's own directory does not change, the parent
    may itself be missing (``/dev/serial/by-id`` goes away with the last USB
    adapter), and the standard library has no inotify. One syscall four times a
    second per absent device costs nothing, and 0.25 s is well inside the 2 s in
    which a returning device must be read again. The path is watched even while it
    exists, which catches a port that disappears just after its read failed.
    """

    interval_s = 0.25

    def __init__(self, path: str) -> None:
        self.path = path

    async def present(self) -> bool:
        return os.access(self.path, os.R_OK | os.W_OK)

    def __repr__(self) -> str:
        return f"PathPresence({self.path!r})"


class TcpPresence(Presence):
    """A device reached over TCP: present when it accepts a connection.

    The probe connection is closed at once. It is made only while the device is
    absent (refused, unreachable or no answer within :attr:`connect_timeout_s`): when
    the first look finds it accepting (there, but failing), it is not probed again
    during this wait, since a small Modbus gateway or serial server has few
    connection slots; normal backoff decides the next attempt.
    """

    interval_s = 0.5
    watch_while_present = False
    connect_timeout_s = 0.5

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    async def present(self) -> bool:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def __repr__(self) -> str:
        return f"TcpPresence({self.host!r}, {self.port})"


def port_presence(port: str) -> Presence | None:
    """Presence of a pyserial port: a device path, or a ``socket://`` / ``rfc2217://``
    URL (its TCP connection); other URLs (``loop://``, ``spy://``, ``hwgrep://``) have
    nothing to watch.
    """
    if "://" not in port:
        return PathPresence(port)
    url = urlsplit(port)
    try:
        tcp_port = url.port
    except ValueError:
        return None
    if url.scheme in TCP_URL_SCHEMES and url.hostname and tcp_port:
        return TcpPresence(url.hostname, tcp_port)
    return None
