"""Scale frames from independent public sources, decoded byte for byte.

One test per frame, named after where the frame comes from (manual and section, or
repository and file), asserting the values that source gives for it. A frame that had
to be adjusted to be a whole wire frame says how. Deliberate disagreements with a source
are tests at the end of each protocol's block, each with its reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.codec_mtsics import MtSicsCodec
from drivers.scale.codec_sma import SmaCodec
from drivers.scale.codec_toledo import ToledoCodec
from drivers.scale.readings import WeightMeasured
from gateway.readings import Stamp

AT = Stamp(mono=1.0, utc=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))


def decode(codec: ScaleCodec, frame: bytes) -> list[Decoded]:
    """Feed ``frame`` one byte at a time, as a slow serial port delivers it."""
    out: list[Decoded] = []
    for i in range(len(frame)):
        out += codec.feed(frame[i : i + 1], AT)
    return out


def reading(codec: ScaleCodec, frame: bytes) -> WeightMeasured:
    items = decode(codec, frame)
    assert len(items) == 1, items
    assert isinstance(items[0], WeightMeasured), items
    return items[0]


# -- Mettler Toledo continuous output ---------------------------------------------------
#
# Bridges-Code/mettler_toledo_bridge, test/mettler_toledo_bridge_test.dart: lines an
# IND231 sent, as the library's parser sees them. Adjusted: the library drops STX and
# splits on CR before parsing, so both are put back; no checksum byte (none is shown),
# so the codec runs with ``checksum=False``.


def ind231(line: str) -> WeightMeasured:
    return reading(ToledoCodec(checksum=False), b"\x02" + line.encode("ascii") + b"\r")


def test_mettler_toledo_bridge_test_dart_line0_gross_046_kg() -> None:
    r = ind231("40    046   000")  # A '4': decimal point code 100, two decimals
    assert (r.weight, r.unit, r.stable, r.net, r.tare) == (0.46, "kg", True, False, 0.0)


def test_mettler_toledo_bridge_test_dart_line1_net_144_tare_046_kg() -> None:
    r = ind231("41    144   046")
    assert (r.weight, r.tare, r.unit, r.stable, r.net) == (1.44, 0.46, "kg", True, True)


def test_mettler_toledo_bridge_test_dart_line2_net_072_in_motion() -> None:
    r = ind231("49    072   046")
    assert (r.weight, r.stable) == (0.72, False)


def test_mettler_toledo_bridge_test_dart_line3_1440_g_decimal_code_001() -> None:
    """Code 001 (XXXXX0): the digits are the display, 1440 g, not 14400 g."""
    r = ind231("1!!  1440   460")
    assert (r.weight, r.tare, r.unit, r.net) == (1440.0, 460.0, "g", True)


def test_mettler_toledo_bridge_test_dart_line4_expanded_1448_g() -> None:
    r = ind231("2!1  1448   450")  # C '1': g, and bit 4 "expanded x10"
    assert (r.weight, r.tare, r.unit) == (1448.0, 450.0, "g")


def test_disagreement_hslcommunication_toledostandarddata_multiplies_codes_000_001() -> None:
    """HslCommunication.Profinet.Toledo.ToledoStandardData multiplies the digits by 100
    for code 000 and by 10 for code 001, so it reads the IND231 frame above as 14400 g.
    We keep 1440 g: that capture is from a device, the IND245 firmware
    (IND245/scale/ContOut.c, buildContinuousOutputWordA) sends the displayed digits
    whatever the code, and the Wildcat/Territory manual (p. 6-5, table 6-9) names the
    field "dummy zero or decimal position". The library has no test data for it.
    """
    assert ind231("1!!  1440   460").weight == 1440.0


def test_disagreement_mettler_toledo_bridge_status_c_unit_wins_over_b4_kg() -> None:
    """mettler_toledo_bridge (lib/mettler_toledo_bridge.dart, parseContinuousData) lets
    a status C unit code override B.4, so C = 0x21 with B.4 = kg would read as g. An
    IND310 sends exactly that while weighing in kg. We keep kg: the IND245 firmware
    (buildStatusWord) sets B.4 for kg only and leaves C.0-2 at 0 for kg and lb, so B.4
    and a C unit are never both meant. The frame is built, not captured.
    """
    r = ind231("40!  1380     0")  # B '0' = 0x30: kg; C '!' = 0x21
    assert (r.unit, r.weight) == ("kg", 13.8)


# -- SMA (SCP-0499) ---------------------------------------------------------------------
#
# Sartorius PR 5210 operating manual, section 5.4.1 "Standard Scale Response Message",
# examples; the PR 5220 instrument manual repeats them with the R command. The manual
# prints each field in angle brackets with spaces as underscores; the weight field is
# always 10 characters. Adjusted where the printed field is one underscore short of 10
# (the 5.025 and 7.025/7.650 examples): right aligned to 10.


def test_sartorius_pr5210_5_4_1_w_gross_5_025_lb() -> None:
    r = reading(SmaCodec(), b"\n 1G       5.025lb \r")  # adjusted: field right aligned to 10
    assert (r.weight, r.unit, r.net, r.stable, r.in_range) == (5.025, "lb", False, True, True)


def test_sartorius_pr5210_5_4_1_w_net_100000_lb() -> None:
    r = reading(SmaCodec(), b"\n 1N      100000lb \r")
    assert (r.weight, r.unit, r.net) == (100000.0, "lb", True)


def test_sartorius_pr5210_5_4_1_h_high_resolution_gross_5_0025_lb() -> None:
    r = reading(SmaCodec(), b"\n 1g      5.0025lb \r")
    assert (r.weight, r.unit, r.net, r.stable) == (5.0025, "lb", False, True)


def test_sartorius_pr5210_5_4_1_z_centre_of_zero_lb() -> None:
    r = reading(SmaCodec(), b"\nZ1G       0.000lb \r")
    assert (r.weight, r.unit, r.in_range) == (0.0, "lb", True)


def test_sartorius_pr5220_standard_reply_r_repeat_7_025_kg() -> None:
    r = reading(SmaCodec(), b"\n 1G       7.025kg \r")  # adjusted: field right aligned to 10
    assert (r.weight, r.unit, r.stable) == (7.025, "kg", True)


def test_sartorius_pr5220_standard_reply_r_repeat_7_650_kg_in_motion() -> None:
    r = reading(SmaCodec(), b"\n 1GM      7.650kg \r")  # adjusted: field right aligned to 10
    assert (r.weight, r.unit, r.stable) == (7.650, "kg", False)


def test_sartorius_pr5211_5_3_3_p_no_standstill_in_time() -> None:
    """Reply ``<LF><_><1><n><_><f><----------><___><CR>``: no weight, not a bad frame.

    Adjusted: ``<n>`` and ``<f>`` are placeholders in the manual; ``G`` and a space here.
    """
    codec = SmaCodec()
    assert decode(codec, b"\n 1G  ----------   \r") == []
    assert codec.busy_count == 1


# -- MT-SICS ----------------------------------------------------------------------------
#
# Atlantis-Software/mt-sics, test/sics0Test.js: the replies its tests feed the parser.


def assert_zero_reply(reply: str) -> None:
    """A reply to Z or ZI: no reading, no frame error, counted under its text."""
    codec = MtSicsCodec()
    assert decode(codec, reply.encode("ascii") + b"\r\n") == []
    assert codec.command_replies == {reply: 1}


def test_mt_sics_sics0test_js_s_s_100_00_g() -> None:
    r = reading(MtSicsCodec(), b"S S     100.00 g\r\n")
    assert (r.weight, r.unit, r.stable) == (100.0, "g", True)


def test_mt_sics_sics0test_js_s_d_129_07_g() -> None:
    r = reading(MtSicsCodec(), b"S D     129.07 g\r\n")
    assert (r.weight, r.unit, r.stable) == (129.07, "g", False)


def test_mt_sics_sics0test_js_s_s_129_07_g() -> None:
    r = reading(MtSicsCodec(), b"S S     129.07 g\r\n")
    assert (r.weight, r.unit, r.stable) == (129.07, "g", True)


def test_mt_sics_sics0test_js_s_plus_overload() -> None:
    r = reading(MtSicsCodec(), b"S +\r\n")
    assert (r.weight, r.in_range) == (None, False)


def test_mt_sics_sics0test_js_s_minus_underload() -> None:
    r = reading(MtSicsCodec(), b"S -\r\n")
    assert (r.weight, r.in_range) == (None, False)


def test_mt_sics_sics0test_js_z_a_zero_done() -> None:
    assert_zero_reply("Z A")


def test_mt_sics_sics0test_js_zi_d_zeroed_under_dynamic_conditions() -> None:
    assert_zero_reply("ZI D")


def test_mt_sics_sics0test_js_zi_s_zeroed_under_stable_conditions() -> None:
    assert_zero_reply("ZI S")


def test_mt_sics_sics0test_js_z_plus_above_zero_range() -> None:
    assert_zero_reply("Z +")


def test_mt_sics_sics0test_js_z_minus_below_zero_range() -> None:
    assert_zero_reply("Z -")


def test_ohaus_7000_series_manual_sir_s_s_129_09_kg() -> None:
    """OHAUS 7000 series indicators instruction manual, MT-SICS "SIR" example
    ``S_S_ _ _ _ _ 129.09_kg`` (underscores are spaces; the field is 10 characters)."""
    r = reading(MtSicsCodec(), b"S S     129.09 kg\r\n")  # adjusted: CR LF added
    assert (r.weight, r.unit, r.stable) == (129.09, "kg", True)


def test_ohaus_7000_series_manual_sir_s_d_114_87_kg() -> None:
    r = reading(MtSicsCodec(), b"S D     114.87 kg\r\n")  # adjusted: CR LF added
    assert (r.weight, r.unit, r.stable) == (114.87, "kg", False)


def test_disagreement_mt_sics_sics0test_js_s_i_is_busy_not_a_bad_frame() -> None:
    """sics0Test.js expects ``S I`` to be an error for its caller. For the gateway it is
    not a damaged frame: the MT-SICS manual (AT balances operating instructions, p. 87)
    defines it as "command not executable (balance is currently executing another
    command, e.g. taring, or timeout as stability was not reached)", a correct answer
    without a weight. It is counted as busy and never as a bad frame.
    """
    codec = MtSicsCodec()
    assert decode(codec, b"S I\r\n") == []
    assert codec.busy_count == 1
