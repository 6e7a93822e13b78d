"""``gatewayctl keys show`` and ``gatewayctl verify``: the signing key and its check."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.family import EXIT_PROBLEM
from gateway.signing import fingerprint, public_key_from_text, public_raw, read_public
from gateway.verify import key_from_capture, read_capture, verify_stream

VERIFY_HELP = """\
FILE holds JSON lines, one message each as a subscriber received it:
  {"topic": "...", "payload": "<the exact payload, UTF-8>", "properties": {...},
   "retain": false}
(properties and retain may be absent). Exit 0 only when every record is authentic
and the chain is whole; 1 otherwise. Without --public-key the key the capture carries
on {root}/key is used, and its fingerprint is printed: compare it with the enrolled
one, since whoever wrote the capture could have written that key too."""


def cmd_keys_show(args: argparse.Namespace) -> int:
    """Print the gateway's public key and fingerprint for enrolment at central."""
    config = load_config(args.config)
    key, source = read_public(config.gateway.data_dir, config.gateway.signing_key)
    raw = public_raw(key)
    print(f"public key   {base64.b64encode(raw).decode()}  (Ed25519, base64 of 32 bytes)")
    print(f"fingerprint  {fingerprint(raw)}  (SHA-256 of the 32 bytes)")
    print(f"from         {source}")
    return 0


def _key_argument(value: str) -> Any:
    path = Path(value)
    text = path.read_text(encoding="utf-8") if path.is_file() else value
    return public_key_from_text(text)


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a capture: authentic records, no gaps, no reordering, an unbroken chain."""
    try:
        messages = list(read_capture(args.file))
        key = _key_argument(args.public_key) if args.public_key else None
    except OSError as exc:
        raise ConfigError(f"{args.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if key is None:
        key = key_from_capture(messages)
        if key is None:
            raise ConfigError(
                f"{args.file} carries no {{root}}/key message: give --public-key"
                " (the output of `gatewayctl keys show` on the gateway)"
            )
        print(f"key          from the capture, fingerprint {fingerprint(public_raw(key))}")
    report = verify_stream(messages, key)
    span = f"seq {report.first_seq}-{report.last_seq}" if report.records else "no records"
    print(
        f"records      {report.records} ({span}), {report.authentic} authentic, "
        f"{report.evicted} announced evictions, {report.skipped} other messages"
    )
    for problem in report.problems:
        print(f"problem      {problem}")
    print(
        "result       OK: every record authentic, chain whole"
        if report.ok
        else "result       FAILED"
    )
    return 0 if report.ok else EXIT_PROBLEM


def add_verbs(sub: Any) -> None:
    """Register ``keys`` and ``verify`` on ``gatewayctl``'s subcommands."""
    keys = sub.add_parser("keys", help="the gateway's record signing key")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    show = keys_sub.add_parser("show", help="public key and fingerprint, for enrolment")
    show.set_defaults(func=cmd_keys_show)

    verify = sub.add_parser(
        "verify",
        help="check a capture of published records (no gateway needed)",
        epilog=VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("file", type=Path, help="JSON lines, one received message each")
    verify.add_argument(
        "--public-key",
        metavar="KEY",
        help="base64 public key, a PEM file, or a saved {root}/key message",
    )
    verify.set_defaults(func=cmd_verify)
