"""The project's one exception tree.

Everything the gateway raises on purpose derives from :class:`GatewayError`, so callers
(the supervisor, the CLI) can tell an expected failure from a bug. Vendor errors
(pyserial, paho, sqlite3) are wrapped with ``raise ... from``.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration file is missing, unreadable or invalid."""


class DriverUnavailableError(GatewayError):
    """The configured driver name is unknown, or its optional dependency is not installed."""


class DeviceError(GatewayError):
    """Base for failures talking to a device."""


class DeviceInitError(DeviceError):
    """The device could not be opened (port missing, permission denied, refused)."""


class DeviceIOError(DeviceError):
    """The link to an open device failed (cable pulled, pty closed, socket reset)."""


class DeviceTimeoutError(DeviceError):
    """The device stayed silent for longer than its configured timeout."""


class DeviceStalledError(DeviceTimeoutError):
    """Connected, but the device's stream stopped (a frozen camera): shown as ``stalled``."""


class FrameError(DeviceError):
    """Bytes from a device did not form a valid frame (bad checksum, truncated, garbage)."""


class UplinkError(GatewayError):
    """The MQTT uplink is misconfigured or failed in a way a retry will not fix."""


class OutboxError(GatewayError):
    """The durable outbox could not store or read records."""


class OutboxFullError(OutboxError):
    """The outbox is at its byte cap (or the disk is full) and only protected records remain."""


class ControlError(GatewayError):
    """The local control socket could not be reached or answered badly."""


class CommandError(GatewayError):
    """A command from central cannot be carried out (bad request, unknown object)."""


class OriginalUnavailableError(CommandError):
    """An original file is unknown to the manifest, gone, or no longer hashes the same."""
