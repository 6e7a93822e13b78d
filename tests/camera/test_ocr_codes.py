"""Container codes, plates and voting from text boxes: the logic without the OCR model."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.camera.ocr.container import ContainerReading, parse_boxes
from drivers.camera.ocr.engine import TextBox
from drivers.camera.ocr.layout import column_to_row
from drivers.camera.ocr.plate import parse_boxes as plate_boxes
from drivers.camera.ocr.plate import parse_plate, plate_colour
from drivers.camera.ocr.voting import container_passage, plate_passage, vote
from gateway import iso6346
from simulators.ocr_set import container_crop, passages, plate_crop


def box(
    text: str, x: float, y: float, conf: float = 0.95, w: float = 100, h: float = 30
) -> TextBox:
    return TextBox(
        text=text, confidence=conf, quad=((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    )


def test_check_digit_examples_from_hardware_md() -> None:
    assert iso6346.check_digit("CSQU305438") == 3
    assert iso6346.check_digit("MSCU123456") == 6
    assert iso6346.is_valid("CSQU3054383")
    assert not iso6346.is_valid("CSQU3054384")


def test_check_digit_ten_is_written_zero() -> None:
    # Find a serial whose sum is 10 mod 11: its digit is 0, and 0 must validate.
    serial = next(
        f"{n:06d}"
        for n in range(10**6)
        if sum(iso6346.VALUES[c] << i for i, c in enumerate(f"MSCU{n:06d}")) % 11 == 10
    )
    assert iso6346.check_digit("MSCU" + serial) == 0
    assert iso6346.is_valid(f"MSCU{serial}0")


def test_letters_eleven_apart_share_the_digit_so_owner_list_decides() -> None:
    # M=24 and W=35 differ by 11: the check digit cannot tell MSCU from WSCU.
    assert iso6346.is_valid("MSCU1234566") and iso6346.is_valid("WSCU1234566")
    reading = parse_boxes([box("WSCU 123456 6", 0, 0)])
    (code,) = reading.codes
    assert code.check_digit_ok and not code.owner_known and not code.verified


def test_size_type_codes() -> None:
    for ok in ("22G1", "42G1", "45G1", "45R1", "L5G1"):
        assert iso6346.is_size_type(ok)
    assert not iso6346.is_size_type("4XG1")


def test_horizontal_code_with_size_type_and_position_repairs() -> None:
    # G read for 6 in the serial, 5 read for S in the owner code.
    reading = parse_boxes(
        [box("M5CU", 0, 0), box("12345G", 110, 2), box("6", 220, 1), box("45G1", 0, 60)]
    )
    (code,) = reading.codes
    assert code.code == "MSCU1234566" and code.raw == "M5CU12345G6"
    assert code.verified and code.size_type == "45G1"


def test_boxes_out_of_detection_order_are_resorted_by_line() -> None:
    # A tilted code: the serial's box comes first and sits a little higher.
    reading = parse_boxes([box("305438 3", 120, -6), box("45G1", 0, 50), box("CSQU", 0, 0)])
    assert [c.code for c in reading.verified] == ["CSQU3054383"]


def test_vertical_code_one_character_per_line() -> None:
    boxes = [box(ch, 10, 40 * i, w=25) for i, ch in enumerate("CSQU3054383")]
    assert [c.code for c in parse_boxes(boxes).verified] == ["CSQU3054383"]


def test_two_containers_on_one_truck() -> None:
    reading = parse_boxes(
        [
            box("MSCU 123456 6", 0, 0, w=300),
            box("CSQU 305438 3", 400, 3, w=300),
            box("22G1", 0, 50),
            box("45R1", 400, 50),
        ]
    )
    assert [(c.code, c.size_type) for c in reading.codes] == [
        ("MSCU1234566", "22G1"),
        ("CSQU3054383", "45R1"),
    ]


def test_frame_of_check_digit_read_as_bars_is_ignored() -> None:
    (code,) = parse_boxes([box("HLXU 123456 |1]", 0, 0)]).codes
    assert code.code == "HLXU1234561" and code.verified


def test_a_wrong_check_digit_is_reported_not_repaired() -> None:
    (code,) = parse_boxes([box("MSCU 123456 5", 0, 0)]).codes
    assert code.code == "MSCU1234565"
    assert not code.check_digit_ok and not code.verified


def test_missing_check_digit_gives_an_unverified_candidate() -> None:
    (code,) = parse_boxes([box("MSCU 123456", 0, 0)]).codes
    assert code.code == "MSCU123456?" and not code.verified


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 |", max_size=16))
def test_normalisation_never_makes_a_failing_digit_pass(text: str) -> None:
    """Every verified code is the position-class repair of what was read, never more."""
    for code in parse_boxes([box(text, 0, 0)]).codes:
        repaired = [
            {"0": "O", "1": "I", "4": "A", "5": "S", "6": "G", "8": "B"}.get(r, r)
            if i < 3
            else r
            if i == 3
            else {
                "O": "0",
                "Q": "0",
                "D": "0",
                "U": "0",
                "I": "1",
                "L": "1",
                "J": "1",
                "T": "7",
                "Z": "2",
                "S": "5",
                "B": "8",
                "G": "6",
                "A": "4",
            }.get(r, r)
            for i, r in enumerate(code.raw)
        ]
        assert "".join(repaired) == code.code.rstrip("?")
        assert code.verified == (
            iso6346.is_valid(code.code) and code.code[:4] in iso6346.KNOWN_OWNERS
        )


def test_unknown_owners_can_be_added_by_configuration() -> None:
    reading = parse_boxes([box("ABCU 123456 0", 0, 0)], owners={"ABCU"})
    assert iso6346.check_digit("ABCU123456") == 0
    assert [c.code for c in reading.verified] == ["ABCU1234560"]


@pytest.mark.parametrize(
    ("rows", "text", "country"),
    [
        (["29A-123.45"], "29A-123.45", "VN"),
        (["51R-141.39"], "51R-141.39", "VN"),
        (["29A-1234"], "29A-1234", "VN"),
        (["51F1", "123.45"], "51F1-123.45", "VN"),
        (["29C", "12345"], "29C-123.45", "VN"),
        (["30E-O12.34"], "30E-012.34", "VN"),
        (["桂A·12345"], "桂A·12345", "CN"),
        (["粵B·D12345"], "粤B·D12345", "CN"),
    ],
)
def test_plate_formats(rows: list[str], text: str, country: str) -> None:
    plate = parse_plate(rows, 0.9)
    assert (plate.text, plate.country, plate.valid) == (text, country, True)
    assert plate.raw == " ".join(rows)


def test_trailer_plate_is_flagged_and_junk_is_not_a_plate() -> None:
    assert parse_plate(["51R-141.39"], 0.9).trailer
    assert not parse_plate(["29A-123.45"], 0.9).trailer
    assert not parse_plate(["HELLO"], 0.9).valid


def test_two_row_plate_boxes_join_top_then_bottom() -> None:
    plate = plate_boxes([box("123.45", 0, 60), box("51F1", 10, 0)])
    assert plate is not None and plate.text == "51F1-123.45"


def test_string_vote_weights_by_confidence() -> None:
    won = vote([("AB", 0.5), ("AC", 0.9), ("AB", 0.5)])
    assert (won.text, won.agreeing, won.ballots) == ("AB", 2, 3)


def test_char_vote_assembles_per_position() -> None:
    assert vote([("ABX", 0.9), ("AYC", 0.9), ("ZBC", 0.9)], "char").text == "ABC"


def _reading(*codes: str) -> ContainerReading:
    return parse_boxes([box(c, 0, 40 * i, w=300) for i, c in enumerate(codes)])


def test_container_passage_outvotes_a_misread_and_keeps_two_boxes() -> None:
    frames = [
        _reading("MSCU1234566", "CSQU3054383"),
        _reading("MSCU1234566"),
        _reading("MSCU1234565", "CSQU3054383"),
    ]
    voted = container_passage(frames)
    assert [(v.code, v.verified, v.frames) for v in voted] == [
        ("MSCU1234566", True, 2),
        ("CSQU3054383", True, 2),
    ]


def test_container_passage_without_any_verified_frame_stays_unverified() -> None:
    (voted,) = container_passage([_reading("MSCU1234565"), _reading("MSCU1234565")])
    assert not voted.verified and voted.code == "MSCU1234565"


def test_plate_passage_votes_valid_readings() -> None:
    frames = [
        parse_plate(["29A-123.45"], 0.8),
        parse_plate(["29A-128.45"], 0.7),
        parse_plate(["29A-123.45"], 0.6),
        None,
    ]
    voted = plate_passage(frames)
    assert voted is not None and voted.text == "29A-123.45"
    assert plate_passage([None, parse_plate(["junk"], 0.9)]) is None


@pytest.mark.parametrize(
    ("style", "colour"),
    [("vn_white", "white"), ("vn_yellow", "yellow"), ("cn_blue", "blue"), ("cn_green", "green")],
)
def test_plate_background_colour(style: str, colour: str) -> None:
    sample = plate_crop(random.Random(1), style)
    assert plate_colour(sample.image) == colour


def test_test_set_is_deterministic_by_seed() -> None:
    a = list(passages("container", 4, frames=2, seed=9))
    b = list(passages("container", 4, frames=2, seed=9))
    assert [p.truth for p in a] == [p.truth for p in b]
    assert all(
        np.array_equal(x, y)
        for p, q in zip(a, b, strict=True)
        for x, y in zip(p.frames, q.frames, strict=True)
    )
    assert {p.style for p in a} == {"one_line", "two_lines", "vertical", "two_boxes"}
    assert all(iso6346.is_valid(code) for p in a for code in p.truth)
    c = list(passages("container", 4, frames=2, seed=10))
    assert [p.truth for p in c] != [p.truth for p in a]


def test_container_passage_keeps_consecutive_serials_of_one_owner_apart() -> None:
    a, b = "MSCU1234566", "MSCU123457" + str(iso6346.check_digit("MSCU123457"))
    voted = container_passage([_reading(a, b), _reading(a, b), _reading(b)])
    assert [(v.code, v.verified, v.frames) for v in voted] == [(a, True, 2), (b, True, 3)]


def test_column_cut_lays_a_vertical_code_out_and_refuses_noise() -> None:
    sample = container_crop(random.Random(4), "vertical")
    row = column_to_row(sample.image)
    assert row is not None and row.shape[1] > 4 * row.shape[0]  # a row, not a column
    specks = (np.random.default_rng(1).random((600, 80, 3)) > 0.97).astype(np.uint8) * 255
    assert column_to_row(specks) is None
