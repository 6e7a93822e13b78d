"""E-seal wire codecs, byte by byte: the gate reader frame and JT/T 808, plus fuzzing.

Vectors are written out by hand from the layouts in the codec docstrings (reader) and
JT/T 808-2013 §4.4 / §8.18 (e-locks); CRC values come from an independent bit-by-bit
CRC below, itself pinned to the catalogued "123456789" check values. The hypothesis
properties are what the driver relies on: chunking never changes the result, garbage
never raises, and good frames after garbage still decode.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import reduce
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.eseal import jt808
from drivers.eseal.crc import crc16_ccitt
from drivers.eseal.jt808 import (
    MAX_CONTENT,
    FlagBit,
    Jt808Codec,
    Jt808Message,
    PositionReported,
)
from drivers.eseal.reader_codec import (
    MAX_FRAME,
    AlertAcked,
    NoSealInRange,
    ReadRequested,
    SealAlert,
    SealEvent,
    SealRead,
    SealReaderCodec,
)
from gateway.errors import FrameError
from gateway.readings import Stamp

AT = Stamp(mono=100.0, utc=datetime(2025, 3, 14, 10, 31, tzinfo=UTC))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2025, 3, 14, 10, 30, 45, tzinfo=UTC)  # Unix 1741948245 = 67 D4 05 55

ReaderCodecLike = SealReaderCodec | Jt808Codec


def feed_bytewise(codec: ReaderCodecLike, data: bytes) -> list[Any]:
    """Feed one byte at a time, as a slow serial port would deliver it."""
    out: list[Any] = []
    for i in range(len(data)):
        out += codec.feed(data[i : i + 1], AT)
    return out


def feed_in_chunks(codec: ReaderCodecLike, data: bytes, cuts: Sequence[int]) -> list[Any]:
    out: list[Any] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for start, end in itertools.pairwise(bounds):
        out += codec.feed(data[start:end], AT)
        if isinstance(codec, SealReaderCodec):
            assert len(codec._buffer) < MAX_FRAME
        else:
            assert len(codec._content) <= MAX_CONTENT
    return out


def one(codec: ReaderCodecLike, data: bytes) -> Any:
    items = feed_bytewise(codec, data)
    assert len(items) == 1, items
    return items[0]


def errors(items: list[Any]) -> list[FrameError]:
    return [i for i in items if isinstance(i, FrameError)]


def messages(items: list[Any]) -> list[Any]:
    return [i for i in items if not isinstance(i, FrameError)]


def summary(items: list[Any]) -> list[object]:
    """Comparable form: messages as they are, errors by text."""
    return [str(i) if isinstance(i, FrameError) else i for i in items]


# -- CRC-16/CCITT ---------------------------------------------------------------------------


def crc_bitwise(data: bytes, init: int) -> int:
    """Reference CRC-16/CCITT, one bit at a time (poly 0x1021, MSB first, no final XOR)."""
    crc = init
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


@pytest.mark.parametrize(("init", "check"), [(0xFFFF, 0x29B1), (0x0000, 0x31C3), (0x1D0F, 0xE5CC)])
def test_crc_check_values(init: int, check: int) -> None:
    assert crc16_ccitt(b"123456789", init) == check
    assert crc_bitwise(b"123456789", init) == check


@FUZZ
@given(data=st.binary(max_size=64), init=st.integers(0, 0xFFFF))
def test_crc_table_matches_bitwise(data: bytes, init: int) -> None:
    assert crc16_ccitt(data, init) == crc_bitwise(data, init)


def test_crc_rejects_init_wider_than_16_bits() -> None:
    with pytest.raises(ValueError, match="16 bits"):
        crc16_ccitt(b"", 0x10000)
    with pytest.raises(ValueError, match="16 bits"):
        SealReaderCodec(crc_init=-1)


# -- gate reader: hand-written vectors ------------------------------------------------------

# STX | LEN 0x13 | reader 7 | 'R' | status 0 | "HG0012ABCD" | 0x21 opened+approved |
# battery 87 % | 67 D4 05 55 | CRC (init 0xFFFF) 4A 8A | ETX
RECORD = bytes.fromhex(
    "02 13 07 52 00 48 47 30 30 31 32 41 42 43 44 21 57 67 D4 05 55 4A 8A 03"
)  # fmt: skip
RECORD_CRC0 = RECORD[:-3] + bytes.fromhex("BC 32 03")  # same frame, CRC start 0x0000
RECORD_CRC1D0F = RECORD[:-3] + bytes.fromhex("23 86 03")  # CRC start 0x1D0F
# STX | LEN 0x14 | reader 7 | 'A' | 0 | "HG0012ABCD" | 0xA0 tampered+opened |
# event 2 wire tampered | 67 D4 05 55 | sequence 5 | CRC 58 FB | ETX
ALERT = bytes.fromhex(
    "02 14 07 41 00 48 47 30 30 31 32 41 42 43 44 A0 02 67 D4 05 55 05 58 FB 03"
)  # fmt: skip
# STX | LEN 0x0F | reader 7 | ACK 0x06 | 0 | "HG0012ABCD" | event 2 | sequence 5 | CRC | ETX
ACK = bytes.fromhex("02 0F 07 06 00 48 47 30 30 31 32 41 42 43 44 02 05 D2 29 03")
# STX | LEN 7 | reader 7 | 'B' | 0 | "#B=0" | CRC | ETX
NO_SEAL = bytes.fromhex("02 07 07 42 00 23 42 3D 30 94 F7 03")
# STX | LEN 3 | reader 7 | 'Q' | 0 | CRC A7 02 (an STX value inside the CRC) | ETX
READ_REQUEST = bytes.fromhex("02 03 07 51 00 A7 02 03")

RECORD_DECODED = SealRead(
    seal_id="HG0012ABCD", opened=True, tampered=False, low_battery=False, wire_changed=False,
    approved_open=True, battery_pct=87, seal_time=T0, reader=7, reader_status=0, at=AT,
)  # fmt: skip
ALERT_DECODED = SealAlert(
    seal_id="HG0012ABCD", event="wire_tampered", opened=True, tampered=True,
    event_time=T0, sequence=5, reader=7, at=AT,
)  # fmt: skip


def test_vectors_crc_by_the_reference_implementation() -> None:
    for frame in (RECORD, ALERT, ACK, NO_SEAL, READ_REQUEST):
        assert frame[-3:-1] == crc_bitwise(frame[1:-3], 0xFFFF).to_bytes(2, "big")
        assert frame[1] == len(frame) - 5  # LEN counts READER .. DATA
    assert RECORD_CRC0[-3:-1] == crc_bitwise(RECORD[1:-3], 0).to_bytes(2, "big")
    assert RECORD_CRC1D0F[-3:-1] == crc_bitwise(RECORD[1:-3], 0x1D0F).to_bytes(2, "big")


def test_seal_record_byte_by_byte() -> None:
    read = one(SealReaderCodec(), RECORD)
    assert read == RECORD_DECODED
    assert read.sealed is False
    assert read.alarm is False  # opened, but approved


def test_seal_record_encodes_to_the_same_bytes() -> None:
    assert SealReaderCodec().encode_read(RECORD_DECODED) == RECORD


@pytest.mark.parametrize(("init", "frame"), [(0x0000, RECORD_CRC0), (0x1D0F, RECORD_CRC1D0F)])
def test_crc_start_value_is_configurable(init: int, frame: bytes) -> None:
    assert one(SealReaderCodec(crc_init=init), frame) == RECORD_DECODED
    assert SealReaderCodec(crc_init=init).encode_read(RECORD_DECODED) == frame
    wrong = one(SealReaderCodec(), frame)
    assert isinstance(wrong, FrameError)
    assert "CRC mismatch" in str(wrong)


def test_alert_byte_by_byte_and_its_ack() -> None:
    codec = SealReaderCodec()
    alert = one(codec, ALERT)
    assert alert == ALERT_DECODED
    assert alert.alarm is True
    assert alert.dedup_key == ("HG0012ABCD", "wire_tampered", T0)
    assert codec.encode_alert(alert) == ALERT
    assert codec.ack_for(alert) == ACK
    assert one(SealReaderCodec(), ACK) == AlertAcked(
        seal_id="HG0012ABCD", event="wire_tampered", sequence=5, reader=7, at=AT
    )


def test_no_seal_in_range() -> None:
    codec = SealReaderCodec()
    assert one(codec, NO_SEAL) == NoSealInRange(reader=7, at=AT)
    assert codec.encode_no_seal(NoSealInRange(reader=7, at=AT)) == NO_SEAL


def test_read_request_with_stx_inside_its_crc() -> None:
    codec = SealReaderCodec()
    assert codec.read_request(7) == READ_REQUEST
    assert one(codec, READ_REQUEST) == ReadRequested(reader=7, at=AT)


def reader_frame(body: bytes, init: int = 0xFFFF) -> bytes:
    """STX + body (LEN .. DATA) + CRC + ETX, built with the reference CRC."""
    return b"\x02" + body + crc_bitwise(body, init).to_bytes(2, "big") + b"\x03"


def record_body(status: int = 0, battery: int = 50, seal: bytes = b"HG0012ABCD") -> bytes:
    return bytes([0x13, 1, 0x52, 0]) + seal + bytes([status, battery]) + bytes(4)


@pytest.mark.parametrize(
    ("status", "field"),
    [
        (0x80, "tampered"),
        (0x40, "low_battery"),
        (0x20, "opened"),
        (0x08, "wire_changed"),
        (0x01, "approved_open"),
    ],
)
def test_seal_status_bits(status: int, field: str) -> None:
    read = one(SealReaderCodec(), reader_frame(record_body(status)))
    flags = ("tampered", "low_battery", "opened", "wire_changed", "approved_open")
    assert {name for name in flags if getattr(read, name)} == {field}


def test_reserved_status_bits_are_ignored_and_times_are_utc() -> None:
    read = one(SealReaderCodec(), reader_frame(record_body(0x16)))
    assert isinstance(read, SealRead)
    assert not (read.opened or read.tampered or read.low_battery or read.wire_changed)
    assert read.seal_time == datetime(1970, 1, 1, tzinfo=UTC)


def test_battery_unknown_and_out_of_range() -> None:
    assert one(SealReaderCodec(), reader_frame(record_body(battery=0xFF))).battery_pct is None
    bad = one(SealReaderCodec(), reader_frame(record_body(battery=101)))
    assert isinstance(bad, FrameError)
    assert "battery" in str(bad)


def test_lowercase_tag_hex_is_normalised() -> None:
    read = one(SealReaderCodec(), reader_frame(record_body(seal=b"hg0012abcd")))
    assert read.seal_id == "HG0012ABCD"


@pytest.mark.parametrize(
    ("opened", "approved", "tampered", "alarm"),
    [
        (False, False, False, False),
        (True, True, False, False),
        (True, False, False, True),  # open without approval
        (False, False, True, True),  # tamper latched
        (True, True, True, True),  # approved opening does not excuse tampering
        (False, True, False, False),
    ],
)
def test_read_alarm_semantics(opened: bool, approved: bool, tampered: bool, alarm: bool) -> None:
    read = SealRead(
        seal_id="HG0012ABCD", opened=opened, tampered=tampered, approved_open=approved,
        battery_pct=90, seal_time=T0, reader=1, at=AT,
    )  # fmt: skip
    assert read.alarm is alarm
    assert read.sealed is (not opened)


@pytest.mark.parametrize(
    ("event", "opened", "approved", "tampered", "alarm"),
    [
        ("sealed", False, False, False, False),
        ("closed", False, False, False, False),
        ("low_battery", False, False, False, False),
        ("opened", True, True, False, False),  # authorised opening
        ("opened", True, False, False, True),
        ("opened", False, False, False, True),  # the event alone says it opened
        ("wire_tampered", False, False, False, True),  # the event alone says tamper
        ("closed", False, False, True, True),  # the latched bit still raises
    ],
)
def test_alert_alarm_semantics(
    event: SealEvent, opened: bool, approved: bool, tampered: bool, alarm: bool
) -> None:
    alert = SealAlert(
        seal_id="HG0012ABCD", event=event, opened=opened, tampered=tampered,
        approved_open=approved, event_time=T0, sequence=0, reader=1, at=AT,
    )  # fmt: skip
    assert alert.alarm is alarm


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (bytes.fromhex("02 02 07 51 00 00 00 03"), "bad length 2"),
        (bytes.fromhex("02 C8 07 51 00"), "bad length 200"),
        (bytes.fromhex("02 03 07 77 00 00 00 03"), "unknown message type 0x77"),
        (bytes.fromhex("02 04 07 51 00 00 00 00 03"), "does not fit message type 0x51"),
        (READ_REQUEST[:-1] + b"\x04", "missing ETX"),
        (READ_REQUEST[:-2] + b"\x03\x03", "CRC mismatch"),
    ],
)
def test_framing_errors_then_resync(frame: bytes, message: str) -> None:
    items = feed_bytewise(SealReaderCodec(), frame + RECORD)
    assert message in str(items[0])
    assert messages(items) == [RECORD_DECODED]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (record_body(seal=b"HG0012ABCG"), "seal id"),  # G is not hex
        (record_body(seal=b"H-0012ABCD"), "seal id"),
        (bytes([0x14, 1, 0x41, 0]) + b"HG0012ABCD" + bytes([0, 9]) + bytes(5), "event code 9"),
        (bytes([0x07, 1, 0x42, 0]) + b"#B=1", "no-seal report"),
    ],
)
def test_bad_data_with_good_crc_is_one_error(body: bytes, message: str) -> None:
    items = feed_bytewise(SealReaderCodec(), reader_frame(body) + RECORD)
    assert len(errors(items)) == 1
    assert message in str(items[0])
    assert messages(items) == [RECORD_DECODED]


def test_truncated_frame_then_resync() -> None:
    items = feed_bytewise(SealReaderCodec(), ALERT[:9] + RECORD)
    assert messages(items) == [RECORD_DECODED]
    assert errors(items)


def test_noise_before_a_frame_is_one_error() -> None:
    items = feed_bytewise(SealReaderCodec(), b"\x30\x31garbage\r\n" + RECORD)
    assert len(errors(items)) == 1
    assert "11 bytes of noise" in str(items[0])
    assert messages(items) == [RECORD_DECODED]


def test_encoders_reject_what_does_not_fit() -> None:
    codec = SealReaderCodec()
    with pytest.raises(ValueError, match="seal id"):
        codec.encode_read(SealRead(
            seal_id="HG12", opened=False, tampered=False, battery_pct=1, seal_time=T0,
            reader=1, at=AT,
        ))  # fmt: skip
    with pytest.raises(ValueError, match="time zone"):
        codec.encode_alert(SealAlert(
            seal_id="HG0012ABCD", event="opened", opened=True, tampered=False,
            event_time=datetime(2025, 1, 1), sequence=1, reader=1, at=AT,
        ))  # fmt: skip
    with pytest.raises(ValueError, match="sequence"):
        codec.ack_for(SealAlert(
            seal_id="HG0012ABCD", event="opened", opened=True, tampered=False,
            event_time=T0, sequence=256, reader=1, at=AT,
        ))  # fmt: skip


# -- gate reader: properties ---------------------------------------------------------------

SEAL_IDS = st.builds(
    operator.add,
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=2),
    st.integers(0, 0xFFFF_FFFF).map("{:08X}".format),
)
TIMES = st.integers(0, 0xFFFF_FFFF).map(lambda s: datetime.fromtimestamp(s, UTC))
BYTE = st.integers(0, 255)
EVENT_NAMES: list[SealEvent] = ["sealed", "wire_tampered", "low_battery", "opened", "closed"]

SEAL_READS = st.builds(
    SealRead,
    seal_id=SEAL_IDS, opened=st.booleans(), tampered=st.booleans(), low_battery=st.booleans(),
    wire_changed=st.booleans(), approved_open=st.booleans(),
    battery_pct=st.none() | st.integers(0, 100), seal_time=TIMES, reader=BYTE,
    reader_status=BYTE, at=st.just(AT),
)  # fmt: skip
SEAL_ALERTS = st.builds(
    SealAlert,
    seal_id=SEAL_IDS, event=st.sampled_from(EVENT_NAMES), opened=st.booleans(),
    tampered=st.booleans(), low_battery=st.booleans(), wire_changed=st.booleans(),
    approved_open=st.booleans(), event_time=TIMES, sequence=BYTE, reader=BYTE,
    reader_status=BYTE, at=st.just(AT),
)  # fmt: skip
NO_SEALS = st.builds(NoSealInRange, reader=BYTE, reader_status=BYTE, at=st.just(AT))
CRC_INITS = st.sampled_from([0xFFFF, 0x0000, 0x1D0F])


def reader_wire(codec: SealReaderCodec, item: Any) -> tuple[bytes, list[Any]]:
    """Bytes for one generated item and what decoding them must give back."""
    if isinstance(item, SealRead):
        return codec.encode_read(item), [item]
    if isinstance(item, SealAlert):  # the reader's alert, then the host's ACK of it
        ack = AlertAcked(
            seal_id=item.seal_id, event=item.event, sequence=item.sequence, reader=item.reader,
            at=AT,
        )  # fmt: skip
        return codec.encode_alert(item) + codec.ack_for(item), [item, ack]
    assert isinstance(item, NoSealInRange)
    return codec.encode_no_seal(item) + codec.read_request(item.reader), [
        item,
        ReadRequested(reader=item.reader, at=AT),
    ]


READER_ITEMS = st.lists(st.one_of(SEAL_READS, SEAL_ALERTS, NO_SEALS), min_size=1, max_size=5)


@FUZZ
@given(data=st.data(), init=CRC_INITS)
def test_reader_stream_decodes_the_same_in_any_chunking(data: st.DataObject, init: int) -> None:
    codec = SealReaderCodec(crc_init=init)
    items = data.draw(READER_ITEMS, label="items")
    wires = [reader_wire(codec, i) for i in items]
    stream = b"".join(w for w, _ in wires)
    expected = [m for _, ms in wires for m in ms]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    whole = SealReaderCodec(crc_init=init).feed(stream, AT)
    assert whole == expected
    assert feed_in_chunks(SealReaderCodec(crc_init=init), stream, cuts) == expected


@FUZZ
@given(garbage=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=30))
def test_reader_garbage_only_yields_frame_errors(garbage: bytes, cuts: list[int]) -> None:
    chunked = feed_in_chunks(SealReaderCodec(), garbage, cuts)
    assert all(isinstance(i, FrameError) for i in chunked), chunked
    assert summary(chunked) == summary(SealReaderCodec().feed(garbage, AT))


@FUZZ
@given(data=st.data(), init=CRC_INITS)
def test_reader_frames_after_garbage_still_decode(data: st.DataObject, init: int) -> None:
    codec = SealReaderCodec(crc_init=init)
    items = data.draw(READER_ITEMS, label="items")
    garbage = data.draw(st.lists(st.binary(max_size=40), min_size=len(items),
                                 max_size=len(items)), label="garbage")  # fmt: skip
    wires = [reader_wire(codec, i) for i in items]
    stream = b"".join(g + w for g, (w, _) in zip(garbage, wires, strict=True))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    out = feed_in_chunks(SealReaderCodec(crc_init=init), stream, cuts)
    # Framing errors drop only the STX, so no frame is lost to noise in front of it.
    assert messages(out) == [m for _, ms in wires for m in ms]


# -- JT/T 808: hand-written 0x0200 ---------------------------------------------------------

# Header (§4.4): id 0x0200 | properties 0x0029 (41-byte body, clear, not split) |
# phone BCD 01 39 12 34 56 78 | serial 0x007E.
HEADER = bytes.fromhex("0200 0029 013912345678 007E")
# Body (§8.18): alarm 0x00000011 (bit 0 emergency, bit 4 GNSS fault) | status 0x00003003
# (bit 0 ACC on, bit 1 located, bit 12 door locked, bit 13 door 1 open; north, east) |
# lat 22.543096 = 0x0157FAF8 | lon 114.057865 = 0x06CC6289 | altitude 50 m | speed 600 =
# 60.0 km/h | heading 125 = 0x007D | time 25-03-14 18:30:45 GMT+8 | items: 0x01 mileage
# (4 bytes, 1234 = 123.4 km), 0x30 signal (1 byte, 31), 0xE1 vendor (2 bytes AB B3).
BODY = bytes.fromhex(
    "00000011 00003003 0157FAF8 06CC6289 0032 0258 007D 250314183045"
    "01 04 000004D2  30 01 1F  E1 02 ABB3"
)
# On the wire: serial 00 7E -> 00 7D 02, heading 00 7D -> 00 7D 01, and the check code,
# XOR of header and body, is itself 0x7E -> 7D 02.
POSITION_WIRE = bytes.fromhex(
    "7E"
    "0200 0029 013912345678 007D02"
    "00000011 00003003 0157FAF8 06CC6289 0032 0258 007D01 250314183045"
    "01 04 000004D2  30 01 1F  E1 02 ABB3"
    "7D02"
    "7E"
)
POSITION_DECODED = PositionReported(
    terminal="013912345678", serial=0x7E, lat=22.543096, lon=114.057865, altitude_m=50,
    speed_kmh=60.0, heading_deg=125, device_time=T0, located=True,
    flags=frozenset({"emergency", "gnss_fault", "acc_on", "locked", "door_open"}),
    alarms=frozenset({"emergency", "gnss_fault"}), alarm_bits=0x11, status_bits=0x3003,
    extras=((0x01, bytes.fromhex("000004D2")), (0x30, b"\x1f"), (0xE1, b"\xab\xb3")), at=AT,
)  # fmt: skip


def test_hand_built_location_vector_is_consistent() -> None:
    assert len(BODY) == 0x29
    assert reduce(operator.xor, HEADER + BODY) == 0x7E


def test_location_report_byte_by_byte() -> None:
    report = one(Jt808Codec(), POSITION_WIRE)
    assert report == POSITION_DECODED
    assert report.alarm is True
    assert report.msg_id == 0x0200
    assert report.device_time == datetime(2025, 3, 14, 10, 30, 45, tzinfo=UTC)  # 18:30:45 GMT+8


def test_location_report_encodes_to_the_same_bytes() -> None:
    assert Jt808Codec().encode_position(POSITION_DECODED) == POSITION_WIRE
    assert jt808.encode(0x0200, "013912345678", 0x7E, BODY) == POSITION_WIRE


def test_south_west_and_no_fix() -> None:
    codec = Jt808Codec()
    wire = codec.encode_location(
        terminal="13800138000", serial=1, lat=-33.4489, lon=-70.6693, device_time=None,
        located=False,
    )  # fmt: skip
    report = one(codec, wire)
    assert (report.lat, report.lon) == (-33.4489, -70.6693)
    assert report.status_bits == 0b1100  # south, west, not located
    assert report.located is False
    assert report.device_time is None
    assert report.terminal == "013800138000"
    assert report.flags == frozenset()
    assert report.alarm is False


def test_gmt8_time_crosses_midnight_to_utc() -> None:
    codec = Jt808Codec()
    local = datetime(2024, 12, 31, 21, 0, tzinfo=UTC)  # 2025-01-01 05:00 GMT+8
    wire = codec.encode_location(terminal="1", serial=1, lat=0, lon=0, device_time=local)
    assert bytes.fromhex("250101050000") in wire
    assert one(codec, wire).device_time == local


def test_vendor_lock_bits_come_from_the_mapping() -> None:
    codec = Jt808Codec(
        flags={"lock_open": FlagBit("status", 12), "lock_cut": ("status", 13)},
        alarm_flags={"lock_cut"},
    )
    report = one(codec, POSITION_WIRE)
    assert report.flags == {"lock_open", "lock_cut"}
    assert report.alarms == {"lock_cut"}
    assert codec.encode_position(report) == POSITION_WIRE


def test_flag_mapping_is_validated() -> None:
    with pytest.raises(ValueError, match="0-31"):
        Jt808Codec(flags={"x": ("status", 32)})
    with pytest.raises(ValueError, match="0-31"):
        Jt808Codec(flags={"x": ("other", 1)})
    with pytest.raises(ValueError, match="not in the flag mapping"):
        Jt808Codec(flags={"x": ("status", 1)}, alarm_flags={"y"})
    with pytest.raises(ValueError, match="not in the flag mapping"):
        Jt808Codec().encode_location(terminal="1", serial=1, lat=0, lon=0, device_time=None,
                                     flags={"nope"})  # fmt: skip


def test_general_response_bytes() -> None:
    codec = Jt808Codec()
    # 0x8001 | props 5 | same phone | platform serial 0 | body: reply serial 00 7E (escaped),
    # reply id 02 00, result 0 | check C8.
    assert codec.general_response(POSITION_DECODED) == bytes.fromhex(
        "7E 8001 0005 013912345678 0000 007D02 0200 00 C8 7E"
    )
    # The platform serial counts up; result 4 confirms alarm handling.
    assert codec.general_response(POSITION_DECODED, jt808.RESULT_ALARM_CONFIRMED) == (
        bytes.fromhex("7E 8001 0005 013912345678 0001 007D02 0200 04 CD 7E")
    )


def test_registration_response_bytes() -> None:
    registration = Jt808Message(
        msg_id=0x0100, terminal="013912345678", serial=0x12, body=b"", at=AT
    )
    assert Jt808Codec().registration_response(registration, auth_code="AUTH01") == (
        bytes.fromhex("7E 8100 0009 013912345678 0000 0012 00 415554483031 A3 7E")
    )


@pytest.mark.parametrize(
    ("msg_id", "body"),
    [(jt808.HEARTBEAT, b""), (jt808.AUTHENTICATION, b"AUTH01"), (jt808.REGISTRATION, b"\x00" * 37)],
)
def test_other_messages_are_generic(msg_id: int, body: bytes) -> None:
    message = one(Jt808Codec(), jt808.encode(msg_id, "013912345678", 9, body))
    assert message == Jt808Message(
        msg_id=msg_id, terminal="013912345678", serial=9, body=body, at=AT
    )


def test_split_or_encrypted_location_reports_are_not_decoded() -> None:
    split = one(Jt808Codec(), jt808.encode(0x0200, "1", 2, BODY[:10], packet=(3, 1)))
    assert split == Jt808Message(
        msg_id=0x0200, terminal="000000000001", serial=2, body=BODY[:10], packet=(3, 1), at=AT
    )
    encrypted = one(Jt808Codec(), jt808.encode(0x0200, "1", 2, BODY, encryption=1))
    assert isinstance(encrypted, Jt808Message)
    assert encrypted.encryption == 1


def jt_wire(content: bytes, check: int | None = None) -> bytes:
    """Frame unescaped ``content`` with its XOR (or ``check``), escaping by hand."""
    content += bytes([reduce(operator.xor, content, 0) if check is None else check])
    escaped = content.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")
    return b"\x7e" + escaped + b"\x7e"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (jt_wire(HEADER + BODY, check=0x00), "check code 0x00, computed 0x7E"),
        (b"\x7e\x02\x00\x7d\x03\x7e", "bad escape 0x7D followed by 0x03"),
        (b"\x7e\x02\x00\x7d\x7e", "bad escape 0x7D followed by end of frame"),
        (jt_wire(HEADER + BODY[:-1]), "body is 40 bytes, header says 41"),
        (jt_wire(HEADER[:2] + b"\x00\x1b" + HEADER[4:] + BODY[:27]), "needs 28"),
        (jt_wire(HEADER[:2] + b"\x00\x1f" + HEADER[4:] + BODY[:28] + b"\x01\x04\x00"), "overruns"),
        (jt_wire(HEADER[:2] + b"\x00\x1d" + HEADER[4:] + BODY[:29]), "has no length"),
        (jt_wire(HEADER[:4] + bytes.fromhex("0139123456A8") + HEADER[10:] + BODY), "not BCD"),
        (jt_wire(HEADER + BODY[:22] + bytes.fromhex("251314183045") + BODY[28:]), "not a date"),
        (jt_wire(HEADER + BODY[:22] + bytes.fromhex("2503141830A5") + BODY[28:]), "not BCD"),
        (jt_wire(HEADER[:2] + b"\x40\x29" + HEADER[4:] + BODY), "2019"),
        (jt_wire(HEADER[:5]), "too short"),
        (jt_wire(HEADER[:2] + b"\x20\x29" + HEADER[4:]), "subpackage header truncated"),
    ],
)
def test_jt808_errors_then_resync(wire: bytes, message: str) -> None:
    items = feed_bytewise(Jt808Codec(), wire + POSITION_WIRE)
    assert len(errors(items)) == 1, items
    assert message in str(items[0])
    assert messages(items) == [POSITION_DECODED]


def test_noise_before_the_first_flag_is_one_error() -> None:
    codec = Jt808Codec()
    assert codec.feed(b"AT+CSQ\r\n", AT) == []  # nothing to say until a flag arrives
    items = feed_bytewise(codec, POSITION_WIRE)
    assert "8 bytes of noise" in str(items[0])
    assert messages(items) == [POSITION_DECODED]


def test_shared_and_doubled_flags() -> None:
    shared = POSITION_WIRE + POSITION_WIRE[1:]  # one flag ends a frame and starts the next
    assert feed_bytewise(Jt808Codec(), shared) == [POSITION_DECODED] * 2
    doubled = POSITION_WIRE + b"\x7e" + POSITION_WIRE
    assert feed_bytewise(Jt808Codec(), doubled) == [POSITION_DECODED] * 2


def test_overlong_run_is_one_error_and_the_buffer_stays_bounded() -> None:
    codec = Jt808Codec()
    flood = b"\x7e" + b"\x55" * (MAX_CONTENT + 500)
    out = feed_in_chunks(codec, flood + POSITION_WIRE, list(range(0, len(flood), 333)))
    assert len(errors(out)) == 1
    assert f"more than {MAX_CONTENT}" in str(out[0])
    assert messages(out) == [POSITION_DECODED]


def test_encode_rejects_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="12 decimal digits"):
        jt808.encode(2, "1234567890123", 1, b"")
    with pytest.raises(ValueError, match="10-bit length"):
        jt808.encode(2, "1", 1, bytes(1024))
    with pytest.raises(ValueError, match="time zone"):
        Jt808Codec().encode_location(
            terminal="1", serial=1, lat=0, lon=0, device_time=datetime(2025, 1, 1)
        )


# -- JT/T 808: properties ------------------------------------------------------------------

TERMINALS = st.text("0123456789", min_size=12, max_size=12)
DEVICE_TIMES = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
EXTRAS = st.lists(st.tuples(BYTE, st.binary(max_size=8)), max_size=4).map(tuple)


@st.composite
def locations(draw: st.DrawFn, codec: Jt808Codec) -> dict[str, Any]:
    """Keyword arguments for ``encode_location`` at the wire's own resolution."""
    lat = draw(st.integers(0, 90_000_000)) / 1e6
    lon = draw(st.integers(0, 180_000_000)) / 1e6
    return {
        "terminal": draw(TERMINALS),
        "serial": draw(st.integers(0, 0xFFFF)),
        "lat": -lat if draw(st.booleans()) else lat,
        "lon": -lon if draw(st.booleans()) else lon,
        "device_time": draw(DEVICE_TIMES),
        "altitude_m": draw(st.integers(0, 0xFFFF)),
        "speed_kmh": draw(st.integers(0, 0xFFFF)) / 10,
        "heading_deg": draw(st.integers(0, 359)),
        "located": draw(st.booleans()),
        "flags": draw(st.frozensets(st.sampled_from(sorted(codec.flags)))),
        "alarm_bits": draw(st.integers(0, 0xFFFF_FFFF)),
        "status_bits": draw(st.integers(0, 0xFFFF_FFFF)),
        "extras": draw(EXTRAS),
    }


@FUZZ
@given(data=st.data())
def test_location_round_trip(data: st.DataObject) -> None:
    codec = Jt808Codec()
    kwargs = data.draw(locations(codec))
    wire = codec.encode_location(**kwargs)
    report = one(codec, wire)
    assert isinstance(report, PositionReported)
    for field in ("terminal", "serial", "lat", "lon", "device_time", "altitude_m", "speed_kmh",
                  "heading_deg", "located", "flags", "extras"):  # fmt: skip
        assert getattr(report, field) == kwargs[field], field
    assert report.alarms == kwargs["flags"] & codec.alarm_flags
    assert codec.encode_position(report) == wire


JT_MESSAGES = st.builds(
    jt808.encode,
    st.sampled_from([jt808.HEARTBEAT, jt808.REGISTRATION, jt808.AUTHENTICATION, 0x0704]),
    TERMINALS,
    st.integers(0, 0xFFFF),
    st.binary(max_size=60),
)


def jt_frames(codec: Jt808Codec) -> st.SearchStrategy[bytes]:
    return st.one_of(locations(codec).map(lambda kw: codec.encode_location(**kw)), JT_MESSAGES)


def decode_each(make: Callable[[], Jt808Codec], frames: list[bytes]) -> list[Any]:
    return [one(make(), f) for f in frames]


@FUZZ
@given(data=st.data())
def test_jt808_stream_decodes_the_same_in_any_chunking(data: st.DataObject) -> None:
    frames = data.draw(st.lists(jt_frames(Jt808Codec()), min_size=1, max_size=5), label="frames")
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    expected = decode_each(Jt808Codec, frames)
    assert not errors(expected)
    assert Jt808Codec().feed(stream, AT) == expected
    assert feed_in_chunks(Jt808Codec(), stream, cuts) == expected


@FUZZ
@given(
    garbage=st.binary(max_size=400) | st.lists(st.sampled_from(b"\x7e\x7d\x01\x02\x00")).map(bytes),
    cuts=st.lists(st.integers(0, 400), max_size=30),
)
def test_jt808_garbage_never_raises(garbage: bytes, cuts: list[int]) -> None:
    chunked = feed_in_chunks(Jt808Codec(), garbage, cuts)
    # The XOR check is one byte, so garbage may hold a genuine frame (seven zero bytes
    # between flags are a valid message 0x0000): anything but a FrameError must be one.
    for item in chunked:
        assert isinstance(item, FrameError | PositionReported | Jt808Message)
    if b"\x7e" not in garbage:
        assert chunked == []
    assert summary(chunked) == summary(Jt808Codec().feed(garbage, AT))


@FUZZ
@given(data=st.data())
def test_jt808_frames_after_garbage_still_decode(data: st.DataObject) -> None:
    frames = data.draw(st.lists(jt_frames(Jt808Codec()), min_size=1, max_size=4), label="frames")
    garbage = data.draw(st.lists(st.binary(max_size=40), min_size=len(frames),
                                 max_size=len(frames)), label="garbage")  # fmt: skip
    stream = b"".join(g + f for g, f in zip(garbage, frames, strict=True))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    out = feed_in_chunks(Jt808Codec(), stream, cuts)
    expected = decode_each(Jt808Codec, frames)
    # Every frame brings its own flags, so garbage in front cannot hide it; garbage that
    # happens to hold a valid frame adds one (hence a subsequence, checked in order).
    remaining = iter(messages(out))
    assert all(any(item == got for got in remaining) for item in expected)
    if all(b"\x7e" not in g for g in garbage):
        assert messages(out) == expected


def test_gmt8_is_eight_hours_ahead_of_utc() -> None:
    codec = Jt808Codec()
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    wire = codec.encode_location(terminal="1", serial=1, lat=0, lon=0, device_time=midnight)
    assert bytes.fromhex("250601080000") in wire  # 08:00 GMT+8
    assert one(codec, wire).device_time == midnight
