"""Hi-G-Tek DataReader gate reader for electronic seals: pure codec, both directions.

Sources (see ``docs/hardware.md`` for the list of facts):

* [P] Hi-G-Tek DataReader User's Manual, chapter 6 "RS 485/232 Communication Protocol"
  (manual pages 115-166; FCC filing IGRS46D916, copies also filed as IGRS40916 "Part 3").
* [U] Hi-G-Tek DataReader User Manual UM4710 rev A6 (FCC IGRS46D9916): chapter 7
  "Evaluation Software" and chapter 8 "System Parameters and Commands".

Frame ([P] 6.4.1 p.119 host -> reader, 6.4.2 p.121 reader -> host; every message's
byte-count table in 6.5.5, e.g. 6.5.5.4 p.153, gives 2 bytes for #B, R#, CMND/MSGT and
R_status)::

    host -> reader:  STX | #B (2) | R# (2) | CMND (2) |            DATA (n) | CRC (2) | ETX
    reader -> host:  STX | #B (2) | R# (2) | MSGT (2) | R_status (2) | DATA | CRC (2) | ETX

* STX 0x02, ETX 0x03 ([P] 6.4.1, 6.4.2).
* #B: the byte count of everything after #B up to and including the CRC ([P] 6.4.1:
  "R#, CMND, the DATA field and the CRC"; 6.4.2: "R#, MSGT, MC, R_status, the DATA field
  and the CRC"). A whole frame is ``#B + 4`` bytes.
* R#: the reader's RS-485 address ([P] 6.4.1; 6.5.5.14 sets it; R# 0000 is a broadcast).
* CMND: the command code ([P] 6.5.1); MSGT: the message type, whose low byte is the
  command answered ([P] 6.5.2 p.128 "Message Table") and whose high byte "is according
  to the scenario in use" ([P] 6.5.5.5.2 p.154); every MSGT the manual spells out has
  high byte 0x80 (800Ah, 80FEh, 8016h), every CMND high byte 0x00. The codec tells the
  direction by that bit: a code with 0x8000 set is a reader message.
* MC (message code, [P] 6.4.2, "see paragraph 5.2") is listed in 6.4.2's text but drawn
  in none of the message layouts of 6.5.5, so frames here carry none.
* R_status: reader status bytes A and B ([P] 6.4.2.2 p.123-125; 4 bytes only in the Get
  Status and BIT answers). Byte A is the high byte of ``reader_status``: bit 7 LCK
  (0 = parameters locked), 6 RS-485 mode, 5 PCR, 4 PER, 3 VCCERR, 2 VBERR, 1 PMC, 0 EDC;
  byte B: bits 7-4 channel 1-4 in use, bits 3-0 channel 1-4 defective.
* CRC: "based on the CCITT polynomial x^16 + x^12 + x^5 + 1, the result is 2 bytes"
  ([P] 6.4.1.1 p.119). Polynomial 0x1021 MSB first, as :mod:`drivers.eseal.crc`. The
  manual pages give no start value and no byte order: the start value is configuration
  (``crc_init``, found by ``gatewayctl probe eseal``); the CRC is sent high byte first
  like every other 2-byte field here (an assumption, see the docs). Coverage: [P] 6.4.1
  lists #B, R#, CMND and DATA for host frames, so the CRC covers every byte from #B to
  the end of DATA. For reader frames 6.4.2 lists "#B, MSGT, R_status and DATA", leaving
  R# out; layout ``"hgt"`` (default) still covers R# like host frames do, layout
  ``"hgt-no-address"`` follows 6.4.2's words literally; the probe tells them apart.
* No byte stuffing or escape is defined in the chapter: STX and ETX may occur anywhere
  inside a frame, which is delimited by #B and confirmed by ETX and CRC.
* 2-byte fields are taken high byte first (the manual writes them as hex words, 0016h).

Messages this codec knows (DATA layouts; other well-formed messages decode to
:class:`ReaderReply` / :class:`HostCommand`)::

    CMND 0015h  Get Results ([P] 6.5.5.3), DATA: channel (1)                 host -> reader
    MSGT 8015h  its answer ([P] 6.5.5.3.x p.145-151), DATA: PK (1) | P# (1) | seal records,
                or a single error byte (05h "result not ready", [P] 6.5.4 p.134)
    CMND 0020h  Execute RF command ([P] 6.5.2: answer 20h), DATA: channel (1) | #B* (1) |
                Cmnd* (1) | arguments; for Verify ([U] 7, Verify example p.104)
                Cmnd* 10h, #Rr (1), Mask (2)
    MSGT 800Ah  Unsynchronized Reader Message ([P] 6.5.5.11.1 p.159), DATA: channel (1) |
                seal record: #B (1) | TF (2) | TID (4) | command code (1) | short status (1)
                [| ORG_ID (3)]
    CMND 000Ah  its acknowledgement, no DATA ([P] 6.5.5.11.2 p.159)

* Seal records ([P] p.145): #B (1, counting itself) | TF (2) | TID (4) | message type
  (1, the RF command answered; MSB set = the seal reported a problem) | results. #B = 0
  alone is "no seal detected" ([P] p.145, 146, 151). A Verify record (message type 10h,
  [P] 6.5.5.3.3 p.146) carries the results its mask asked for; the driver asks for the
  Short Status only (mask 8000h, [U] 8 p.161), so the results are the short status byte.
  Records may span packets PK (total) / P# (this one): they are joined before parsing.
* Seal id: TF (2 bytes) + TID (4 bytes), binary ([U] 8 p.160: "SEAL_ID type, an array of
  6 bytes"; [U] p.104 shows 48 48 10 10 10 2F). Published as 12 upper-case hex digits
  (``"48481010102F"``): the manual's letters-and-digits rendering ("IADA01052719") is not
  explained in the pages found, so it is not attempted.
* Short status ([U] 8.2.1 p.167-171): 0x80 tampered (latched until a Set), 0x40 low
  battery warning, 0x20 opened (sets tampered too), 0x10 suspended set (until the wire is
  closed), 0x08 sealing wire changed, 0x01 approved open (an opened, tampered seal with
  this bit is an *allowed* tampered state). 0x04 and 0x02 are passed over.
* Command code of a burst ([U] 8.5 p.214-215): 77h alert burst (old format), 7Ah alert
  burst (new), 79h close burst, 78h forced burst.
* Event codes ([U] 8.3 p.181-184): 1 set, 2 sealing wire changed, 3 low battery warning,
  4 wire opened, 5 wire closed, 7 soft set, 0Ch suspended set (0Ah read footprint and 0Bh
  time updated are not seal events and are refused in an alert).

ADJUSTED (the gateway's own extension, not in the manual): an alert record whose #B is
15 carries, after the short status, EV# (1, the event record's number), event code (1)
and event time (4, Unix seconds UTC, high byte first): the seal's newest event record
in brief, field order as [U] 8.3.1 names the members. The manual's Date & Time encoding
is not in the pages found. A plain record (#B 9, or 12 with ORG_ID) has no event time:
its event follows from the burst type and the status, and its time is unknown (None).
The plain record is the manual's form, what a real reader sends, and what the
simulator (:mod:`simulators.eseal`) sends by default; it sends the 15-byte extension
only when asked (``alert_form="extended"``, ``--alert-form extended``).

The codec decodes host -> reader frames too: the simulator uses it to read what the
driver sends, and a two-wire RS-485 line echoes the host's frames back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, TypedDict

from drivers.eseal.crc import crc16_ccitt
from drivers.eseal.readings import (
    ALERT_BURST,
    AlertAcked,
    HostCommand,
    NoSealInRange,
    ReaderReply,
    ReadRequested,
    SealAlert,
    SealEvent,
    SealMessage,
    SealRead,
)
from drivers.stream import ByteStream
from gateway.errors import FrameError
from gateway.readings import Stamp

STX = 0x02
ETX = 0x03

DEFAULT_CRC_INIT = 0xFFFF
"""CRC start value tried first (CCITT-FALSE); the manual gives none, see the docstring."""

Layout = Literal["hgt", "hgt-no-address"]
LAYOUTS: tuple[Layout, ...] = ("hgt", "hgt-no-address")
"""``hgt``: the CRC covers #B..DATA in both directions; ``hgt-no-address``: in reader
frames it skips R#, as [P] 6.4.2 lists the fields."""

# Host -> reader command codes ([P] 6.5.1 / 6.5.5) and reader message types ([P] 6.5.2).
GET_RESULTS = 0x0015
EXECUTE_RF = 0x0020
UNSYNC_ACK = 0x000A
RESULTS_MESSAGE = 0x8015
UNSYNC_MESSAGE = 0x800A
REPLY = 0x8000
"""High bit of a reader's MSGT; a host's CMND has it clear."""
_COMMANDS = frozenset(
    {0x0006, 0x0007, 0x0008, 0x0009, 0x000A, 0x000F, 0x0010, 0x0011, 0x0012, 0x0014, 0x0015,
     0x0016, 0x0017, 0x001C, 0x0020, 0x0092, 0x0094, 0x00FE, 0x00FF}
)  # fmt: skip
"""CMND codes of [P] 6.5.5 (0092h/0094h acknowledge OK/failed)."""
_MESSAGES = frozenset(
    {0x06, 0x07, 0x08, 0x09, 0x0A, 0x0F, 0x10, 0x11, 0x12, 0x14, 0x15, 0x16, 0x1C, 0x20,
     0xFE, 0xFF}
)  # fmt: skip
"""Low bytes of the MSGT values in [P] 6.5.2's message table."""

VERIFY = 0x10
"""RF command code of Verify, also the message type of its seal records ([U] p.104)."""
SHORT_STATUS_MASK = 0x8000
"""Verify mask bit for the Short Status ([U] 8 p.161): all the driver asks for."""
RESULT_NOT_READY = 0x05

ALERT_BURST_OLD = 0x77
CLOSE_BURST = 0x79
FORCED_BURST = 0x78
BURSTS = frozenset({ALERT_BURST_OLD, ALERT_BURST, CLOSE_BURST, FORCED_BURST})

# Short status bits ([U] 8.2.1).
TAMPERED = 0x80
LOW_BATTERY = 0x40
OPENED = 0x20
SUSPENDED_SET = 0x10
WIRE_CHANGED = 0x08
APPROVED_OPEN = 0x01

EVENTS: dict[int, SealEvent] = {
    1: "sealed",  # Set
    2: "wire_tampered",  # Sealing wire changed
    3: "low_battery",
    4: "opened",
    5: "closed",
    7: "sealed",  # Soft set: a set that keeps the events memory
    0x0C: "sealed",  # Suspended set, executed when the wire is plugged in
}
EVENT_CODES: dict[SealEvent, int] = {
    "sealed": 1, "wire_tampered": 2, "low_battery": 3, "opened": 4, "closed": 5
}  # fmt: skip
"""The code a name is sent with when no code is given."""

_HEAD = 7  # STX #B R# CMND/MSGT
_RECORD_PLAIN = 9  # #B TF TID command code short status
_RECORD_ORG = 12  # ... ORG_ID
_RECORD_EVENT = 15  # ... EV# event code event time (ADJUSTED)
MAX_COUNT = 0x400
"""Largest #B accepted (longer "frames" are noise); the manual's largest fixed answer
is the 82-byte channel file ([P] 6.5.5.19.2)."""
MAX_FRAME = MAX_COUNT + 4
"""A codec never holds more than this after a feed."""


Decoded = SealMessage | FrameError
"""What :meth:`SealReaderCodec.feed` yields."""


class _BadData(Exception):
    """A frame with a good CRC whose DATA does not fit its type (internal only)."""


def seal_id_text(raw: bytes) -> str:
    """TF (2) + TID (4) as 12 upper-case hex digits."""
    return raw.hex().upper()


def seal_id_bytes(seal_id: str) -> bytes:
    """The 6 bytes of a 12-hex-digit seal id.

    Raises:
        ValueError: not 12 hex digits.
    """
    if len(seal_id) != 12:
        raise ValueError(f"seal id {seal_id!r} is not 12 hex digits (TF + TID)")
    try:
        return bytes.fromhex(seal_id)
    except ValueError:
        raise ValueError(f"seal id {seal_id!r} is not 12 hex digits (TF + TID)") from None


class _Flags(TypedDict):
    opened: bool
    tampered: bool
    low_battery: bool
    wire_changed: bool
    approved_open: bool
    suspended_set: bool


def _status_bits(status: int) -> _Flags:
    return {
        "opened": bool(status & OPENED),
        "tampered": bool(status & TAMPERED),
        "low_battery": bool(status & LOW_BATTERY),
        "wire_changed": bool(status & WIRE_CHANGED),
        "approved_open": bool(status & APPROVED_OPEN),
        "suspended_set": bool(status & SUSPENDED_SET),
    }


def _status_byte(item: SealRead | SealAlert) -> int:
    return (
        (TAMPERED if item.tampered else 0)
        | (LOW_BATTERY if item.low_battery else 0)
        | (OPENED if item.opened else 0)
        | (SUSPENDED_SET if item.suspended_set else 0)
        | (WIRE_CHANGED if item.wire_changed else 0)
        | (APPROVED_OPEN if item.approved_open else 0)
    )


def _plain_event(burst: int, status: int) -> SealEvent:
    """The event a burst without event record stands for ([U] 8.5: an alert burst is
    sent when the wire is opened or its resistance changes, a close burst when it is
    closed; a suspended set runs when the wire is plugged in)."""
    if burst == CLOSE_BURST:
        return "sealed" if status & SUSPENDED_SET else "closed"
    if burst in (ALERT_BURST, ALERT_BURST_OLD):
        if status & OPENED:
            return "opened"
        if status & WIRE_CHANGED:
            return "wire_tampered"
    raise _BadData(f"burst 0x{burst:02X} with status 0x{status:02X} names no event")


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit 2 bytes")
    return value.to_bytes(2, "big")


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit one byte")
    return value


class SealReaderCodec(ByteStream):
    """Incremental decoder and encoder for the Hi-G-Tek reader's RS-485/232 frames.

    Args:
        crc_init: CRC-16/CCITT start value (configuration; 0xFFFF tried first).
        layout: CRC coverage of reader frames, see :data:`LAYOUTS`.

    Raises:
        ValueError: ``crc_init`` does not fit 16 bits, or an unknown layout.
    """

    stream_name = "seal reader"

    def __init__(self, *, crc_init: int = DEFAULT_CRC_INIT, layout: Layout = "hgt") -> None:
        if not 0 <= crc_init <= 0xFFFF:
            raise ValueError(f"crc_init 0x{crc_init:X} does not fit 16 bits")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown reader layout {layout!r}; known: {list(LAYOUTS)}")
        self.crc_init = crc_init
        self.layout: Layout = layout
        self._packets: dict[int, tuple[int, int, bytearray]] = {}  # reader -> PK, P#, records
        super().__init__()

    def _crc(self, frame: bytes | bytearray, end: int) -> int:
        """CRC of ``frame[1:end]`` (#B .. last DATA byte), R# left out per the layout."""
        body = bytes(frame[1:end])
        if self.layout == "hgt-no-address" and frame[5] & 0x80:
            body = body[:2] + body[4:]
        return crc16_ccitt(body, self.crc_init)

    # -- decoding --------------------------------------------------------------------------

    def feed(self, data: bytes, at: Stamp) -> list[Decoded]:
        """Add bytes that arrived at ``at``; return what they completed, in order.

        Bad frames come back as :class:`FrameError` values (never raised). After a
        framing error only the STX is dropped and decoding resumes at the next STX, so
        a good frame that began inside the bad one is kept. The buffer never holds more
        than :data:`MAX_FRAME` bytes between calls.
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
            if len(buf) < 3 or len(buf) < int.from_bytes(buf[1:3], "big") + 4:
                break  # a good start so far; wait for the rest
            size = int.from_bytes(buf[1:3], "big") + 4
            items = self._decode(bytes(buf[:size]), at)
            del buf[:size]
            self._in_error = any(isinstance(i, FrameError) for i in items)
            out += items
        return out

    def _framing_problem(self, buf: bytearray) -> str | None:
        """Why the frame at ``buf[0]`` cannot be good, judged only on the bytes present
        (count, then code, then ETX and CRC), so the verdict never depends on chunking."""
        if len(buf) < 3:
            return None
        count = int.from_bytes(buf[1:3], "big")
        if not 6 <= count <= MAX_COUNT:
            return f"bad byte count {count}"
        if len(buf) < _HEAD:
            return None
        code = int.from_bytes(buf[5:7], "big")
        if code & REPLY:
            if code >> 8 != 0x80 or code & 0xFF not in _MESSAGES:
                return f"unknown message type 0x{code:04X}"
            if count < 8:
                return f"byte count {count} too small for a reader message"
        elif code not in _COMMANDS:
            return f"unknown command 0x{code:04X}"
        size = count + 4
        if len(buf) < size:
            return None
        if buf[size - 1] != ETX:
            return f"missing ETX (0x{buf[size - 1]:02X})"
        sent = int.from_bytes(buf[size - 3 : size - 1], "big")
        computed = self._crc(buf, size - 3)
        if sent != computed:
            return f"CRC mismatch (sent 0x{sent:04X}, computed 0x{computed:04X})"
        return None

    def _decode(self, frame: bytes, at: Stamp) -> list[Decoded]:
        """Decode one frame whose framing, count and CRC are already checked."""
        reader = int.from_bytes(frame[3:5], "big")
        code = int.from_bytes(frame[5:7], "big")
        try:
            if not code & REPLY:
                data = frame[_HEAD:-3]
                if code == UNSYNC_ACK and not data:
                    return [AlertAcked(reader=reader, at=at)]
                if code == GET_RESULTS and len(data) == 1:
                    return [ReadRequested(reader=reader, channel=data[0], at=at)]
                return [HostCommand(command=code, reader=reader, data=data, at=at)]
            status = int.from_bytes(frame[7:9], "big")
            data = frame[9:-3]
            if code == UNSYNC_MESSAGE:
                return [self._alert(data, reader, status, at)]
            if code == RESULTS_MESSAGE and len(data) >= 2:
                return self._results(data, reader, status, at)
            return [
                ReaderReply(message=code, reader=reader, reader_status=status, data=data, at=at)
            ]
        except _BadData as e:
            return [FrameError(f"seal reader: 0x{code:04X} from reader {reader}: {e}")]

    def _alert(self, data: bytes, reader: int, status: int, at: Stamp) -> SealAlert:
        if len(data) < 2 or data[1] not in (_RECORD_PLAIN, _RECORD_ORG, _RECORD_EVENT):
            raise _BadData(f"unsynchronized message of {len(data)} bytes fits no seal record")
        if len(data) != 1 + data[1]:
            raise _BadData(f"seal record #B {data[1]} but {len(data) - 1} bytes")
        burst, short = data[8], data[9]
        if burst not in BURSTS:
            raise _BadData(f"unknown burst type 0x{burst:02X}")
        when: datetime | None = None
        sequence = code = None
        if data[1] == _RECORD_EVENT:
            sequence, code = data[10], data[11]
            if code not in EVENTS:
                raise _BadData(f"event code 0x{code:02X} is not a seal event")
            event = EVENTS[code]
            when = datetime.fromtimestamp(int.from_bytes(data[12:16], "big"), UTC)
        else:
            event = _plain_event(burst, short)
        return SealAlert(
            seal_id=seal_id_text(data[2:8]),
            event=event,
            **_status_bits(short),
            event_time=when,
            sequence=sequence,
            event_code=code,
            burst=burst,
            channel=data[0],
            reader=reader,
            reader_status=status,
            at=at,
        )

    def _results(self, data: bytes, reader: int, status: int, at: Stamp) -> list[Decoded]:
        """A Get Results answer: PK, P#, then seal records (joined across packets)."""
        total, number = data[0], data[1]
        if not 1 <= number <= total:
            self._packets.pop(reader, None)
            raise _BadData(f"packet {number} of {total}")
        if number == 1:
            self._packets[reader] = (total, 1, bytearray(data[2:]))
        else:
            pending = self._packets.get(reader)
            if pending is None or pending[0] != total or pending[1] != number - 1:
                self._packets.pop(reader, None)
                raise _BadData(f"packet {number} of {total} out of sequence")
            pending[2].extend(data[2:])
            self._packets[reader] = (total, number, pending[2])
        if number < total:
            return []
        records = bytes(self._packets.pop(reader)[2])
        out: list[Decoded] = []
        pos = 0
        while pos < len(records):
            size = records[pos]
            if size == 0:
                if len(records) != 1:
                    raise _BadData("a #B = 0 record among others")
                return [NoSealInRange(reader=reader, reader_status=status, at=at)]
            record = records[pos : pos + size]
            pos += size
            if size < 8 or len(record) < size:
                raise _BadData(f"seal record #B {size} does not fit")
            kind = record[7]
            if kind & 0x80:
                seal = seal_id_text(record[1:7])
                problem = f"seal {seal} reported a problem (message type 0x{kind:02X})"
                out.append(FrameError(f"seal reader: {problem}"))
            elif kind == VERIFY and size >= 9:
                out.append(
                    SealRead(
                        seal_id=seal_id_text(record[1:7]),
                        **_status_bits(record[8]),
                        reader=reader,
                        reader_status=status,
                        at=at,
                    )
                )
        return out

    # -- encoding --------------------------------------------------------------------------

    def frame(self, reader: int, code: int, data: bytes, reader_status: int = 0) -> bytes:
        """Wrap ``data``: a reader frame (with R_status) when ``code`` has 0x8000 set,
        else a host frame (any code; the simulator's fault injection uses it too).

        Raises:
            ValueError: a field does not fit, or ``data`` is too long.
        """
        reply = bool(code & REPLY)
        count = 2 + 2 + (2 if reply else 0) + len(data) + 2
        if count > MAX_COUNT:
            raise ValueError(f"{len(data)} data bytes do not fit #B")
        body = bytes([STX]) + _u16(count, "#B") + _u16(reader, "R#") + _u16(code, "code")
        if reply:
            body += _u16(reader_status, "R_status")
        body += data
        crc = self._crc(body, len(body))
        return body + crc.to_bytes(2, "big") + bytes([ETX])

    def _results_frame(self, reader: int, records: bytes, reader_status: int) -> bytes:
        return self.frame(reader, RESULTS_MESSAGE, bytes([1, 1]) + records, reader_status)

    def encode_read(self, read: SealRead) -> bytes:
        """A Get Results answer with one Verify record (short status only).

        Raises:
            ValueError: a field does not fit (seal id, reader, status).
        """
        record = bytes([9]) + seal_id_bytes(read.seal_id) + bytes([VERIFY, _status_byte(read)])
        return self._results_frame(read.reader, record, read.reader_status)

    def encode_no_seal(self, report: NoSealInRange) -> bytes:
        """A Get Results answer with the single ``#B = 0`` record."""
        return self._results_frame(report.reader, b"\x00", report.reader_status)

    def encode_alert(self, alert: SealAlert) -> bytes:
        """An Unsynchronized Reader Message; with the (ADJUSTED) event record part when
        the alert has an event time and sequence, else the plain 9-byte record.

        Raises:
            ValueError: a field does not fit (seal id, time, sequence, reader).
        """
        record = seal_id_bytes(alert.seal_id) + bytes(
            [_byte(alert.burst, "burst"), _status_byte(alert)]
        )
        if alert.event_time is not None and alert.sequence is not None:
            if alert.event_time.tzinfo is None:
                raise ValueError(f"{alert.event_time} has no time zone; seal times are UTC")
            seconds = int(alert.event_time.timestamp())
            if not 0 <= seconds <= 0xFFFF_FFFF:
                raise ValueError(f"{alert.event_time} does not fit 32-bit Unix seconds")
            code = EVENT_CODES[alert.event] if alert.event_code is None else alert.event_code
            record += bytes([_byte(alert.sequence, "sequence"), _byte(code, "event code")])
            record += seconds.to_bytes(4, "big")
        data = bytes([_byte(alert.channel, "channel"), len(record) + 1]) + record
        return self.frame(alert.reader, UNSYNC_MESSAGE, data, alert.reader_status)

    def ack_for(self, alert: SealAlert) -> bytes:
        """The host's Message Command Ack (CMND 000Ah, no data) to the alert's reader."""
        return self.frame(alert.reader, UNSYNC_ACK, b"")

    def read_request(self, reader: int, channel: int = 1) -> bytes:
        """Get Results (CMND 0015h) for ``channel``: the seals the last Verify found."""
        return self.frame(reader, GET_RESULTS, bytes([_byte(channel, "channel")]))

    def verify_request(self, reader: int, channel: int = 1, windows: int = 2) -> bytes:
        """Execute RF command Verify (Cmnd* 10h) asking for the Short Status only."""
        rf = bytes([VERIFY, _byte(windows, "#Rr")]) + _u16(SHORT_STATUS_MASK, "mask")
        data = bytes([_byte(channel, "channel"), len(rf) + 1]) + rf
        return self.frame(reader, EXECUTE_RF, data)
