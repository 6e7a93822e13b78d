"""The X-ray drop-folder driver: watch, wait for whole scans, hash, preview, record.

One pass over the folder (after a wake-up from :mod:`drivers.xray.watch`) lists the
files, asks :class:`~drivers.xray.folder.Tracker` which scans are due, and inspects
those in a worker thread: hash first (:func:`~drivers.xray.imagefile.read_hashed`), then
the structure walk, the decode and the preview. Originals are only read, never
changed, unless ``archive_dir`` is set.

Delivery is at-least-once. A scan's manifest line is written at the start of the next
``_read()`` call, i.e. after the supervisor has stored the readings of the previous
batch durably; a crash in between re-emits that batch on restart, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2  # noqa: F401 - imagefile decodes with it: missing = "driver unavailable" at lookup
import structlog

from drivers.xray.check import check_folder, render
from drivers.xray.config import XrayFolderSection
from drivers.xray.folder import Due, Group, Tracker, list_folder
from drivers.xray.imagefile import (
    FileBytes,
    FileChangedError,
    NotRegularFileError,
    TooLargeError,
    make_preview,
    read_hashed,
)
from drivers.xray.manifest import FileId, Manifest, ManifestEntry, fingerprint
from drivers.xray.readings import ScanCompleted, ScanFailed
from drivers.xray.sidecar import MAX_SIDECAR_BYTES, Sidecar, parse_sidecar
from drivers.xray.structure import Shape, dimensions, walk
from drivers.xray.watch import FolderWatch
from gateway.config import DeviceSection
from gateway.driver import Driver, ProbeResult
from gateway.errors import DeviceError, DeviceInitError, DeviceIOError, FrameError
from gateway.iso6346 import is_valid as check_digit_ok
from gateway.readings import Reading, Stamp

log = structlog.get_logger(__name__)

MAX_MESSAGE = 300
"""Longest ``message`` of an ``xray_error``: what went wrong, never a file's contents."""

State = tuple[tuple[str, int, int], ...]


def file_id(f: FileBytes | None) -> FileId | None:
    """The manifest's view of a file read."""
    if f is None:
        return None
    return FileId(name=f.name, size=f.size, mtime_ns=f.mtime_ns, sha256=f.sha256)


@dataclass(slots=True)
class _Stalled:
    """A truncated image waiting to be reported as a stalled copy."""

    state: State
    report_at: float
    image: FileBytes
    sidecar: FileBytes


class XrayFolderDriver(Driver):
    """Scans dropped into a folder by an X-ray scanner (``driver = "xray.folder"``)."""

    config_model = XrayFolderSection

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, XrayFolderSection)
        super().__init__(config)
        self.xray = config
        self.watch = FolderWatch(config.path, config.watch, config.poll_s)
        self.manifest = Manifest(path=config.manifest_path)
        self.idle = asyncio.Event()
        """Set after a pass that found nothing due and nothing pending (for tests, probes)."""
        self._reset()

    def _reset(self) -> None:
        """Forget the session: after a reopen, only the manifest says what is done."""
        self.tracker = Tracker(settle_s=self.xray.settle_s, orphan_after_s=self.xray.orphan_after_s)
        self._handled: dict[str, State] = {}
        self._stalled: dict[str, _Stalled] = {}
        self._emitted: set[tuple[object, ...]] = set()
        self._emitted_ids: dict[str, list[str]] = {}
        self._unrecorded: list[tuple[ManifestEntry, Group]] = []

    async def _open(self) -> None:
        if not self.xray.path.is_dir():
            raise DeviceInitError(f"{self.config.id}: drop folder {self.xray.path} is missing")
        self._reset()
        self.manifest = await asyncio.to_thread(Manifest.load, self.xray.manifest_path)
        for problem in self.manifest.problems:
            log.warning("manifest problem", device=self.config.id, problem=problem)
        self.counters.extra["manifest_problems"] = len(self.manifest.problems)
        self.watch = FolderWatch(self.xray.path, self.xray.watch, self.xray.poll_s)
        self.watch.start()

    async def _close(self) -> None:
        # Unrecorded readings may not have been stored by the supervisor: leaving them
        # out of the manifest means the next open emits them again (at-least-once).
        self._reset()
        self.watch.close()

    async def probe(self) -> ProbeResult:
        """Read-only self-test: the folder, the watch mode, the manifest, what is waiting.

        The base probe waits for three readings, which a quiet scanner may never give.
        """
        config = self.xray
        if not config.path.is_dir():
            return ProbeResult(
                ok=False, verdict=f"drop folder {config.path} is missing", details=[]
            )
        watch = FolderWatch(config.path, config.watch, config.poll_s)
        try:
            watch.start()
        except DeviceInitError as exc:
            return ProbeResult(ok=False, verdict=str(exc), details=[])
        finally:
            watch.close()
        try:
            report = await asyncio.to_thread(
                check_folder,
                config.path,
                settle_s=config.settle_s,
                manifest=config.manifest_path,
                orphan_after_s=config.orphan_after_s,
            )
        except DeviceError as exc:
            return ProbeResult(ok=False, verdict=str(exc), details=[])
        state_dir = config.manifest_path.parent
        writable = os.access(state_dir if state_dir.exists() else state_dir.parent, os.W_OK)
        details = [
            f"watching with {watch.active}",
            f"manifest {config.manifest_path} ({'writable' if writable else 'NOT writable'})",
            *render(report).splitlines(),
        ]
        verdict = "drop folder readable" if writable else "manifest directory not writable"
        return ProbeResult(ok=writable, verdict=verdict, details=details)

    # -- the loop -----------------------------------------------------------------------

    async def _read(self) -> list[Reading | FrameError]:
        await self._record()
        loop = asyncio.get_running_loop()
        while True:
            if self.watch.gone:
                raise DeviceIOError(f"{self.config.id}: drop folder {self.xray.path} went away")
            try:
                listing = await asyncio.to_thread(list_folder, self.xray.path)
            except OSError as exc:
                raise DeviceIOError(
                    f"{self.config.id}: cannot list {self.xray.path}: {exc}"
                ) from exc
            now = loop.time()
            self.tracker.observe(listing, now)
            batch, wake_at = await self._pass(now)
            if batch:
                return batch
            if wake_at is None:
                self.idle.set()
            await self.watch.wait((wake_at or now + 3600.0) - loop.time())

    async def _pass(self, now: float) -> tuple[list[Reading | FrameError], float | None]:
        """Inspect every due scan once; return the readings and the next time to look."""
        batch: list[Reading | FrameError] = []
        wake: list[float] = []
        groups = self.tracker.groups()
        for gone in (set(self._handled) | set(self._stalled)) - set(groups):
            self._handled.pop(gone, None)
            self._stalled.pop(gone, None)
        for stem, group in groups.items():
            state = self.tracker.state(group)
            if self._handled.get(stem) == state:
                continue
            stalled = self._stalled.get(stem)
            if stalled is not None and stalled.state == state:
                if now < stalled.report_at:
                    wake.append(stalled.report_at)
                    continue
                message = self._stalled_message(stalled)
                batch += self._failed(
                    group, "stalled_image", message, stalled.image, stalled.sidecar
                )
                self._handled[stem] = state
                continue
            verdict = self.tracker.judge(group, now)
            if verdict.due is Due.PENDING:
                if verdict.wake_at is not None:
                    wake.append(verdict.wake_at)
                continue
            self._stalled.pop(stem, None)  # the files changed: judge them afresh
            try:
                items = await self._inspect(group, verdict.due, state)
            except FileChangedError:
                wake.append(now + self.xray.settle_s)  # still being written: look again
                continue
            except FileNotFoundError:
                continue  # removed meanwhile: the next listing no longer has it
            except Exception as exc:  # whatever one scan's files do, the lane goes on
                batch += self._refused(group, exc)  # once; again if its files change
                self._handled[stem] = state
                continue
            if stem in self._stalled:
                wake.append(self._stalled[stem].report_at)
            else:
                self._handled[stem] = state
            batch += items
        return batch, min(wake, default=None)

    # -- inspecting a scan ----------------------------------------------------------------

    async def _inspect(self, group: Group, due: Due, state: State) -> list[Reading | FrameError]:
        folder = self.xray.path
        limit = self.xray.max_image_bytes

        listed = {name: seen.identity for name, seen in self.tracker.files.items()}

        def read(name: str | None, max_bytes: int) -> FileBytes | None:
            if name is None:
                return None
            return read_hashed(folder / name, max_bytes=max_bytes, identity=listed[name])

        image = await asyncio.to_thread(read, group.image, limit)
        try:
            sidecar = await asyncio.to_thread(read, group.sidecar, MAX_SIDECAR_BYTES)
        except TooLargeError as exc:  # refused by its size, never read whole
            return self._unusable(group, "bad_sidecar", str(exc))
        key = fingerprint(group.stem, file_id(image), file_id(sidecar))
        if key in self.manifest.seen or key in self._emitted:
            return []  # dealt with before (this run or an earlier one)
        if due is Due.ORPHAN_IMAGE:
            assert image is not None
            return self._failed(
                group, "orphan_image", f"{image.name}: no sidecar came", image, None
            )
        assert sidecar is not None
        if due is Due.ORPHAN_SIDECAR:
            return self._failed(
                group, "orphan_sidecar", f"{sidecar.name}: no image came", None, sidecar
            )
        assert image is not None
        return await self._whole_scan(group, image, sidecar, state)

    async def _whole_scan(
        self, group: Group, image: FileBytes, sidecar: FileBytes, state: State
    ) -> list[Reading | FrameError]:
        shape = await asyncio.to_thread(walk, image.data)  # CRCs and JPEG scans: not on the loop
        if shape is Shape.EMPTY:
            return self._failed(
                group, "empty_image", f"{image.name} is empty (0 bytes)", image, sidecar
            )
        if shape is Shape.TRUNCATED and group.marker is None:
            # A copy that stopped half way: never a scan; reported once if it stays so.
            self._stalled[group.stem] = _Stalled(
                state, self.tracker.changed_at(group) + self.xray.orphan_after_s, image, sidecar
            )
            return []
        if shape in (Shape.TRUNCATED, Shape.CORRUPT):
            why = f"{image.name}: {shape} image ({image.size} bytes, sha256 {image.sha256})"
            return self._failed(group, "corrupt_image", why, image, sidecar)
        size = dimensions(image.data)
        if size is not None and size[0] * size[1] > self.xray.max_pixels:
            why = (
                f"{image.name}: header declares {size[0]}x{size[1]} pixels, over max_pixels"
                f" {self.xray.max_pixels} (not decoded; sha256 {image.sha256})"
            )
            return self._failed(group, "image_too_large", why, image, sidecar)
        try:
            parsed = parse_sidecar(sidecar.data, Path(sidecar.name).suffix)
        except FrameError as exc:
            return self._failed(group, "bad_sidecar", f"{sidecar.name}: {exc}", image, sidecar)
        preview = await asyncio.to_thread(
            make_preview,
            image.data,
            height=self.xray.preview_height,
            quality=self.xray.preview_quality,
        )
        if preview is None:
            why = f"{image.name} does not decode ({image.size} bytes, sha256 {image.sha256})"
            return self._failed(group, "corrupt_image", why, image, sidecar)
        earlier = self.manifest.images_by_scan_id.get(parsed.scan_id, []) + self._emitted_ids.get(
            parsed.scan_id, []
        )
        if image.sha256 in earlier:  # the same scan dropped again: already published
            await asyncio.to_thread(
                self.manifest.append, [self._entry(group, "repeat", image, sidecar, parsed)]
            )
            return []
        containers = tuple((c, check_digit_ok(c)) for c in parsed.containers)
        problems = [*parsed.problems]
        problems += [f"container {c}: check digit wrong" for c, ok in containers if not ok]
        if earlier:
            problems.append(f"scan id {parsed.scan_id} seen before with another image")
        reading = ScanCompleted(
            at=Stamp.now(),
            stem=group.stem,
            scan_id=parsed.scan_id,
            scanner_id=self.xray.scanner_id or parsed.scanner_id,
            lane=parsed.lane,
            scan_time=parsed.time,
            operator=parsed.operator,
            containers=containers,
            image_name=image.name,
            image_bytes=image.size,
            image_mtime_ns=image.mtime_ns,
            image_sha256=image.sha256,
            sidecar_name=sidecar.name,
            sidecar_sha256=sidecar.sha256,
            width=preview.width,
            height=preview.height,
            bit_depth=preview.bit_depth,
            image_format=preview.format,
            preview_jpeg=preview.jpeg,
            preview_sha256=preview.jpeg_sha256,
            preview_width=preview.jpeg_width,
            preview_height=preview.jpeg_height,
            duplicate_of=earlier[-1] if earlier else None,
            problems=tuple(problems),
        )
        self._emitted_ids.setdefault(parsed.scan_id, []).append(image.sha256)
        self._remember(self._entry(group, "complete", image, sidecar, parsed), group)
        return [reading]

    def _failed(
        self,
        group: Group,
        reason: str,
        message: str,
        image: FileBytes | None,
        sidecar: FileBytes | None,
    ) -> list[Reading | FrameError]:
        scan_id = None
        if sidecar is not None:
            with contextlib.suppress(Exception):  # a bad sidecar is reported by reason
                scan_id = parse_sidecar(sidecar.data, Path(sidecar.name).suffix).scan_id
        self._remember(self._entry(group, reason, image, sidecar, None, scan_id=scan_id), group)
        return self._scan_failed(
            group,
            reason,
            message,
            scan_id=scan_id,
            image_name=image.name if image else None,
            image_sha256=image.sha256 if image else None,
            sidecar_name=sidecar.name if sidecar else None,
            sidecar_sha256=sidecar.sha256 if sidecar else None,
        )

    def _refused(self, group: Group, exc: Exception) -> list[Reading | FrameError]:
        """The scan's ``xray_error`` for what stopped it being taken in (in an except)."""
        stem = group.stem
        if isinstance(exc, NotRegularFileError):  # swapped in after the listing
            log.warning("scan file is not a regular file; refused", stem=stem, error=str(exc))
            return self._unusable(group, "not_regular_file", str(exc))
        if isinstance(exc, OSError):  # unreadable as it is
            log.warning("cannot read scan files", stem=stem, error=str(exc))
            return self._unusable(group, "unreadable", f"cannot read: {exc}")
        log.exception("scan could not be processed; reported, the lane goes on", stem=stem)
        return self._unusable(group, "unprocessable", f"{type(exc).__name__}: {exc}")

    def _unusable(self, group: Group, reason: str, why: str) -> list[Reading | FrameError]:
        """A scan whose files could not be taken in: reported by name, nothing hashed.

        Kept in memory only (there is no file state to put in the manifest), so it is
        reported again when its files change, or once more after a restart.
        """
        message = why if len(why) <= MAX_MESSAGE else why[: MAX_MESSAGE - 3] + "..."
        return self._scan_failed(
            group, reason, message, image_name=group.image, sidecar_name=group.sidecar
        )

    def _scan_failed(
        self, group: Group, reason: str, message: str, **files: str | None
    ) -> list[Reading | FrameError]:
        """Counts a failure by its reason and reports it as one ScanFailed reading."""
        self.counters.extra[reason] = self.counters.extra.get(reason, 0) + 1
        return [
            ScanFailed(at=Stamp.now(), stem=group.stem, reason=reason, message=message, **files)
        ]

    def _stalled_message(self, stalled: _Stalled) -> str:
        return (
            f"{stalled.image.name}: copy stopped at {stalled.image.size} bytes (truncated) "
            f"and has not changed for {self.xray.orphan_after_s:g} s"
        )

    def _entry(
        self,
        group: Group,
        outcome: str,
        image: FileBytes | None,
        sidecar: FileBytes | None,
        parsed: Sidecar | None,
        *,
        scan_id: str | None = None,
    ) -> ManifestEntry:
        main = image if image is not None else sidecar
        assert main is not None
        return ManifestEntry(
            stem=group.stem,
            outcome=outcome,
            path=str(self.xray.path / main.name),
            size=main.size,
            mtime_ns=main.mtime_ns,
            sha256=main.sha256,
            scanner_id=self.xray.scanner_id or (parsed.scanner_id if parsed else None),
            scan_id=parsed.scan_id if parsed else scan_id,
            image=file_id(image),
            sidecar=file_id(sidecar),
        )

    def _remember(self, entry: ManifestEntry, group: Group) -> None:
        """Hold the manifest line until the reading is consumed (see the module docstring)."""
        self._emitted.add(fingerprint(entry.stem, entry.image, entry.sidecar))
        self._unrecorded.append((entry, group))

    # -- recording ------------------------------------------------------------------------

    async def _record(self) -> None:
        """Write the previous batch's manifest lines, then archive its files if asked to."""
        if not self._unrecorded:
            return
        done, self._unrecorded = self._unrecorded, []
        await asyncio.to_thread(self.manifest.append, [entry for entry, _ in done])
        # Recorded now: the manifest's own index answers for these from here on.
        self._emitted.clear()
        self._emitted_ids.clear()
        if self.xray.archive_dir is not None:
            for entry, group in done:
                await asyncio.to_thread(self._archive, entry, group)

    def _archive(self, entry: ManifestEntry, group: Group) -> None:
        """Move a recorded scan's files to ``archive_dir`` and record where they went."""
        assert self.xray.archive_dir is not None
        sha256s = {f.name: f.sha256 for f in (entry.image, entry.sidecar) if f is not None}
        self.xray.archive_dir.mkdir(parents=True, exist_ok=True)
        moved: list[ManifestEntry] = []
        for name in group.names():
            source, target = self.xray.path / name, self.xray.archive_dir / name
            try:
                st = source.stat()
                shutil.move(source, target)
            except OSError as exc:
                raise DeviceIOError(f"cannot archive {source} to {target}: {exc}") from exc
            moved.append(
                ManifestEntry(
                    stem=group.stem,
                    outcome="archived",
                    path=str(target),
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=sha256s.get(name, ""),
                )
            )
        self.manifest.append(moved)
