"""Command line for the simulators: ``python -m simulators <device> [options]``.

Example: ``python -m simulators scale --protocol toledo --link /tmp/scale0 --trucks 3``
prints where the pty is, plays three trucks and exits 0; without ``--trucks`` it plays
until SIGINT or SIGTERM, then removes the link and exits 0.
``python -m simulators modbus --tcp 5020 --profile scale-int32 --unit 1 --unit 2`` does the
same with Modbus slaves (``--rtu /tmp/modbus0`` for RTU on a pty).
``python -m simulators eseal --protocol reader --link /tmp/seal0 --events 20`` plays a gate
reader for electronic seals (``--tcp PORT`` to listen instead) whose alerts are the
manual's plain records (``--alert-form extended``: the gateway's own 15-byte extension
with event time and EV#, not a real reader's form); ``--protocol jt808 --tcp PORT`` is an
e-lock that connects to the gateway's JT/T 808 server on 127.0.0.1:PORT.
``python -m simulators xray --dir /tmp/drop --scans 12 --faults half_written,corrupt`` drops
X-ray scans (image + sidecar) into a folder and the ground truth into ``/tmp/xray-truth.json``.
``python -m simulators camera --serve mjpeg --port 8080`` is an IP camera over a checkpoint
lane (``/main.mjpg``, ``/sub.mjpg``, ``/snapshot.jpg``; ``--serve rtsp`` for ``rtsp://…/main``
and ``/sub``; ``--serve file --out lane.avi --seconds 60`` writes a clip and its truth).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from drivers.scale.protocols import CODECS
from simulators.camera import cli as camera_cli
from simulators.central import CentralView
from simulators.cli_args import fault_list
from simulators.demo import run_demo
from simulators.eseal import ALERT_FORMS as ESEAL_ALERT_FORMS
from simulators.eseal import FAULTS as ESEAL_FAULTS
from simulators.eseal import PROTOCOLS as ESEAL_PROTOCOLS
from simulators.eseal import EsealSimulator
from simulators.lifecycle import stop_on_signals, until_done_or_stopped
from simulators.modbus import FAULTS as MODBUS_FAULTS
from simulators.modbus import PROFILES as MODBUS_PROFILES
from simulators.modbus import ModbusSimulator
from simulators.scale import FAULTS, ScaleSimulator
from simulators.xray import FAULTS as XRAY_FAULTS
from simulators.xray import IMAGE_FORMATS, SIDECAR_FORMATS, XraySimulator


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _add_xray(devices: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    xray = devices.add_parser("xray", help="an X-ray scanner dropping scans into a folder")
    xray.add_argument("--dir", required=True, type=Path, help="the drop folder")
    xray.add_argument("--scans", type=_count, default=None, help="default: forever")
    xray.add_argument("--interval", type=_positive, default=2.0, help="seconds between scans")
    xray.add_argument(
        "--faults",
        type=fault_list(XRAY_FAULTS),
        default=frozenset(),
        help=f"comma list of {','.join(XRAY_FAULTS)}",
    )
    xray.add_argument("--format", choices=list(IMAGE_FORMATS), default="tiff16")
    xray.add_argument("--sidecar", choices=list(SIDECAR_FORMATS), default="xml")
    xray.add_argument("--seed", type=int, default=None, help="reproducible scans")
    xray.add_argument("--truth", type=Path, default=None, help="default: DIR/../xray-truth.json")
    xray.add_argument("--settle", type=_positive, default=2.0, help="watcher's settle seconds")
    xray.set_defaults(run=lambda args: asyncio.run(_run_xray(args)))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__)
    devices = parser.add_subparsers(dest="device", required=True)
    scale = devices.add_parser("scale", help="a weighbridge indicator on a pty")
    scale.add_argument("--protocol", required=True, choices=sorted(CODECS))
    scale.add_argument("--link", required=True, type=Path, help="symlink to create (pty slave)")
    scale.add_argument(
        "--faults",
        type=fault_list(FAULTS),
        default=frozenset(),
        help=f"comma list of {','.join(FAULTS)}",
    )
    scale.add_argument("--trucks", type=_count, default=None, help="default: forever")
    scale.add_argument("--speed", type=_positive, default=1.0, help="time compression")
    scale.add_argument("--seed", type=int, default=None, help="reproducible weights and faults")
    scale.add_argument("--rate-hz", type=_positive, default=10.0, help="frames per second")
    scale.set_defaults(run=lambda args: asyncio.run(_run_scale(args)))

    modbus = devices.add_parser("modbus", help="Modbus slaves: scale transmitters or sensors")
    where = modbus.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="Modbus TCP on 127.0.0.1:PORT")
    where.add_argument("--rtu", type=Path, metavar="PATH", help="Modbus RTU, symlink to a pty")
    modbus.add_argument("--profile", required=True, choices=MODBUS_PROFILES)
    modbus.add_argument(
        "--unit", type=int, action="append", dest="units", help="unit id, repeatable (default 1)"
    )
    modbus.add_argument(
        "--faults",
        type=fault_list(MODBUS_FAULTS),
        default=frozenset(),
        help=f"comma list of {','.join(MODBUS_FAULTS)}",
    )
    modbus.add_argument("--trucks", type=_count, default=None, help="default: forever")
    modbus.add_argument("--speed", type=_positive, default=1.0, help="time compression")
    modbus.add_argument("--seed", type=int, default=None, help="reproducible weights and faults")
    modbus.set_defaults(run=lambda args: asyncio.run(_run_modbus(args)))

    eseal = devices.add_parser(
        "eseal", help="electronic seals: a gate reader, or a JT/T 808 e-lock (TCP client)"
    )
    eseal.add_argument("--protocol", required=True, choices=ESEAL_PROTOCOLS)
    eseal_where = eseal.add_mutually_exclusive_group(required=True)
    eseal_where.add_argument("--link", type=Path, help="reader: symlink to create (pty slave)")
    eseal_where.add_argument(
        "--tcp", type=int, metavar="PORT", help="reader: listen on 127.0.0.1:PORT; jt808: connect"
    )
    eseal.add_argument(
        "--faults",
        type=fault_list(ESEAL_FAULTS),
        default=frozenset(),
        help=f"comma list of {','.join(ESEAL_FAULTS)} (no_seal: reader only)",
    )
    eseal.add_argument("--events", type=_count, default=None, help="default: forever")
    eseal.add_argument("--speed", type=_positive, default=1.0, help="time compression")
    eseal.add_argument("--seed", type=int, default=None, help="reproducible scenario and faults")
    eseal.add_argument("--register", action="store_true", help="jt808: register (0x0100) first")
    eseal.add_argument(
        "--auth-code",
        default=None,
        help="jt808: authenticate (0x0102) with this code on each connection (the code the"
        " gateway's `terminals` lists for this e-lock)",
    )
    eseal.add_argument(
        "--alert-form",
        choices=ESEAL_ALERT_FORMS,
        default="plain",
        help="reader: plain = the Hi-G-Tek manual's alert record (no event time, no EV#);"
        " extended = the gateway's own 15-byte record with EV#, event code and event time"
        " (not a real reader's form; out_of_order needs it)",
    )
    eseal.add_argument(
        "--jt808-version",
        choices=("2013", "2019"),
        default="2019",
        help="jt808: the terminal's protocol version (2019: version byte, 20-digit phone)",
    )
    eseal.set_defaults(run=lambda args: asyncio.run(_run_eseal(args)))

    _add_xray(devices)
    camera = devices.add_parser(
        "camera", help="an IP camera over a checkpoint lane: MJPEG, RTSP or a clip file"
    )
    camera_cli.add_arguments(camera)
    camera.set_defaults(run=lambda args: asyncio.run(camera_cli.run(args)))

    demo = devices.add_parser("demo", help="the whole demo checkpoint, with central's live view")
    demo.add_argument("--dir", type=Path, default=Path("demo-data"), help="config, outbox, logs")
    demo.add_argument("--duration", type=_positive, default=None, help="seconds; default: Ctrl-C")
    demo.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="time compression of the checkpoint: trucks, seal events, scans, camera trucks",
    )
    demo.set_defaults(run=lambda args: run_demo(args.dir, args.duration, args.speed))

    central = devices.add_parser("central", help="live view of what reaches the central office")
    central.add_argument("--host", default="127.0.0.1")
    central.add_argument("--port", type=int, default=1883)
    central.add_argument("--topic", default="customs/#")
    central.set_defaults(run=_run_central)
    return parser


def _run_central(args: argparse.Namespace) -> int:
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # the paho thread inherits this
    view = CentralView(args.host, args.port, args.topic)
    view.start()
    print(f"listening on {args.host}:{args.port} for {args.topic} (Ctrl-C stops)", flush=True)
    try:
        signal.sigwait(stop_signals)
    finally:
        view.stop()
    return 0


async def _run_scale(args: argparse.Namespace) -> int:
    sim = ScaleSimulator(
        protocol=args.protocol,
        link=args.link,
        trucks=args.trucks,
        speed=args.speed,
        faults=args.faults,
        seed=args.seed,
        rate_hz=args.rate_hz,
    )
    stop = stop_on_signals()
    async with sim:
        where = f"{args.link} (slave {sim.slave_name})"
        print(f"scale simulator {args.protocol} on {where}", flush=True)
        await until_done_or_stopped(sim.finished, stop)
    logging.getLogger(__name__).info("scale simulator done: %s", sim.stats)
    return 0


async def _run_modbus(args: argparse.Namespace) -> int:
    try:
        sim = ModbusSimulator(
            profile=args.profile,
            tcp_port=args.tcp,
            rtu_link=args.rtu,
            units=args.units or (1,),
            faults=args.faults,
            trucks=args.trucks,
            speed=args.speed,
            seed=args.seed,
        )
    except ValueError as exc:  # units out of range, crc without RTU
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    async with sim:
        where = f"{sim.link} (slave {sim.slave_name})" if sim.link else f"{sim.host}:{sim.port}"
        units = ",".join(map(str, sim.units))
        print(f"modbus simulator {args.profile} on {where}, units {units}", flush=True)
        await until_done_or_stopped(sim.finished, stop)
    logging.getLogger(__name__).info("modbus simulator done: %s", sim.stats)
    return 0


async def _run_eseal(args: argparse.Namespace) -> int:
    try:
        sim = EsealSimulator(
            protocol=args.protocol,
            link=args.link,
            tcp_port=args.tcp,
            events=args.events,
            faults=args.faults,
            seed=args.seed,
            speed=args.speed,
            register=args.register,
            auth_code=args.auth_code,
            alert_form=args.alert_form,
            jt808_version=args.jt808_version,
        )
    except ValueError as exc:  # jt808 with --link, a fault that does not apply (or form)
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals()
    async with sim:
        if sim.link is not None:
            where = f"{sim.link} (slave {sim.slave_name})"
        elif args.protocol == "reader":
            where = f"listening on 127.0.0.1:{sim.port}"
        else:
            where = f"connecting to 127.0.0.1:{sim.port}"
        print(f"eseal simulator {args.protocol} {where}, seed {sim.seed}", flush=True)
        await until_done_or_stopped(sim.finished, stop)
    logging.getLogger(__name__).info("eseal simulator done: %s", sim.stats)
    return 0


async def _run_xray(args: argparse.Namespace) -> int:
    sim = XraySimulator(
        dir=args.dir,
        scans=args.scans,
        interval_s=args.interval,
        faults=args.faults,
        seed=args.seed,
        image_format=args.format,
        sidecar_format=args.sidecar,
        truth_path=args.truth,
        settle_s=args.settle,
    )
    stop = stop_on_signals()
    async with sim:
        print(f"xray simulator writing to {args.dir}, truth in {sim.truth_path}", flush=True)
        await until_done_or_stopped(sim.finished, stop)
    logging.getLogger(__name__).info("xray simulator done: %d scans", len(sim.truth))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen simulator until it is done or signalled."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.run(args)
        return code
    except OSError as exc:  # the link's directory is missing, no ptys left, ...
        print(f"simulator: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
