"""JT/T 808 frames from independent sources, decoded byte for byte.

One test per frame, named after where it comes from: a public decoder's test data
(repository and file path) or a table of the standard. Each asserts the decoded
values that source states. Frames marked ADJUSTED differ from the source: a phone
number that looked like a real subscriber's replaced by 00000000012345678901 (or a
check code the source never verified, its decoder skipping the check), the check code
recomputed; the original is kept in the test's docstring where it matters. Deliberate
disagreements with a source are tests too, with the reason.

Times: every source prints the terminal's GMT+8 time; the codec gives UTC (8 h less).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drivers.eseal.codec_jt808 import Jt808Codec, encode, preset_flags
from drivers.eseal.readings import Jt808Message, PositionReported
from gateway.errors import FrameError
from gateway.readings import Stamp

AT = Stamp(mono=1.0, utc=datetime(2025, 1, 1, tzinfo=UTC))


def decode(hex_frame: str, codec: Jt808Codec | None = None) -> Any:
    """The one item a frame (hex, spaces allowed) decodes to."""
    items = (codec or Jt808Codec()).feed(bytes.fromhex(hex_frame), AT)
    assert len(items) == 1, items
    return items[0]


def gmt8(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    """A GMT+8 wall time as the UTC instant the codec returns."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=8)


# -- yezhihao/jt808-server -----------------------------------------------------------------

YEZHIHAO_ITEMS = (
    (0x01, bytes.fromhex("0000000b")),  # mileage 11
    (0x02, bytes.fromhex("0016")),  # fuel 22
    (0x03, bytes.fromhex("0021")),  # tachograph speed 33
    (0x04, bytes.fromhex("002c")),  # alarm event id 44
    (0x05, b"777" + bytes(27)),  # tyre pressure, 30 bytes
    (0x06, bytes.fromhex("0002")),  # compartment temperature 2
    (0x11, bytes.fromhex("4200000042")),  # overspeed: area type 66, area id 66
    (0x12, bytes.fromhex("4d0000004d4d")),  # area/route: 77, 77, 77
    (0x13, bytes.fromhex("00000058005858")),  # route time: 88, 88, 88
    (0x25, bytes.fromhex("00000063")),  # extended signal status 99
    (0x2A, bytes.fromhex("000a")),  # IO status 10
    (0x2B, bytes.fromhex("00000014")),  # analog 20
    (0x30, bytes.fromhex("1e")),  # signal strength 30
    (0x31, bytes.fromhex("28")),  # GNSS satellites 40
)

YEZHIHAO_BODY = (
    "000004000000080006eeb6ad02633df701380003006320070719235901040000000b0202001603020021"
    "0402002c051e373737000000000000000000000000000000000000000000000000000000060200021105"
    "420000004212064d0000004d4d1307000000580058582504000000632a02000a2b040000001430011e"
    "310128"
)


def assert_yezhihao_location(report: PositionReported) -> None:
    """The values the source's JSON gives for this body."""
    assert report.alarm_bits == 1024  # warnBit
    assert report.status_bits == 2048  # statusBit
    assert (report.lat, report.lon) == (116.307629, 40.058359)  # latitude, longitude x 1e6
    assert report.altitude_m == 312
    assert report.speed_kmh == 0.3  # speed 3 (1/10 km/h)
    assert report.heading_deg == 99  # direction
    assert report.device_time == gmt8(2020, 7, 7, 19, 23, 59)  # deviceTime
    assert report.extras == YEZHIHAO_ITEMS  # attributes 1-6, 17-19, 37, 42, 43, 48, 49
    assert report.set_aside == b"" and report.quirks == frozenset()


def test_yezhihao_jt808_server_unit_test_record_0x0200_2013() -> None:
    """jtt808-protocol/src/test/resources/单元测试记录.txt, the 2013 ``hex1`` of 0x0200."""
    report = decode("7e020000801234567890120001" + YEZHIHAO_BODY + "127e")
    assert (report.terminal, report.serial) == ("123456789012", 1)  # clientId, serialNo
    assert report.version is None  # protocolVersion 0, properties 128
    assert_yezhihao_location(report)


def test_yezhihao_jt808_server_unit_test_record_0x0200_2019() -> None:
    """jtt808-protocol/src/test/resources/单元测试记录.txt, the 2019 ``hex1`` of 0x0200."""
    report = decode("7e020040800112345678901234567890ffff" + YEZHIHAO_BODY + "d87e")
    assert report.terminal == "12345678901234567890"  # clientId
    assert report.serial == 65535  # serialNo
    assert (report.version, report.protocol) == (1, "2019")  # protocolVersion 1, props 16512
    assert_yezhihao_location(report)


# -- SmallChi/JT808 --------------------------------------------------------------------------


def test_smallchi_jt808_0x0200test_test5() -> None:
    """src/JT808.Protocol.Test/MessageBody/JT808_0x0200Test.cs, ``Test5``."""
    report = decode(
        "7E 02 00 00 26 11 22 33 44 55 66 22 B8 00 00 00 01 00 00 00 02 00 BA 7F 0E 07 E4 F1"
        " 1C 00 28 00 3C 00 00 18 07 15 10 10 10 01 04 00 00 00 64 02 02 00 37 57 7E"
    )
    assert isinstance(report, PositionReported)
    assert (report.terminal, report.serial) == ("112233445566", 8888)
    assert (report.alarm_bits, report.status_bits) == (1, 2)
    assert (report.lat, report.lon) == (12.222222, 132.444444)  # 12222222, 132444444
    assert (report.altitude_m, report.speed_kmh, report.heading_deg) == (40, 6.0, 0)
    assert report.device_time == gmt8(2018, 7, 15, 10, 10, 10)
    assert report.extras == ((0x01, bytes.fromhex("00000064")), (0x02, bytes.fromhex("0037")))
    assert report.flags == {"emergency"} and report.alarms == {"emergency"}  # alarm bit 0


SMALLCHI_TEST8_SOURCE = (
    "7E020000850111111111110AA200000000000C000001F62E8307147C92001E0000001E11011103115201"
    "0400131A3403020000050100060302059007030381202504000000002B04000000F0300117310105E001"
    "3DE108000000000004BCFDE20400000000E304000007ACE40400000000E50C001300270013002700130027"
    "EA0400000000EB0400000000EE0100F6041450E97E"
)


def test_smallchi_jt808_0x0200test_test8_as_published_fails_its_check_code() -> None:
    """DISAGREEMENT, JT808_0x0200Test.cs ``Test8``: the source decodes this frame with
    ``SkipCRCCode = true``; its check byte is 0xE9 but the XOR is 0x8E. The gateway never
    skips the check: a frame that fails it is not evidence, whatever else it says."""
    error = decode(SMALLCHI_TEST8_SOURCE)
    assert isinstance(error, FrameError)
    assert "check code 0xE9, computed 0x8E" in str(error)


def test_smallchi_jt808_0x0200test_test8_overrunning_item_adjusted_check() -> None:
    """JT808_0x0200Test.cs ``Test8``, ADJUSTED: check code recomputed (0x8E). The last
    item, F6, declares 4 bytes and has 2: the source keeps the report, sets that item
    aside (one ``ExceptionLocationAttachOriginalData``) and keeps 6 standard and 12
    custom items. So does the gateway."""
    report = decode(SMALLCHI_TEST8_SOURCE[:-4] + "8E7E")
    assert isinstance(report, PositionReported)
    assert (report.terminal, report.serial) == ("011111111111", 0x0AA2)
    assert report.set_aside == bytes.fromhex("F6041450")  # the one item set aside
    assert report.quirks == {"item_set_aside"}
    # The source's split: ids of the 2013 additional information table vs the rest.
    known_2013 = {0x01, 0x02, 0x03, 0x04, 0x11, 0x12, 0x13, 0x25, 0x2A, 0x2B, 0x30, 0x31}
    standard = [i for i, _ in report.extras if i in known_2013]
    assert len(standard) == 6 and len(report.extras) - len(standard) == 12
    assert report.status_bits == 0x000C0000  # the base report, words included
    assert report.device_time == gmt8(2011, 1, 11, 3, 11, 52)


def test_smallchi_jt808_0x0200test_test7_adjusted_check() -> None:
    """DISAGREEMENT, JT808_0x0200Test.cs ``Test7``, ADJUSTED: check code recomputed
    (0x6C -> 0x1E; the source skips the check). The source reports one exception item
    among two items with id 0x00; every item's length fits the body, so the gateway
    keeps all seven (duplicate or unknown ids are not malformed) and sets none aside."""
    report = decode(
        "7E020000520111111111100002000000000000000301789B3406238AFA0000018B00F621040200460901"
        "04000024C72B040B290B2930011731011B000400CE0B29000C00B222222222222222222222EB0E000C00B2"
        "222222222222222222221E7E"
    )
    assert [i for i, _ in report.extras] == [0x01, 0x2B, 0x30, 0x31, 0x00, 0x00, 0xEB]
    assert dict(report.extras[:4]) == {
        0x01: bytes.fromhex("000024C7"),  # mileage 9415
        0x2B: bytes.fromhex("0B290B29"),  # analog 187239209
        0x30: b"\x17",  # signal 23
        0x31: b"\x1b",  # satellites 27
    }
    assert report.set_aside == b""


def test_smallchi_jt808_0x0200test_test5_3_2013_with_reserved_bit14() -> None:
    """JT808_0x0200Test.cs ``Test5_3``: an authentication 0x0102 whose header sets bit 14
    but is laid out as 2013; the source reads it with ``JTT2013Force``, the gateway
    falls back to 2013 by itself (the 2019 reading's body length does not fit)."""
    message = decode("7E0102400C01003000068109024A3130303330303030363831857E")
    assert message == Jt808Message(
        msg_id=0x0102, terminal="010030000681", serial=0x0902, body=b"J10030000681",
        quirks=frozenset({"reserved_bit14"}), at=AT,
    )  # fmt: skip


def test_smallchi_jt808_0x0200test_test5_4_location_with_reserved_bit14() -> None:
    """JT808_0x0200Test.cs ``Test5_4``: a 0x0200 with bit 14 set in a 2013 layout
    (``JTT2013Force`` in the source): the whole report decodes, in 2013."""
    report = decode(
        "7e0200406c010030000681090e00000000000c0003026c936f074c794c0004036300d72106251557390104"
        "00000000052801cc00210625155739054145bbc91e4145a2fa1141450000004145bbc8194145a1370a4145"
        "000000240200002a0200002b04000000003001153101125f0a89860418231870850620757e"
    )
    assert isinstance(report, PositionReported)
    assert (report.terminal, report.serial, report.protocol) == ("010030000681", 0x090E, "2013")
    assert report.quirks == {"reserved_bit14"}
    assert report.device_time == gmt8(2021, 6, 25, 15, 57, 39)
    assert (report.lat, report.lon) == (40.670063, 122.452300)
    assert [i for i, _ in report.extras] == [0x01, 0x05, 0x24, 0x2A, 0x2B, 0x30, 0x31, 0x5F]


def test_smallchi_jt808_0x0100test_test2019_2() -> None:
    """DISAGREEMENT in form only, src/JT808.Protocol.Test/MessageBody/JT808_0x0100Test.cs
    ``Test2019_2``: the source gives the phone as "123456789" (leading zeros stripped);
    the gateway keeps all 20 BCD digits as sent, since the terminal id is compared as
    sent (de-duplication keys) and stripping would merge 0123... with 123..."""
    message = decode(
        "7E010040540100000000000123456789000A002800323132333400000000000000736D616C6C636869313233"
        "0000000000000000000000000000000000000043484931323300000000000000000000000000000000000000"
        "000000000001D4C1413132333435B27E"
    )
    assert message.msg_id == 0x0100 and message.version == 1  # ProtocolVersion 1, 2019
    assert message.serial == 10  # MsgNum
    assert message.terminal == "00000000000123456789"
    assert message.body[:4] == bytes.fromhex("00280032")  # AreaID 40, CityOrCountyId 50


# -- cuteLittleDevil/go-jt808 ----------------------------------------------------------------


def test_go_jt808_protocol_jt808_jt808_test_lone_0x7d_check_code() -> None:
    """protocol/jt808/jt808_test.go, "兼容部分错误情况" (tolerate some faults): a heartbeat
    whose check code 0x7D is sent unescaped; the source accepts it, so does the gateway."""
    message = decode("7e0002000000000000067900007d7e")
    assert message == Jt808Message(
        msg_id=0x0002, terminal="000000000679", serial=0, body=b"",
        quirks=frozenset({"lone_escape"}), at=AT,
    )  # fmt: skip


def test_go_jt808_protocol_jt808_jt808_test_subpackage() -> None:
    """protocol/jt808/jt808_test.go, "正确的分包数据" (valid split data)."""
    message = decode("7E0801200500123456789002DE001A00022808000102537E")
    assert (message.msg_id, message.terminal, message.serial) == (0x0801, "001234567890", 0x02DE)
    assert message.packet == (26, 2) and message.body == bytes.fromhex("2808000102")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("7E0801200500123456789002DE001A00022808000102547E", "check code"),  # 校验码错误
        ("7E0801200500123456789002DE001A000228080001517E", "body is 4 bytes"),  # body/header
        ("7e0100002c0123454a7e", "too short"),  # 头部情况不足
    ],
)
def test_go_jt808_protocol_jt808_jt808_test_errors(frame: str, error: str) -> None:
    """protocol/jt808/jt808_test.go: the frames the source rejects, rejected here too."""
    assert error in str(decode(frame))


def test_go_jt808_protocol_model_reply_test_0x0200_2013() -> None:
    """protocol/model/reply_test.go, "T0x0200 终端-位置信息" msg2013 and result2013."""
    codec = Jt808Codec()
    report = decode(
        "7e0200007c0123456789017fff000004000000080006eeb6ad02633df7013800030063200707192359"
        "01040000000b02020016030200210402002c051e37373700000000000000000000000000000000000000"
        "00000000000000001105420000004212064d0000004d4d1307000000580058582504000000632a02000a"
        "2b040000001430011e3101286b7e",
        codec,
    )
    assert (report.terminal, report.serial, report.protocol) == ("012345678901", 0x7FFF, "2013")
    assert codec.general_response(report) == bytes.fromhex(
        "7e8001000501234567890100007fff0200008e7e"
    )


def test_go_jt808_protocol_model_reply_test_0x0200_2019_adjusted_phone() -> None:
    """protocol/model/reply_test.go, "T0x0200 终端-位置信息" msg2019 and result2019,
    ADJUSTED: phone 17299841738 -> 12345678901 (check codes recomputed)."""
    codec = Jt808Codec()
    report = decode(
        "7e0200407c0100000000012345678901ffff000004000000080006eeb6ad02633df70138000300632007"
        "0719235901040000000b02020016030200210402002c051e373737000000000000000000000000000000"
        "0000000000000000000000001105420000004212064d0000004d4d1307000000580058582504000000632a"
        "02000a2b040000001430011e310128aa7e",
        codec,
    )
    assert (report.terminal, report.serial, report.version) == ("00000000012345678901", 0xFFFF, 1)
    assert codec.general_response(report) == bytes.fromhex(
        "7e8001400501000000000123456789010000ffff0200004f7e"
    ), "answered in 2019, same phone and version"


def test_go_jt808_protocol_model_reply_test_0x0002_2019_adjusted_phone() -> None:
    """protocol/model/reply_test.go, "T0x0002 终端-心跳" msg2019 and result2019, ADJUSTED:
    phone 17299841738 -> 12345678901 (check codes recomputed)."""
    codec = Jt808Codec()
    beat = decode("7e000240000100000000012345678901ffffcb7e", codec)
    assert (beat.msg_id, beat.serial, beat.protocol) == (0x0002, 0xFFFF, "2019")
    assert codec.general_response(beat) == bytes.fromhex(
        "7e8001400501000000000123456789010000ffff0002004f7e"
    )


def registration_answered(frame: str, reply: str, auth_code: str) -> Jt808Message:
    """Decode a 0x0100 and check the codec's 0x8100 to it is ``reply``, byte for byte."""
    codec = Jt808Codec()
    registration = decode(frame, codec)
    assert isinstance(registration, Jt808Message) and registration.msg_id == 0x0100
    assert codec.registration_response(registration, auth_code=auth_code) == bytes.fromhex(reply)
    return registration


def test_go_jt808_protocol_model_reply_test_0x0100_2013() -> None:
    """protocol/model/reply_test.go, "T0x0100 终端-注册" msg2013 and result2013 (the
    source's auth code is the phone number without its leading zero)."""
    registration = registration_answered(
        "7e0100002c0123456789010000001f007363640000007777772e3830382e636f6d000000000000000000"
        "3736353433323101b2e24131323334cc7e",
        "7e8100000e01234567890100000000003132333435363738393031377e",
        auth_code="12345678901",
    )
    assert (registration.terminal, registration.serial, registration.version) == (
        "012345678901", 0, None,
    )  # fmt: skip


def test_go_jt808_protocol_model_reply_test_0x0100_2019_adjusted_phone() -> None:
    """protocol/model/reply_test.go, "T0x0100 终端-注册" msg2019 and result2019, ADJUSTED:
    phone 17299841738 -> 12345678901 in the header and the auth code, checks recomputed."""
    registration = registration_answered(
        "7e0100405301000000000123456789010000001f007363640000000000000000007777772e3830382e636f"
        "6d0000000000000000000000000000000000000037363534333231000000000000000000000000000000"
        "000000000000000001b2e24131323334f27e",
        "7e8100400e010000000001234567890100000000003132333435363738393031767e",
        auth_code="12345678901",
    )
    assert (registration.terminal, registration.version) == ("00000000012345678901", 1)


# -- the standard's tables -------------------------------------------------------------------


def test_jt_t_808_2019_alarm_flag_table_bit_17_is_a_blind_spot_warning() -> None:
    """JT/T 808-2019 §8.18, alarm flag table: bit 17 is the right-turn blind-spot
    warning (bits 15-17 reserved in 2013; go-jt808 and yezhihao/jt808-server list the
    2019 meaning). So a 2019 report with bit 17 is no tamper alarm by default; only a
    vendor map the operator configures (here the example preset) names the bit."""
    frame = "7e0200401c01000000000123456789010001" + "00020000" + "00" * 24 + "7e"
    content = bytes.fromhex(frame[2:-2])
    check = 0
    for byte in content:
        check ^= byte
    frame = frame[:-2] + f"{check:02x}7e"
    report = decode(frame)
    assert report.alarm_bits == 1 << 17 and report.protocol == "2019"
    assert not report.alarm and report.flags == frozenset()
    vendor = decode(frame, Jt808Codec(flags=preset_flags("example-elock")))
    assert vendor.alarms == {"lock_cut"}


def test_go_jt808_protocol_jt808_jt808_test_encode_2013_heartbeat() -> None:
    """protocol/jt808/jt808_test.go, ``TestEncode`` "2013版本": a 2013 heartbeat (6-byte
    BCD phone, no version byte), re-encoded to the same bytes."""
    beat = decode("7e0002000001234567890100008a7e")
    assert (beat.msg_id, beat.terminal, beat.serial, beat.version) == (2, "012345678901", 0, None)
    assert encode(2, beat.terminal, beat.serial, b"") == bytes.fromhex(
        "7e0002000001234567890100008a7e"
    )
