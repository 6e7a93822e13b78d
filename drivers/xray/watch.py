"""Waking up when the drop folder changes: inotify through libc, or plain polling.

inotify (inotify(7)) is reached through ctypes so no extra package is needed. It only
wakes the driver: what is complete is always decided from the files' size and mtime,
so a lost or coalesced event (or ``IN_Q_OVERFLOW``) costs at most a delay, and polling
decides exactly as inotify does, only later.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from pathlib import Path
from typing import Literal

import structlog

from gateway.errors import DeviceInitError

log = structlog.get_logger(__name__)

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = (
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM
    | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then name)

SAFETY_RESCAN_S = 30.0
"""Even with inotify, look again this often (a missed event must not stall a scan)."""


class _Inotify:
    """An inotify descriptor watching one directory."""

    def __init__(self, path: Path) -> None:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "libc has no inotify_init1")
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        wd = int(libc.inotify_add_watch(fd, os.fsencode(path), WATCH_MASK))
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        self.fd = fd

    def drain(self) -> tuple[int, bool]:
        """Read pending events: (how many, whether the watched folder went away)."""
        count, gone = 0, False
        while True:
            try:
                buf = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return count, gone
            pos = 0
            while pos + _EVENT.size <= len(buf):
                _wd, mask, _cookie, length = _EVENT.unpack_from(buf, pos)
                pos += _EVENT.size + length
                count += 1
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    gone = True

    def close(self) -> None:
        os.close(self.fd)


class FolderWatch:
    """Wait for a change in a folder, or at most a timeout.

    Args:
        path: the folder.
        mode: ``inotify`` (fail if unavailable), ``poll``, or ``auto`` (inotify, else poll).
        poll_s: the polling interval (and the longest wait) without inotify.
    """

    def __init__(self, path: Path, mode: Literal["auto", "inotify", "poll"], poll_s: float) -> None:
        self.path = path
        self.mode = mode
        self.poll_s = poll_s
        self.active: Literal["inotify", "poll"] = "poll"
        self.events = 0
        self.gone = False
        self._inotify: _Inotify | None = None
        self._changed = asyncio.Event()

    def start(self) -> None:
        """Set up inotify unless polling was asked for; raises :class:`DeviceInitError`."""
        if self.mode == "poll":
            return
        try:
            self._inotify = _Inotify(self.path)
        except OSError as exc:
            if self.mode == "inotify":
                raise DeviceInitError(f"inotify on {self.path} unavailable: {exc}") from exc
            log.warning("inotify unavailable, polling", path=str(self.path), error=str(exc))
            return
        asyncio.get_running_loop().add_reader(self._inotify.fd, self._on_readable)
        self.active = "inotify"

    def _on_readable(self) -> None:
        assert self._inotify is not None
        count, gone = self._inotify.drain()
        self.events += count
        self.gone = self.gone or gone
        self._changed.set()

    async def wait(self, at_most_s: float) -> None:
        """Return after a change (inotify) or ``at_most_s``, capped by the polling interval."""
        cap = SAFETY_RESCAN_S if self.active == "inotify" else self.poll_s
        limit = max(0.0, min(at_most_s, cap))
        if self.active == "poll":
            await asyncio.sleep(limit)
            return
        try:
            async with asyncio.timeout(limit):
                await self._changed.wait()
        except TimeoutError:
            pass
        self._changed.clear()

    def close(self) -> None:
        """Stop watching (idempotent)."""
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None
