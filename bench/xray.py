"""What a container scan costs the gateway: hashing the original and making its preview.

Run from the repository root: ``.venv/bin/python bench/xray.py [--width 4096 --height 2048]``.

A radiograph from the X-ray simulator is written once per format (16-bit TIFF, PNG,
JPEG) and then read the way the ``xray.folder`` driver reads a finished scan: streamed
through SHA-256 (:func:`drivers.xray.imagefile.read_hashed`), then decoded and turned
into the downscaled JPEG preview (:func:`drivers.xray.imagefile.make_preview`). Pinned
to one CPU. The file is in the page cache after writing, so the read figure is the
hashing cost, not the disk's. A measurement: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from drivers.xray.imagefile import make_preview, read_hashed
from simulators.xray import IMAGE_FORMATS, encode_image, radiograph


def main() -> int:
    """Write one image per format, time hashing and preview, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--preview-height", type=int, default=512)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pixels = radiograph(1, args.width, args.height)
    with tempfile.TemporaryDirectory() as tmp:
        for image_format, suffix in IMAGE_FORMATS.items():
            path = Path(tmp) / f"scan{suffix}"
            path.write_bytes(encode_image(pixels, image_format))
            start = time.perf_counter()
            read = read_hashed(path, max_bytes=1 << 30)
            hashed = time.perf_counter()
            preview = make_preview(read.data, height=args.preview_height, quality=70)
            done = time.perf_counter()
            assert preview is not None, f"{image_format} did not decode"
            size = f"{preview.jpeg_width}x{preview.jpeg_height}"
            print(
                f"{image_format:7s} {args.width}x{args.height}: {read.size / 1e6:6.1f} MB, "
                f"read + SHA-256 {1000 * (hashed - start):5.0f} ms, "
                f"decode + preview {1000 * (done - hashed):5.0f} ms, "
                f"preview {size} {len(preview.jpeg) / 1e3:.0f} kB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
