"""``gatewayctl camera snapshot -o``: the temporary file cannot be redirected (issue 13).

The JPEG used to be written to ``.NAME.tmp`` next to the target, a name anyone with
write access to the directory could predict, plant as a symlink, and so have the
technician's ``gatewayctl`` overwrite any file they can write. Through the real CLI.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import cv2
import numpy as np


def write_clip(path: Path) -> Path:
    """Five grey 64x48 MJPG frames: a camera the CLI can open like any stream."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), 128, dtype=np.uint8))
    writer.release()
    return path


async def test_snapshot_does_not_follow_a_symlink_planted_at_the_old_temp_name(
    tmp_path: Path,
) -> None:
    clip = write_clip(tmp_path / "lane.avi")
    out_dir = tmp_path / "shared"
    out_dir.mkdir()
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"precious\n")
    planted = out_dir / ".snap.jpg.tmp"
    planted.symlink_to(victim)
    target = out_dir / "snap.jpg"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.gatewayctl", "camera", "snapshot", str(clip),
        "-o", str(target),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert victim.read_bytes() == b"precious\n", "the planted symlink was followed"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert not target.is_symlink()
    assert cv2.imread(str(target)) is not None
    assert sorted(p.name for p in out_dir.iterdir()) == [".snap.jpg.tmp", "snap.jpg"]
