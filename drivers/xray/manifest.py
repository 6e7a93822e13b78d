"""The append-only manifest: every scan file the driver has dealt with, one JSON line each.

Each line is written with a single ``os.write`` on an ``O_APPEND`` descriptor and then
``fsync``-ed, so a line is either wholly there or (after a crash mid-write) a torn tail
without its newline. Loading skips and reports such a tail instead of failing, and the
next append first ends it with a newline so the torn fragment never swallows a good line.
Nothing is ever rewritten in place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.errors import DeviceInitError, DeviceIOError


@dataclass(frozen=True, slots=True, kw_only=True)
class FileId:
    """A file as it was when dealt with: name, size, mtime and content hash."""

    name: str
    size: int
    mtime_ns: int
    sha256: str


def fingerprint(stem: str, image: FileId | None, sidecar: FileId | None) -> tuple[object, ...]:
    """The identity of a scan's file set: the same files in the same state = same key."""
    return (stem, image, sidecar)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestEntry:
    """One manifest line.

    ``path``/``size``/``mtime_ns``/``sha256`` describe the scan's main file (the image,
    or the sidecar when there is no image); ``image`` and ``sidecar`` both files.
    ``outcome`` is ``complete``, ``repeat`` (same scan id, same image: not re-published),
    a ``ScanFailed`` reason, or ``archived`` (``path`` is where the file now lives).
    """

    stem: str
    outcome: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    scanner_id: str | None = None
    scan_id: str | None = None
    image: FileId | None = None
    sidecar: FileId | None = None
    recorded: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_line(self) -> bytes:
        """The entry as one UTF-8 JSON line; a file name that is not UTF-8 keeps its bytes
        (``surrogateescape``), so the line still names the file the scanner wrote."""
        text = json.dumps(asdict(self), ensure_ascii=False, sort_keys=True) + "\n"
        return text.encode("utf-8", "surrogateescape")

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ManifestEntry:
        """Rebuild an entry from a parsed line; raises ``TypeError``/``KeyError`` if malformed."""
        files = {k: FileId(**raw[k]) if raw.get(k) else None for k in ("image", "sidecar")}
        return cls(**{**raw, **files})


@dataclass(slots=True)
class Manifest:
    """The manifest file and an index of what it holds."""

    path: Path
    entries: list[ManifestEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[object, ...]] = field(default_factory=set)
    images_by_scan_id: dict[str, list[str]] = field(default_factory=dict)
    _needs_newline: bool = False

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read ``path`` (missing = empty); bad lines are skipped and listed in ``problems``."""
        manifest = cls(path=path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return manifest
        except OSError as exc:
            raise DeviceInitError(f"cannot read manifest {path}: {exc}") from exc
        lines = raw.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" unless the last write was torn
        if tail:
            manifest.problems.append(f"{path}: torn last line ignored ({len(tail)} bytes)")
            manifest._needs_newline = True
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = ManifestEntry.from_json(json.loads(line.decode("utf-8", "surrogateescape")))
            except (ValueError, TypeError, KeyError) as exc:
                manifest.problems.append(f"{path}:{number}: unreadable line ignored ({exc})")
                continue
            manifest._index(entry)
        return manifest

    def _index(self, entry: ManifestEntry) -> None:
        self.entries.append(entry)
        if entry.outcome == "archived":
            return
        self.seen.add(fingerprint(entry.stem, entry.image, entry.sidecar))
        if entry.outcome == "complete" and entry.scan_id is not None and entry.image is not None:
            self.images_by_scan_id.setdefault(entry.scan_id, []).append(entry.image.sha256)

    def append(self, entries: Iterable[ManifestEntry]) -> None:
        """Append durably: one ``os.write`` per line on an ``O_APPEND`` fd, then ``fsync``."""
        batch = list(entries)
        if not batch:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                if self._needs_newline:
                    os.write(fd, b"\n")  # end the torn fragment: it stays one bad line
                    self._needs_newline = False
                for entry in batch:
                    line = entry.to_line()
                    if os.write(fd, line) != len(line):
                        raise OSError(f"short write to {self.path}")
                    os.fsync(fd)
                    self._index(entry)
            finally:
                os.close(fd)
            if created:  # the new file's directory entry must survive a power cut too
                dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise DeviceIOError(f"cannot append to manifest {self.path}: {exc}") from exc
