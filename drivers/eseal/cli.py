"""The e-seal family's ``gatewayctl`` verbs: ``probe eseal``, and its status lines."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway.family import EXIT_PROBLEM, CliVerbs

REFUSALS = (
    "connections_refused",
    "connections_refused_address",
    "connections_refused_network",
    "connections_evicted",
    "connections_closed_idle",
    "connections_closed_unauthenticated",
    "connections_closed_write_buffer",
    "connections_replaced",
    "frames_rate_limited",
    "frames_unauthenticated",
    "frames_wrong_terminal",
    "terminals_unknown",
    "terminals_auth_failed",
)
"""The JT/T 808 listener's refusal counters (:mod:`drivers.eseal.driver_jt808`), in the
order ``gatewayctl status`` shows them. Kept here so listing the verbs imports no driver."""


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


def add_verbs(verbs: CliVerbs) -> None:
    """``probe eseal``."""
    eseal = verbs.probe.add_parser(
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


def describe(device: dict[str, Any]) -> list[str]:
    """``gatewayctl status``: the last read as key=value; JT/T 808 terminals by version."""
    reading = device.get("last_reading") or {}
    shown = (f"{k}={v}" for k, v in reading.items() if v not in (None, [], {}))
    lines = [" ".join(shown)[:80] or "-"]
    counters = device.get("counters") or {}
    versions = [f"{v}: {counters[f'terminals_{v}']}" for v in ("2013", "2019")
                if counters.get(f"terminals_{v}")]  # fmt: skip
    if versions:  # connections by the header version their terminal spoke
        lines.append(f"JT/T 808 terminals by protocol version: {', '.join(versions)}")
    refused = [f"{name}={counters[name]}" for name in REFUSALS if counters.get(name)]
    if refused:  # what the JT/T 808 listener refused or closed (issue 13)
        unknown = counters.get("last_unknown_terminal")
        last = f" (last unknown terminal {unknown})" if unknown else ""
        lines.append(f"refused: {' '.join(refused)}{last}")
    return lines
