"""The drop folder's state: files grouped into scans by stem, and when each scan is due.

Pure bookkeeping, no I/O: the caller lists the folder (``list_folder``) and passes the
listing and the time in. The driver (inotify or polling) and ``gatewayctl xray check``
use the same rules, so they cannot disagree about what is pending and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png", ".jpg", ".jpeg"})
SIDECAR_SUFFIXES = frozenset({".xml", ".json"})
MARKER_SUFFIX = ".done"


class Listed(NamedTuple):
    """A file as the listing saw it (``lstat``): its state and which file it is."""

    size: int
    mtime_ns: int
    dev: int
    ino: int


Listing = dict[str, Listed]
"""File name -> what the listing saw, for the scan files in the folder."""


def list_folder(path: Path) -> Listing:
    """Scan files in ``path`` (hidden files and other suffixes are a copier's business)."""
    out: Listing = {}
    with os.scandir(path) as entries:
        for entry in entries:
            suffix = os.path.splitext(entry.name)[1].lower()
            if entry.name.startswith(".") or suffix not in (
                IMAGE_SUFFIXES | SIDECAR_SUFFIXES | {MARKER_SUFFIX}
            ):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed between readdir and stat
                continue
            if entry.is_file(follow_symlinks=False):  # no symlinks, FIFOs, devices
                out[entry.name] = Listed(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
    return out


@dataclass(slots=True)
class Seen:
    """A file's size and mtime, and since when (on the caller's clock) it has had them."""

    size: int
    mtime_ns: int
    since: float
    identity: tuple[int, int] = (0, 0)
    """``(st_dev, st_ino)``: the file opened must be this one."""


@dataclass(slots=True)
class Group:
    """The files of one scan, by role."""

    stem: str
    image: str | None = None
    sidecar: str | None = None
    marker: str | None = None
    extra: list[str] = field(default_factory=list)  # a second image or sidecar: ignored

    def names(self) -> list[str]:
        """Every file of the scan that is present."""
        return [n for n in (self.image, self.sidecar, self.marker) if n is not None]


class Due(StrEnum):
    """What a scan's files call for now."""

    READY = "ready"  # image + sidecar settled (or marked done): inspect them
    ORPHAN_IMAGE = "orphan_image"
    ORPHAN_SIDECAR = "orphan_sidecar"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A scan's state: what is due, why (for people), and when to look again."""

    due: Due
    why: str
    wake_at: float | None = None


class Tracker:
    """Remembers since when every file has had its current size and mtime."""

    def __init__(self, *, settle_s: float, orphan_after_s: float) -> None:
        self.settle_s = settle_s
        self.orphan_after_s = orphan_after_s
        self.files: dict[str, Seen] = {}

    def observe(
        self, listing: Listing, now: float, *, since: dict[str, float] | None = None
    ) -> None:
        """Take a listing at ``now``; ``since`` overrides when a new state began (by name)."""
        for name in list(self.files):
            if name not in listing:
                del self.files[name]
        for name, listed in listing.items():
            seen = self.files.get(name)
            identity = (listed.dev, listed.ino)
            if seen is None or (seen.size, seen.mtime_ns, seen.identity) != (
                listed.size,
                listed.mtime_ns,
                identity,
            ):  # another file under the same name is a change too
                began = since.get(name, now) if since is not None else now
                self.files[name] = Seen(listed.size, listed.mtime_ns, began, identity)

    def groups(self) -> dict[str, Group]:
        """The files grouped into scans by stem, sorted by stem."""
        out: dict[str, Group] = {}
        for name in sorted(self.files):
            stem, suffix = os.path.splitext(name)
            group = out.setdefault(stem, Group(stem))
            role = (
                "image"
                if suffix.lower() in IMAGE_SUFFIXES
                else "sidecar"
                if suffix.lower() in SIDECAR_SUFFIXES
                else "marker"
            )
            if getattr(group, role) is None:
                setattr(group, role, name)
            else:
                group.extra.append(name)
        return out

    def state(self, group: Group) -> tuple[tuple[str, int, int], ...]:
        """The group's files as (name, size, mtime_ns): equal states need no second look."""
        return tuple((n, self.files[n].size, self.files[n].mtime_ns) for n in group.names())

    def changed_at(self, group: Group) -> float:
        """When the group's last change was seen."""
        return max(self.files[n].since for n in group.names())

    def judge(self, group: Group, now: float) -> Verdict:
        """What the group calls for at ``now``."""
        changed = self.changed_at(group)
        quiet = now - changed
        if group.image is not None and group.sidecar is not None:
            if group.marker is not None:
                return Verdict(Due.READY, "marked done")
            if quiet >= self.settle_s:
                return Verdict(Due.READY, f"unchanged for {quiet:.1f} s")
            return Verdict(
                Due.PENDING,
                f"still changing: last change {quiet:.1f} s ago, settles after {self.settle_s:g} s",
                changed + self.settle_s,
            )
        if group.image is None and group.sidecar is None:
            return Verdict(Due.PENDING, "marker without scan files")
        lone, missing = (
            (Due.ORPHAN_IMAGE, "sidecar")
            if group.image is not None
            else (Due.ORPHAN_SIDECAR, "image")
        )
        if group.marker is not None or quiet >= self.orphan_after_s:
            return Verdict(lone, f"no {missing} (marked done or alone {quiet:.1f} s)")
        return Verdict(
            Due.PENDING,
            f"waiting for {missing}: alone for {quiet:.1f} s, orphan after "
            f"{self.orphan_after_s:g} s",
            changed + self.orphan_after_s,
        )
