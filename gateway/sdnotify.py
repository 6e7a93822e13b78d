"""systemd notification protocol (sd_notify) without a C dependency.

Only datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@`` for the abstract namespace);
when it is unset (not under systemd, or Type=simple) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket


def notify(message: str) -> bool:
    """Send e.g. ``READY=1``; return whether there was a socket to send to."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog period systemd expects pings at, or None if not enabled."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


async def watchdog_loop(interval_s: float) -> None:
    """Ping ``WATCHDOG=1`` from the event loop: a stuck loop stops the pings.

    A ping that cannot be sent (systemd re-executing) is skipped, not raised: raising
    would end the daemon's TaskGroup and with it every device.
    """
    while True:
        with contextlib.suppress(OSError):
            notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
