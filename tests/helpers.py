"""Building configs for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import GatewayConfig, parse_config
from gateway.signing import RecordSigner


def config_text(
    data_dir: Path, port: int, devices: list[dict[str, Any]] | None = None, extra: str = ""
) -> str:
    """A gateway TOML in the documented shape."""
    lines = [
        "[gateway]",
        'site = "haiphong-dinhvu"',
        'id = "gate-3"',
        f'data_dir = "{data_dir}"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "reconnect_min_s = 0.5",
        "reconnect_max_s = 2",
        extra,
    ]
    for device in devices or []:
        lines.append("[[devices]]")
        for key, value in device.items():
            rendered = (
                f'"{value}"'
                if isinstance(value, str | Path)
                else str(value).lower()
                if isinstance(value, bool)
                else "{" + ", ".join(f'"{k}" = "{v}"' for k, v in value.items()) + "}"
                if isinstance(value, dict)  # an inline table of strings
                else str(value)
            )
            lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def make_config(
    data_dir: Path, port: int, devices: list[dict[str, Any]] | None = None, extra: str = ""
) -> GatewayConfig:
    """A validated config object."""
    path = data_dir / "gateway.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(config_text(data_dir, port, devices, extra))
    return parse_config(path.read_text(), path)


def ephemeral_signer() -> RecordSigner:
    """A record signer with a fresh key, for outboxes built outside the daemon."""
    return RecordSigner(Ed25519PrivateKey.generate(), Path("ephemeral.pem"))
