"""The demo checkpoint: every device family, a real broker, the gateway, and central's view.

``python -m simulators demo`` starts, in one terminal:

1. mosquitto on a free loopback port (its own config and data in the demo folder);
2. two weighbridge indicators on ptys: lane 1 a Mettler Toledo stream, lane 2 an
   XK3190 with line noise and checksum errors;
3. an e-seal gate reader on a pty (CRC errors, noise, duplicated frames) and a JT/T 808
   e-lock that connects to the gateway's TCP server and reports its position;
4. an X-ray scanner dropping scans into ``DIR/xray-drop`` (a wrong check digit, a
   non-ASCII operator, a corrupt image among them);
5. a lane camera (MJPEG over HTTP) where a truck with a container drives in and stops;
6. the gateway daemon (``edge-gateway run``) with a generated config;
7. a live view of everything that reaches the central office.

Ctrl-C stops it all. Everything lives in ``--dir`` (default ``./demo-data``): the
config, the outbox, the X-ray drop folder and the gateway's log, for
``gatewayctl --config ... status``. ``--speed`` compresses the checkpoint's time: the
trucks on the scales, the seal events and position reports, the time between scans and
between camera trucks (the camera's frame rate stays real).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simulators.broker import Mosquitto, end_with_parent, free_port
from simulators.central import CentralView
from simulators.eseal import EsealSimulator
from simulators.lifecycle import stop_on_signals
from simulators.scale import ScaleSimulator
from simulators.xray import XraySimulator

LANES = (
    ("scale-1", "toledo", ()),
    ("scale-2", "xk3190", ("noise", "checksum")),
)
SEAL_READER = "seal-gate-1"
ELOCK_SERVER = "elock-gw"
XRAY = "xray-1"
CAMERA = "cam-lane-1"

SEAL_SPEED = 0.3
"""The reader simulator plays an event a second at speed 1: one every ~3 s here."""
ELOCK_SPEED = 0.25
ELOCK_2019 = "13800001909"
ELOCK_2013 = "13800001303"
"""The e-lock reports once a second at speed 1: one every 4 s here."""
ELOCK_CODES = {ELOCK_2019: "demo-elock-1909", ELOCK_2013: "demo-elock-1303"}
"""The demo listener's allowlist: terminal -> authentication code (0x0102)."""
XRAY_INTERVAL_S = 20.0
XRAY_FAULTS = ("bad_check_digit", "non_ascii", "corrupt")
XRAY_SIZE = (1024, 512)
CAMERA_FPS = 5.0
OCR_REGIONS = (
    # Where the simulated lane's trucks stop (main stream 1280x720, fractions of it): the
    # side of one 40-foot or two 20-foot containers, the cab's plate, the trailer's plate.
    ("containers", "container", (0.0313, 0.3958, 0.6875, 0.2292)),
    ("cab-plate", "plate", (0.7266, 0.6111, 0.1875, 0.1806)),
    ("trailer-plate", "plate", (0.0234, 0.7014, 0.1797, 0.1667)),
)
TRUCK_EVERY_S = 45.0
FIRST_TRUCK_S = 5.0
"""Not compressed by ``--speed``: the gateway needs its few seconds to start first."""
DWELL_S = 10.0
"""Not compressed either: a stopped truck is read once the background has absorbed it."""


@dataclass(frozen=True, slots=True)
class Ports:
    """The loopback ports the demo's parts meet on."""

    broker: int
    elock: int
    camera: int


def _device(**keys: str | float | Path) -> list[str]:
    """One ``[[devices]]`` table; strings and paths quoted as TOML basic strings."""
    lines = ["[[devices]]"]
    for key, value in keys.items():
        text = f'"{value}"' if isinstance(value, str | Path) else repr(value)
        lines.append(f"{key} = {text}")
    return lines


def write_config(workdir: Path, ports: Ports) -> Path:
    """The demo gateway's config: the documented shape, one device of each family."""
    data = workdir / "gateway"
    lines = [
        "[gateway]",
        'site = "demo-port"',
        'id = "gate-1"',
        f'data_dir = "{data}"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {ports.broker}",
    ]
    for device_id, protocol, _ in LANES:
        lines += _device(
            id=device_id,
            driver=f"scale.{protocol}",
            port=workdir / device_id,
            baudrate=9600,
            telemetry_interval_s=2.0,
        )
    lines += _device(id=SEAL_READER, driver="eseal.reader", port=workdir / SEAL_READER)
    lines += _device(
        id=ELOCK_SERVER, driver="eseal.jt808", listen_host="127.0.0.1", listen_port=ports.elock
    )
    codes = ", ".join(f'"{terminal}" = "{code}"' for terminal, code in ELOCK_CODES.items())
    lines.append(f"terminals = {{ {codes} }}")  # the e-locks admitted, in the table above
    lines += _device(
        id=XRAY,
        driver="xray.folder",
        path=workdir / "xray-drop",
        manifest=data / f"{XRAY}.jsonl",
        settle_s=1.0,
    )
    camera = f"http://127.0.0.1:{ports.camera}"
    lines += _device(
        id=CAMERA,
        driver="camera.opencv",
        url=f"{camera}/sub.mjpg",
        snapshot_url=f"{camera}/main.mjpg",
        analyse_fps=CAMERA_FPS,
        still_interval_s=30.0,
        end_quiet_s=1.0,
        ocr_interval_s=0.4,
    )
    for name, kind, box in OCR_REGIONS:
        lines += [
            "[[devices.ocr_regions]]",
            f'name = "{name}"',
            f'kind = "{kind}"',
            f"box = {list(box)}",
        ]
    path = workdir / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(workdir: Path) -> tuple[Mosquitto, Path, Ports, Path] | None:
    """Find mosquitto, pick ports and write the demo's broker and gateway configs."""
    workdir = workdir.resolve()
    (workdir / "xray-drop").mkdir(parents=True, exist_ok=True)
    ports = Ports(broker=free_port(), elock=free_port(), camera=free_port())
    try:
        # Outlives the gateway on Ctrl-C (detached), to carry its goodbyes.
        broker = Mosquitto(
            workdir,
            ports.broker,
            persistence=False,
            stock_inflight=True,
            max_queued_messages=None,
            detached=True,
        )
    except RuntimeError as exc:  # not installed
        print(f"demo: {exc}", file=sys.stderr)
        return None
    return broker, workdir, ports, write_config(workdir, ports)


def run_demo(workdir: Path, duration_s: float | None = None, speed: float = 1.0) -> int:
    """Run the demo until Ctrl-C (or for ``duration_s``); return an exit code."""
    prepared = prepare(workdir)
    if prepared is None:
        return 1
    return asyncio.run(_run(*prepared, duration_s=duration_s, speed=speed))


async def _devices_before_gateway(
    stack: contextlib.AsyncExitStack, workdir: Path, ports: Ports, speed: float
) -> None:
    """The devices the gateway opens as a client: their ptys and server must exist first."""
    for i, (device_id, protocol, faults) in enumerate(LANES):
        await stack.enter_async_context(
            ScaleSimulator(
                protocol=protocol,
                link=workdir / device_id,
                speed=speed * 0.8**i,  # the lanes out of step, as in life
                faults=faults,
            )
        )
    await stack.enter_async_context(
        EsealSimulator(
            protocol="reader",
            link=workdir / SEAL_READER,
            faults=("crc", "noise", "duplicate"),
            speed=SEAL_SPEED * speed,
        )
    )
    from simulators.camera.simulator import CameraSimulator  # noqa: PLC0415 - needs OpenCV

    await stack.enter_async_context(
        CameraSimulator(
            serve="mjpeg",
            port=ports.camera,
            fps=CAMERA_FPS,
            # A stopped truck stays "motion" until the background absorbs it (~4 s), and
            # its codes are read after that: its stop at the gate is not sped up.
            truck_every_s=max(TRUCK_EVERY_S / speed, 2 * DWELL_S),
            first_truck_s=FIRST_TRUCK_S,
            dwell_s=DWELL_S,
            truth_path=workdir / "camera-truth.json",  # what the trucks carry, to check OCR
        )
    )


async def _devices_after_gateway(
    stack: contextlib.AsyncExitStack, workdir: Path, ports: Ports, speed: float
) -> None:
    """The e-lock connects to the gateway (retrying); scans are dropped while it watches."""
    # Two e-locks on the one listener: a JT/T 808-2019 terminal and an older 2013 one.
    versions: tuple[tuple[Literal["2013", "2019"], str], ...] = (
        ("2019", ELOCK_2019),
        ("2013", ELOCK_2013),
    )
    for version, terminal in versions:
        await stack.enter_async_context(
            EsealSimulator(
                protocol="jt808",
                tcp_port=ports.elock,
                register=True,
                auth_code=ELOCK_CODES[terminal],
                speed=ELOCK_SPEED * speed,
                terminal=terminal,
                jt808_version=version,
            )
        )
    await stack.enter_async_context(
        XraySimulator(
            dir=workdir / "xray-drop",
            interval_s=XRAY_INTERVAL_S / speed,
            faults=XRAY_FAULTS,
            size=XRAY_SIZE,
            settle_s=1.0,
        )
    )


async def _start_gateway(config: Path, log_path: Path) -> asyncio.subprocess.Process:
    log = await asyncio.to_thread(log_path.open, "ab")
    with log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.daemon_cli",
            "run",
            "--config",
            str(config),
            "--log-format",
            "json",
            stdout=log,
            stderr=log,
            start_new_session=True,  # Ctrl-C is the demo's to handle: it stops the gateway
            preexec_fn=end_with_parent,  # SIGTERM when the demo dies, even by SIGKILL
        )


async def _run(
    broker: Mosquitto,
    workdir: Path,
    ports: Ports,
    config: Path,
    *,
    duration_s: float | None,
    speed: float,
) -> int:
    log_path = workdir / "gateway.log"
    stop = stop_on_signals()
    view = CentralView("127.0.0.1", ports.broker)
    gateway: asyncio.subprocess.Process | None = None
    try:
        await broker.start_async()
        view.start()
        async with contextlib.AsyncExitStack() as stack:
            await _devices_before_gateway(stack, workdir, ports, speed)
            gateway = await _start_gateway(config, log_path)
            await _devices_after_gateway(stack, workdir, ports, speed)
            print(
                f"demo checkpoint: broker 127.0.0.1:{ports.broker}, gateway config {config}\n"
                f"  in another terminal:  .venv/bin/gatewayctl --config {config} status\n"
                f"  gateway log:          {log_path}\n"
                f"  X-ray drop folder:    {workdir / 'xray-drop'}\n"
                f"  lane camera:          http://127.0.0.1:{ports.camera}/main.mjpg\n"
                "  Ctrl-C stops the demo.\n"
                "--- what reaches the central office ---",
                flush=True,
            )
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(gateway.wait())]
            await asyncio.wait(waiters, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            if gateway.returncode is not None:
                print(
                    f"demo: the gateway exited ({gateway.returncode}); see {log_path}",
                    file=sys.stderr,
                )
                return 1
            gateway.send_signal(signal.SIGTERM)  # before its devices go away
            await gateway.wait()
    finally:
        if gateway is not None and gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
        await asyncio.to_thread(view.stop)
        await asyncio.to_thread(broker.stop, None)
    print("demo stopped.")
    return 0
