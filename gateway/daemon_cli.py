"""``edge-gateway``: the daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.config import DEFAULT_CONFIG_PATH, load_config
from gateway.daemon import Daemon
from gateway.errors import ConfigError, DriverUnavailableError, GatewayError
from gateway.logs import configure_logging

EX_CONFIG = 78
"""sysexits.h: the unit file's RestartPreventExitStatus, as restarting cannot fix a config."""
UMASK = 0o027
"""Whatever the daemon creates is never world-accessible nor group-writable: the outbox
is evidence. Set by the daemon itself, so it also holds when started outside the unit
(which sets ``UMask=0027`` too)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edge-gateway`` console script."""
    parser = argparse.ArgumentParser(
        prog="edge-gateway", description="Checkpoint edge gateway daemon."
    )
    parser.add_argument("--version", action="version", version=f"edge-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground (systemd: Type=notify)")
    run.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"config file (default {DEFAULT_CONFIG_PATH})",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="default: console on a terminal, JSON otherwise",
    )
    args = parser.parse_args(argv)
    os.umask(UMASK)  # before anything is created: logs, the outbox, its WAL, state files
    # A watchdog SIGABRT leaves the main thread's stack (the event loop that stopped
    # answering). Dumping every thread is not async-signal-safe and was seen to crash.
    faulthandler.enable(all_threads=False)
    configure_logging(
        args.log_level, json=None if args.log_format is None else args.log_format == "json"
    )
    try:
        config = load_config(args.config)
        return asyncio.run(Daemon(config).run())
    except (ConfigError, DriverUnavailableError) as exc:
        print(f"edge-gateway: {exc}", file=sys.stderr)
        return EX_CONFIG
    except GatewayError as exc:
        print(f"edge-gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
