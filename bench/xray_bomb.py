"""What a decompression bomb in the X-ray drop folder costs, decoded and refused.

Run from the repository root: ``.venv/bin/python bench/xray_bomb.py [--side 10000]``.

The bomb is :func:`simulators.xray.decompression_bomb_png`: a valid 16-bit grey PNG of
``side`` x ``side`` zeros (10000 x 10000 is 0.2 MB on disk, 200 MB of samples decoded).
Each way of handling it runs in a fresh child process, which reports the growth of its
peak RSS (``ru_maxrss``) over what it held after its imports and after building the
bomb, and the wall time:

- ``decoded``: :func:`drivers.xray.imagefile.make_preview` on it, as the driver did
  before it read the header first (issue 13, V2);
- ``refused``: what the driver does now: :func:`drivers.xray.structure.walk` (CRCs) and
  :func:`drivers.xray.structure.dimensions` read the header, and the declared pixels
  are compared with ``max_pixels`` (default 64,000,000) before anything is decoded.

A measurement: it prints figures and exits 0.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MODES = ("decoded", "refused")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, side: int) -> dict[str, object]:
    """Handle one bomb in ``mode``; the figures for the parent."""
    from drivers.xray.config import XrayFolderSection  # noqa: PLC0415 - in the child only
    from drivers.xray.imagefile import make_preview  # noqa: PLC0415
    from drivers.xray.structure import dimensions, walk  # noqa: PLC0415
    from simulators.xray import decompression_bomb_png  # noqa: PLC0415

    max_pixels = XrayFolderSection.model_fields["max_pixels"].default
    bomb = decompression_bomb_png(side, side)
    before = _peak_rss_mb()
    start = time.perf_counter()
    if mode == "decoded":
        preview = make_preview(bomb, height=512, quality=70)
        outcome = "decoded" if preview is not None else "did not decode"
    else:
        walk(bomb)
        width, height = dimensions(bomb) or (0, 0)
        outcome = "refused" if width * height > max_pixels else "would be decoded"
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "file_mb": len(bomb) / 1e6,
        "added_peak_mb": _peak_rss_mb() - before,
        "ms": 1000 * elapsed,
        "outcome": outcome,
    }


def main() -> int:
    """Run each mode in its own process and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10000, help="width = height, pixels")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.side)))
        return 0
    results = []
    for mode in MODES:
        run = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--side", str(args.side)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"bomb: {args.side}x{args.side} 16-bit PNG, {results[0]['file_mb']:.2f} MB on disk")
    for r in results:
        print(
            f"{r['mode']:8s} added peak RSS {r['added_peak_mb']:8.1f} MB"
            f"  {r['ms']:8.1f} ms  ({r['outcome']})"
        )
    decoded, refused = (r["added_peak_mb"] for r in results)
    print(f"refused / decoded peak growth: {refused / max(decoded, 1e-9):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
