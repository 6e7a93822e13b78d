"""JT/T 808 framing and location reports (2013 and 2019 headers), as GPS e-locks send them.

A pure codec. HARDWARE.md ("Electronic seals") names JT/T 808 as the framing road
transit e-locks use; it is a summary, so every fact below names its own source:
"2013" / "2019" are JT/T 808-2013 / JT/T 808-2019 (section and table titles as in
the standards), and the public decoders that confirm a fact, whose captured frames
are the conformance tests in ``tests/conformance/test_jt808_frames.py``, are named by
repository. ``docs/hardware.md`` lists the same facts for people.

Framing (2013 and 2019, §4.4 message composition; every decoder listed agrees)::

    0x7E | header | body | check | 0x7E

* Escaping is applied after the check code is computed and undone before it is
  checked: 0x7E -> 0x7D 0x02, 0x7D -> 0x7D 0x01, inside header, body and check. A raw
  0x7E is always a flag; consecutive flags (``7E 7E``) separate nothing. 0x7D followed
  by anything else is an error, with one tolerated exception: a lone 0x7D as the last
  byte before the closing flag cannot start an escape (the flag is not escapable), so
  it is taken as a literal 0x7D and the frame carries the quirk ``lone_escape``.
  Terminals that forget to escape a 0x7D check code send exactly that
  (cuteLittleDevil/go-jt808 accepts such a heartbeat in its decoder tests).
* Check code: XOR of every byte of header and body (§4.4; all decoders).
* Header, big-endian (2013 and 2019 §4.4, message header table):
  message id WORD | message body attributes WORD | [2019 only: protocol version
  BYTE] | terminal phone number BCD[6] (2013, 12 digits) or BCD[10] (2019, 20 digits)
  | message serial WORD | [packet count WORD | packet number WORD, only when the
  subpackage bit is set].
  Body attributes: bits 0-9 body length, bits 10-12 encryption (0 = clear, bit 10 =
  RSA), bit 13 subpackage, bit 14 reserved in 2013 and the version flag in 2019
  (set = the 2019 header; SmallChi/JT808 ``VersionFlag``, yezhihao/jt808-server,
  go-jt808), bit 15 reserved. The 2019 protocol version byte is 1 for 2019 terminals
  (yezhihao/jt808-server's 2019 frame: ``protocolVersion: 1``).
* Some 2013 terminals set reserved bit 14 anyway (SmallChi/JT808 keeps a "force
  2013" mode for such a device's frames). When bit 14 is set and the 2019 reading is
  inconsistent (body length does not match what the 2019 header leaves, or the phone
  is not BCD) but the 2013 reading is consistent, the frame is read as 2013 and
  carries the quirk ``reserved_bit14``. The check code covers both readings alike, so
  only the length can tell them apart; the two header sizes differ by 5 bytes, so at
  most one reading is consistent.

Replies (0x8001 general response, 0x8100 registration response) go out in the header
version the terminal used (go-jt808's reply tests: a 2019 request gets a 2019 reply
with the same phone number and protocol version).

Location report 0x0200 (2013 and 2019 §8.18, location basic information table), 28
bytes, identical in both versions::

    alarm flags DWORD | status DWORD | latitude DWORD | longitude DWORD |
    altitude WORD (m) | speed WORD (1/10 km/h) | heading WORD (0-359, 0 = north,
    clockwise) | time BCD[6] YYMMDDhhmmss

followed by zero or more additional items ``id BYTE | length BYTE | value`` (§8.18,
additional information table), kept raw in ``extras``. An item whose declared length
runs past the body (or that has no length byte) does not cost the report: the base
report and the items before it are kept, the bytes from the bad item on are set aside
in ``set_aside`` and the report carries the quirk ``item_set_aside`` (SmallChi/JT808
does the same, its ``ExceptionLocationAttachOriginalData``, on a device frame).

* Latitude and longitude are unsigned degrees x 10^6; status bit 2 = south and bit 3
  = west give the sign (§8.18, status bit table).
* The time is GMT+8 (§8.18: "GMT+8 time; all later times in this standard use this
  zone"). This codec converts it to UTC. An all-zero time (terminals that never had
  a fix) decodes as ``None``.

Named flags. The alarm word (§8.18, alarm flag table) and the status word (§8.18,
status bit table) are decoded into names through a mapping the constructor takes.
:data:`DEFAULT_FLAGS` names only bits whose meaning is the same in 2013 and 2019.
Bits 15-17 of the alarm word are reserved in 2013 and standard in 2019 (15 illegal
driving warning, 16 tyre pressure warning, 17 right-turn blind-spot warning;
go-jt808 and yezhihao/jt808-server list them so), and e-lock vendors put their own
alarms in bits the standard leaves reserved: so no vendor bit is named by default,
and a vendor's bits come only from configuration, a preset of
:data:`FLAG_PRESETS` and/or an explicit mapping.

Other messages (heartbeat 0x0002, registration 0x0100, authentication 0x0102, ...)
come out as :class:`Jt808Message` with the raw body; :func:`authentication_code` reads
the code out of a 0x0102 body and :func:`encode_authentication` builds one (for the
simulator). A location report that is
encrypted or split into packets also comes out as :class:`Jt808Message` (this codec
does not decrypt or reassemble).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Literal, NamedTuple

from drivers.eseal.readings import (
    LOCATION_REPORT,
    Jt808Message,
    PositionReported,
)
from gateway.errors import FrameError
from gateway.readings import Stamp

FLAG = 0x7E
ESCAPE = 0x7D
_UNESCAPE = {0x01: ESCAPE, 0x02: FLAG}

HEARTBEAT = 0x0002
REGISTRATION = 0x0100
AUTHENTICATION = 0x0102
BATCH_LOCATION_UPLOAD = 0x0704
PLATFORM_GENERAL_RESPONSE = 0x8001
REGISTRATION_RESPONSE = 0x8100

# General response results (§8.2): 0 success/ack, 1 failure, 2 message error,
# 3 not supported, 4 alarm handling confirmed.
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_NOT_SUPPORTED = 3
RESULT_ALARM_CONFIRMED = 4

# Registration response results (§8.6): 0 success, 1 vehicle already registered, 2 no
# such vehicle, 3 terminal already registered, 4 no such terminal.
REGISTRATION_OK = 0
REGISTRATION_TERMINAL_REGISTERED = 3
REGISTRATION_NO_SUCH_TERMINAL = 4

_AUTH_IMEI = 15  # 2019 §8.8: terminal IMEI BYTE[15]
_AUTH_SOFTWARE = 20  # 2019 §8.8: software version BYTE[20]

MAX_BODY = 0x3FF  # properties bits 0-9
_HEADER = 12  # 2013: id, properties, BCD[6] phone, serial
_HEADER_2019 = 17  # 2019: id, properties, version BYTE, BCD[10] phone, serial
_PACKET_ITEM = 4  # packet count, packet number (subpackage bit set)
_PROPS_LENGTH = 0x03FF
_PROPS_ENCRYPTION = 0x1C00
_PROPS_SUBPACKAGE = 0x2000
_PROPS_VERSION_2019 = 0x4000

PROTOCOL_VERSION_2019 = 1
"""The 2019 header's protocol version byte a JT/T 808-2019 terminal sends."""

MAX_CONTENT = 2 * (_HEADER_2019 + _PACKET_ITEM + MAX_BODY + 1)
"""Most bytes between two flags a valid frame can have (every byte escaped). The codec
never holds more; a longer run is reported once and skipped up to the next flag."""

_LOCATION_BASIC = struct.Struct(">IIIIHHH6s")  # §8.18 basic location information, 28 bytes
_STATUS_LOCATED = 1 << 1
_STATUS_SOUTH = 1 << 2
_STATUS_WEST = 1 << 3
_GMT8 = timezone(timedelta(hours=8), "GMT+8")


class FlagBit(NamedTuple):
    """Where a named flag lives: the 0x0200 alarm or status DWORD, and its bit (0-31)."""

    word: Literal["alarm", "status"]
    bit: int


DEFAULT_FLAGS: Mapping[str, FlagBit] = MappingProxyType(
    {
        # §8.18 alarm flag bits, the same meaning in 2013 and 2019.
        "emergency": FlagBit("alarm", 0),  # emergency (SOS) button; cleared on the response
        "overspeed": FlagBit("alarm", 1),
        "gnss_fault": FlagBit("alarm", 4),  # GNSS module fault ("GPS lost")
        "gnss_antenna_cut": FlagBit("alarm", 5),  # GNSS antenna not connected or cut
        "gnss_antenna_short": FlagBit("alarm", 6),  # GNSS antenna short-circuited
        "low_voltage": FlagBit("alarm", 7),  # terminal main power under-voltage
        "power_cut": FlagBit("alarm", 8),  # terminal main power lost
        "stop_too_long": FlagBit("alarm", 19),  # parked overtime
        "area": FlagBit("alarm", 20),  # entered/left an area
        "route": FlagBit("alarm", 21),  # entered/left a route
        "route_deviation": FlagBit("alarm", 23),
        "illegal_displacement": FlagBit("alarm", 28),  # moved while it must not
        "illegal_door_open": FlagBit("alarm", 31),  # door opened where it must not
        # §8.18 status bits, the same in 2013 and 2019 (bits 1-3 are decoded as fields).
        "acc_on": FlagBit("status", 0),
        "locked": FlagBit("status", 12),  # 1 = door locked, 0 = unlocked
        "door_open": FlagBit("status", 13),  # door 1 (front door) open
        # Alarm bits 15-17 are deliberately not named: reserved in 2013 (vendors use
        # them), standard in 2019 (17 = right-turn blind-spot warning, not a tamper).
    }
)
"""Standard name -> bit mapping. A flag is in :attr:`PositionReported.flags` when its bit is 1."""

EXAMPLE_ELOCK_FLAGS: Mapping[str, FlagBit] = MappingProxyType(
    {
        **DEFAULT_FLAGS,
        # AN EXAMPLE, not a real vendor's map: the shape of a 2013 e-lock that reports a
        # cut lock wire in reserved alarm bit 17. Never use it for 2019 terminals, where
        # bit 17 is the right-turn blind-spot warning. Copy it with your device's bits.
        "lock_cut": FlagBit("alarm", 17),
    }
)
"""The ``example-elock`` preset: what a vendor map looks like (documented as an example)."""

FLAG_PRESETS: Mapping[str, Mapping[str, FlagBit]] = MappingProxyType(
    {
        "jt808": DEFAULT_FLAGS,  # the standard bits only (default)
        "none": MappingProxyType({}),  # nothing named: build the whole map by hand
        "example-elock": EXAMPLE_ELOCK_FLAGS,
    }
)
"""Named flag maps a device's ``flags_preset`` picks; its ``flags`` add to or rename them."""

DEFAULT_ALARM_FLAGS: frozenset[str] = frozenset(
    {
        "emergency",
        "gnss_fault",  # GPS lost
        "gnss_antenna_cut",  # GPS lost
        "gnss_antenna_short",  # GPS lost
        "illegal_door_open",  # opened without approval
        "lock_cut",  # tamper, only where a vendor map names it (not in DEFAULT_FLAGS)
    }
)
"""Flags that make a report an alarm when the codec's map names them (HARDWARE.md:
tamper, open-without-approval and GPS-lost are alarms; an emergency button press is
treated the same)."""


def preset_flags(
    preset: str, flags: Mapping[str, FlagBit | tuple[str, int]] | None = None
) -> dict[str, FlagBit | tuple[str, int]]:
    """The flag map of ``preset`` (a :data:`FLAG_PRESETS` name) with ``flags`` added
    (a name already in the preset is moved to the bit ``flags`` gives).

    Raises:
        ValueError: an unknown preset.
    """
    if preset not in FLAG_PRESETS:
        raise ValueError(f"unknown flags preset {preset!r}; known: {sorted(FLAG_PRESETS)}")
    return {**FLAG_PRESETS[preset], **(flags or {})}


Decoded = PositionReported | Jt808Message | FrameError
"""What :meth:`Jt808Codec.feed` yields per frame."""


# -- byte helpers --------------------------------------------------------------------------


def _xor(data: bytes | bytearray) -> int:
    check = 0
    for byte in data:
        check ^= byte
    return check


def escape(content: bytes) -> bytes:
    """Apply the §4.4 escapes (0x7D first, so escapes are not escaped twice)."""
    return content.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(raw: bytes, *, lone_last: bool = False) -> bytes:
    """Undo the §4.4 escapes.

    Args:
        raw: the bytes between two flags.
        lone_last: take a lone 0x7D as the last byte as a literal 0x7D (it cannot start
            an escape: the closing flag follows).

    Raises:
        FrameError: 0x7D followed by anything but 0x01/0x02, or last (unless
            ``lone_last``).
    """
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == ESCAPE:
            following = raw[i + 1] if i + 1 < len(raw) else None
            if following is None and lone_last:
                out.append(ESCAPE)
                break
            if following not in _UNESCAPE:
                shown = "end of frame" if following is None else f"0x{following:02X}"
                raise FrameError(f"jt808: bad escape 0x7D followed by {shown}")
            out.append(_UNESCAPE[following])
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def _bcd_digits(raw: bytes, what: str) -> str:
    digits = raw.hex()
    if not digits.isdigit():
        raise FrameError(f"jt808: {what} {digits.upper()} is not BCD")
    return digits


def _bcd(digits: str, size: int, what: str) -> bytes:
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 2 * size:
        raise ValueError(f"{what} {digits!r} is not at most {2 * size} decimal digits")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def _device_time(raw: bytes) -> datetime | None:
    digits = _bcd_digits(raw, "time")
    if digits == "000000000000":
        return None
    year, month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(0, 12, 2))
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=_GMT8)
    except ValueError:
        raise FrameError(f"jt808: time {digits} is not a date") from None
    return local.astimezone(UTC)


def _device_time_bcd(when: datetime | None) -> bytes:
    if when is None:
        return bytes(6)
    if when.tzinfo is None:
        raise ValueError(f"{when} has no time zone")
    local = when.astimezone(_GMT8)
    if not 2000 <= local.year <= 2099:
        raise ValueError(f"{when} is outside the years BCD YY can carry (2000-2099 GMT+8)")
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


def _word(value: int, what: str, size: int = 2) -> int:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{what} {value} does not fit {size} bytes")
    return value


def encode(
    msg_id: int,
    terminal: str,
    serial: int,
    body: bytes,
    *,
    encryption: int = 0,
    packet: tuple[int, int] | None = None,
    version: int | None = None,
) -> bytes:
    """A complete frame, flags included: header, body, XOR check, escaped (§4.4).

    Args:
        msg_id: message id.
        terminal: phone number, up to 12 digits (2013) or 20 (2019), left-padded with
            zeros.
        serial: message serial number.
        body: the message body, at most 1023 bytes.
        encryption: properties bits 10-12.
        packet: ``(count, number)`` to set the subpackage bit and packet item.
        version: ``None`` for a 2013 header; else a 2019 header (version flag, bit 14)
            with this protocol version byte (:data:`PROTOCOL_VERSION_2019`).

    Raises:
        ValueError: a field does not fit.
    """
    if len(body) > MAX_BODY:
        raise ValueError(f"{len(body)} body bytes do not fit the 10-bit length")
    if not 0 <= encryption <= 0b111:
        raise ValueError(f"encryption {encryption} does not fit 3 bits")
    props = len(body) | encryption << 10 | (_PROPS_SUBPACKAGE if packet else 0)
    if version is not None:
        props |= _PROPS_VERSION_2019
    content = struct.pack(">HH", _word(msg_id, "message id"), props)
    if version is not None:
        content += bytes([_word(version, "protocol version", 1)])
    content += _bcd(terminal, 6 if version is None else 10, "terminal")
    content += struct.pack(">H", _word(serial, "serial"))
    if packet:
        count, number = packet
        content += struct.pack(">HH", _word(count, "packet count"), _word(number, "packet no."))
    content += body
    content += bytes([_xor(content)])
    return bytes([FLAG]) + escape(content) + bytes([FLAG])


def terminal_key(terminal: str) -> str:
    """The terminal phone number without its leading zeros, so that a 2013 header's 12
    digits and a 2019 header's 20 digits of the same phone compare equal (§4.4 header
    table: the number is left-padded with zeros to the field's size)."""
    return terminal.lstrip("0") or "0"


def authentication_code(body: bytes, version: int | None) -> bytes:
    """The authentication code of a 0x0102 terminal authentication body (raw GBK bytes).

    JT/T 808-2013 (terminal authentication, 0x0102): the whole body is the code, a
    STRING (a trailing NUL some terminals add is dropped). JT/T 808-2019
    §8.8: code length BYTE, code STRING[n], terminal IMEI BYTE[15], software version
    BYTE[20]. ``version`` is the header's (``None``: a 2013 header).

    Raises:
        FrameError: a 2019 body whose length byte does not fit the body.
    """
    if version is None:
        return body.removesuffix(b"\x00")
    if not body or 1 + body[0] > len(body):
        raise FrameError(f"jt808: 0x0102 body of {len(body)} bytes has no code of its length")
    return body[1 : 1 + body[0]]


def encode_authentication(
    terminal: str, serial: int, code: str, *, version: int | None = None, imei: str = ""
) -> bytes:
    """A 0x0102 terminal authentication frame as a terminal sends it (see
    :func:`authentication_code` for the two bodies).

    Raises:
        ValueError: the code is not GBK or (2019) longer than 255 bytes.
    """
    raw = code.encode("gbk")
    if version is None:
        body = raw
    else:
        if len(raw) > 0xFF:
            raise ValueError(f"an authentication code of {len(raw)} bytes does not fit 2019's")
        body = bytes([len(raw)]) + raw
        body += imei.encode("ascii").ljust(_AUTH_IMEI, b"\x00")[:_AUTH_IMEI]
        body += bytes(_AUTH_SOFTWARE)
    return encode(AUTHENTICATION, terminal, serial, body, version=version)


@dataclass(frozen=True, slots=True)
class _Header:
    """A message header read in one of the two layouts (§4.4, message header table)."""

    msg_id: int
    terminal: str
    serial: int
    encryption: int
    packet: tuple[int, int] | None
    version: int | None
    size: int  # header bytes, the packet item included

    @classmethod
    def read(cls, content: bytes, *, v2019: bool) -> _Header:
        """Read ``content`` (unescaped, check byte last) in the 2019 or the 2013 layout.

        Raises:
            FrameError: the layout does not fit: too short, phone not BCD, or a body
                length other than what the header declares.
        """
        msg_id, props = struct.unpack_from(">HH", content)
        size = _HEADER_2019 if v2019 else _HEADER
        if len(content) < size + 1:
            raise FrameError(f"jt808: {len(content)} bytes are too short for a header")
        phone = content[5:15] if v2019 else content[4:10]
        terminal = _bcd_digits(phone, "terminal")
        (serial,) = struct.unpack_from(">H", content, size - 2)
        packet: tuple[int, int] | None = None
        if props & _PROPS_SUBPACKAGE:
            if len(content) < size + _PACKET_ITEM + 1:
                raise FrameError("jt808: subpackage header truncated")
            packet = struct.unpack_from(">HH", content, size)
            size += _PACKET_ITEM
        length, body = props & _PROPS_LENGTH, len(content) - size - 1
        if body != length:
            raise FrameError(f"jt808: body is {body} bytes, header says {length}")
        return cls(
            msg_id=msg_id,
            terminal=terminal,
            serial=serial,
            encryption=(props & _PROPS_ENCRYPTION) >> 10,
            packet=packet,
            version=content[4] if v2019 else None,
            size=size,
        )


# -- codec ---------------------------------------------------------------------------------


class Jt808Codec:
    """Incremental decoder for a JT/T 808 byte stream, and the platform's replies.

    Args:
        flags: name -> :class:`FlagBit` for the alarm and status words; defaults to
            :data:`DEFAULT_FLAGS`. Vendor lock bits go here.
        alarm_flags: which names make a report an alarm; defaults to
            :data:`DEFAULT_ALARM_FLAGS` (restricted to names ``flags`` defines when
            ``flags`` is given and ``alarm_flags`` is not).

    Raises:
        ValueError: a bit outside 0-31, an unknown word, or an alarm name not in ``flags``.
    """

    def __init__(
        self,
        *,
        flags: Mapping[str, FlagBit | tuple[str, int]] | None = None,
        alarm_flags: Collection[str] | None = None,
    ) -> None:
        mapping = DEFAULT_FLAGS if flags is None else flags
        self.flags: dict[str, FlagBit] = {}
        for name, (word, bit) in mapping.items():
            if word not in ("alarm", "status") or not 0 <= bit <= 31:
                raise ValueError(f"flag {name!r}: ({word!r}, {bit}) is not (alarm|status, 0-31)")
            self.flags[name] = FlagBit("alarm" if word == "alarm" else "status", bit)
        if alarm_flags is None:
            alarm_flags = DEFAULT_ALARM_FLAGS & self.flags.keys()
        unknown = set(alarm_flags) - self.flags.keys()
        if unknown:
            raise ValueError(f"alarm flags {sorted(unknown)} are not in the flag mapping")
        self.alarm_flags = frozenset(alarm_flags)
        self._content = bytearray()  # bytes since the last flag, still escaped
        self._in_frame = False  # a flag was seen: bytes belong to a frame
        self._skipped = 0  # bytes dropped outside a frame since the last flag
        self._overflowed = False  # the current run was already reported as too long
        self._platform_serial = 0

    # -- decoding --------------------------------------------------------------------------

    def feed(self, data: bytes, at: Stamp) -> list[Decoded]:
        """Add bytes that arrived at ``at``; return the frames they completed, in order.

        Frames end at a flag; bad ones come back as :class:`FrameError` values (never
        raised) and decoding resumes at that flag. Bytes before the first flag are
        reported once as noise. At most :data:`MAX_CONTENT` bytes are held.
        """
        out: list[Decoded] = []
        pos = 0
        while pos < len(data):
            flag = data.find(FLAG, pos)
            end = len(data) if flag < 0 else flag
            run = end - pos
            if self._in_frame and len(self._content) + run <= MAX_CONTENT:
                self._content += data[pos:end]
            elif self._in_frame:
                self._skipped = len(self._content) + run
                self._content.clear()
                self._in_frame = False
                self._overflowed = True
                out.append(FrameError(f"jt808: more than {MAX_CONTENT} bytes without a flag"))
            else:
                self._skipped += run
            if flag < 0:
                break
            if self._in_frame:
                if self._content:
                    out.append(self._decode(bytes(self._content), at))
                    self._content.clear()
            else:
                if self._skipped and not self._overflowed:
                    out.append(FrameError(f"jt808: {self._skipped} bytes of noise before 0x7E"))
                self._skipped = 0
                self._overflowed = False
                self._in_frame = True
            pos = flag + 1
        return out

    def _decode(self, raw: bytes, at: Stamp) -> Decoded:
        """Decode the bytes between two flags; every failure becomes a FrameError value."""
        try:
            quirks: set[str] = set()
            if raw.endswith(b"\x7d") and not raw.endswith(b"\x7d\x7d"):
                quirks.add("lone_escape")  # raises below if the 0x7D is not lone after all
            content = unescape(raw, lone_last=bool(quirks))
            if len(content) < _HEADER + 1:
                raise FrameError(f"jt808: {len(content)} bytes are too short for a header")
            check, computed = content[-1], _xor(content[:-1])
            if computed != check:
                raise FrameError(f"jt808: check code 0x{check:02X}, computed 0x{computed:02X}")
            (props,) = struct.unpack_from(">H", content, 2)
            if props & _PROPS_VERSION_2019:
                try:
                    header = _Header.read(content, v2019=True)
                except FrameError as as_2019:
                    try:  # a 2013 terminal that sets reserved bit 14
                        header = _Header.read(content, v2019=False)
                    except FrameError:
                        raise FrameError(f"{as_2019} (2019 header; nor a 2013 one)") from None
                    quirks.add("reserved_bit14")
            else:
                header = _Header.read(content, v2019=False)
            body = content[header.size : -1]
            if header.msg_id == LOCATION_REPORT and not header.encryption and not header.packet:
                return self._location(header, body, frozenset(quirks), at)
            return Jt808Message(
                msg_id=header.msg_id,
                terminal=header.terminal,
                serial=header.serial,
                body=body,
                encryption=header.encryption,
                packet=header.packet,
                version=header.version,
                quirks=frozenset(quirks),
                at=at,
            )
        except FrameError as e:
            return e

    def _location(
        self, header: _Header, body: bytes, quirks: frozenset[str], at: Stamp
    ) -> PositionReported:
        """Decode a 0x0200 body (§8.18): 28 bytes of basic information, then items."""
        if len(body) < _LOCATION_BASIC.size:
            raise FrameError(f"jt808: location body is {len(body)} bytes, needs 28")
        alarm_bits, status_bits, lat, lon, altitude, speed, heading, time_bcd = (
            _LOCATION_BASIC.unpack_from(body)
        )
        extras: list[tuple[int, bytes]] = []
        i = _LOCATION_BASIC.size
        while i < len(body):  # additional items: id BYTE, length BYTE, value
            if i + 2 > len(body) or i + 2 + body[i + 1] > len(body):
                quirks |= {"item_set_aside"}  # no length, or it overruns: keep the rest
                break
            item_id, size = body[i], body[i + 1]
            extras.append((item_id, body[i + 2 : i + 2 + size]))
            i += 2 + size
        flags = frozenset(
            name
            for name, (word, bit) in self.flags.items()
            if (alarm_bits if word == "alarm" else status_bits) >> bit & 1
        )
        return PositionReported(
            terminal=header.terminal,
            serial=header.serial,
            lat=-lat / 1e6 if status_bits & _STATUS_SOUTH else lat / 1e6,
            lon=-lon / 1e6 if status_bits & _STATUS_WEST else lon / 1e6,
            altitude_m=altitude,
            speed_kmh=speed / 10,
            heading_deg=heading,
            device_time=_device_time(time_bcd),
            located=bool(status_bits & _STATUS_LOCATED),
            flags=flags,
            alarms=flags & self.alarm_flags,
            alarm_bits=alarm_bits,
            status_bits=status_bits,
            extras=tuple(extras),
            set_aside=body[i:],
            version=header.version,
            quirks=quirks,
            at=at,
        )

    # -- encoding --------------------------------------------------------------------------

    def encode_location(
        self,
        *,
        terminal: str,
        serial: int,
        lat: float,
        lon: float,
        device_time: datetime | None,
        altitude_m: int = 0,
        speed_kmh: float = 0.0,
        heading_deg: int = 0,
        located: bool = True,
        flags: Iterable[str] = (),
        alarm_bits: int = 0,
        status_bits: int = 0,
        extras: Iterable[tuple[int, bytes]] = (),
        set_aside: bytes = b"",
        version: int | None = None,
    ) -> bytes:
        """A 0x0200 frame as a terminal sends it (for the simulator).

        ``flags`` decides every mapped bit (named = 1, unnamed = 0); ``alarm_bits`` and
        ``status_bits`` supply the unmapped bits. Status bits 1-3 follow ``located`` and
        the signs of ``lat``/``lon``. ``set_aside`` is appended raw after the items (a
        malformed item, as a faulty terminal sends it); ``version`` as for :func:`encode`.

        Raises:
            ValueError: an unknown flag name, or a value that does not fit its field.
        """
        words = {"alarm": _word(alarm_bits, "alarm bits", 4), "status": status_bits}
        _word(status_bits, "status bits", 4)
        named = set(flags)
        unknown = named - self.flags.keys()
        if unknown:
            raise ValueError(f"flags {sorted(unknown)} are not in the flag mapping")
        for name, (word, bit) in self.flags.items():
            if name in named:
                words[word] |= 1 << bit
            else:
                words[word] &= ~(1 << bit)
        status = words["status"] & ~(_STATUS_LOCATED | _STATUS_SOUTH | _STATUS_WEST)
        status |= _STATUS_LOCATED if located else 0
        status |= _STATUS_SOUTH if lat < 0 else 0
        status |= _STATUS_WEST if lon < 0 else 0
        body = _LOCATION_BASIC.pack(
            words["alarm"],
            status,
            _word(round(abs(lat) * 1e6), "latitude", 4),
            _word(round(abs(lon) * 1e6), "longitude", 4),
            _word(altitude_m, "altitude"),
            _word(round(speed_kmh * 10), "speed"),
            _word(heading_deg, "heading"),
            _device_time_bcd(device_time),
        )
        for item_id, value in extras:
            if not 0 <= item_id <= 0xFF or len(value) > 0xFF:
                raise ValueError(f"additional item 0x{item_id:X} ({len(value)} bytes) does not fit")
            body += bytes([item_id, len(value)]) + value
        return encode(LOCATION_REPORT, terminal, serial, body + set_aside, version=version)

    def encode_position(self, report: PositionReported) -> bytes:
        """Re-encode a decoded report (``at``, ``alarms`` and ``quirks`` are not sent:
        the frame comes out well-formed, escaped and without reserved bit 14)."""
        return self.encode_location(
            terminal=report.terminal,
            serial=report.serial,
            lat=report.lat,
            lon=report.lon,
            device_time=report.device_time,
            altitude_m=report.altitude_m,
            speed_kmh=report.speed_kmh,
            heading_deg=report.heading_deg,
            located=report.located,
            flags=report.flags,
            alarm_bits=report.alarm_bits,
            status_bits=report.status_bits,
            extras=report.extras,
            set_aside=report.set_aside,
            version=report.version,
        )

    def _next_serial(self) -> int:
        serial = self._platform_serial
        self._platform_serial = (serial + 1) & 0xFFFF
        return serial

    def general_response(
        self, msg: PositionReported | Jt808Message, result: int = RESULT_OK
    ) -> bytes:
        """Platform general response 0x8001 (§8.2) to ``msg``: reply serial WORD, reply id
        WORD, result BYTE. The platform's own serial counts up from 0 per codec.

        A terminal clears "cleared on response" alarms (emergency, §8.18) when this
        arrives, so the driver should send it only once the report is stored. The reply
        uses the header version of ``msg`` (a 2013 reading of a frame with reserved bit
        14 is answered in 2013).
        """
        body = struct.pack(">HHB", msg.serial, msg.msg_id, _word(result, "result", 1))
        return encode(
            PLATFORM_GENERAL_RESPONSE,
            msg.terminal,
            self._next_serial(),
            body,
            version=msg.version,
        )

    def registration_response(
        self, msg: Jt808Message, result: int = RESULT_OK, auth_code: str = ""
    ) -> bytes:
        """Registration response 0x8100 (§8.6) to a 0x0100: reply serial WORD, result BYTE
        (0 ok, 1 vehicle registered, 2 no such vehicle, 3 terminal registered, 4 no such
        terminal), then the GBK authentication code only when the result is 0. The same
        body in 2013 and 2019; the header follows the version of ``msg``."""
        body = struct.pack(">HB", msg.serial, _word(result, "result", 1))
        if result == RESULT_OK:
            body += auth_code.encode("gbk")
        return encode(
            REGISTRATION_RESPONSE, msg.terminal, self._next_serial(), body, version=msg.version
        )
