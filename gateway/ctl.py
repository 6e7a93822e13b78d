"""``gatewayctl``: the field technician's command line.

Talks to the running daemon over its local control socket (``status``, ``tail``)
and to hardware directly (``probe``); checks config files without a daemon.
Exit codes: 0 fine, 1 a problem was found, 2 usage, 3 the daemon is not running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG_PATH, GatewayConfig, load_config
from gateway.control import follow, request
from gateway.errors import ConfigError, ControlError, GatewayError

EXIT_PROBLEM = 1
EXIT_NO_DAEMON = 3


def _load(args: argparse.Namespace) -> GatewayConfig:
    return load_config(args.config)


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate a config file and summarise it."""
    config = load_config(args.file)
    print(f"{args.file}: OK")
    print(f"  topic root   {config.gateway.root}")
    print(
        f"  broker       {config.mqtt.host}:{config.mqtt.port}"
        f"{' (TLS)' if config.mqtt.tls_ca else ''}"
    )
    print(f"  outbox       {config.outbox_path} (max {config.outbox.max_bytes} bytes)")
    print(f"  control      {config.control_socket}")
    for device in config.devices:
        flag = "" if device.enabled else " (disabled)"
        print(f"  device       {device.id}: {device.driver}{flag}")
    return 0


def _fmt_reading(reading: dict[str, Any] | None) -> str:
    if not reading:
        return "-"
    if "values" in reading:
        return " ".join(f"{k}={v}" for k, v in reading["values"].items())
    if "weight" in reading:
        stable = {True: "stable", False: "motion", None: ""}[reading.get("stable")]
        rng = "" if reading.get("in_range", True) else " OUT OF RANGE"
        return f"{reading.get('weight')} {reading.get('unit')} {stable}{rng}".strip()
    # Seals, scans, cameras: their own few fields, as key=value.
    shown = (f"{k}={v}" for k, v in reading.items() if v not in (None, [], {}))
    return " ".join(shown)[:80] or "-"


def cmd_status(args: argparse.Namespace) -> int:
    """Print what the daemon is doing."""
    config = _load(args)
    status = request(config.control_socket, "status")
    gw, up, ob = status["gateway"], status["uplink"], status["outbox"]
    problems = (0 if up.get("connected") else 1) + (1 if ob.get("disk_full") else 0)
    problems += sum(dev["state"] != "up" for dev in status["devices"].values())
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return EXIT_PROBLEM if problems else 0
    print(
        f"gateway  {gw['site']}/{gw['id']}  v{gw['version']}  pid {gw['pid']}  "
        f"up {gw['uptime_s']:.0f} s  root {gw['root']}"
    )
    link = "connected" if up.get("connected") else f"DISCONNECTED ({up.get('last_error')})"
    print(
        f"uplink   {up['broker']}{' TLS' if up['tls'] else ''}  {link} since {up.get('since')}  "
        f"inflight {up['inflight']}  acked {up.get('acked_total')}  "
        f"rejected {up.get('rejected_total')}"
    )
    print(
        f"outbox   {ob['depth']} queued ({ob['bytes']} of {ob['max_bytes']} bytes)  "
        f"last seq {ob['last_seq']}  evicted {ob['evicted_total']}  "
        f"disk full {ob['disk_full_total']}"
        + (f"  ERROR {ob['last_error']}" if ob.get("last_error") else "")
    )
    if ob.get("disk_full"):
        print(
            f"         DISK FULL at {ob['path']}: alarms and events kept, telemetry evicted"
            " first; free space on that filesystem (it recovers by itself)"
        )
    if ob.get("saturated"):
        print(
            f"         SATURATED: more offered than the uplink delivers; telemetry thinned"
            f" ({ob.get('shed_total', 0)} shed)"
        )
    for device_id, dev in status["devices"].items():
        counters = dev.get("counters") or {}
        print(
            f"device   {device_id:<12} {dev['state'].upper():<11} {dev['driver']:<14} "
            f"last {_fmt_reading(dev.get('last_reading'))}  "
            f"frames {counters.get('readings', 0)} ok / {counters.get('bad_frames', 0)} bad  "
            f"restarts {dev['restarts_total']} ({dev.get('restarts_last_hour', 0)} last hour)"
        )
        versions = [f"{v}: {counters[f'terminals_{v}']}" for v in ("2013", "2019")
                    if counters.get(f"terminals_{v}")]  # fmt: skip
        if versions:  # JT/T 808: connections by the header version their terminal spoke
            print(f"         JT/T 808 terminals by protocol version: {', '.join(versions)}")
        if dev["state"] not in ("up",) and dev.get("last_error"):
            print(
                f"         error: {dev['last_error']}"
                + (f" (retry in {dev['next_retry_s']} s)" if dev.get("next_retry_s") else "")
            )
    return EXIT_PROBLEM if problems else 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Print records as the broker acknowledges them."""
    config = _load(args)
    try:
        for line in follow(config.control_socket):
            if args.json:
                print(json.dumps(line, ensure_ascii=False), flush=True)
            elif "dropped" in line:
                print("... (tail too slow: lines dropped)", flush=True)
            elif "media" in line:
                media = line["media"]
                print(
                    f"{'':24}  {'media':<8} {line['topic']:<32} "
                    f"{media['content_type']}, {media['bytes']} bytes",
                    flush=True,
                )
            else:
                rec = line["record"]
                print(
                    f"{rec['ts']}  #{rec['seq']:<7} {line['topic']:<32} "
                    f"{json.dumps(rec['data'], ensure_ascii=False)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_probe_eseal(args: argparse.Namespace) -> int:
    """Look for an e-seal gate reader on a port."""
    from drivers.eseal.probe import COMMON_CRC_INITS, probe_reader, render  # noqa: PLC0415

    results = asyncio.run(
        probe_reader(
            args.port,
            baudrate=args.baudrate,
            framing=args.framing,
            crc_inits=tuple(args.crc_init or COMMON_CRC_INITS),
            seconds=args.seconds,
        )
    )
    text, found = render(args.port, results)
    print(text)
    return 0 if found else EXIT_PROBLEM


def _camera_url(args: argparse.Namespace, *, main: bool) -> str:
    """A camera id from the config (its snapshot stream when ``main``), or a URL as given."""
    if "://" in args.camera or args.camera.startswith("/"):
        return str(args.camera)
    from drivers.camera.config import CameraConfig  # noqa: PLC0415 - only camera verbs

    config = _load(args)
    for device in config.devices:
        if device.id == args.camera and isinstance(device, CameraConfig):
            return (device.snapshot_url or device.url) if main else device.url
    cameras = [d.id for d in config.devices if isinstance(d, CameraConfig)]
    raise ConfigError(
        f"{config.source}: no camera {args.camera!r}; cameras: {', '.join(cameras) or 'none'}"
        " (or give a URL)"
    )


def cmd_camera_check(args: argparse.Namespace) -> int:
    """Resolution, codec, measured fps of a camera, and a saved snapshot."""
    from drivers.camera.tools import check_camera  # noqa: PLC0415 - only camera verbs

    url = _camera_url(args, main=False)
    save = args.save or Path(f"camera-check-{args.camera.rsplit('/', 1)[-1] or 'cam'}.jpg")
    result = asyncio.run(check_camera(url, args.seconds, snapshot_path=save))
    print(result.render())
    return 0 if result.ok else EXIT_PROBLEM


def cmd_camera_snapshot(args: argparse.Namespace) -> int:
    """Save one full-resolution JPEG from a camera."""
    from drivers.camera.tools import snapshot  # noqa: PLC0415 - only camera verbs

    url = _camera_url(args, main=True)
    snap = asyncio.run(snapshot(url, args.output))
    print(
        f"{args.output}: {snap.width}x{snap.height}, {len(snap.jpeg)} bytes, sha256 {snap.sha256}"
    )
    return 0


def cmd_ocr(args: argparse.Namespace) -> int:
    """Read container codes or plates in an image file, as the gateway would."""
    from gateway.ocr.cli import read_image, render  # noqa: PLC0415 - the ocr extra

    report = read_image(args.image, args.kind)
    print(render(report))
    return 0


def cmd_xray_check(args: argparse.Namespace) -> int:
    """What an X-ray drop folder holds: pending and why, failed and why, done (read-only)."""
    from drivers.xray.check import check_folder, render  # noqa: PLC0415 - only this verb

    report = check_folder(
        args.dir, settle_s=args.settle, manifest=args.manifest, orphan_after_s=args.orphan_after
    )
    print(render(report))
    return EXIT_PROBLEM if report.failed else 0


def cmd_probe_serial(args: argparse.Namespace) -> int:
    """Identify a scale on a serial port."""
    from drivers.scale.probe import probe_serial  # noqa: PLC0415 - only this verb needs serial

    bauds = tuple(args.baudrate) if args.baudrate else None
    kwargs: dict[str, Any] = {"seconds": args.seconds}
    if bauds:
        kwargs["baudrates"] = bauds
    attempts = asyncio.run(probe_serial(args.port, **kwargs))
    for a in attempts:
        if a.error:
            print(f"  {a.baudrate:>6} {a.framing}  {a.error}")
            if len(attempts) == 1:
                return EXIT_PROBLEM
            continue
        best = a.best
        summary = (
            f"{best.protocol}: {len(best.readings)} frames decoded, {best.bad_frames} bad"
            if best
            else "nothing decoded"
        )
        asked = f"sent {a.sent!r}" if a.sent else "listening"
        print(f"  {a.baudrate:>6} {a.framing}  {asked:<16} {a.bytes_heard:>5} bytes  {summary}")
        if best is not None and best.convincing:
            for r in best.readings[-3:]:
                stable = {True: "stable", False: "motion", None: "no stability flag"}[r.stable]
                print(
                    f"      {r.weight} {r.unit}  {stable}"
                    + ("" if r.in_range else "  out of range")
                )
            print(
                f"verdict: {best.protocol} at {a.baudrate} baud {a.framing} -> config "
                f'driver = "scale.{best.protocol}", baudrate = {a.baudrate}, '
                f'framing = "{a.framing}"'
            )
            return 0
    heard = sum(a.bytes_heard for a in attempts)
    if heard:
        print(
            f"verdict: bytes arrive ({heard}) but no known scale protocol decodes them: "
            "check the indicator's output format setting"
        )
    else:
        print(
            "verdict: silence at every speed: check cabling (TX/RX swapped?), the "
            "indicator's output setting, and that nothing else holds the port"
        )
    return EXIT_PROBLEM


def _line(args: argparse.Namespace) -> Any:
    from drivers.modbus.line import LineSettings  # noqa: PLC0415 - only the modbus verbs need it

    return LineSettings(
        target=args.target,
        baudrate=args.baudrate,
        parity=args.parity,
        stopbits=args.stopbits,
        timeout_s=args.timeout,
    )


def cmd_modbus_read(args: argparse.Namespace) -> int:
    """Read registers or bits and print raw and decoded values."""
    from drivers.modbus.tools import read  # noqa: PLC0415 - only this verb needs pymodbus

    result = asyncio.run(
        read(
            _line(args),
            unit=args.unit,
            address=args.address,
            count=args.count,
            function=args.function,
            data_type=args.type,
            word_order=args.word_order,
            byte_order=args.byte_order,
        )
    )
    width = 1 if args.type == "bool" else len(result.raw) // max(1, len(result.values))
    for i, value in enumerate(result.values):
        address = args.address + i * width
        raw = " ".join(f"{w:#06x}" for w in result.raw[i * width : (i + 1) * width])
        print(f"{args.function} {address:#06x} ({address})  raw {raw}  {args.type} {value}")
    return 0


def cmd_modbus_scan(args: argparse.Namespace) -> int:
    """List the unit ids that answer on a line."""
    from drivers.modbus.tools import scan  # noqa: PLC0415 - only this verb needs pymodbus

    first, _, last = args.units.partition("-")
    units = range(int(first), int(last or first) + 1)
    hits = asyncio.run(scan(_line(args), units, address=args.address))
    for hit in hits:
        print(f"unit {hit.unit:>3}: {hit.answer}")
    print(f"{len(hits)} unit(s) answered of {len(units)} tried on {args.target}")
    return 0 if hits else EXIT_PROBLEM


def _address(text: str) -> int:
    return int(text, 0)


def _add_modbus(sub: Any) -> None:
    modbus = sub.add_parser("modbus", help="talk to Modbus devices (no daemon needed)")
    verbs = modbus.add_subparsers(dest="verb", required=True)
    for verb in ("read", "scan"):
        p = verbs.add_parser(
            verb, help={"read": "read registers or bits", "scan": "which unit ids answer"}[verb]
        )
        p.add_argument("target", help="tcp://HOST:PORT, or a serial port (RTU)")
        p.add_argument("--baudrate", type=int, default=9600)
        p.add_argument("--parity", choices=["N", "E", "O"], default="N")
        p.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
        p.add_argument("--timeout", type=float, default=0.5, help="seconds per request")
        if verb == "read":
            p.add_argument("--unit", type=int, default=1, help="slave / unit id")
            p.add_argument(
                "--address",
                type=_address,
                required=True,
                help="protocol address as sent on the wire, 0-based: 0x0050 "
                "reads register 0x0050. A manual's 40081 (1-based, "
                "holding) is --address 80",
            )
            p.add_argument("--count", type=int, default=1, help="how many values")
            p.add_argument(
                "--type",
                default="uint16",
                choices=["int16", "uint16", "int32", "uint32", "float32", "bool"],
            )
            p.add_argument(
                "--function", default="holding", choices=["holding", "input", "coil", "discrete"]
            )
            p.add_argument(
                "--word-order",
                choices=["big", "little"],
                default="big",
                help="32-bit values: big = high word first",
            )
            p.add_argument("--byte-order", choices=["big", "little"], default="big")
            p.set_defaults(func=cmd_modbus_read)
        else:
            p.add_argument("--units", default="1-247", help="range, e.g. 1-10")
            p.add_argument(
                "--address",
                type=_address,
                default=0,
                help="holding register to read (0-based wire address)",
            )
            p.set_defaults(func=cmd_modbus_scan)


def _add_site_tools(sub: Any) -> None:
    """Verbs for cameras, OCR and X-ray folders (no daemon needed)."""
    camera = sub.add_parser("camera", help="cameras: check a stream, take a snapshot")
    camera_sub = camera.add_subparsers(dest="verb", required=True)
    ccheck = camera_sub.add_parser(
        "check", help="resolution, codec, fps measured over a few seconds, and a snapshot"
    )
    ccheck.add_argument("camera", help="camera id from the config, or a URL / device path")
    ccheck.add_argument("--seconds", type=float, default=5.0, help="measure fps this long")
    ccheck.add_argument("--save", type=Path, help="snapshot file (default camera-check-ID.jpg)")
    ccheck.set_defaults(func=cmd_camera_check)
    csnap = camera_sub.add_parser("snapshot", help="save one full-resolution JPEG")
    csnap.add_argument("camera", help="camera id from the config, or a URL / device path")
    csnap.add_argument("-o", "--output", type=Path, required=True, help="JPEG file to write")
    csnap.set_defaults(func=cmd_camera_snapshot)

    ocr = sub.add_parser(
        "ocr", help="read container codes / plates in an image (check digit, candidates)"
    )
    ocr.add_argument("image", type=Path, help="any image file OpenCV reads (a crop is best)")
    ocr.add_argument("--kind", choices=("container", "plate"), help="default: try both")
    ocr.set_defaults(func=cmd_ocr)

    xray = sub.add_parser("xray", help="X-ray scanner drop folders (no daemon needed)")
    xray_sub = xray.add_subparsers(dest="verb", required=True)
    xcheck = xray_sub.add_parser("check", help="pending, failed and done scans in a folder")
    xcheck.add_argument("dir", type=Path)
    xcheck.add_argument("--settle", type=float, default=2.0, help="seconds unchanged = complete")
    xcheck.add_argument(
        "--orphan-after", type=float, default=120.0, help="a lone file this old is an orphan"
    )
    xcheck.add_argument("--manifest", type=Path, help="the driver's manifest (marks done scans)")
    xcheck.set_defaults(func=cmd_xray_check)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (separate for tests and --help)."""
    parser = argparse.ArgumentParser(
        prog="gatewayctl", description="Diagnostics for the checkpoint edge gateway."
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"gateway config (default {DEFAULT_CONFIG_PATH}); it names the "
        "daemon's control socket",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    status = sub.add_parser("status", help="devices, last readings, errors, outbox, uplink")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(func=cmd_status)

    tail = sub.add_parser("tail", help="follow records as the broker acknowledges them")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=cmd_tail)

    probe = sub.add_parser("probe", help="identify hardware on a port (no daemon needed)")
    probe_sub = probe.add_subparsers(dest="kind", required=True)
    serial = probe_sub.add_parser("serial", help="try baud rates and every scale protocol")
    serial.add_argument("port", help="device path (/dev/ttyUSB0) or pyserial URL")
    serial.add_argument("--seconds", type=float, default=1.5, help="listen time per setting")
    serial.add_argument("--baudrate", type=int, action="append", help="only this rate (repeatable)")
    serial.set_defaults(func=cmd_probe_serial)
    eseal = probe_sub.add_parser(
        "eseal", help="look for a Hi-G-Tek gate reader, its CRC start value and layout (read-only)"
    )
    eseal.add_argument("port", help="serial device, or socket://HOST:PORT for a reader on TCP")
    eseal.add_argument("--baudrate", type=int, default=9600)
    eseal.add_argument(
        "--framing", default="8N1", choices=("8N1", "7E1", "7O1", "8E1", "8O1", "8N2")
    )
    eseal.add_argument(
        "--crc-init",
        type=lambda v: int(v, 0),
        action="append",
        help="CRC start value to try (repeatable; default 0xFFFF, 0x0000, 0x1D0F)",
    )
    eseal.add_argument("--seconds", type=float, default=3.0, help="listen this long per try")
    eseal.set_defaults(func=cmd_probe_eseal)

    _add_modbus(sub)

    _add_site_tools(sub)

    config = sub.add_parser("config", help="configuration files")
    config_sub = config.add_subparsers(dest="action", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gatewayctl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ControlError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except ConfigError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except GatewayError as exc:
        print(f"gatewayctl: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return code


if __name__ == "__main__":
    sys.exit(main())
