"""Reading an original once: SHA-256 while streaming it in, then a preview from the bytes.

Everything here blocks (disk, OpenCV) and runs in a worker thread. The hash comes
first and is taken over exactly the bytes later decoded, so the published hash, the
preview and the decision "this file is whole" all describe the same content. A file
whose size or mtime moved while it was read was still being written: the caller waits
for it to settle again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.xray.structure import image_format

if TYPE_CHECKING:  # OpenCV and numpy are imported where used: the check CLI needs neither
    import numpy as np
    import numpy.typing as npt

CHUNK_BYTES = 1024 * 1024
STRETCH_PERCENTILES = (0.5, 99.5)
"""Percentiles mapped to black and white: radiographs use a sliver of the 16-bit range."""


class FileChangedError(Exception):
    """The file's size or mtime changed while it was read: it is still being written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileBytes:
    """A file's content and the stat it had before and after being read."""

    name: str
    data: bytes
    size: int
    mtime_ns: int
    sha256: str


class TooLargeError(OSError):
    """A file over its size limit: refused before reading it."""


class NotRegularFileError(OSError):
    """Not a regular file when opened (a symlink, FIFO, device, directory): refused.

    The folder is listed with ``lstat`` and only regular files are taken, so this is a
    file swapped in between the listing and the open: never followed, never waited on.
    """


Identity = tuple[int, int]
"""A file's ``(st_dev, st_ino)``: which file a name meant when it was listed."""

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""O_NOFOLLOW: a symlink fails (ELOOP) instead of leading to ``/etc/passwd``;
O_NONBLOCK: opening a FIFO does not wait for a writer (it is then refused by fstat)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return f"file type {stat.S_IFMT(mode):o}"


def open_regular(path: Path, identity: Identity | None = None) -> int:
    """Open a scan file read-only, as the regular file it was listed as; return the fd.

    Without updating atime where permitted (the original stays untouched). The fd is
    checked with fstat, so what is checked is what is read: anything but a regular
    file is :class:`NotRegularFileError`; a regular file that is not the one listed
    (``identity``) was replaced since, :class:`FileChangedError` (look again).
    """
    noatime = getattr(os, "O_NOATIME", 0)
    try:
        try:
            fd = os.open(path, OPEN_FLAGS | noatime)
        except PermissionError:  # O_NOATIME needs ownership of the file
            fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(f"{path.name}: a symbolic link (not followed)") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{path.name}: {_kind(st.st_mode)}, not a regular file")
        if identity is not None and (st.st_dev, st.st_ino) != identity:
            raise FileChangedError(f"{path.name}: replaced since it was listed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_hashed(path: Path, *, max_bytes: int, identity: Identity | None = None) -> FileBytes:
    """Read ``path`` in chunks, hashing as it streams; raise :class:`FileChangedError`.

    ``identity`` is the file the listing saw (see :func:`open_regular`).
    """
    fd = open_regular(path, identity)
    try:
        before = os.fstat(fd)
        if before.st_size > max_bytes:
            raise TooLargeError(
                f"{path.name}: {before.st_size} bytes is over the {max_bytes} limit (not read)"
            )
        digest = hashlib.sha256()
        parts: list[bytes] = []
        while chunk := os.read(fd, CHUNK_BYTES):
            digest.update(chunk)
            parts.append(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    data = b"".join(parts)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(
        data
    ) != after.st_size:
        raise FileChangedError(path.name)
    now = os.lstat(path)  # the name still means the file read (not renamed over meanwhile)
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        raise FileChangedError(path.name)
    return FileBytes(
        name=path.name,
        data=data,
        size=after.st_size,
        mtime_ns=after.st_mtime_ns,
        sha256=digest.hexdigest(),
    )


def hash_file(path: Path) -> str:
    """SHA-256 of a file, streamed (for checking an original before serving it)."""
    digest = hashlib.sha256()
    fd = open_regular(path)
    try:
        while chunk := os.read(fd, CHUNK_BYTES):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """The decoded image's facts and its downscaled 8-bit JPEG."""

    width: int
    height: int
    bit_depth: int
    channels: int
    format: str
    jpeg: bytes
    jpeg_sha256: str
    jpeg_width: int
    jpeg_height: int


def _to_8bit(pixels: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Map to 8 bits; deeper images get a percentile stretch so dense cargo stays visible."""
    import numpy as np  # noqa: PLC0415 - optional dependency, see the imports

    if pixels.dtype == np.uint8:
        same: npt.NDArray[np.uint8] = pixels.astype(np.uint8, copy=False)
        return same
    sample = pixels[::4, ::4].astype(np.float32)  # a quarter per axis is plenty for percentiles
    low, high = (float(v) for v in np.percentile(sample, STRETCH_PERCENTILES))
    if high <= low:
        high = low + 1.0
    scaled = (pixels.astype(np.float32) - low) * (255.0 / (high - low))
    out: npt.NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


def make_preview(data: bytes, *, height: int, quality: int) -> Preview | None:
    """Decode ``data`` and build the preview; ``None`` when OpenCV cannot decode it."""
    import cv2  # noqa: PLC0415 - optional dependency, see the imports
    import numpy as np  # noqa: PLC0415

    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        return None
    src_h, src_w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    bit_depth = pixels.dtype.itemsize * 8
    eight = _to_8bit(pixels[:, :, :3] if channels == 4 else pixels)  # alpha means nothing here
    out_h = min(height, src_h)  # never upscale: a preview adds no detail
    out_w = max(1, round(src_w * out_h / src_h))
    shown: npt.NDArray[Any] = eight
    if out_h != src_h:
        shown = cv2.resize(eight, (out_w, out_h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None
    jpeg = buf.tobytes()
    return Preview(
        width=src_w,
        height=src_h,
        bit_depth=bit_depth,
        channels=channels,
        format=image_format(data) or "unknown",
        jpeg=jpeg,
        jpeg_sha256=hashlib.sha256(jpeg).hexdigest(),
        jpeg_width=out_w,
        jpeg_height=out_h,
    )
