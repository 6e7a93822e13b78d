"""An X-ray scanner dropping scans into a folder, the way real scanners hand them over.

Each scan is an image (16-bit grayscale TIFF by default; 16-bit PNG or 8-bit JPEG) of a
synthetic radiograph (a container outline, cargo blobs, noise) plus a sidecar (XML or
JSON) with the scan id, time (UTC ISO 8601), lane, container number(s) (ISO 6346),
operator and scanner id. Files are written the way a slow network copy writes them: in
chunks over time, so that a watcher sees them grow; with ``done_marker`` an empty
``<stem>.done`` follows a scan whose files are all written.

Faults (:data:`FAULTS`) are scheduled deterministically, one per scan, cycling: scan 0 of
every cycle is clean, then each enabled fault in :data:`FAULTS` order (``half_written``
twice: once stalling then completing, once never completing). ``done_marker`` is an
option applying to every scan, not a scheduled fault. Everything drawn (pictures,
container numbers, operators, lanes) comes from ``seed``, so the same seed gives the same
bytes (and, with ``start_time``, the same sidecars).

The ground truth (:attr:`XraySimulator.truth`, and a JSON file rewritten atomically
after every scan and at the end) lists every scan, its files, its faults and the state a
correct gateway must end with (:class:`Expected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Self

from gateway import iso6346
from simulators.lifecycle import PlayingSimulator

if TYPE_CHECKING:  # numpy and OpenCV are imported where used: other simulators need neither
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

FAULTS = (
    "out_of_order",
    "half_written",
    "zero_byte",
    "corrupt",
    "sidecar_only",
    "image_only",
    "duplicate_id",
    "non_ascii",
    "bad_check_digit",
    "done_marker",
)
"""Fault kinds (and the ``done_marker`` option) ``--faults`` accepts."""

IMAGE_FORMATS = {"tiff16": ".tif", "png": ".png", "jpeg": ".jpg"}
"""Image formats and their file extensions."""

SIDECAR_FORMATS = {"xml": ".xml", "json": ".json"}
"""Sidecar formats and their file extensions."""

NON_ASCII_OPERATOR = "Nguyễn Văn Ân"
OPERATORS = ("J. Smith", "A. Kowalski", "M. Garcia", "T. Okafor", "L. Chen", "P. Dubois")
OWNER_CODES = ("CSQ", "MSC", "MAE", "HLX", "CMA", "OOL", "TGH", "EMC", "APZ", "SEG")
LANES = ("L1", "L2", "L3")
DEFAULT_SIZE = (1024, 512)  # width, height
# Full-scale counts of an unattenuated beam; air reads bright as on real radiographs.
FULL_SCALE = 60000.0


class Expected(StrEnum):
    """The state a correct gateway ends with for a scan."""

    COMPLETE = "complete"  # image and sidecar whole (decodable, valid or not)
    NEVER_COMPLETES = "never_completes"  # the image copy stalls half way, for good
    CORRUPT = "corrupt"  # the image is whole but does not decode (garbage or zero bytes)
    ORPHAN_SIDECAR = "orphan_sidecar"  # a sidecar whose image never comes
    ORPHAN_IMAGE = "orphan_image"  # an image without a sidecar


# -- ISO 6346 ---------------------------------------------------------------------------


def iso6346_check_digit(code: str) -> int:
    """The check digit of the first 10 characters (owner, category, serial) of ``code``.

    >>> iso6346_check_digit("CSQU305438")
    3
    """
    return iso6346.check_digit(code[:10].upper())


def iso6346_valid(code: str) -> bool:
    """Whether ``code`` is a container number (category U, J or Z) with a correct check digit."""
    return iso6346.is_valid(code)


def container_number(rng: random.Random, *, valid: bool = True) -> str:
    """A freight container number (category U); with ``valid=False`` a wrong check digit."""
    head = f"{rng.choice(OWNER_CODES)}U{rng.randrange(10**6):06d}"
    digit = iso6346_check_digit(head)
    if not valid:
        digit = (digit + rng.randrange(1, 10)) % 10
    return f"{head}{digit}"


# -- the picture ------------------------------------------------------------------------


def radiograph(seed: int, width: int, height: int) -> npt.NDArray[np.uint16]:
    """A synthetic 16-bit transmission image: a container with cargo, on a chassis."""
    import numpy as np  # noqa: PLC0415 - optional dependency, see the imports

    rng = np.random.default_rng(seed)
    att = np.zeros((height, width), dtype=np.float32)  # attenuation, exp(-att) transmitted
    x0, x1 = int(width * 0.06), int(width * 0.94)
    y0, y1 = int(height * 0.12), int(height * 0.78)
    wall = max(2, height // 100)
    att[y0:y1, x0:x1] += 0.15  # side walls seen face on
    att[y0 : y0 + wall, x0:x1] += 1.2  # roof
    att[y1 - wall * 2 : y1, x0:x1] += 1.6  # floor
    att[y0:y1, x0 : x0 + wall * 2] += 1.4  # end walls
    att[y0:y1, x1 - wall * 2 : x1] += 1.4
    for frac in np.linspace(0.0, 1.0, 9)[1:-1]:  # corrugation ribs
        x = int(x0 + frac * (x1 - x0))
        att[y0:y1, x : x + 2] += 0.2
    att[y1 : y1 + wall * 2, x0:x1] += 2.0  # chassis
    wheel_r = max(4, (height - y1) // 3)
    yy, xx = np.mgrid[0:height, 0:width]
    for cx in (0.18, 0.26, 0.74, 0.82):  # wheels
        wy = min(height - wheel_r - 1, y1 + wall * 2 + wheel_r)
        disc = (xx - cx * width) ** 2 + (yy - wy) ** 2 <= wheel_r**2
        att[disc] += 2.5
    cargo = np.zeros_like(att)
    for _ in range(int(rng.integers(4, 12))):  # cargo blobs: soft-edged ellipses
        cx = rng.uniform(x0 + 0.05 * width, x1 - 0.05 * width)
        cy = rng.uniform(y0 + 0.1 * height, y1 - 0.1 * height)
        rx = rng.uniform(0.02, 0.12) * width
        ry = rng.uniform(0.05, 0.25) * height
        density = rng.uniform(0.3, 2.5)
        r2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        cargo += (density * np.clip(1.0 - r2, 0.0, 1.0) ** 0.5).astype(np.float32)
    att[y0:y1, x0:x1] += cargo[y0:y1, x0:x1]  # cargo stays inside the container
    image = FULL_SCALE * np.exp(-att) + rng.normal(0.0, 300.0, size=att.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def encode_image(pixels: npt.NDArray[np.uint16], image_format: str) -> bytes:
    """Encode with OpenCV: 16-bit TIFF or PNG, or 8-bit JPEG (JPEG has no 16-bit mode)."""
    import cv2  # noqa: PLC0415 - optional dependency, see the imports
    import numpy as np  # noqa: PLC0415

    if image_format == "jpeg":
        ok, buf = cv2.imencode(".jpg", (pixels >> 8).astype(np.uint8))
    else:
        ok, buf = cv2.imencode(IMAGE_FORMATS[image_format], pixels)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {image_format}")
    return buf.tobytes()


HEADER_BYTES = {"tiff16": 8, "png": 33, "jpeg": 20}
"""Bytes of a valid header a corrupt image keeps: TIFF header, PNG signature + IHDR, SOI+APP0."""


def corrupt_image(data: bytes, image_format: str, rng: random.Random) -> bytes:
    """The same length, a valid header, then garbage."""
    keep = HEADER_BYTES[image_format]
    return data[:keep] + rng.randbytes(len(data) - keep)


def decompression_bomb_png(width: int, height: int) -> bytes:
    """A valid 16-bit grey PNG of zeros, written row by row: 10000x10000 is 0.2 MB.

    Decoded it takes ``2 * width * height`` bytes; a gateway must refuse it from its
    IHDR header (PNG specification, 11.2.2) without decoding it.
    """
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * width)  # filter byte 0, then one row of zero samples
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


# -- the truth --------------------------------------------------------------------------


@dataclass(slots=True)
class ScanTruth:
    """One scan as played, and what a correct gateway must make of it.

    Attributes:
        seq: position in the run, from 0.
        scan_id: the id in the sidecar (repeated by ``duplicate_id``).
        stem: file name without extension, unique per scan.
        image: the image's file name in the drop folder, ``None`` if never written.
        sidecar: the sidecar's file name, ``None`` if never written.
        done: the ``.done`` marker's file name, ``None`` if none is written.
        write_order: file names in the order their writing starts.
        faults: faults applied to this scan (``done_marker`` not included).
        expected: the final state (:class:`Expected`).
        stall_s: how long the image copy stalls half way (``None``: it does not stall;
            for a copy that never completes, how long until the next scan starts).
        duplicate_of: ``seq`` of the earlier scan whose id this one repeats.
        containers: container numbers in the sidecar.
        check_digits_valid: per container, whether its ISO 6346 check digit is right.
        operator, lane, scanner_id: as in the sidecar.
        time: scan time (UTC ISO 8601) as in the sidecar; ``None`` until played.
        image_format, sidecar_format: as configured.
        width, height: the picture's size.
        image_bytes: final size of the image file on disk (``None`` if not written).
        image_sha256: SHA-256 of the final image file on disk.
    """

    seq: int
    scan_id: str
    stem: str
    image: str | None
    sidecar: str | None
    done: str | None
    write_order: list[str]
    faults: list[str]
    expected: Expected
    stall_s: float | None
    duplicate_of: int | None
    containers: list[str]
    check_digits_valid: list[bool]
    operator: str
    lane: str
    scanner_id: str
    image_format: str
    sidecar_format: str
    width: int
    height: int
    time: str | None = None
    image_bytes: int | None = None
    image_sha256: str | None = None
    _never: bool = field(default=False, repr=False)  # the half_written copy never ends

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        del data["_never"]
        data["expected"] = str(self.expected)
        return data


# -- the simulator ----------------------------------------------------------------------


class XraySimulator(PlayingSimulator):
    """A scanner writing scans into ``dir``; see the module docstring.

    Args:
        dir: the drop folder (created if missing).
        scans: how many scans to play; ``None`` plays until closed.
        interval_s: pause between the end of one scan's files and the next scan.
        faults: names from :data:`FAULTS`.
        seed: seeds everything drawn; ``None`` picks one (see :attr:`seed`).
        image_format: ``tiff16``, ``png`` or ``jpeg``.
        sidecar_format: ``xml`` or ``json``.
        truth_path: the ground-truth JSON; default ``dir/../xray-truth.json``.
        settle_s: the size-stable time a watcher waits; a half-written copy stalls for
            ``3 * settle_s`` (a copy that never completes is left half way for good).
        chunk_bytes: bytes written per chunk of a copy.
        chunk_interval_s: pause between chunks.
        size: picture (width, height).
        scanner_id: the scanner's id in sidecars.
        start_time: scan ``seq`` is timed ``start_time + seq * interval_s`` (reproducible
            sidecars); ``None`` uses the wall clock.
        on_write: called with (path, size) after every chunk written, e.g. to stat it.

    Attributes:
        truth: a :class:`ScanTruth` per scan, all planned up front when ``scans`` is
            given (played so far when playing forever).
        finished: set when every scan is written and the truth file is final.
    """

    def __init__(
        self,
        *,
        dir: Path | str,
        scans: int | None = None,
        interval_s: float = 2.0,
        faults: Iterable[str] = (),
        seed: int | None = None,
        image_format: str = "tiff16",
        sidecar_format: str = "xml",
        truth_path: Path | str | None = None,
        settle_s: float = 2.0,
        chunk_bytes: int = 64 * 1024,
        chunk_interval_s: float = 0.02,
        size: tuple[int, int] = DEFAULT_SIZE,
        scanner_id: str = "XR-01",
        start_time: datetime | None = None,
        on_write: Callable[[Path, int], None] | None = None,
    ) -> None:
        self.faults = frozenset(faults)
        if unknown := self.faults - set(FAULTS):
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {list(FAULTS)}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format {image_format!r}; known: {IMAGE_FORMATS}")
        if sidecar_format not in SIDECAR_FORMATS:
            raise ValueError(f"unknown sidecar format {sidecar_format!r}")
        if scans is not None and scans < 0:
            raise ValueError("scans must not be negative")
        if interval_s < 0 or settle_s <= 0 or chunk_bytes <= 0 or chunk_interval_s < 0:
            raise ValueError("intervals must not be negative, settle_s and chunk_bytes positive")
        self.dir = Path(dir)
        self.scans = scans
        self.interval_s = interval_s
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.image_format = image_format
        self.sidecar_format = sidecar_format
        self.truth_path = (
            Path(truth_path) if truth_path is not None else self.dir.parent / "xray-truth.json"
        )
        self.settle_s = settle_s
        self.chunk_bytes = chunk_bytes
        self.chunk_interval_s = chunk_interval_s
        self.width, self.height = size
        self.scanner_id = scanner_id
        self.start_time = start_time
        self.on_write = on_write
        self.finished = asyncio.Event()
        self.truth: list[ScanTruth] = []
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._played = 0
        self._done = False
        self._schedule = self._fault_cycle()
        if scans is not None:
            for seq in range(scans):
                self.truth.append(self._plan(seq))

    # -- planning ---------------------------------------------------------------------

    def _fault_cycle(self) -> list[tuple[str | None, bool]]:
        """(fault, never) per scan of a cycle: a clean scan, then each enabled fault."""
        cycle: list[tuple[str | None, bool]] = [(None, False)]
        for fault in FAULTS:
            if fault == "done_marker" or fault not in self.faults:
                continue
            cycle.append((fault, False))
            if fault == "half_written":
                cycle.append((fault, True))
        return cycle

    def _plan(self, seq: int) -> ScanTruth:
        rng = random.Random(f"{self.seed}:scan:{seq}")
        fault, never = self._schedule[seq % len(self._schedule)]
        faults = [fault] if fault is not None else []
        stem = f"{self.scanner_id}_{seq:05d}"
        scan_id = f"{self.scanner_id}-{self.seed % 10000:04d}-{seq:06d}"
        duplicate_of = None
        if fault == "duplicate_id" and seq > 0:
            duplicate_of = seq - 1
            scan_id = self.truth[-1].scan_id  # planned in order: the previous scan
        n_containers = rng.choice((1, 1, 2))
        valid = [True] * n_containers
        if fault == "bad_check_digit":
            valid[rng.randrange(n_containers)] = False
        containers = [container_number(rng, valid=v) for v in valid]
        operator = NON_ASCII_OPERATOR if fault == "non_ascii" else rng.choice(OPERATORS)
        image: str | None = f"{stem}{IMAGE_FORMATS[self.image_format]}"
        sidecar: str | None = f"{stem}{SIDECAR_FORMATS[self.sidecar_format]}"
        expected = Expected.COMPLETE
        if fault == "sidecar_only":
            image, expected = None, Expected.ORPHAN_SIDECAR
        elif fault == "image_only":
            sidecar, expected = None, Expected.ORPHAN_IMAGE
        elif fault in ("corrupt", "zero_byte"):
            expected = Expected.CORRUPT
        elif fault == "half_written" and never:
            expected = Expected.NEVER_COMPLETES
        order = [name for name in (image, sidecar) if name is not None]
        if fault == "out_of_order":
            order.reverse()
        done = None
        if "done_marker" in self.faults and expected is not Expected.NEVER_COMPLETES:
            done = f"{stem}.done"
            order.append(done)
        stall_s = None
        if fault == "half_written":
            stall_s = self.interval_s if never else 3 * self.settle_s
        return ScanTruth(
            seq=seq,
            scan_id=scan_id,
            stem=stem,
            image=image,
            sidecar=sidecar,
            done=done,
            write_order=order,
            faults=faults,
            expected=expected,
            stall_s=stall_s,
            duplicate_of=duplicate_of,
            containers=containers,
            check_digits_valid=valid,
            operator=operator,
            lane=rng.choice(LANES),
            scanner_id=self.scanner_id,
            image_format=self.image_format,
            sidecar_format=self.sidecar_format,
            width=self.width,
            height=self.height,
            _never=never,
        )

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("simulator already running")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._play(), name="xray-simulator")
        return self

    async def _teardown(self) -> None:
        with contextlib.suppress(OSError):
            self._write_truth()

    # -- playing ----------------------------------------------------------------------

    async def _play(self) -> None:
        with self._capture_crash(log, "x-ray simulator failed"):
            seq = 0
            while self.scans is None or seq < self.scans:
                if self.scans is None:
                    self.truth.append(self._plan(seq))
                    del self.truth[:-1000]  # forever: keep the last thousand
                await self._scan(self.truth[-1] if self.scans is None else self.truth[seq])
                self._played = seq + 1
                self._write_truth()
                seq += 1
                if self.scans is None or seq < self.scans:
                    await asyncio.sleep(self.interval_s)
            self._done = True
            self._write_truth()
        self.finished.set()

    async def _scan(self, scan: ScanTruth) -> None:
        when = (
            self.start_time + timedelta(seconds=scan.seq * self.interval_s)
            if self.start_time is not None
            else datetime.now(UTC)
        )
        scan.time = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rng = random.Random(f"{self.seed}:bytes:{scan.seq}")
        contents: dict[str, bytes] = {}
        if scan.image is not None:
            data = await asyncio.to_thread(self._image_bytes, scan, rng.getrandbits(63))
            if "corrupt" in scan.faults:
                data = corrupt_image(data, self.image_format, rng)
            elif "zero_byte" in scan.faults:
                data = b""
            contents[scan.image] = data
            final = data[: len(data) // 2] if scan._never else data
            scan.image_bytes = len(final)
            scan.image_sha256 = hashlib.sha256(final).hexdigest()
        if scan.sidecar is not None:
            contents[scan.sidecar] = self._sidecar_bytes(scan)
        if scan.done is not None:
            contents[scan.done] = b""
        for name in scan.write_order:
            stall = scan.stall_s if name == scan.image else None
            await self._copy(self.dir / name, contents[name], stall, never=scan._never)

    def _image_bytes(self, scan: ScanTruth, seed: int) -> bytes:
        return encode_image(radiograph(seed, scan.width, scan.height), self.image_format)

    def _sidecar_bytes(self, scan: ScanTruth) -> bytes:
        fields = {
            "scan_id": scan.scan_id,
            "time": scan.time,
            "lane": scan.lane,
            "scanner_id": scan.scanner_id,
            "operator": scan.operator,
            "containers": scan.containers,
            "image": scan.image or f"{scan.stem}{IMAGE_FORMATS[self.image_format]}",
        }
        if self.sidecar_format == "json":
            return (json.dumps(fields, ensure_ascii=False, indent=2) + "\n").encode()
        root = ET.Element("Scan")
        for tag, key in (
            ("ScanId", "scan_id"),
            ("Time", "time"),
            ("Lane", "lane"),
            ("ScannerId", "scanner_id"),
            ("Operator", "operator"),
        ):
            ET.SubElement(root, tag).text = str(fields[key])
        containers = ET.SubElement(root, "Containers")
        for number in scan.containers:
            ET.SubElement(containers, "Container").text = number
        ET.SubElement(root, "Image").text = str(fields["image"])
        ET.indent(root)
        xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return xml + b"\n"

    async def _copy(self, path: Path, data: bytes, stall_s: float | None, *, never: bool) -> None:
        """Write ``data`` in chunks over time; with ``stall_s``, stall half way."""
        half = len(data) // 2 if stall_s is not None else None
        with path.open("wb", buffering=0) as f:
            self._wrote(path, 0)
            pos = 0
            while pos < len(data):
                end = min(pos + self.chunk_bytes, len(data))
                if half is not None and pos < half <= end:
                    end = half
                f.write(data[pos:end])
                pos = end
                self._wrote(path, pos)
                if pos == half:
                    if never:
                        return  # the copy never resumes: the file stays half written
                    await asyncio.sleep(stall_s or 0.0)
                elif pos < len(data):
                    await asyncio.sleep(self.chunk_interval_s)

    def _wrote(self, path: Path, size: int) -> None:
        if self.on_write is not None:
            self.on_write(path, size)

    def _write_truth(self) -> None:
        document = {
            "seed": self.seed,
            "dir": str(self.dir),
            "image_format": self.image_format,
            "sidecar_format": self.sidecar_format,
            "settle_s": self.settle_s,
            "faults": sorted(self.faults),
            "finished": self._done,
            "played": self._played,
            "scans": [s.as_json() for s in self.truth if s.time is not None],  # started
        }
        self.truth_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.truth_path.with_name(self.truth_path.name + ".tmp")
        tmp.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", "utf-8")
        tmp.replace(self.truth_path)
