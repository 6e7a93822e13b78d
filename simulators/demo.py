"""The demo checkpoint: simulated scales, a real broker, the gateway, and central's view.

``python -m simulators demo`` starts, in one terminal:

1. mosquitto on a free loopback port (its own config and data in the demo folder);
2. two weighbridge indicators on ptys: lane 1 a Mettler Toledo stream, lane 2 an
   XK3190 with line noise and checksum errors;
3. the gateway daemon (``edge-gateway run``) with a generated config;
4. a live view of everything that reaches the central office.

Ctrl-C stops it all. Everything lives in ``--dir`` (default ``./demo-data``): the
config, the outbox and the gateway's log, for ``gatewayctl --config ... status``.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
from pathlib import Path

from simulators.central import CentralView
from simulators.scale import ScaleSimulator

LANES = (
    ("scale-1", "toledo", ()),
    ("scale-2", "xk3190", ("noise", "checksum")),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_port(port: int, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def write_config(workdir: Path, port: int) -> Path:
    """The demo gateway's config: the documented shape, both lanes."""
    lines = [
        "[gateway]",
        'site = "demo-port"',
        'id = "gate-1"',
        f'data_dir = "{workdir / "gateway"}"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
    ]
    for device_id, protocol, _ in LANES:
        lines += [
            "[[devices]]",
            f'id = "{device_id}"',
            f'driver = "scale.{protocol}"',
            f'port = "{workdir / device_id}"',
            "baudrate = 9600",
            "telemetry_interval_s = 2.0",
        ]
    path = workdir / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(workdir: Path) -> tuple[str, Path, int, Path] | None:
    """Find mosquitto and write the demo's broker and gateway configs."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        print("demo: mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return None
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    (workdir / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n"
    )
    return mosquitto, workdir, port, write_config(workdir, port)


def run_demo(workdir: Path, duration_s: float | None = None, speed: float = 1.0) -> int:
    """Run the demo until Ctrl-C (or for ``duration_s``); return an exit code."""
    prepared = prepare(workdir)
    if prepared is None:
        return 1
    return asyncio.run(_run(*prepared, duration_s=duration_s, speed=speed))


async def _run(
    mosquitto: str,
    workdir: Path,
    port: int,
    config: Path,
    *,
    duration_s: float | None,
    speed: float,
) -> int:
    log_path = workdir / "gateway.log"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    broker = await asyncio.create_subprocess_exec(
        mosquitto,
        "-c",
        str(workdir / "mosquitto.conf"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    view = CentralView("127.0.0.1", port)
    gateway: asyncio.subprocess.Process | None = None
    try:
        await _wait_port(port)
        view.start()
        async with (
            ScaleSimulator(
                protocol=LANES[0][1], link=workdir / LANES[0][0], speed=speed, faults=LANES[0][2]
            ),
            ScaleSimulator(
                protocol=LANES[1][1],
                link=workdir / LANES[1][0],
                speed=speed * 0.8,  # the lanes out of step, as in life
                faults=LANES[1][2],
            ),
        ):
            log = await asyncio.to_thread(log_path.open, "ab")
            with log:
                gateway = await asyncio.create_subprocess_exec(
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
                )
            print(
                f"demo checkpoint: broker 127.0.0.1:{port}, gateway config {config}\n"
                f"  in another terminal:  .venv/bin/gatewayctl --config {config} status\n"
                f"  gateway log:          {log_path}\n"
                "  Ctrl-C stops the demo.\n"
                "--- what reaches the central office ---",
                flush=True,
            )
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(gateway.wait())]
            await asyncio.wait(waiters, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if gateway.returncode is not None:
                print(
                    f"demo: the gateway exited ({gateway.returncode}); see {log_path}",
                    file=sys.stderr,
                )
                return 1
            gateway.send_signal(signal.SIGTERM)
            await gateway.wait()
    finally:
        if gateway is not None and gateway.returncode is None:
            gateway.kill()
            await gateway.wait()
        await asyncio.to_thread(view.stop)
        broker.terminate()
        await broker.wait()
    print("demo stopped.")
    return 0
