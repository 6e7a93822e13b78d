"""``python -m simulators camera``: a fake IP camera for technicians and demos.

Examples::

    python -m simulators camera --serve mjpeg --port 8080      # ffplay http://HOST:8080/sub.mjpg
    python -m simulators camera --serve rtsp --port 8554       # vlc rtsp://HOST:8554/main
    python -m simulators camera --serve file --out lane.avi --seconds 60 --seed 1

Without ``--trucks`` or ``--duration`` it plays until SIGINT or SIGTERM, then writes
the truth (``--truth``) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.errors import DeviceInitError
from simulators.camera import FAULTS, SERVE_MODES
from simulators.cli_args import fault_list
from simulators.lifecycle import stop_on_signals, until_done_or_stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The camera subcommand's options."""
    parser.add_argument("--serve", choices=SERVE_MODES, default="mjpeg")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to reach it from VLC")
    parser.add_argument("--port", type=int, default=0, help="default: a free port (printed)")
    parser.add_argument("--scene", choices=("lane",), default="lane")
    parser.add_argument("--seed", type=int, default=None, help="reproducible clip and faults")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--trucks", type=int, default=None, help="default: forever")
    parser.add_argument("--truck-every", type=float, default=120.0, metavar="S")
    parser.add_argument("--dwell", type=float, default=20.0, metavar="S")
    parser.add_argument(
        "--faults",
        type=fault_list(FAULTS),
        default=frozenset(),
        help=f"comma list of {','.join(FAULTS)}",
    )
    parser.add_argument("--fault-first", type=float, default=10.0, metavar="S")
    parser.add_argument("--fault-every", type=float, default=60.0, metavar="S")
    parser.add_argument("--fault-duration", type=float, default=5.0, metavar="S")
    parser.add_argument(
        "--motion-only", action="store_true", help="send frames only while something moves"
    )
    parser.add_argument("--truth", type=Path, default=None, help="ground-truth JSON to write")
    parser.add_argument("--out", type=Path, default=None, help="file: the clip (.avi)")
    parser.add_argument("--seconds", type=float, default=None, help="file: clip length")
    parser.add_argument("--duration", type=float, default=None, metavar="S")


async def run(args: argparse.Namespace) -> int:
    """Play the camera until done (trucks, duration, clip) or SIGINT/SIGTERM."""
    from simulators.camera.simulator import CameraSimulator  # noqa: PLC0415 - needs OpenCV

    if args.serve == "file" and (args.out is None or args.seconds is None):
        print("simulator: --serve file needs --out and --seconds", file=sys.stderr)
        return 2
    try:
        sim = CameraSimulator(
            serve=args.serve,
            host=args.host,
            port=args.port,
            seed=args.seed,
            fps=args.fps,
            trucks=args.trucks,
            truck_every_s=args.truck_every,
            dwell_s=args.dwell,
            faults=args.faults,
            fault_first_s=args.fault_first,
            fault_every_s=args.fault_every,
            fault_duration_s=args.fault_duration,
            motion_only=args.motion_only,
            duration_s=args.seconds if args.serve == "file" else args.duration,
            out=args.out,
            truth_path=args.truth,
        )
    except ValueError as exc:  # negative times, fault windows that do not fit
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    try:
        async with sim:
            urls = " ".join(sim.urls.values())
            print(f"camera simulator {args.serve}: {urls} seed {sim.seed}", flush=True)
            await until_done_or_stopped(sim.finished, stop)
    except DeviceInitError as exc:  # RTSP without its Debian packages
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    logging.getLogger(__name__).info("camera simulator done: %s", dict(sim.sent))
    return 0
