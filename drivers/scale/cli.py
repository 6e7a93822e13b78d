"""The scale family's ``gatewayctl`` verbs: ``probe serial``, and its status lines."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway.family import EXIT_PROBLEM, CliVerbs


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


def add_verbs(verbs: CliVerbs) -> None:
    """``probe serial``."""
    serial = verbs.probe.add_parser("serial", help="try baud rates and every scale protocol")
    serial.add_argument("port", help="device path (/dev/ttyUSB0) or pyserial URL")
    serial.add_argument("--seconds", type=float, default=1.5, help="listen time per setting")
    serial.add_argument("--baudrate", type=int, action="append", help="only this rate (repeatable)")
    serial.set_defaults(func=cmd_probe_serial)


def describe(device: dict[str, Any]) -> list[str]:
    """``gatewayctl status``: the last weight, stable or in motion, and out of range."""
    reading = device.get("last_reading")
    if not reading:
        return ["-"]
    stable = {True: "stable", False: "motion", None: ""}[reading.get("stable")]
    out = "" if reading.get("in_range", True) else " OUT OF RANGE"
    return [f"{reading.get('weight')} {reading.get('unit')} {stable}{out}".strip()]
