"""Central's live view puts every record family in one readable line.

The records are made by the gateway's own processors from driver readings, so a field
renamed on the gateway's side shows up here as a line that no longer says what
happened. OCR results are written by hand (their processor is not in yet), in the shape
its data is planned to take.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from drivers.camera.processor import CameraProcessor
from drivers.camera.readings import MotionObserved, Snapshot, StillCaptured
from drivers.eseal.processor import SealProcessor
from drivers.eseal.readings import NoSealInRange, PositionReported, SealAlert, SealRead
from drivers.xray.processor import ScanProcessor
from drivers.xray.readings import ScanCompleted, ScanFailed
from gateway.health import DeviceHealth, DeviceState
from gateway.readings import Reading, Stamp
from gateway.records import Draft, MediaDraft, Outgoing, Priority
from simulators.central import describe

ROOT = "customs/demo-port/gate-1"
WHEN = datetime(2026, 11, 23, 9, 30, 5, tzinfo=UTC)
AT = Stamp(mono=100.0, utc=WHEN)
Phase = Literal["start", "update", "end"]
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 80 + b"\xff\xd9"  # 20 KB of "picture"


def envelope(draft: Draft, seq: int = 7) -> bytes:
    """The record as the uplink publishes it (the fields central reads)."""
    return json.dumps(
        {
            "schema": draft.schema,
            "id": "01a20aa7-0000-7000-8000-000000000001",
            "seq": seq,
            "ts": draft.ts.isoformat(),
            "site": "demo-port",
            "gateway": "gate-1",
            "device": draft.device,
            "data": draft.data,
            "prev": "0" * 64,
        },
        ensure_ascii=False,
    ).encode()


def lines(outgoing: Sequence[Outgoing]) -> list[tuple[str, str]]:
    """Each record or media item as central's view shows it."""
    shown = []
    for item in outgoing:
        if isinstance(item, MediaDraft):
            shown.append(describe(f"{ROOT}/{item.topic}", item.body, item.content_type))
        else:
            shown.append(describe(f"{ROOT}/{item.topic}", envelope(item)))
    return shown


def seals(*readings: Reading) -> list[tuple[str, str]]:
    processor = SealProcessor("seal-gate-1", interval_s=0)
    return lines([d for r in readings for d in processor.feed(r)])


def test_a_seal_alarm_is_red_with_seal_event_time_and_source() -> None:
    alert = SealAlert(at=AT, seal_id="HG79A9E822", event="wire_tampered", opened=False,
                      tampered=True, event_time=WHEN, sequence=3, reader=1)  # fmt: skip
    [(line, style)] = seals(alert)
    assert style == "alert"
    assert "SEAL ALARM HG79A9E822: wire_tampered at 2026-11-23T09:30:05.000Z" in line
    assert "reader" in line and "#7" in line


def test_a_plain_seal_event_is_not_an_alarm() -> None:
    alert = SealAlert(at=AT, seal_id="SXF86532E9", event="low_battery", opened=False,
                      tampered=False, low_battery=True, event_time=WHEN, sequence=4,
                      reader=1)  # fmt: skip
    [(line, style)] = seals(alert)
    assert style == "bold"
    assert "seal     SXF86532E9: low_battery at 2026-11-23T09:30:05.000Z (reader" in line


def test_seal_readings_say_sealed_or_opened_with_battery_or_no_seal() -> None:
    def read(**kw: Any) -> SealRead:
        return SealRead(at=AT, seal_id="HG10A52F89", tampered=False, battery_pct=80,
                        seal_time=WHEN, reader=1, **kw)  # fmt: skip

    shown = seals(read(opened=False), NoSealInRange(at=AT, reader=1))
    assert shown == [
        ("     #7 reading  seal-gate-1: seal HG10A52F89 sealed, battery 80%", "dim"),
        ("     #7 reading  seal-gate-1: no seal in range", "dim"),
    ]
    opened = SealProcessor("seal-gate-1", interval_s=0).feed(read(opened=True, approved_open=True))
    assert "seal HG10A52F89 opened, battery 80%" in lines(opened)[-1][0]


def test_an_elock_position_shows_where_it_is_whether_locked_and_its_alarms() -> None:
    report = PositionReported(
        at=AT, terminal="013800138000", serial=12, lat=41.311081, lon=69.279737,
        altitude_m=450, speed_kmh=42.0, heading_deg=90, device_time=WHEN, located=True,
        flags=frozenset({"located"}), alarms=frozenset({"illegal_door_open"}),
        alarm_bits=1 << 31, status_bits=0,
    )  # fmt: skip
    processor = SealProcessor("elock-gw", interval_s=0)
    alarm, position = lines(processor.feed(report))
    assert alarm[1] == "alert" and "SEAL ALARM 013800138000: opened at" in alarm[0]
    assert "(jt808, elock-gw)" in alarm[0]
    assert position == (
        "     #7 reading  elock-gw: e-lock 013800138000 at 41.31108,69.27974 UNLOCKED,"
        " alarms illegal_door_open",
        "dim",
    )


def scan(**kw: Any) -> ScanCompleted:
    return ScanCompleted(
        at=AT, stem="XR-01_00002", scan_id="XR-01-5742-000002", scanner_id="XR-01",
        lane="L3", scan_time=WHEN, operator="Nguyễn Văn Ân",
        containers=(("CSQU3054383", True), ("MSCU1234560", False)),
        image_name="XR-01_00002.tif", image_bytes=1_099_794, image_mtime_ns=0,
        image_sha256="b0f996e24c1c46fa87506acba468428d0ef669a157e872b1da12a1ededf7c065",
        sidecar_name="XR-01_00002.xml", sidecar_sha256="a" * 64, width=1024, height=512,
        bit_depth=16, image_format="tiff", preview_jpeg=JPEG,
        preview_sha256=hashlib.sha256(JPEG).hexdigest(), preview_width=1024,
        preview_height=512, **kw,
    )  # fmt: skip


def test_an_xray_scan_lists_containers_with_check_digits_and_names_its_preview() -> None:
    media, record = ScanProcessor("xray-1").feed(scan())
    assert isinstance(media, MediaDraft)
    (media_line, media_style), (line, style) = lines([media, record])
    short = media.media_id[-8:]
    assert media_line == f"        media    {short} image/jpeg 20 KB" and media_style == "dim"
    assert style == "bold"
    assert line.startswith("     #7 X-RAY SCAN XR-01-5742-000002 lane L3:")
    assert "CSQU3054383 \u2713, MSCU1234560 \u2717, operator Nguyễn Văn Ân" in line
    assert "image b0f996e24c1c " in line
    assert f"preview {short} 1024x512 20 KB" in line


def test_an_xray_error_is_red_with_its_reason_file_and_hash() -> None:
    failed = ScanFailed(at=AT, stem="XR-01_00001", reason="corrupt_image",
                        message="XR-01_00001.tif: corrupt image", image_name="XR-01_00001.tif",
                        image_sha256="b0f996e24c1c" + "0" * 52)  # fmt: skip
    [(line, style)] = lines(ScanProcessor("xray-1").feed(failed))
    assert (line, style) == (
        "     #7 X-RAY ERROR corrupt_image: XR-01_00001.tif sha256 b0f996e24c1c",
        "alert",
    )


def test_motion_phases_and_stills_are_one_line_each_with_the_picture_size() -> None:
    picture = Snapshot(jpeg=JPEG, sha256=hashlib.sha256(JPEG).hexdigest(), width=960, height=540)
    camera = CameraProcessor("cam-lane-1")

    def motion(phase: Phase, snapshot: Snapshot | None) -> list[Outgoing]:
        return camera.feed(
            MotionObserved(at=AT, phase=phase, event_id="e1", boxes=((0.1, 0.4, 0.9, 0.95),),
                           score=0.4321, snapshot=snapshot, started_at=AT, frames=12)
        )  # fmt: skip

    [(start, start_style)] = lines(motion("start", None))
    assert (start, start_style) == ("     #7 motion   cam-lane-1: start score 0.4321", "bold")
    assert lines(motion("update", None))[0][1] == "dim"
    media, (end, end_style) = lines(motion("end", picture))
    assert end_style == "bold"
    assert end == "     #7 motion   cam-lane-1: end score 0.4321, snapshot 960x540 20 KB"
    assert media[0].split()[0] == "media"
    _, (still, still_style) = lines(camera.feed(StillCaptured(at=AT, snapshot=picture)))
    assert (still, still_style) == ("     #7 reading  cam-lane-1: still 960x540 20 KB", "dim")


def test_media_are_described_not_parsed_even_without_a_content_type() -> None:
    line, style = describe(f"{ROOT}/media/01a20aa7-0451-754e-a1f0-363db4732fa0", JPEG)
    assert (line, style) == ("        media    b4732fa0 binary 20 KB", "dim")


def test_ocr_results_show_kind_text_verification_confidence_and_camera() -> None:
    def ocr(verified: bool) -> bytes:
        data = {"kind": "container", "text": "CSQU3054383", "verified": verified,
                "confidence": 0.93, "camera": "cam-lane-1", "region": "rear"}  # fmt: skip
        draft = Draft(topic="event/ocr", schema="ocr/1", device="cam-lane-1", ts=WHEN,
                      data=data, priority=Priority.EVENT)  # fmt: skip
        return envelope(draft)

    line, style = describe(f"{ROOT}/event/ocr", ocr(True))
    assert style == "bold"
    assert line == (
        "     #7 OCR      cam-lane-1: container CSQU3054383 verified \u2713 (confidence 0.93),"
        " region rear"
    )
    line, style = describe(f"{ROOT}/event/ocr", ocr(False))
    assert "CSQU3054383 unverified" in line and style == "alert"


def test_a_stalled_camera_is_red_and_says_what_stalled_means() -> None:
    health = DeviceHealth(device="cam-lane-1", driver="camera.opencv")
    health.change(DeviceState.STALLED, "no frame for 10 s")
    line, style = describe(f"{ROOT}/device/cam-lane-1/state", envelope(health.draft()))
    assert style == "alert"
    assert "cam-lane-1 is stalled (connected but its stream stopped; reopening)" in line
    assert line.endswith("- no frame for 10 s")
