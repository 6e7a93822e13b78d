"""The README's demo command works: every device family reaches the live view, then Ctrl-C
stops it all cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SEEN_WITHIN_S = 45
"""What the demo shows must all have reached central by then (a few seconds, usually)."""


def wanted(text: str) -> dict[str, bool]:
    """What an integrator must see at central, and whether it is in ``text`` yet."""
    previews = set(re.findall(r"X-RAY SCAN .* preview (\w{8}) ", text))
    media = set(re.findall(r"media +(\w{8}) image/jpeg \d+ KB", text))
    return {
        "weighing on lane 1": "WEIGHING scale-1:" in text,
        "weighing on lane 2": "WEIGHING scale-2:" in text,
        "a seal reading or alarm": bool(
            re.search(r"reading  seal-gate-1: (seal \w+|no seal)|SEAL ALARM", text)
        ),
        "a JT/T 808-2019 e-lock position": "e-lock 00000000013800001909 at " in text,
        "a JT/T 808-2013 e-lock position": "e-lock 013800001303 at " in text,
        "an X-ray scan with its preview": bool(previews & media),
        "a camera still or motion": bool(
            re.search(r"reading  cam-lane-1: still \d+x\d+|motion   cam-lane-1: start", text)
        ),
        "a container code read by OCR": "OCR      cam-lane-1: container " in text,
        "a plate read by OCR": "OCR      cam-lane-1: plate " in text,
    }


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
async def test_demo_checkpoint_shows_every_device_family_at_central(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "demo", "--dir", str(workdir),
        "--duration", "55", "--speed", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    text = ""
    try:
        async with asyncio.timeout(SEEN_WITHIN_S):
            while not all(wanted(text).values()):
                line = await proc.stdout.readline()
                if not line:
                    break  # the demo ended early: the asserts below say why
                text += line.decode()
    except TimeoutError:
        pass
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text += out.decode()
    missing = [what for what, seen in wanted(text).items() if not seen]
    assert not missing, f"not at central: {missing}\n{text}"
    assert proc.returncode == 0, text
    assert "gateway demo-port/gate-1 is online" in text
    assert "gateway demo-port/gate-1 is offline" in text
    assert "demo stopped." in text

    # The trucks were read correctly: every code and plate published as verified is one
    # the camera simulator painted.
    truth = json.loads((workdir / "camera-truth.json").read_text())
    codes = {c["code"] for t in truth["trucks"] for c in t["containers"]}
    plates = {t[k]["text"] for t in truth["trucks"] for k in ("plate", "trailer_plate")}
    read = re.findall(r"OCR      cam-lane-1: (container|plate) (\S+) verified", text)
    assert read, text
    for kind, value in read:
        assert value in (codes if kind == "container" else plates), (kind, value, truth)

    # Nothing left behind: the ptys' links are gone and no port is still served.
    assert not [p.name for p in workdir.iterdir() if p.is_symlink()]
    config = tomllib.loads((workdir / "gateway.toml").read_text())
    camera = next(d for d in config["devices"] if d["driver"] == "camera.opencv")
    elock = next(d for d in config["devices"] if d["driver"] == "eseal.jt808")
    ports = [config["mqtt"]["port"], elock["listen_port"], urlsplit(camera["url"]).port]
    assert not [port for port in ports if listening(port)]
