"""Small state files that survive ``kill -9`` and power cuts.

A state file is replaced whole: the new content goes to a temporary file in the same
directory, is fsynced, renamed over the old one (``os.replace``, atomic on POSIX) and
the directory is fsynced, so after any crash the file holds the old content or the
new one, never a mix. For state a processor must not lose between restarts (the
weighing in progress), not for records: records go through the outbox.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class StateFile:
    """The bytes at ``path``, replaced atomically and durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp")

    def read(self) -> bytes | None:
        """The stored bytes; ``None`` if there is no file."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> None:
        """Replace the content with ``data``: temp file, fsync, rename, fsync the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        self._sync_dir()

    def remove(self) -> None:
        """Delete the file, durably; nothing happens if there is none."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
