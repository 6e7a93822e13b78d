"""E-seal wire codecs, byte by byte: the gate reader frame and JT/T 808, plus fuzzing.

Vectors are written out by hand from the layouts in the codec docstrings (reader; the
Hi-G-Tek manual's own frames are in tests/conformance) and
JT/T 808-2013 §4.4 / §8.18 (e-locks); CRC values come from an independent bit-by-bit
CRC below, itself pinned to the catalogued "123456789" check values. The hypothesis
properties are what the driver relies on: chunking never changes the result, garbage
never raises, and good frames after garbage still decode.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import reduce
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.eseal import codec_jt808 as jt808
from drivers.eseal.codec_jt808 import (
    MAX_CONTENT,
    PROTOCOL_VERSION_2019,
    FlagBit,
    Jt808Codec,
    preset_flags,
)
from drivers.eseal.codec_reader import EVENTS, MAX_FRAME, Layout, SealReaderCodec
from drivers.eseal.crc import crc16_ccitt
from drivers.eseal.readings import (
    AlertAcked,
    HostCommand,
    Jt808Message,
    NoSealInRange,
    PositionReported,
    ReaderReply,
    ReadRequested,
    SealAlert,
    SealRead,
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
# Hi-G-Tek layout (codec docstring; the manual's own frames are in tests/conformance):
# STX | #B (2) | R# (2) | CMND/MSGT (2) | [R_status (2)] | DATA | CRC (2) | ETX, the CRC
# over #B .. DATA. Seal id TF 4848 + TID 1010102F.

SEAL = bytes.fromhex("48481010102F")


def hgt_frame(reader: int, code: int, data: bytes, status: int | None = None,
              init: int = 0xFFFF, *, skip_address: bool = False) -> bytes:  # fmt: skip
    """A frame built field by field, its CRC from the bitwise reference."""
    head = (2 + 2 + (0 if status is None else 2) + len(data) + 2).to_bytes(2, "big")
    fields = reader.to_bytes(2, "big") + code.to_bytes(2, "big")
    if status is not None:
        fields += status.to_bytes(2, "big")
    covered = head + (fields[2:] if skip_address else fields) + data
    crc = crc_bitwise(covered, init)
    return b"\x02" + head + fields + data + crc.to_bytes(2, "big") + b"\x03"


def results(*records: bytes, status: int = 0, init: int = 0xFFFF) -> bytes:
    """A Get Results answer (MSGT 8015h) in one packet (PK 1, P# 1)."""
    return hgt_frame(7, 0x8015, b"\x01\x01" + b"".join(records), status, init)


def verify_record(status: int, seal: bytes = SEAL, extra: bytes = b"") -> bytes:
    body = seal + bytes([0x10, status]) + extra
    return bytes([len(body) + 1]) + body


def alert_frame(short: int, burst: int = 0x7A, tail: bytes = b"", init: int = 0xFFFF) -> bytes:
    record = SEAL + bytes([burst, short]) + tail
    return hgt_frame(7, 0x800A, bytes([1, len(record) + 1]) + record, 0, init)


RECORD = results(verify_record(0xA1))  # opened + tampered + approved open
RECORD_DECODED = SealRead(
    seal_id="48481010102F", opened=True, tampered=True, approved_open=True, reader=7, at=AT
)
EVENT_TAIL = bytes([5, 4]) + (1741948245).to_bytes(4, "big")  # EV# 5, code 4 opened, T0
ALERT = alert_frame(0xA0, tail=EVENT_TAIL)
ALERT_DECODED = SealAlert(
    seal_id="48481010102F", event="opened", opened=True, tampered=True, event_time=T0,
    sequence=5, event_code=4, burst=0x7A, channel=1, reader=7, at=AT,
)  # fmt: skip


def test_vectors_have_the_manuals_shape() -> None:
    assert RECORD[:9] == bytes.fromhex("02 0013 0007 8015 0000")
    assert len(RECORD) == int.from_bytes(RECORD[1:3], "big") + 4
    assert ALERT[:11] == bytes.fromhex("02 0018 0007 800A 0000 01 0F")


def test_seal_record_byte_by_byte() -> None:
    assert one(SealReaderCodec(), RECORD) == RECORD_DECODED


def test_seal_record_encodes_to_the_same_bytes() -> None:
    assert SealReaderCodec().encode_read(RECORD_DECODED) == RECORD


@pytest.mark.parametrize("init", [0x0000, 0x1D0F])
def test_crc_start_value_is_configurable(init: int) -> None:
    frame = results(verify_record(0xA1), init=init)
    assert one(SealReaderCodec(crc_init=init), frame) == RECORD_DECODED
    assert SealReaderCodec(crc_init=init).encode_read(RECORD_DECODED) == frame
    wrong = one(SealReaderCodec(), frame)
    assert isinstance(wrong, FrameError) and "CRC mismatch" in str(wrong)


def test_layout_without_the_address_in_the_crc() -> None:
    frame = hgt_frame(7, 0x8015, b"\x01\x01" + verify_record(0xA1), 0, skip_address=True)
    codec = SealReaderCodec(layout="hgt-no-address")
    assert one(codec, frame) == RECORD_DECODED
    assert codec.encode_read(RECORD_DECODED) == frame
    assert isinstance(one(SealReaderCodec(), frame), FrameError)
    # Host frames cover R# in either layout ([P] 6.4.1).
    assert codec.ack_for(ALERT_DECODED) == SealReaderCodec().ack_for(ALERT_DECODED)
    with pytest.raises(ValueError, match="layout"):
        SealReaderCodec(layout="simple")  # type: ignore[arg-type]


def test_alert_byte_by_byte_and_its_ack() -> None:
    codec = SealReaderCodec()
    assert one(codec, ALERT) == ALERT_DECODED
    assert codec.encode_alert(ALERT_DECODED) == ALERT
    ack = codec.ack_for(ALERT_DECODED)
    assert ack == hgt_frame(7, 0x000A, b"")
    assert one(SealReaderCodec(), ack) == AlertAcked(reader=7, at=AT)


def test_plain_alert_records_name_their_event_from_burst_and_status() -> None:
    codec = SealReaderCodec()
    opened = one(codec, alert_frame(0xA0))
    assert (opened.event, opened.event_time, opened.sequence, opened.alarm) == (
        "opened", None, None, True)  # fmt: skip
    assert codec.encode_alert(opened) == alert_frame(0xA0)
    assert one(codec, alert_frame(0x88)).event == "wire_tampered"
    assert one(codec, alert_frame(0x80, burst=0x79)).event == "closed"
    assert one(codec, alert_frame(0x10, burst=0x79)).event == "sealed"  # suspended set ran
    with_org = one(codec, alert_frame(0xA1, tail=b"\x00\x12\x34"))  # ORG_ID, not decoded
    assert (with_org.event, with_org.alarm) == ("opened", False)
    nameless = one(codec, alert_frame(0x00, burst=0x78))
    assert isinstance(nameless, FrameError) and "names no event" in str(nameless)


def test_no_seal_detected() -> None:
    codec = SealReaderCodec()
    frame = results(b"\x00")
    assert one(codec, frame) == NoSealInRange(reader=7, at=AT)
    assert codec.encode_no_seal(NoSealInRange(reader=7, at=AT)) == frame


def test_get_results_and_verify_requests() -> None:
    codec = SealReaderCodec()
    assert codec.read_request(7) == hgt_frame(7, 0x0015, b"\x01")
    assert one(codec, codec.read_request(7, 2)) == ReadRequested(reader=7, channel=2, at=AT)
    verify = codec.verify_request(7)
    assert verify == hgt_frame(7, 0x0020, bytes.fromhex("01 05 10 02 8000"))
    assert one(codec, verify) == HostCommand(command=0x20, reader=7, data=verify[7:-3], at=AT)


def test_records_across_packets_and_several_seals() -> None:
    other = bytes.fromhex("1D2A00000001")
    records = verify_record(0x00) + verify_record(0x40, other)
    first = hgt_frame(7, 0x8015, b"\x02\x01" + records[:5], 0)
    second = hgt_frame(7, 0x8015, b"\x02\x02" + records[5:], 0)
    codec = SealReaderCodec()
    assert codec.feed(first, AT) == []
    decoded = codec.feed(second, AT)
    reads = [r for r in decoded if isinstance(r, SealRead)]
    assert reads == decoded, "every item is a seal read"
    assert [(r.seal_id, r.low_battery) for r in reads] == [
        ("48481010102F", False), ("1D2A00000001", True)]  # fmt: skip
    lone = SealReaderCodec().feed(second, AT)
    assert len(lone) == 1 and "out of sequence" in str(lone[0])


@pytest.mark.parametrize(
    ("status", "field"),
    [(0x80, "tampered"), (0x40, "low_battery"), (0x20, "opened"), (0x10, "suspended_set"),
     (0x08, "wire_changed"), (0x01, "approved_open")],
)  # fmt: skip
def test_short_status_bits(status: int, field: str) -> None:
    read = one(SealReaderCodec(), results(verify_record(status)))
    flags = ("opened", "tampered", "low_battery", "wire_changed", "approved_open", "suspended_set")
    assert {f for f in flags if getattr(read, f)} == {field}


def test_unnamed_status_bits_and_longer_results_are_passed_over() -> None:
    read = one(SealReaderCodec(), results(verify_record(0x06, extra=b"\x33\x09\x93\x01")))
    assert read == replace(RECORD_DECODED, opened=False, tampered=False, approved_open=False)


@pytest.mark.parametrize(
    ("status", "alarm"),
    [
        (0x00, False),
        (0xA0, True),  # opened (and so tampered) without approval
        (0xA1, False),  # approved open: an allowed tampered state
        (0x80, True),  # latched tamper
        (0x81, False),  # approved, wire closed again
        (0xB0, False),  # open wire while a suspended set waits for it
        (0x88, True),  # wire resistance changed
        (0x89, True),  # ... approval does not cover a shorted wire
    ],
)
def test_read_alarm_semantics(status: int, alarm: bool) -> None:
    assert one(SealReaderCodec(), results(verify_record(status))).alarm is alarm


@pytest.mark.parametrize(
    ("code", "short", "event", "alarm"),
    [
        (4, 0xA0, "opened", True),
        (4, 0xA1, "opened", False),
        (4, 0x00, "opened", True),  # the event says opened even if the status lags
        (2, 0x88, "wire_tampered", True),
        (5, 0x00, "closed", False),
        (5, 0x81, "closed", False),
        (1, 0x00, "sealed", False),
        (7, 0x00, "sealed", False),  # soft set is a seal event, not a bad frame
        (0x0C, 0x10, "sealed", False),  # suspended set
        (3, 0x40, "low_battery", False),
    ],
)
def test_alert_events_and_alarm_semantics(code: int, short: int, event: str, alarm: bool) -> None:
    tail = bytes([9, code]) + (1741948245).to_bytes(4, "big")
    alert = one(SealReaderCodec(), alert_frame(short, tail=tail))
    assert (alert.event, alert.event_code, alert.alarm) == (event, code, alarm)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x02\x00\x05" + b"\x00" * 8, "bad byte count 5"),
        (b"\x02\x04\x01" + b"\x00" * 8, "bad byte count 1025"),
        (hgt_frame(7, 0x0033, b""), "unknown command 0x0033"),
        (hgt_frame(7, 0x4015, b"\x00\x00"), "unknown command 0x4015"),
        (hgt_frame(7, 0x8030, b"\x00\x00"), "unknown message type 0x8030"),
        (hgt_frame(7, 0x9015, b"\x00\x00"), "unknown message type 0x9015"),
        (RECORD[:-1] + b"\x04", "missing ETX"),
        (RECORD[:-3] + b"\x00\x00\x03", "CRC mismatch"),
    ],
)
def test_framing_errors_then_resync(frame: bytes, message: str) -> None:
    items = feed_bytewise(SealReaderCodec(), frame + RECORD)
    assert message in str(errors(items)[0])
    assert messages(items)[-1] == RECORD_DECODED


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (alert_frame(0xA0, burst=0x55), "unknown burst type 0x55"),
        (alert_frame(0xA0, tail=bytes([1, 0x0A, 0, 0, 0, 0])), "event code 0x0A"),
        (alert_frame(0xA0, tail=b"\x01"), "fits no seal record"),
        (hgt_frame(7, 0x800A, b"\x01\x09" + SEAL + b"\x7a", 0), "#B 9 but 8 bytes"),
        (results(b"\x00", b"\x00"), "#B = 0 record among others"),
        (results(b"\x04\x01\x02\x03"), "does not fit"),
        (results(verify_record(0x00)[:-2] + b"\x90\x00"), "reported a problem"),
        (hgt_frame(7, 0x8015, b"\x01\x02" + verify_record(0), 0), "packet 2 of 1"),
    ],
)
def test_bad_data_with_good_crc_is_one_error(frame: bytes, message: str) -> None:
    items = feed_bytewise(SealReaderCodec(), frame + RECORD)
    assert len(errors(items)) == 1 and message in str(errors(items)[0])
    assert messages(items) == [RECORD_DECODED]


def test_truncated_frame_then_resync() -> None:
    items = feed_bytewise(SealReaderCodec(), ALERT[:14] + RECORD)
    assert errors(items) and messages(items) == [RECORD_DECODED]


def test_noise_before_a_frame_is_one_error() -> None:
    items = feed_bytewise(SealReaderCodec(), b"\x30\x31garbage\r\n" + RECORD)
    assert [str(e) for e in errors(items)] == ["seal reader: 11 bytes of noise before STX"]
    assert messages(items) == [RECORD_DECODED]


def test_other_well_formed_answers_are_generic() -> None:
    not_ready = one(SealReaderCodec(), hgt_frame(7, 0x8015, b"\x05", 0x8000))
    assert not_ready == ReaderReply(message=0x8015, reader=7, reader_status=0x8000,
                                    data=b"\x05", at=AT)  # fmt: skip


def test_encoders_reject_what_does_not_fit() -> None:
    codec = SealReaderCodec()
    with pytest.raises(ValueError, match="12 hex digits"):
        codec.encode_read(replace(RECORD_DECODED, seal_id="HG0012ABCD"))
    with pytest.raises(ValueError, match="12 hex digits"):
        codec.encode_read(replace(RECORD_DECODED, seal_id="48481010102G"))
    with pytest.raises(ValueError, match="R#"):
        codec.encode_read(replace(RECORD_DECODED, reader=0x10000))
    with pytest.raises(ValueError, match="time zone"):
        codec.encode_alert(replace(ALERT_DECODED, event_time=datetime(2025, 1, 1)))
    with pytest.raises(ValueError, match="sequence"):
        codec.encode_alert(replace(ALERT_DECODED, sequence=256))
    with pytest.raises(ValueError, match="do not fit #B"):
        codec.frame(1, 0x8015, bytes(0x400))


# -- gate reader: properties ---------------------------------------------------------------

SEAL_IDS = st.binary(min_size=6, max_size=6).map(lambda b: b.hex().upper())
TIMES = st.integers(0, 0xFFFF_FFFF).map(lambda s: datetime.fromtimestamp(s, UTC))
BYTE = st.integers(0, 255)
WORD = st.integers(0, 0xFFFF)

SEAL_READS = st.builds(
    SealRead,
    seal_id=SEAL_IDS, opened=st.booleans(), tampered=st.booleans(), low_battery=st.booleans(),
    wire_changed=st.booleans(), approved_open=st.booleans(), suspended_set=st.booleans(),
    reader=WORD, reader_status=WORD, at=st.just(AT),
)  # fmt: skip


@st.composite
def seal_alerts(draw: st.DrawFn) -> SealAlert:
    code = draw(st.sampled_from(sorted(EVENTS)))
    return SealAlert(
        seal_id=draw(SEAL_IDS), event=EVENTS[code], event_code=code, opened=draw(st.booleans()),
        tampered=draw(st.booleans()), low_battery=draw(st.booleans()),
        wire_changed=draw(st.booleans()), approved_open=draw(st.booleans()),
        suspended_set=draw(st.booleans()), event_time=draw(TIMES), sequence=draw(BYTE),
        burst=draw(st.sampled_from([0x77, 0x78, 0x79, 0x7A])), channel=draw(BYTE),
        reader=draw(WORD), reader_status=draw(WORD), at=AT,
    )  # fmt: skip


NO_SEALS = st.builds(NoSealInRange, reader=WORD, reader_status=WORD, at=st.just(AT))
CRC_INITS = st.sampled_from([0xFFFF, 0x0000, 0x1D0F])
LAYOUT_NAMES = st.sampled_from(["hgt", "hgt-no-address"])


def reader_wire(codec: SealReaderCodec, item: Any) -> tuple[bytes, list[Any]]:
    """Bytes for one generated item and what decoding them must give back."""
    if isinstance(item, SealRead):
        return codec.encode_read(item), [item]
    if isinstance(item, SealAlert):  # the reader's alert, then the host's ack of it
        return codec.encode_alert(item) + codec.ack_for(item), [
            item, AlertAcked(reader=item.reader, at=AT)]  # fmt: skip
    assert isinstance(item, NoSealInRange)
    return codec.encode_no_seal(item) + codec.read_request(item.reader), [
        item,
        ReadRequested(reader=item.reader, at=AT),
    ]


READER_ITEMS = st.lists(st.one_of(SEAL_READS, seal_alerts(), NO_SEALS), min_size=1, max_size=5)


@FUZZ
@given(data=st.data(), init=CRC_INITS, layout=LAYOUT_NAMES)
def test_reader_stream_decodes_the_same_in_any_chunking(
    data: st.DataObject, init: int, layout: Layout
) -> None:
    codec = SealReaderCodec(crc_init=init, layout=layout)
    items = data.draw(READER_ITEMS, label="items")
    wires = [reader_wire(codec, i) for i in items]
    stream = b"".join(w for w, _ in wires)
    expected = [m for _, ms in wires for m in ms]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    whole = SealReaderCodec(crc_init=init, layout=layout).feed(stream, AT)
    assert whole == expected
    assert feed_in_chunks(SealReaderCodec(crc_init=init, layout=layout), stream, cuts) == expected


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
        (b"\x7e\x02\x00\x7d\x7d\x7e", "bad escape 0x7D followed by 0x7D"),
        (jt_wire(HEADER + BODY[:-1]), "body is 40 bytes, header says 41"),
        (jt_wire(HEADER[:2] + b"\x00\x1b" + HEADER[4:] + BODY[:27]), "needs 28"),
        (jt_wire(HEADER[:4] + bytes.fromhex("0139123456A8") + HEADER[10:] + BODY), "not BCD"),
        (jt_wire(HEADER + BODY[:22] + bytes.fromhex("251314183045") + BODY[28:]), "not a date"),
        (jt_wire(HEADER + BODY[:22] + bytes.fromhex("2503141830A5") + BODY[28:]), "not BCD"),
        (jt_wire(HEADER[:2] + b"\x40\x28" + HEADER[4:] + BODY), "2019 header; nor a 2013"),
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


# -- JT/T 808: 2019 headers, tolerated quirks, flag presets -------------------------------

# The same report in a 2019 header (§4.4): properties 0x4029 (bit 14 = version flag) |
# protocol version 01 | phone BCD[10] 00000000013912345678 | serial 0x007E (escaped).
HEADER_2019 = bytes.fromhex("0200 4029 01 00000000013912345678 007E")
TERMINAL_2019 = "00000000013912345678"


def test_a_2019_report_decodes_and_is_answered_in_2019() -> None:
    codec = Jt808Codec()
    report = one(codec, jt_wire(HEADER_2019 + BODY))
    assert isinstance(report, PositionReported)
    assert (report.terminal, report.version, report.protocol) == (TERMINAL_2019, 1, "2019")
    assert report.summary()["protocol"] == "2019"
    assert (report.lat, report.lon, report.flags) == (22.543096, 114.057865, POSITION_DECODED.flags)
    assert codec.encode_position(report) == jt_wire(HEADER_2019 + BODY)
    # 0x8001 | props 0x4005 | version 01 | the terminal's 20 digits | serial 0 | body.
    reply = bytes.fromhex("8001 4005 01 00000000013912345678 0000 007E 0200 00")
    assert codec.general_response(report) == jt_wire(reply)


def test_2013_and_2019_registration_responses_follow_the_terminal() -> None:
    codec = Jt808Codec()
    old = one(codec, jt808.encode(0x0100, "013912345678", 0x12, b"\x00" * 37))
    new = one(codec, jt808.encode(0x0100, TERMINAL_2019, 0x12, b"\x00" * 76, version=1))
    assert (old.protocol, new.protocol) == ("2013", "2019")
    assert codec.registration_response(old, auth_code="A") == jt_wire(
        bytes.fromhex("8100 0004 013912345678 0000 0012 00 41")
    )
    assert codec.registration_response(new, auth_code="A") == jt_wire(
        bytes.fromhex("8100 4004 01 00000000013912345678 0001 0012 00 41")
    )


def test_a_2013_frame_with_reserved_bit_14_is_read_as_2013() -> None:
    codec = Jt808Codec()
    wire = jt_wire(HEADER[:2] + b"\x40\x29" + HEADER[4:] + BODY)
    report = one(codec, wire)
    assert report == replace(POSITION_DECODED, quirks=frozenset({"reserved_bit14"}))
    assert report.protocol == "2013"
    assert codec.general_response(report) == bytes.fromhex(
        "7E 8001 0005 013912345678 0000 007D02 0200 00 C8 7E"
    ), "answered in 2013, without the stray bit"


def test_a_frame_fitting_the_2019_layout_is_2019_even_if_2013_would_not_fit() -> None:
    # 2013 reading of a 2019 frame: 5 bytes more body than declared; the 2019 one fits.
    report = one(Jt808Codec(), jt_wire(HEADER_2019 + BODY))
    assert report.quirks == frozenset()


def test_a_lone_0x7d_before_the_closing_flag_is_tolerated() -> None:
    content = bytes.fromhex("0002 0000 000000000679 0000")  # XOR = 0x7D, left unescaped
    assert reduce(operator.xor, content) == 0x7D
    items = feed_bytewise(Jt808Codec(), b"\x7e" + content + b"\x7d\x7e" + POSITION_WIRE)
    assert items[0] == Jt808Message(
        msg_id=2, terminal="000000000679", serial=0, body=b"",
        quirks=frozenset({"lone_escape"}), at=AT,
    )  # fmt: skip
    assert items[1:] == [POSITION_DECODED]
    # Anywhere else a lone 0x7D is still an error, and a wrong check still is too.
    assert "bad escape" in str(one(Jt808Codec(), b"\x7e\x02\x7d\x00" + content + b"\x7e"))
    bad = one(Jt808Codec(), b"\x7e" + content[:-1] + b"\x01\x7d\x7e")
    assert "check code 0x7D" in str(bad)


@pytest.mark.parametrize(
    ("trailer", "extras"),
    [
        (b"\x01\x04\x00", ()),  # declares 4 bytes, 1 left
        (b"\x30\x01\x1f\xf6\x04\x14\x50", ((0x30, b"\x1f"),)),  # a good item, then a bad one
        (b"\x01", ()),  # an id without a length
    ],
)
def test_an_overrunning_item_is_set_aside_and_the_report_kept(
    trailer: bytes, extras: tuple[tuple[int, bytes], ...]
) -> None:
    body = BODY[:28] + trailer
    header = HEADER[:2] + bytes([0, len(body)]) + HEADER[4:]
    report = one(Jt808Codec(), jt_wire(header + body))
    assert isinstance(report, PositionReported)
    assert report.alarms == {"emergency", "gnss_fault"}, "alarm and status words kept"
    assert report.alarm_bits == 0x11 and report.status_bits == 0x3003
    assert report.extras == extras
    assert report.set_aside == trailer[sum(2 + len(v) for _, v in extras) :]
    assert report.quirks == {"item_set_aside"}
    assert Jt808Codec().encode_position(report) == jt_wire(header + body)


def test_alarm_bit_17_is_named_only_by_a_vendor_preset() -> None:
    body = bytes.fromhex("00020000") + BODY[4:28]  # alarm bit 17 only
    wire = jt_wire(HEADER_2019[:2] + b"\x40\x1c" + HEADER_2019[4:] + body)
    report = one(Jt808Codec(), wire)
    assert report.alarm_bits == 1 << 17
    assert report.flags == {"acc_on", "locked", "door_open"}, "bit 17 has no default name"
    assert not report.alarm, "2019: a right-turn blind-spot warning, not a tamper"
    example = Jt808Codec(flags=preset_flags("example-elock"))
    assert one(example, wire).alarms == {"lock_cut"}, "only when configured"
    assert "lock_cut" not in jt808.DEFAULT_FLAGS
    with pytest.raises(ValueError, match="unknown flags preset 'acme'"):
        preset_flags("acme")
    assert preset_flags("none", {"lock_open": ("status", 20)}) == {"lock_open": ("status", 20)}


def test_encode_rejects_a_2019_phone_too_long() -> None:
    with pytest.raises(ValueError, match="20 decimal digits"):
        jt808.encode(2, "1" * 21, 1, b"", version=PROTOCOL_VERSION_2019)


# -- JT/T 808: properties ------------------------------------------------------------------

TERMINALS = st.text("0123456789", min_size=12, max_size=12)
TERMINALS_2019 = st.text("0123456789", min_size=20, max_size=20)
DEVICE_TIMES = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
EXTRAS = st.lists(st.tuples(BYTE, st.binary(max_size=8)), max_size=4).map(tuple)


@st.composite
def locations(draw: st.DrawFn, codec: Jt808Codec) -> dict[str, Any]:
    """Keyword arguments for ``encode_location`` at the wire's own resolution."""
    lat = draw(st.integers(0, 90_000_000)) / 1e6
    lon = draw(st.integers(0, 180_000_000)) / 1e6
    version = draw(st.none() | st.integers(0, 255))
    return {
        "version": version,
        "terminal": draw(TERMINALS if version is None else TERMINALS_2019),
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
                  "heading_deg", "located", "flags", "extras", "version"):  # fmt: skip
        assert getattr(report, field) == kwargs[field], field
    assert report.alarms == kwargs["flags"] & codec.alarm_flags
    assert codec.encode_position(report) == wire


JT_IDS = st.sampled_from([jt808.HEARTBEAT, jt808.REGISTRATION, jt808.AUTHENTICATION, 0x0704])
JT_MESSAGES = st.builds(
    jt808.encode, JT_IDS, TERMINALS, st.integers(0, 0xFFFF), st.binary(max_size=60)
) | st.builds(
    lambda *a: jt808.encode(*a, version=PROTOCOL_VERSION_2019),
    JT_IDS,
    TERMINALS_2019,
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
