"""The README's demo command works: weighings reach the live view, then a clean stop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
async def test_demo_checkpoint_shows_weighings_at_central(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators",
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--duration",
        "12",
        "--speed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "WEIGHING scale-1:" in text
    assert "WEIGHING scale-2:" in text
    assert "gateway demo-port/gate-1 is online" in text
    assert "gateway demo-port/gate-1 is offline" in text
    assert "demo stopped." in text
