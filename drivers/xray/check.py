"""``gatewayctl xray check DIR``: what a drop folder holds and what the driver makes of it.

Read-only and one-shot: file ages come from their mtime (a running driver uses its own
observations instead), and the same :class:`~drivers.xray.folder.Tracker` rules decide
what is pending. Scans that are due are hashed and their structure walked, so a corrupt
image is listed with its SHA-256, as the driver would report it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from drivers.xray.folder import Due, Group, Tracker, list_folder
from drivers.xray.imagefile import FileChangedError, Identity, NotRegularFileError, read_hashed
from drivers.xray.manifest import Manifest
from drivers.xray.structure import Shape, walk
from gateway.errors import DeviceIOError

MAX_CHECK_BYTES = 2 * 1024**3


@dataclass(frozen=True, slots=True)
class ScanLine:
    """One scan in the report: its stem and what is said about it."""

    stem: str
    state: str  # pending, failed, ready, done
    detail: str


@dataclass(slots=True)
class FolderReport:
    """What ``check_folder`` found, by state."""

    folder: Path
    pending: list[ScanLine] = field(default_factory=list)
    failed: list[ScanLine] = field(default_factory=list)
    ready: list[ScanLine] = field(default_factory=list)
    done: list[ScanLine] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)


def _recorded(manifest: Manifest | None, group: Group, tracker: Tracker) -> str | None:
    """The manifest's outcome for the group's files as they are now, if recorded."""
    if manifest is None:
        return None
    now = {name: (seen.size, seen.mtime_ns) for name, seen in tracker.files.items()}
    for entry in reversed(manifest.entries):
        files = [f for f in (entry.image, entry.sidecar) if f is not None]
        if (
            entry.stem == group.stem
            and files
            and all(now.get(f.name) == (f.size, f.mtime_ns) for f in files)
        ):
            return entry.outcome
    return None


def _inspect(folder: Path, group: Group, identity: Identity) -> ScanLine:
    assert group.image is not None
    try:
        image = read_hashed(folder / group.image, max_bytes=MAX_CHECK_BYTES, identity=identity)
    except FileChangedError:
        return ScanLine(group.stem, "pending", f"{group.image} changed while being read")
    except NotRegularFileError as exc:
        return ScanLine(group.stem, "failed", f"not_regular_file: {exc}")
    shape = walk(image.data)
    facts = f"{image.name}, {image.size} bytes, sha256 {image.sha256}"
    if shape is Shape.EMPTY:
        return ScanLine(group.stem, "failed", f"empty image: {facts}")
    if shape is Shape.TRUNCATED and group.marker is None:
        return ScanLine(group.stem, "pending", f"image truncated (copy stalled?): {facts}")
    if shape in (Shape.TRUNCATED, Shape.CORRUPT):
        return ScanLine(group.stem, "failed", f"corrupt image ({shape}): {facts}")
    return ScanLine(group.stem, "ready", f"complete, not yet recorded: {facts}")


def check_folder(
    path: Path, *, settle_s: float, manifest: Path | None, orphan_after_s: float = 120.0
) -> FolderReport:
    """Describe every scan in ``path``; never writes anything.

    Raises:
        DeviceIOError: the folder cannot be listed.
        DeviceInitError: the manifest exists but cannot be read.
    """
    report = FolderReport(folder=path)
    loaded = Manifest.load(manifest) if manifest is not None else None
    if loaded is not None:
        report.manifest_problems = list(loaded.problems)
    try:
        listing = list_folder(path)
    except OSError as exc:
        raise DeviceIOError(f"cannot list drop folder {path}: {exc}") from exc
    now = time.time()
    tracker = Tracker(settle_s=settle_s, orphan_after_s=orphan_after_s)
    tracker.observe(listing, now, since={n: f.mtime_ns / 1e9 for n, f in listing.items()})
    for stem, group in tracker.groups().items():
        outcome = _recorded(loaded, group, tracker)
        if outcome is not None:
            report.done.append(ScanLine(stem, "done", outcome))
            continue
        verdict = tracker.judge(group, now)
        if verdict.due is Due.PENDING:
            line = ScanLine(stem, "pending", verdict.why)
        elif verdict.due is Due.READY:
            assert group.image is not None
            line = _inspect(path, group, tracker.files[group.image].identity)
        else:
            line = ScanLine(stem, "failed", f"{verdict.due}: {verdict.why}")
        getattr(report, line.state).append(line)
    return report


def render(report: FolderReport) -> str:
    """The report as text for a terminal."""
    out = [f"drop folder {report.folder}"]
    for title, lines in (
        ("pending", report.pending),
        ("failed", report.failed),
        ("ready", report.ready),
        ("done", report.done),
    ):
        out.append(f"{title}: {len(lines)}")
        out += [f"  {line.stem}: {line.detail}" for line in lines]
    out += [f"manifest: {problem}" for problem in report.manifest_problems]
    return "\n".join(out)
