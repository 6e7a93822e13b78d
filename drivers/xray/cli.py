"""The X-ray family's ``gatewayctl`` verbs: ``xray check``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.family import EXIT_PROBLEM, CliVerbs


def cmd_xray_check(args: argparse.Namespace) -> int:
    """What an X-ray drop folder holds: pending and why, failed and why, done (read-only)."""
    from drivers.xray.check import check_folder, render  # noqa: PLC0415 - only this verb

    report = check_folder(
        args.dir, settle_s=args.settle, manifest=args.manifest, orphan_after_s=args.orphan_after
    )
    print(render(report))
    return EXIT_PROBLEM if report.failed else 0


def add_verbs(verbs: CliVerbs) -> None:
    """``xray check``."""
    xray = verbs.commands.add_parser("xray", help="X-ray scanner drop folders (no daemon needed)")
    xray_sub = xray.add_subparsers(dest="verb", required=True)
    xcheck = xray_sub.add_parser("check", help="pending, failed and done scans in a folder")
    xcheck.add_argument("dir", type=Path)
    xcheck.add_argument("--settle", type=float, default=2.0, help="seconds unchanged = complete")
    xcheck.add_argument(
        "--orphan-after", type=float, default=120.0, help="a lone file this old is an orphan"
    )
    xcheck.add_argument("--manifest", type=Path, help="the driver's manifest (marks done scans)")
    xcheck.set_defaults(func=cmd_xray_check)
