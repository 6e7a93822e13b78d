"""The Hi-G-Tek DataReader's frames as its manuals draw them, byte for byte.

Sources (named in each test):

* [P] Hi-G-Tek DataReader User's Manual, chapter 6 "RS 485/232 Communication Protocol"
  (FCC IGRS46D916, manual pages 115-166).
* [U] Hi-G-Tek DataReader User Manual UM4710 rev A6 (FCC IGRS46D9916), chapters 7-8.

The manual draws every frame as its fields and their sizes and gives the fixed codes,
but no complete hex dump with a CRC. Each frame here is built from the page's field
list; what the page leaves open is ADJUSTED and said so in the test: the reader
address R# (we use 0001), the CRC start value (0xFFFF) and byte order (high byte
first), and values the page does not give. The CRC is computed by the bitwise
reference in tests/eseal/test_codecs.py, not by the codec. Deliberate disagreements
with the manual are tests too, named ``..._disagrees_...``, with the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from drivers.eseal import codec_reader as hgt
from drivers.eseal import readings as seal
from gateway.errors import FrameError
from gateway.readings import Stamp
from tests.eseal.test_codecs import crc_bitwise

AT = Stamp(mono=0.0, utc=datetime(2025, 3, 14, 10, 0, tzinfo=UTC))
R1 = b"\x00\x01"  # ADJUSTED: R# 0001 (the manual's layouts leave the address open)
SEAL_P104 = bytes.fromhex("48 48 10 10 10 2F")  # [U] 7, Verify example p.104: Seal ID


def wire(*fields: bytes, skip_address: bool = False) -> bytes:
    """STX | #B | fields (R# first) | CRC | ETX, #B counting fields and CRC ([P] 6.4.1/6.4.2).

    ADJUSTED: CRC start 0xFFFF, sent high byte first; covers #B .. last field (R# left out
    when ``skip_address``, as [P] 6.4.2 lists the reader frame's CRC fields).
    """
    body = b"".join(fields)
    count = (len(body) + 2).to_bytes(2, "big")
    covered = count + (body[2:] if skip_address else body)
    return b"\x02" + count + body + crc_bitwise(covered, 0xFFFF).to_bytes(2, "big") + b"\x03"


def decode(frame: bytes, layout: hgt.Layout = "hgt") -> list[hgt.Decoded]:
    return hgt.SealReaderCodec(layout=layout).feed(frame, AT)


def test_p119_6_4_1_host_frame_fields_and_byte_count() -> None:
    """[P] 6.4.1 p.119: STX | #B | R# | CMND | data | CRC | ETX, sizes 1 2 2 2 n 2 1; #B
    counts R#, CMND, DATA and CRC; STX = 02h, ETX = 03h. Frame: Get Status (6.5.5.4.1)."""
    frame = wire(R1, b"\x00\x16")
    assert frame[:7] == bytes.fromhex("02 0006 0001 0016") and frame[-1] == 0x03
    assert len(frame) == 1 + 2 + 2 + 2 + 2 + 1
    assert decode(frame) == [seal.HostCommand(command=0x0016, reader=1, data=b"", at=AT)]


def test_p153_6_5_5_4_2_get_status_response_disagrees_on_r_status_size() -> None:
    """[P] 6.5.5.4.2 p.153: STX | #B | R# | MSGT(xx16h) | R_status (4) | CRC | ETX.

    DISAGREEMENT: the codec reads R_status as the 2 bytes A and B of a general response
    ([P] 6.4.2.2 p.123) and leaves bytes C and D in ``data``: only the Get Status and BIT
    answers carry 4, and the driver sends neither. ADJUSTED: high byte 80h (p.86 shows
    8016h), status bytes A-D = 80 F0 00 00 (parameters unlocked, channels 1-4 in use).
    """
    frame = wire(R1, b"\x80\x16", bytes.fromhex("80 F0 00 00"))
    assert decode(frame) == [
        seal.ReaderReply(message=0x8016, reader=1, reader_status=0x80F0, data=b"\x00\x00", at=AT)
    ]


def test_p153_6_5_5_5_1_get_burst_message_command() -> None:
    """[P] 6.5.5.5.1 p.153: STX | #B | R# | CMND(001Ch) | Channel (1) | CRC | ETX."""
    frame = wire(R1, b"\x00\x1c", b"\x01")
    assert int.from_bytes(frame[1:3], "big") == 7
    assert decode(frame) == [seal.HostCommand(command=0x001C, reader=1, data=b"\x01", at=AT)]


def test_p159_6_5_5_11_1_unsynchronized_message_approved_opening() -> None:
    """[P] 6.5.5.11.1 p.159: STX | #B | R# | MSGT(800Ah) | R_status | Data | CRC | ETX with
    Data = Channel (1) | #B (1) | TF (2) | TID (4) | Command code (1) | Short status (1).

    ADJUSTED: channel 1, R_status 0000, TF/TID from [U] p.104, command code 7Ah (alert
    burst, [U] 8.5 p.214), short status A1h = tampered + opened + approved open, which
    [U] 8.2.1 p.171 calls an allowed tampered state: an event, not an alarm.
    """
    data = b"\x01\x09" + SEAL_P104 + b"\x7a\xa1"
    frame = wire(R1, b"\x80\x0a", b"\x00\x00", data)
    [alert] = decode(frame)
    assert isinstance(alert, seal.SealAlert)
    assert (alert.seal_id, alert.event, alert.burst, alert.channel) == (
        "48481010102F", "opened", 0x7A, 1)  # fmt: skip
    assert (alert.tampered, alert.opened, alert.approved_open) == (True, True, True)
    assert alert.alarm is False
    assert (alert.event_time, alert.sequence) == (None, None)  # the burst does not say


def test_p159_6_5_5_11_1_unsynchronized_message_with_org_id() -> None:
    """[P] 6.5.5.11.1 p.159: "ORG_ID is an option in the response" (3 bytes after the short
    status). ADJUSTED: ORG_ID 00 12 34 (not decoded), short status A0h (opened without
    approval: an alarm), command code 77h (old-format alert burst, [U] p.214)."""
    data = b"\x01\x0c" + SEAL_P104 + b"\x77\xa0" + b"\x00\x12\x34"
    [alert] = decode(wire(R1, b"\x80\x0a", b"\x00\x00", data))
    assert isinstance(alert, seal.SealAlert)
    assert (alert.event, alert.burst, alert.alarm) == ("opened", 0x77, True)


def test_p159_6_5_5_11_2_message_command_ack() -> None:
    """[P] 6.5.5.11.2 p.159: LSC > Reader STX | #B | R# | CMND(000Ah) | CRC | ETX."""
    frame = wire(R1, b"\x00\x0a")
    assert decode(frame) == [seal.AlertAcked(reader=1, at=AT)]
    alert = seal.SealAlert(seal_id="48481010102F", event="opened", opened=True, tampered=True,
                      reader=1, at=AT)  # fmt: skip
    assert hgt.SealReaderCodec().ack_for(alert) == frame


def test_p146_6_5_5_3_3_get_results_for_verify() -> None:
    """[P] 6.5.5.3.3 p.146 (record layout p.145): Data = PK | P# | seal records, a record
    #B (1, counting itself) | TF (2) | TID (4) | Message Type (10h) | results by mask.

    ADJUSTED: MSGT 8015h, PK = P# = 1, mask = Short Status only ([U] p.161, 8000h), so the
    results are the short status byte 00h ([U] p.104 shows Short Status 0).
    """
    record = b"\x09" + SEAL_P104 + b"\x10\x00"
    frame = wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01" + record)
    assert decode(frame) == [
        seal.SealRead(seal_id="48481010102F", opened=False, tampered=False, reader=1, at=AT)
    ]
    read = decode(frame)[0]
    assert isinstance(read, seal.SealRead)
    assert hgt.SealReaderCodec().encode_read(read) == frame


def test_p104_verify_record_of_25_bytes() -> None:
    """[U] 7 p.104: a Verify response of 19h (25) bytes: Seal ID 48 48 10 10 10 2F, Msg
    type 10h, Short Status 0, Date & Time 33 09 93 01, Number of Events 1, then Firmware
    Version, Long Status, OrgID & Department and Seal Stamp (mask D360h).

    ADJUSTED: the bytes after Number of Events are not printed; zeros stand in for them.
    The codec reads the short status and passes over the rest of the record.
    """
    record = b"\x19" + SEAL_P104 + b"\x10\x00" + bytes.fromhex("33 09 93 01") + b"\x01"
    record += bytes(25 - len(record))
    frame = wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01" + record)
    [read] = decode(frame)
    assert isinstance(read, seal.SealRead)
    assert (read.seal_id, read.tampered, read.opened) == ("48481010102F", False, False)


def test_p146_no_seal_detected_is_a_zero_byte_count() -> None:
    """[P] p.145, 146, 151: "If no seal detected: Data*1 = Seal record #B=0" (1 byte)."""
    frame = wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01\x00")
    assert decode(frame) == [seal.NoSealInRange(reader=1, at=AT)]
    assert hgt.SealReaderCodec().encode_no_seal(seal.NoSealInRange(reader=1, at=AT)) == frame


def test_p146_unfinished_rf_session_is_result_not_ready() -> None:
    """[P] p.146: "For the case of an unfinished RF session": MSGT(xx15h) | R_status |
    error (1) | CRC; [P] 6.5.4 p.134: 05h "Result is not ready". Nothing to record."""
    frame = wire(R1, b"\x80\x15", b"\x00\x00", b"\x05")
    assert decode(frame) == [
        seal.ReaderReply(message=0x8015, reader=1, reader_status=0, data=b"\x05", at=AT)
    ]


def test_p161_6_5_5_14_2_set_address_response() -> None:
    """[P] 6.5.5.14.2 p.161: Reader > LSC STX | #B | R# | MSGT(xx12h) | R_status | CRC | ETX,
    sizes 1 2 2 2 2 2 1. ADJUSTED: high byte 80h, R_status 0000."""
    frame = wire(R1, b"\x80\x12", b"\x00\x00")
    assert len(frame) == 12
    assert decode(frame) == [seal.ReaderReply(message=0x8012, reader=1, reader_status=0, data=b"",
                                         at=AT)]  # fmt: skip


def test_p162_6_5_5_15_acknowledge_ok() -> None:
    """[P] 6.5.5.15 p.162: LSC > Reader STX | #B | R# | CMND(0092h) | CRC | ETX."""
    assert decode(wire(R1, b"\x00\x92")) == [
        seal.HostCommand(command=0x0092, reader=1, data=b"", at=AT)
    ]


def test_p119_get_results_command_is_adjusted() -> None:
    """[P] 6.5.5.3 (Get Results, CMND 0015h, answer 15h in 6.5.2 p.128). ADJUSTED: the
    page with its command data was not found; the codec sends one channel byte, as Get
    Burst Message does ([P] 6.5.5.5.1 p.153)."""
    frame = wire(R1, b"\x00\x15", b"\x01")
    assert hgt.SealReaderCodec().read_request(1) == frame
    assert decode(frame) == [seal.ReadRequested(reader=1, channel=1, at=AT)]


def test_p121_6_4_2_crc_fields_disagrees_by_default() -> None:
    """[P] 6.4.2 p.121: the reader frame's CRC is "for fields #B, MSGT, R_status and DATA"
    (R# not listed), while 6.4.1 p.119 lists #B, R#, CMND and DATA for host frames.

    DISAGREEMENT: the default layout ``hgt`` covers R# in reader frames as well (the same
    list also drops MC, which no frame carries, so we read it as shorthand); layout
    ``hgt-no-address`` follows the words, and ``gatewayctl probe eseal`` tells which one a
    reader uses.
    """
    literal = wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01\x00", skip_address=True)
    assert decode(literal, layout="hgt-no-address") == [seal.NoSealInRange(reader=1, at=AT)]
    [error] = decode(literal)
    assert isinstance(error, FrameError) and "CRC mismatch" in str(error)


def test_p121_6_4_2_message_code_disagrees() -> None:
    """[P] 6.4.2 p.121 names an MC (message code) field after MSGT and counts it in #B.

    DISAGREEMENT: no layout in 6.5.5 draws MC (e.g. 6.5.5.11.1 p.159: STX #B R# MSGT
    R_status Data CRC ETX) and its size is not given, so frames carry none; a frame with
    an MC would fail its CRC or data layout, not be misread.
    """
    with_mc = wire(R1, b"\x80\x15", b"\x00", b"\x00\x00", b"\x01\x01\x00")  # MC 00 (1 byte)
    [item] = decode(with_mc)
    assert not isinstance(item, seal.NoSealInRange)


def test_p160_seal_id_text_disagrees() -> None:
    """[U] 8 p.160 / p.104: the seal id is 6 bytes, TF (2) and TID (4); the evaluation
    software shows 48 48 10 10 10 2F as "IADA01052719" ("Format B").

    DISAGREEMENT: how Format B is derived is not in the pages found, so the gateway
    publishes the 6 bytes as 12 hex digits instead of guessing.
    """
    record = b"\x09" + SEAL_P104 + b"\x10\x00"
    [read] = decode(wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01" + record))
    assert isinstance(read, seal.SealRead)
    assert read.seal_id == "48481010102F" and read.seal_id != "IADA01052719"


def test_p167_8_2_1_status_flags_and_allowed_tamper() -> None:
    """[U] 8.2.1 p.167-171: 80h tampered, 40h low battery, 20h opened ("the Tampered flag is
    also set"), 10h suspended set, 08h sealing wire changed, 01h approved open (opening
    with it on is "an allowed tampered situation"). ADJUSTED: one Verify record each."""

    def read(status: int) -> seal.SealRead:
        record = b"\x09" + SEAL_P104 + bytes([0x10, status])
        [item] = decode(wire(R1, b"\x80\x15", b"\x00\x00", b"\x01\x01" + record))
        assert isinstance(item, seal.SealRead)
        return item

    assert read(0xA1).alarm is False and read(0xA0).alarm is True
    assert read(0x10).suspended_set and read(0x08).wire_changed and read(0x40).low_battery


def test_p181_8_3_event_codes_soft_and_suspended_set_are_events() -> None:
    """[U] 8.3 p.181-184: event codes 1 Set, 2 Sealing Wire Changed, 3 Low Battery Warning,
    4 Sealing Wire Opened, 5 Sealing Wire Closed, 7 Soft Set, 0Ch Suspended Set.

    ADJUSTED: the manual's alert record has no event code; the gateway's extended record
    (codec docstring) appends EV# | code | time (Unix seconds) to the 800Ah record.
    """
    names = {}
    for code in (1, 2, 3, 4, 5, 7, 0x0C):
        data = b"\x01\x0f" + SEAL_P104 + b"\x78\x00" + bytes([1, code]) + bytes(4)
        [alert] = decode(wire(R1, b"\x80\x0a", b"\x00\x00", data))
        assert isinstance(alert, seal.SealAlert), alert
        names[code] = alert.event
    assert names == {1: "sealed", 2: "wire_tampered", 3: "low_battery", 4: "opened",
                     5: "closed", 7: "sealed", 0x0C: "sealed"}  # fmt: skip
