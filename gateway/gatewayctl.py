"""``gatewayctl``: the field technician's command line.

Talks to the running daemon over its local control socket (``status``, ``tail``)
and to hardware directly (``probe``); checks config files without a daemon.
Exit codes: 0 fine, 1 a problem was found, 2 usage, 3 the daemon is not running.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG_PATH, GatewayConfig, load_config
from gateway.control_socket import follow, request
from gateway.errors import ConfigError, ControlError, GatewayError
from gateway.evidence_cli import add_verbs as add_evidence_verbs
from gateway.family import EXIT_PROBLEM, CliVerbs
from gateway.manifests import ManifestStore
from gateway.registry import families, family_of, resolve

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
    for lane in config.lanes:
        print(f"  lane         {lane.id}: {', '.join(lane.devices())}")
    return 0


def _fmt_reading(reading: dict[str, Any] | None) -> str:
    """A last reading as key=value (families may say it better: ``Family.describe``)."""
    if not reading:
        return "-"
    shown = (f"{k}={v}" for k, v in reading.items() if v not in (None, [], {}))
    return " ".join(shown)[:80] or "-"


def _describe(device: dict[str, Any]) -> list[str]:
    family = family_of(device["driver"])
    if family is None or family.describe is None:
        return [_fmt_reading(device.get("last_reading"))]
    describe = resolve(family.describe, where=f"family {family.name!r}")
    lines: list[str] = describe(device)
    return lines


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
        last, *more = _describe(dev)
        print(
            f"device   {device_id:<12} {dev['state'].upper():<11} {dev['driver']:<14} "
            f"last {last}  "
            f"frames {counters.get('readings', 0)} ok / {counters.get('bad_frames', 0)} bad  "
            f"restarts {dev['restarts_total']} ({dev.get('restarts_last_hour', 0)} last hour)"
        )
        for line in more:
            print(f"         {line}")
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
                    f"{rec['ts']}  #{rec['seq']:<7} {rec.get('device') or '-':<12} "
                    f"{line['topic']:<32} {json.dumps(rec['data'], ensure_ascii=False)}",
                    flush=True,
                )
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    """List the pre-arrival manifests held (from the file: no daemon needed)."""
    config = _load(args)
    store = ManifestStore(config.gateway.data_dir)
    held = sorted(store.manifests.values(), key=lambda m: m.id)
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in held], indent=2, ensure_ascii=False))
        return 0
    print(f"{len(held)} manifest(s) in {store.path}")
    for m in held:
        weight = f"{m.declared_gross_kg:g} kg" if m.declared_gross_kg is not None else "-"
        print(
            f"  {m.id:<20} plate {m.plate:<12} containers {','.join(m.containers) or '-':<24}"
            f" seals {','.join(m.seals) or '-':<12} gross {weight:<10}"
            f" scan {'required' if m.scan_required else 'no':<8}"
            f" until {m.valid_until:%Y-%m-%d %H:%M}"
        )
    return 0


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

    verbs = CliVerbs(commands=sub, probe=probe_sub)
    for family in families().values():
        if family.cli is not None:
            resolve(family.cli, where=f"family {family.name!r}")(verbs)

    manifests = sub.add_parser("manifests", help="pre-arrival manifests the centre pushed")
    manifests.add_argument("--json", action="store_true", help="machine-readable")
    manifests.set_defaults(func=cmd_manifests)

    add_evidence_verbs(sub)

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
