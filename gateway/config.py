"""Configuration: one TOML file, validated at load, unknown keys rejected.

A bad file fails with the file name, the key path and what was expected, e.g.::

    gateway.toml: devices[0].baudrat: unknown key (did you mean 'baudrate'?)

Device sections are validated by the config model of the driver they name, looked
up in the driver registry, so a new driver family brings its own keys.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError, DriverUnavailableError
from gateway.permissions import CREDENTIAL_PREFIX, credential_path
from gateway.signing import public_key_from_text

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DEFAULT_CONFIG_PATH = Path("/etc/edge-gateway/gateway.toml")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Ids used in MQTT topics: no '/', '+', '#' or spaces."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(Section):
    """``[gateway]``: who this box is and where it keeps its state."""

    site: str = Field(pattern=NAME_PATTERN, description="checkpoint site, used in the topic root")
    id: str = Field(pattern=NAME_PATTERN, description="gateway id within the site")
    data_dir: Path = Field(description="directory for the outbox and state")
    topic_root: str | None = Field(
        default=None, description="MQTT topic root; default customs/{site}/{id}"
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 PEM key that signs records; default the systemd credential"
        " signing-key, else {data_dir}/signing-key.pem (made at first start)",
    )

    @property
    def root(self) -> str:
        """The topic root every published topic starts with."""
        return self.topic_root or f"customs/{self.site}/{self.id}"


class MqttSection(Section):
    """``[mqtt]``: the uplink to the central broker."""

    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    keepalive: int = Field(default=30, ge=5, le=3600)
    tls_ca: Path | None = Field(default=None, description="CA bundle; enables TLS")
    tls_cert: Path | None = None
    tls_key: Path | None = Field(
        default=None, description="a path, or credential:NAME (systemd LoadCredential=)"
    )
    username: str | None = None
    password_file: Path | None = Field(
        default=None, description="a path, or credential:NAME (systemd LoadCredential=)"
    )
    inflight: int = Field(default=32, ge=1, le=1000, description="unacknowledged QoS 1 messages")
    reconnect_min_s: float = Field(default=1.0, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)

    @field_validator("tls_ca", "tls_cert", "tls_key", "password_file", mode="before")
    @classmethod
    def _credential(cls, value: object) -> object:
        """``credential:NAME``: the file systemd's ``LoadCredential=NAME:...`` provides."""
        if isinstance(value, str) and value.startswith(CREDENTIAL_PREFIX):
            try:
                return credential_path(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> MqttSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("a client certificate needs tls_ca to verify the server")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        return self


class OutboxSection(Section):
    """``[outbox]``: the durable store-and-forward queue."""

    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    path: Path | None = Field(default=None, description="default {data_dir}/outbox.sqlite3")


class ControlSection(Section):
    """``[control]``: the technician's local socket."""

    socket: Path | None = Field(default=None, description="default {data_dir}/control.sock")


class CommandsSection(Section):
    """``[commands]``: what central may ask of the gateway (see :mod:`gateway.command_guard`)."""

    reply_prefix: str | None = Field(
        default=None,
        description="replies only to response topics under it; default {root}/reply/",
    )
    max_request_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)
    max_concurrent: int = Field(default=4, ge=1, le=64, description="commands in progress")
    rate_per_s: float = Field(default=2.0, gt=0, description="sustained commands per second")
    burst: int = Field(default=10, ge=1, description="commands accepted at once")
    central_public_key: str | None = Field(
        default=None,
        description="the centre's Ed25519 public key (base64, or a file holding it or a"
        " PEM); when set, unsigned commands are refused",
    )
    max_signed_age_s: float = Field(
        default=300.0, gt=0, description="a signed command's expires is at most this far ahead"
    )

    @field_validator("reply_prefix")
    @classmethod
    def _prefix_shape(cls, value: str | None) -> str | None:
        if value is not None and (not value.endswith("/") or "+" in value or "#" in value):
            raise ValueError(
                "reply_prefix ends with '/' and has no wildcards, e.g. 'customs/x/reply/'"
            )
        return value

    @field_validator("central_public_key")
    @classmethod
    def _key_parses(cls, value: str | None) -> str | None:
        if value is not None:
            _central_key(value)
        return value

    def central_key(self) -> Ed25519PublicKey | None:
        """The centre's public key, if commands must be signed."""
        return None if self.central_public_key is None else _central_key(self.central_public_key)


def _central_key(value: str) -> Ed25519PublicKey:
    path = Path(value)
    if path.is_absolute():
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return public_key_from_text(value)


class LaneSection(Section):
    """``[[lanes]]``: the devices of one lane by role, its timing and weight tolerance.

    See :mod:`gateway.lanes`. A passage opens when the lane's scale sees a vehicle drive
    on and closes ``close_after_s`` after its weighing (the scale back at zero), or at
    ``max_passage_s``.
    """

    id: str = Field(pattern=NAME_PATTERN)
    scale: str = Field(description="the scale whose vehicle on/off frames a passage")
    cameras: tuple[str, ...] = Field(default=(), description="cameras whose OCR reads count")
    trailer_plate_regions: tuple[str, ...] = Field(
        default=(), description="OCR regions that read the trailer's plate, not the tractor's"
    )
    seal_readers: tuple[str, ...] = Field(
        default=(), description="gate readers and e-lock listeners"
    )
    xray: str | None = Field(default=None, description="the lane's scanner (drop folder)")
    close_after_s: float = Field(default=5.0, ge=0, le=600)
    max_passage_s: float = Field(default=900.0, gt=0, le=86_400)
    late_scan_s: float = Field(
        default=900.0, ge=0, description="a scan this long after a crossing still revises it"
    )
    tolerance_pct: float = Field(default=5.0, ge=0, le=100)
    tolerance_kg: float = Field(default=500.0, ge=0, description="the greater of the two applies")
    min_confidence: float = Field(
        default=0.6, ge=0, le=1, description="reads below it send a crossing to review"
    )

    def devices(self) -> tuple[str, ...]:
        """Every device the lane names."""
        return (self.scale, *self.cameras, *self.seal_readers, *((self.xray,) if self.xray else ()))


class DeviceSection(BaseModel):
    """The keys every ``[[devices]]`` entry has; drivers extend it with their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NAME_PATTERN)
    driver: str
    enabled: bool = True


class GatewayConfig(Section):
    """The whole file."""

    gateway: GatewaySection
    mqtt: MqttSection
    outbox: OutboxSection = OutboxSection()
    control: ControlSection = ControlSection()
    commands: CommandsSection = CommandsSection()
    lanes: tuple[LaneSection, ...] = ()
    devices: tuple[DeviceSection, ...] = ()

    source: Path | None = Field(default=None, exclude=True)

    @property
    def outbox_path(self) -> Path:
        """Where the SQLite outbox lives."""
        return self.outbox.path or self.gateway.data_dir / "outbox.sqlite3"

    @property
    def control_socket(self) -> Path:
        """Where the daemon listens for ``gatewayctl``."""
        return self.control.socket or self.gateway.data_dir / "control.sock"


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _describe(error: Any, model: type[BaseModel], prefix: tuple[int | str, ...]) -> str:
    loc = prefix + tuple(error["loc"])
    where = _key_path(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(model, tuple(error["loc"])[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else f" (known keys: {', '.join(known)})"
        return f"{where}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        found = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if found is None:
            return []
        current = found
    return sorted(current.model_fields)


def _fail(path: Path, problems: list[str]) -> ConfigError:
    lines = "\n".join(f"  {path}: {p}" for p in problems)
    return ConfigError(f"invalid configuration in {path}:\n{lines}")


def validate_device(raw: dict[str, Any], index: int, path: Path) -> DeviceSection:
    """Validate one ``[[devices]]`` entry with its driver's own config model."""
    from gateway.registry import device_config_model  # noqa: PLC0415 - registry imports config

    driver = raw.get("driver")
    if not isinstance(driver, str):
        raise _fail(path, [f"devices[{index}].driver: required key is missing (a driver name)"])
    try:
        model = device_config_model(driver, where=f"{path}: devices[{index}].driver")
    except DriverUnavailableError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _fail(path, [_describe(e, model, ("devices", index)) for e in exc.errors()]) from exc


def parse_config(text: str, path: Path) -> GatewayConfig:
    """Parse and validate TOML text; ``path`` is used in error messages only."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    devices_raw = raw.pop("devices", [])
    if not isinstance(devices_raw, list) or not all(isinstance(d, dict) for d in devices_raw):
        raise _fail(path, ["devices: expected [[devices]] tables"])
    try:
        config = GatewayConfig.model_validate({**raw, "source": path})
    except ValidationError as exc:
        raise _fail(path, [_describe(e, GatewayConfig, ()) for e in exc.errors()]) from exc
    devices = tuple(validate_device(d, i, path) for i, d in enumerate(devices_raw))
    ids = [d.id for d in devices]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise _fail(
            path, [f"devices: duplicate id {d!r}: every device needs its own id" for d in dupes]
        )
    known = set(ids)
    unknown = [
        f"lanes[{n}]: device {d!r} is not configured; devices: {', '.join(sorted(known)) or 'none'}"
        for n, lane in enumerate(config.lanes)
        for d in lane.devices()
        if d not in known
    ]
    if unknown:
        raise _fail(path, unknown)
    return config.model_copy(update={"devices": devices})


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a config file; every failure is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found (pass --config FILE)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    return parse_config(text, path)
