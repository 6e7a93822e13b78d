"""The Modbus family's ``gatewayctl`` verbs: ``modbus read|scan``, and its status lines."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway.family import EXIT_PROBLEM, CliVerbs


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


def add_verbs(verbs: CliVerbs) -> None:
    """``modbus read``, ``modbus scan``."""
    modbus = verbs.commands.add_parser("modbus", help="talk to Modbus devices (no daemon needed)")
    modbus_sub = modbus.add_subparsers(dest="verb", required=True)
    for verb in ("read", "scan"):
        p = modbus_sub.add_parser(
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


def describe(device: dict[str, Any]) -> list[str]:
    """``gatewayctl status``: the last round's values as point=value."""
    reading = device.get("last_reading")
    if not reading:
        return ["-"]
    return [" ".join(f"{k}={v}" for k, v in reading.get("values", {}).items()) or "-"]
