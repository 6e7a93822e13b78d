"""Gate reader for electronic seals (Hi-G-Tek style): pure codec, both directions.

HARDWARE.md ("Electronic seals") gives the host <-> reader frame as
``STX | length | reader no. | command/message type | status | data | CRC-16 CCITT | ETX``
and the alert status bits and event codes; it leaves the field sizes, the message
type values and the data layouts open. This module fixes them as follows.

Frame (all multi-byte integers big-endian)::

    offset  size  field
    0       1     STX 0x02
    1       1     LEN     bytes from READER through DATA, i.e. 3 + len(DATA)
    2       1     READER  reader number on the RS-485 bus (0-255)
    3       1     TYPE    message type, table below
    4       1     STATUS  reader status: 0x00 OK, anything else is a reader fault code
                          passed on as ``reader_status`` (host -> reader frames send 0x00)
    5       n     DATA    layout per TYPE, below
    5+n     2     CRC     CRC-16/CCITT (poly 0x1021, start value configurable) over
                          LEN .. last DATA byte, i.e. frame[1 : 5+n]; STX, CRC and ETX
                          are not covered (``CRC_FROM`` moves the start, one place)
    7+n     1     ETX 0x03

A whole frame is ``LEN + 5`` bytes. There is no byte stuffing: STX and ETX may occur
inside DATA or CRC, so frames are delimited by LEN and confirmed by ETX and CRC.

Message types and DATA layouts::

    0x52 'R'  seal record, reader -> host (answer to a read request, or periodic), 16 bytes:
              seal id (10) | seal status (1) | battery % (1) | seal time (4)
    0x41 'A'  unsolicited alert, reader -> host, 17 bytes:
              seal id (10) | seal status (1) | event code (1) | event time (4) | sequence (1)
    0x42 'B'  no seal in range, reader -> host, 4 bytes: ASCII "#B=0" (HARDWARE.md's text,
              kept verbatim so a line trace reads the same as the reader's manual)
    0x06      alert acknowledgement, host -> reader, 12 bytes:
              seal id (10) | event code (1) | sequence (1), echoing the alert
    0x51 'Q'  read request, host -> reader, no data

* seal id: ISO 18185 identification as 10 ASCII bytes, manufacturer code (2 characters
  ``A-Z``/``0-9``) then tag id (8 hex digits, 32 bits); decoded upper-case, e.g.
  ``"HG0012ABCD"``.
* seal status (HARDWARE.md): 0x80 tampered (latched), 0x40 low battery, 0x20 opened,
  0x08 wire resistance changed, 0x01 approved open; 0x10, 0x04, 0x02 are reserved and
  ignored.
* battery: percent 0-100; 0xFF means the seal did not say (``battery_pct=None``).
* times: UTC, Unix seconds as an unsigned 32-bit integer.
* event codes (HARDWARE.md): 1 set/sealed, 2 wire tampered, 3 low battery, 4 opened,
  5 closed.
* sequence: the reader numbers its alerts and repeats an alert with the same number
  until the host acknowledges it (the 0x06 frame), so a repeat is recognisable.

The codec decodes host -> reader frames too (:class:`AlertAcked`, :class:`ReadRequested`):
the simulator uses it to read what the driver sends, and a two-wire RS-485 line may echo
the host's own frames back to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Literal

from drivers.eseal.crc import crc16_ccitt
from drivers.stream import ByteStream
from gateway.errors import FrameError
from gateway.readings import Reading, Stamp

STX = 0x02
ETX = 0x03

CRC_FROM = 1
"""Offset of the first byte the CRC covers: 1 = LEN (set 0 to include STX). It always
ends with the last DATA byte."""

DEFAULT_CRC_INIT = 0xFFFF
"""CRC start value most readers use (CCITT-FALSE); 0x0000 and 0x1D0F also occur."""

NO_SEAL_TEXT = b"#B=0"


class MessageType(IntEnum):
    """Frame TYPE byte values (see the module docstring for their DATA layouts)."""

    SEAL_RECORD = 0x52
    ALERT = 0x41
    NO_SEAL = 0x42
    ACK = 0x06
    READ_REQUEST = 0x51


_SEAL_ID_LEN = 10
_DATA_LEN: dict[int, int] = {
    MessageType.SEAL_RECORD: _SEAL_ID_LEN + 6,
    MessageType.ALERT: _SEAL_ID_LEN + 7,
    MessageType.NO_SEAL: len(NO_SEAL_TEXT),
    MessageType.ACK: _SEAL_ID_LEN + 2,
    MessageType.READ_REQUEST: 0,
}
_HEAD = 5  # STX LEN READER TYPE STATUS
_TAIL = 3  # CRC (2) ETX
_LEN_MIN = 3  # READER TYPE STATUS, no data
_LEN_MAX = 3 + max(_DATA_LEN.values())

MAX_FRAME = _LEN_MAX + 5
"""Longest frame of a known type. A codec never holds more than this after a feed."""

# Seal status bits (HARDWARE.md "Electronic seals").
TAMPERED = 0x80
LOW_BATTERY = 0x40
OPENED = 0x20
WIRE_CHANGED = 0x08
APPROVED_OPEN = 0x01

BATTERY_UNKNOWN = 0xFF

SealEvent = Literal["sealed", "wire_tampered", "low_battery", "opened", "closed"]
EVENTS: dict[int, SealEvent] = {
    1: "sealed",
    2: "wire_tampered",
    3: "low_battery",
    4: "opened",
    5: "closed",
}
EVENT_CODES: dict[SealEvent, int] = {name: code for code, name in EVENTS.items()}

_MANUFACTURER_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX_CHARS = frozenset(b"0123456789ABCDEF")


@dataclass(frozen=True, slots=True, kw_only=True)
class SealRead(Reading):
    """A seal's state as the gate reader read it (answer to a read, or a periodic report).

    Attributes:
        seal_id: manufacturer code (2) + tag id (8 hex digits), e.g. ``"HG0012ABCD"``.
        opened: status 0x20, the seal reports its wire/bolt open.
        tampered: status 0x80, latched by the seal until it is reset.
        low_battery: status 0x40.
        wire_changed: status 0x08, the wire's resistance changed since sealing.
        approved_open: status 0x01, the opening was authorised.
        battery_pct: battery level in percent; ``None`` when the seal did not say.
        seal_time: when the seal was set (UTC, whole seconds).
        reader: reader number on the bus.
        reader_status: the frame's STATUS byte (0 = OK).
        at: when the frame's last byte arrived.
    """

    seal_id: str
    opened: bool
    tampered: bool
    low_battery: bool = False
    wire_changed: bool = False
    approved_open: bool = False
    battery_pct: int | None
    seal_time: datetime
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
        """Tampered, or opened without approval: highest priority, never dropped."""
        return self.tampered or (self.opened and not self.approved_open)


@dataclass(frozen=True, slots=True, kw_only=True)
class SealAlert(Reading):
    """An unsolicited alert from the reader; acknowledge it with :meth:`SealReaderCodec.ack_for`.

    Attributes:
        seal_id: as in :class:`SealRead`.
        event: what happened (event code 1-5).
        opened, tampered, low_battery, wire_changed, approved_open: the seal status
            byte sent with the alert, as in :class:`SealRead`.
        event_time: when it happened (UTC, whole seconds).
        sequence: the reader's alert number (0-255), repeated until acknowledged.
        reader: reader number on the bus.
        reader_status: the frame's STATUS byte (0 = OK).
        at: when the frame's last byte arrived.
    """

    seal_id: str
    event: SealEvent
    opened: bool
    tampered: bool
    low_battery: bool = False
    wire_changed: bool = False
    approved_open: bool = False
    event_time: datetime
    sequence: int
    reader: int
    reader_status: int = 0

    @property
    def alarm(self) -> bool:
        """Tamper (latched bit or a wire-tampered event), or an opening without approval."""
        opened = self.opened or self.event == "opened"
        tampered = self.tampered or self.event == "wire_tampered"
        return tampered or (opened and not self.approved_open)

    def summary(self) -> dict[str, object]:
        return {"seal": self.seal_id, "alert": self.event, "alarm": self.alarm}

    @property
    def dedup_key(self) -> tuple[str, SealEvent, datetime]:
        """(seal id, event, time): HARDWARE.md's key for deduplicating alarms."""
        return (self.seal_id, self.event, self.event_time)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoSealInRange(Reading):
    """The reader answered that no seal is in range (``#B=0``)."""

    reader: int
    reader_status: int = 0

    def summary(self) -> dict[str, object]:
        return {"in_range": False}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertAcked(Reading):
    """A host -> reader acknowledgement (decoded for the simulator, or an RS-485 echo)."""

    seal_id: str
    event: SealEvent
    sequence: int
    reader: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequested(Reading):
    """A host -> reader read request (decoded for the simulator, or an RS-485 echo)."""

    reader: int


SealMessage = SealRead | SealAlert | NoSealInRange | AlertAcked | ReadRequested
Decoded = SealMessage | FrameError
"""What :meth:`SealReaderCodec.feed` yields per frame."""


class _BadData(Exception):
    """A frame with a good CRC whose DATA does not fit its type (internal only)."""


def _seal_id(raw: bytes) -> str:
    text = raw.upper()
    if not (set(text[:2]) <= _MANUFACTURER_CHARS and set(text[2:]) <= _HEX_CHARS):
        raise _BadData(f"seal id {raw!r} is not 2 letters/digits + 8 hex digits")
    return text.decode("ascii")


def _seal_id_bytes(seal_id: str) -> bytes:
    raw = seal_id.upper().encode("ascii", errors="replace")
    if len(raw) != _SEAL_ID_LEN:
        raise ValueError(f"seal id {seal_id!r} is not 10 characters")
    try:
        _seal_id(raw)
    except _BadData as e:
        raise ValueError(str(e)) from None
    return raw


def _event(code: int) -> SealEvent:
    try:
        return EVENTS[code]
    except KeyError:
        raise _BadData(f"unknown event code {code}") from None


def _time(raw: bytes) -> datetime:
    return datetime.fromtimestamp(int.from_bytes(raw, "big"), UTC)


def _time_bytes(when: datetime) -> bytes:
    if when.tzinfo is None:
        raise ValueError(f"{when} has no time zone; seal times are UTC")
    seconds = int(when.timestamp())  # the sub-second part is not sent
    if not 0 <= seconds <= 0xFFFF_FFFF:
        raise ValueError(f"{when} does not fit 32-bit Unix seconds")
    return seconds.to_bytes(4, "big")


def _status(
    *, opened: bool, tampered: bool, low_battery: bool, wire_changed: bool, approved_open: bool
) -> int:
    return (
        (TAMPERED if tampered else 0)
        | (LOW_BATTERY if low_battery else 0)
        | (OPENED if opened else 0)
        | (WIRE_CHANGED if wire_changed else 0)
        | (APPROVED_OPEN if approved_open else 0)
    )


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit one byte")
    return value


class SealReaderCodec(ByteStream):
    """Incremental decoder and encoder for the gate reader's serial frames.

    Args:
        crc_init: CRC-16/CCITT start value the reader uses (a reader setting, so it
            comes from config): 0xFFFF (default), 0x0000 or 0x1D0F are seen in the field.

    Raises:
        ValueError: ``crc_init`` does not fit 16 bits.
    """

    stream_name = "seal reader"

    def __init__(self, *, crc_init: int = DEFAULT_CRC_INIT) -> None:
        if not 0 <= crc_init <= 0xFFFF:
            raise ValueError(f"crc_init 0x{crc_init:X} does not fit 16 bits")
        self.crc_init = crc_init
        super().__init__()

    # -- decoding --------------------------------------------------------------------------

    def feed(self, data: bytes, at: Stamp) -> list[Decoded]:
        """Add bytes that arrived at ``at``; return the frames they completed, in order.

        Bad frames come back as :class:`FrameError` values (never raised). After a
        framing error (length, type, ETX, CRC) only the STX is dropped and decoding
        resumes at the next STX, so a good frame that began inside the bad one is kept.
        The buffer never holds more than :data:`MAX_FRAME` bytes between calls.
        """
        self._buffer += data
        buf = self._buffer
        out: list[Decoded] = []
        while buf and self._resync(STX, "STX", out):
            problem = self._framing_problem(buf)
            if problem is not None:
                out.append(FrameError(f"seal reader: {problem}"))
                self._in_error = True
                del buf[:1]
                continue
            if len(buf) < 2 or len(buf) < buf[1] + _HEAD:
                break  # a good start so far (length and type checked); wait for the rest
            size = buf[1] + _HEAD
            item = self._decode(bytes(buf[:size]), at)
            del buf[:size]
            self._in_error = isinstance(item, FrameError)
            out.append(item)
        return out

    def _framing_problem(self, buf: bytearray) -> str | None:
        """Why the frame at ``buf[0]`` cannot be good, judged only on the bytes present.

        The checks run in a fixed order as bytes arrive (LEN, then TYPE against LEN, then
        ETX and CRC once complete), so the verdict never depends on how bytes were chunked,
        and a frame cut short is rejected as soon as the next frame's bytes land in it.
        """
        if len(buf) < 2:
            return None
        length = buf[1]
        if not _LEN_MIN <= length <= _LEN_MAX:
            return f"bad length {length}"
        if len(buf) < 4:
            return None
        expected = _DATA_LEN.get(buf[3])
        if expected is None:
            return f"unknown message type 0x{buf[3]:02X}"
        if length != 3 + expected:
            return f"length {length} does not fit message type 0x{buf[3]:02X}"
        size = length + _HEAD
        if len(buf) < size:
            return None
        if buf[size - 1] != ETX:
            return f"missing ETX (0x{buf[size - 1]:02X})"
        sent = int.from_bytes(buf[size - _TAIL : size - 1], "big")
        computed = crc16_ccitt(bytes(buf[CRC_FROM : size - _TAIL]), self.crc_init)
        if sent != computed:
            return f"CRC mismatch (sent 0x{sent:04X}, computed 0x{computed:04X})"
        return None

    def _decode(self, frame: bytes, at: Stamp) -> Decoded:
        """Decode one frame whose framing, length and CRC are already checked."""
        reader, kind, reader_status = frame[2], frame[3], frame[4]
        data = frame[_HEAD : len(frame) - _TAIL]
        try:
            if kind == MessageType.SEAL_RECORD:
                status = data[10]
                battery = data[11]
                if battery > 100 and battery != BATTERY_UNKNOWN:
                    raise _BadData(f"battery {battery}% out of range")
                return SealRead(
                    seal_id=_seal_id(data[:10]),
                    opened=bool(status & OPENED),
                    tampered=bool(status & TAMPERED),
                    low_battery=bool(status & LOW_BATTERY),
                    wire_changed=bool(status & WIRE_CHANGED),
                    approved_open=bool(status & APPROVED_OPEN),
                    battery_pct=None if battery == BATTERY_UNKNOWN else battery,
                    seal_time=_time(data[12:16]),
                    reader=reader,
                    reader_status=reader_status,
                    at=at,
                )
            if kind == MessageType.ALERT:
                status = data[10]
                return SealAlert(
                    seal_id=_seal_id(data[:10]),
                    event=_event(data[11]),
                    opened=bool(status & OPENED),
                    tampered=bool(status & TAMPERED),
                    low_battery=bool(status & LOW_BATTERY),
                    wire_changed=bool(status & WIRE_CHANGED),
                    approved_open=bool(status & APPROVED_OPEN),
                    event_time=_time(data[12:16]),
                    sequence=data[16],
                    reader=reader,
                    reader_status=reader_status,
                    at=at,
                )
            if kind == MessageType.NO_SEAL:
                if data != NO_SEAL_TEXT:
                    raise _BadData(f"no-seal report carries {data!r}, not {NO_SEAL_TEXT!r}")
                return NoSealInRange(reader=reader, reader_status=reader_status, at=at)
            if kind == MessageType.ACK:
                return AlertAcked(
                    seal_id=_seal_id(data[:10]),
                    event=_event(data[10]),
                    sequence=data[11],
                    reader=reader,
                    at=at,
                )
            return ReadRequested(reader=reader, at=at)  # the last type _DATA_LEN knows
        except _BadData as e:
            return FrameError(f"seal reader: type 0x{kind:02X} from reader {reader}: {e}")

    # -- encoding --------------------------------------------------------------------------

    def frame(self, reader: int, kind: int, data: bytes, reader_status: int = 0) -> bytes:
        """Wrap ``data`` in STX/LEN/.../CRC/ETX (any type; the simulator's fault injection).

        Raises:
            ValueError: a field does not fit its byte, or ``data`` is too long.
        """
        if len(data) > 0xFF - 3:
            raise ValueError(f"{len(data)} data bytes do not fit LEN")
        body = bytes(
            [
                STX,
                3 + len(data),
                _byte(reader, "reader"),
                _byte(kind, "type"),
                _byte(reader_status, "status"),
            ]
        )
        body += data
        crc = crc16_ccitt(body[CRC_FROM:], self.crc_init)
        return body + crc.to_bytes(2, "big") + bytes([ETX])

    def encode_read(self, read: SealRead) -> bytes:
        """A seal record frame as the reader sends it (``at`` is not sent).

        Raises:
            ValueError: a field does not fit (seal id format, battery, time, reader).
        """
        battery = BATTERY_UNKNOWN if read.battery_pct is None else read.battery_pct
        if not 0 <= battery <= 100 and battery != BATTERY_UNKNOWN:
            raise ValueError(f"battery {battery}% out of range")
        status = _status(
            opened=read.opened,
            tampered=read.tampered,
            low_battery=read.low_battery,
            wire_changed=read.wire_changed,
            approved_open=read.approved_open,
        )
        data = _seal_id_bytes(read.seal_id) + bytes([status, battery]) + _time_bytes(read.seal_time)
        return self.frame(read.reader, MessageType.SEAL_RECORD, data, read.reader_status)

    def encode_alert(self, alert: SealAlert) -> bytes:
        """An alert frame as the reader sends it (``at`` is not sent).

        Raises:
            ValueError: a field does not fit (seal id format, time, sequence, reader).
        """
        status = _status(
            opened=alert.opened,
            tampered=alert.tampered,
            low_battery=alert.low_battery,
            wire_changed=alert.wire_changed,
            approved_open=alert.approved_open,
        )
        data = (
            _seal_id_bytes(alert.seal_id)
            + bytes([status, EVENT_CODES[alert.event]])
            + _time_bytes(alert.event_time)
            + bytes([_byte(alert.sequence, "sequence")])
        )
        return self.frame(alert.reader, MessageType.ALERT, data, alert.reader_status)

    def encode_no_seal(self, report: NoSealInRange) -> bytes:
        """A no-seal-in-range frame (``#B=0``) as the reader sends it."""
        return self.frame(report.reader, MessageType.NO_SEAL, NO_SEAL_TEXT, report.reader_status)

    def ack_for(self, alert: SealAlert) -> bytes:
        """The acknowledgement the host sends for ``alert``: type 0x06, addressed to the
        alert's reader, echoing its seal id, event code and sequence number."""
        data = (
            _seal_id_bytes(alert.seal_id)
            + bytes([EVENT_CODES[alert.event], _byte(alert.sequence, "sequence")])
        )  # fmt: skip
        return self.frame(alert.reader, MessageType.ACK, data)

    def read_request(self, reader: int) -> bytes:
        """The host's read request (type 0x51, no data); the reader answers with seal
        records or ``#B=0``."""
        return self.frame(reader, MessageType.READ_REQUEST, b"")
