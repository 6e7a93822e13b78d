"""What the e-seal family's devices report: gate-reader messages and e-lock reports.

The codecs (:mod:`.codec_reader`, :mod:`.codec_jt808`) decode frames into these; the
processor (:mod:`.processor`) turns them into records. The fields' sources are in the
codecs' docstrings and ``docs/hardware.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gateway.readings import Reading

# -- Hi-G-Tek gate reader --------------------------------------------------------------

ALERT_BURST = 0x7A
"""The burst command code of a current seal's alert ([U] 8.3)."""

SealEvent = Literal["sealed", "wire_tampered", "low_battery", "opened", "closed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SealRead(Reading):
    """A seal the reader verified (a Verify record in a Get Results answer).

    Attributes:
        seal_id: TF + TID as 12 hex digits, e.g. ``"48481010102F"``.
        opened, tampered, low_battery, wire_changed, approved_open, suspended_set: the
            short status bits (0x20, 0x80, 0x40, 0x08, 0x01, 0x10).
        battery_pct: not in a Verify record with the driver's mask: ``None``.
        seal_time: not in a Verify record with the driver's mask: ``None``.
        reader: the reader's R#.
        reader_status: the frame's R_status (byte A high, byte B low; 0 = nothing to say).
        at: when the frame's last byte arrived.
    """

    seal_id: str
    opened: bool
    tampered: bool
    low_battery: bool = False
    wire_changed: bool = False
    approved_open: bool = False
    suspended_set: bool = False
    battery_pct: int | None = None
    seal_time: datetime | None = None
    reader: int
    reader_status: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "seal": self.seal_id,
            "state": "opened" if self.opened else "sealed",
            "tampered": self.tampered,
            "battery_pct": self.battery_pct,
        }

    @property
    def sealed(self) -> bool:
        """ISO 18185 "sealed" (not opened). Says nothing about tampering: see :attr:`alarm`."""
        return not self.opened

    @property
    def alarm(self) -> bool:
        """See :func:`is_alarm`."""
        return is_alarm(
            tampered=self.tampered or self.opened,
            wire_changed=self.wire_changed,
            allowed=self.approved_open or self.suspended_set,
        )


def is_alarm(*, tampered: bool, wire_changed: bool, allowed: bool) -> bool:
    """A changed wire, or a tampered seal not in an allowed state.

    [U] 8.2.1: opening always sets tampered; approved open marks the tampered state as
    allowed. A seal in suspended set is being armed (the set runs when the wire is
    plugged in), so its open wire is expected. A wire whose resistance changed (someone
    shorting it, [U] p.169) is an alarm whatever the approval.
    """
    return wire_changed or (tampered and not allowed)


@dataclass(frozen=True, slots=True, kw_only=True)
class SealAlert(Reading):
    """A seal's burst the reader passed on unsolicited; acknowledge with
    :meth:`SealReaderCodec.ack_for` (the reader repeats it until then).

    Attributes:
        seal_id: as in :class:`SealRead`.
        event: what happened, from the event code or else from the burst type and status.
        opened, tampered, low_battery, wire_changed, approved_open, suspended_set: the
            short status sent with the burst.
        event_time: when it happened (UTC, whole seconds); ``None`` for a plain record.
        sequence: the event record's number EV# (0-255); ``None`` for a plain record.
        event_code: the event code ([U] 8.3); ``None`` for a plain record.
        burst: the burst's command code (77h/7Ah alert, 79h close, 78h forced).
        channel: the reader channel that heard it.
        reader: the reader's R#.
        reader_status: the frame's R_status.
        at: when the frame's last byte arrived.
    """

    seal_id: str
    event: SealEvent
    opened: bool
    tampered: bool
    low_battery: bool = False
    wire_changed: bool = False
    approved_open: bool = False
    suspended_set: bool = False
    event_time: datetime | None = None
    sequence: int | None = None
    event_code: int | None = None
    burst: int = ALERT_BURST
    channel: int = 1
    reader: int
    reader_status: int = 0

    @property
    def alarm(self) -> bool:
        """See :func:`is_alarm`; an opened or wire event counts as its status bit."""
        return is_alarm(
            tampered=self.tampered or self.opened or self.event == "opened",
            wire_changed=self.wire_changed or self.event == "wire_tampered",
            allowed=self.approved_open or self.suspended_set,
        )

    def summary(self) -> dict[str, object]:
        return {"seal": self.seal_id, "alert": self.event, "alarm": self.alarm}

    @property
    def dedup_key(self) -> tuple[str, SealEvent, datetime | None]:
        """(seal id, event, time): HARDWARE.md's key for deduplicating alarms."""
        return (self.seal_id, self.event, self.event_time)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSealInRange(Reading):
    """A Get Results answer whose only seal record is ``#B = 0``: no seal detected."""

    reader: int
    reader_status: int = 0

    def summary(self) -> dict[str, object]:
        return {"in_range": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertAcked(Reading):
    """A host's acknowledgement of an unsynchronized message (CMND 000Ah)."""

    reader: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequested(Reading):
    """A host's Get Results command (CMND 0015h) for ``channel``."""

    reader: int
    channel: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class HostCommand(Reading):
    """Any other well-formed host -> reader frame (e.g. Execute RF command)."""

    command: int
    reader: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderReply(Reading):
    """Any other well-formed reader -> host frame (an Execute RF answer, "result not
    ready", Get Status ...): nothing for the gateway to record."""

    message: int
    reader: int
    reader_status: int
    data: bytes


SealMessage = (
    SealRead | SealAlert | NoSealInRange | AlertAcked | ReadRequested | HostCommand | ReaderReply
)


# -- JT/T 808 e-locks ------------------------------------------------------------------

LOCATION_REPORT = 0x0200
"""Message id of a location report (§8.18)."""

Protocol = Literal["2013", "2019"]
"""Which header layout a frame used."""


QUIRKS = ("lone_escape", "reserved_bit14", "item_set_aside")
"""Deviations a frame may carry that the codec tolerates (see the module docstring)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionReported(Reading):
    """A decoded 0x0200 location report (§8.18).

    Attributes:
        terminal: the terminal phone number as sent (leading zeros kept): 12 BCD digits
            in a 2013 header, 20 in a 2019 header.
        serial: the terminal's message serial number.
        lat: degrees, negative south.
        lon: degrees, negative west.
        altitude_m: metres (unsigned in the standard).
        speed_kmh: km/h (sent in 0.1 km/h).
        heading_deg: 0-359, 0 = north, clockwise.
        device_time: the terminal's time converted from GMT+8 to UTC; ``None`` when the
            terminal sent all zeros.
        located: status bit 1, the position is a current fix.
        flags: names (from the codec's mapping) of the alarm and status bits that are 1.
        alarms: the subset of ``flags`` the codec treats as alarms.
        alarm_bits: the raw alarm DWORD.
        status_bits: the raw status DWORD.
        extras: additional information items ``(id, value)`` in the order sent.
        set_aside: the bytes from the first additional item that overran the body on
            (empty when every item fit).
        version: ``None`` for a 2013 header, else the 2019 header's protocol version.
        quirks: the tolerated deviations of this frame (names from :data:`QUIRKS`).
        at: when the frame's closing flag arrived.
    """

    terminal: str
    serial: int
    lat: float
    lon: float
    altitude_m: int
    speed_kmh: float
    heading_deg: int
    device_time: datetime | None
    located: bool
    flags: frozenset[str]
    alarms: frozenset[str]
    alarm_bits: int
    status_bits: int
    extras: tuple[tuple[int, bytes], ...] = ()
    set_aside: bytes = b""
    version: int | None = None
    quirks: frozenset[str] = frozenset()

    @property
    def protocol(self) -> Protocol:
        """``"2013"`` or ``"2019"``: the header layout the terminal used."""
        return "2013" if self.version is None else "2019"

    @property
    def msg_id(self) -> int:
        """Always 0x0200, so a report can be answered like any :class:`Jt808Message`."""
        return LOCATION_REPORT

    @property
    def alarm(self) -> bool:
        """At least one alarm flag is set: highest priority, never dropped."""
        return bool(self.alarms)

    def summary(self) -> dict[str, object]:
        return {
            "terminal": self.terminal,
            "protocol": self.protocol,
            "locked": "locked" in self.flags,
            "alarms": sorted(self.alarms),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Jt808Message(Reading):
    """Any other well-formed message, body undecoded.

    Attributes:
        msg_id: the message id (0x0002 heartbeat, 0x0100 registration, ...).
        terminal: the terminal phone number, 12 BCD digits (2013) or 20 (2019).
        serial: the message serial number.
        body: the body, unescaped, without the packet item.
        encryption: properties bits 10-12 (0 = clear, 1 = RSA).
        packet: ``(count, number)`` when the message is one packet of a split message.
        version: ``None`` for a 2013 header, else the 2019 header's protocol version.
        quirks: the tolerated deviations of this frame (names from :data:`QUIRKS`).
        at: when the frame's closing flag arrived.
    """

    msg_id: int
    terminal: str
    serial: int
    body: bytes
    encryption: int = 0
    packet: tuple[int, int] | None = None
    version: int | None = None
    quirks: frozenset[str] = frozenset()

    @property
    def protocol(self) -> Protocol:
        """``"2013"`` or ``"2019"``: the header layout the terminal used."""
        return "2013" if self.version is None else "2019"
