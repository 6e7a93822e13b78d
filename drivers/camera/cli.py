"""The camera family's ``gatewayctl`` verbs: ``camera check|snapshot``, ``ocr``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.family import EXIT_PROBLEM, CliVerbs


def _camera_url(args: argparse.Namespace, *, main: bool) -> str:
    """A camera id from the config (its snapshot stream when ``main``), or a URL as given."""
    if "://" in args.camera or args.camera.startswith("/"):
        return str(args.camera)
    from drivers.camera.config import CameraSection  # noqa: PLC0415 - only camera verbs

    config = load_config(args.config)
    for device in config.devices:
        if device.id == args.camera and isinstance(device, CameraSection):
            return (device.snapshot_url or device.url) if main else device.url
    cameras = [d.id for d in config.devices if isinstance(d, CameraSection)]
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
    from drivers.camera.ocr.cli import read_image, render  # noqa: PLC0415 - the ocr extra

    report = read_image(args.image, args.kind)
    print(render(report))
    return 0


def add_verbs(verbs: CliVerbs) -> None:
    """``camera check``, ``camera snapshot``, ``ocr``."""
    camera = verbs.commands.add_parser("camera", help="cameras: check a stream, take a snapshot")
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

    ocr = verbs.commands.add_parser(
        "ocr", help="read container codes / plates in an image (check digit, candidates)"
    )
    ocr.add_argument("image", type=Path, help="any image file OpenCV reads (a crop is best)")
    ocr.add_argument("--kind", choices=("container", "plate"), help="default: try both")
    ocr.set_defaults(func=cmd_ocr)
