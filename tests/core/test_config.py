"""Config errors name the file, the key path and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.gatewayctl import main as gatewayctl
from tests.helpers import config_text

SCALE = {"id": "scale-1", "driver": "scale.toledo", "port": "/dev/ttyUSB0", "baudrate": 9600}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_the_documented_shape_gives_its_values_and_the_defaults(tmp_path: Path) -> None:
    scale = {**SCALE, "baudrate": 19200}  # not the default, so it must come from the file
    config = load_config(write(tmp_path, config_text(tmp_path, 1884, [scale])))
    # what the file says
    assert config.gateway.root == "customs/haiphong-dinhvu/gate-3"
    assert config.gateway.data_dir == tmp_path
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.reconnect_min_s, mqtt.reconnect_max_s) == (
        "127.0.0.1",
        1884,
        0.5,
        2.0,
    )
    # what it leaves out: the documented defaults
    assert (mqtt.keepalive, mqtt.inflight, mqtt.client_id, mqtt.tls_ca) == (30, 32, None, None)
    assert config.outbox.max_bytes == 256 * 1024 * 1024
    assert config.outbox_path == tmp_path / "outbox.sqlite3"
    assert config.control_socket == tmp_path / "control.sock"
    # a device: its driver's keys parsed and its driver's defaults filled in
    (device,) = config.devices
    expected = {
        "id": "scale-1",
        "driver": "scale.toledo",
        "enabled": True,
        "port": "/dev/ttyUSB0",
        "baudrate": 19200,
        "framing": "8N1",
        "checksum": True,
        "min_weight_kg": 200.0,
        "stable_window_s": 2.0,
    }
    assert device.model_dump().items() >= expected.items()


SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / "gateway.toml"


def test_the_shipped_example_config_says_what_the_unit_runs() -> None:
    config = load_config(SHIPPED)
    assert config.gateway.root == "customs/haiphong-dinhvu/gate-3"
    assert config.outbox_path == Path("/var/lib/edge-gateway/outbox.sqlite3")
    assert config.outbox.max_bytes == 256 * 1024 * 1024
    assert config.control_socket == Path("/run/edge-gateway/control.sock")
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls_ca) == ("127.0.0.1", 1883, None)
    assert [(d.id, d.driver) for d in config.devices] == [
        ("scale-1", "scale.toledo"),
        ("seal-gate-1", "eseal.reader"),
        ("elocks", "eseal.jt808"),
        ("xray-1", "xray.folder"),
        ("cam-lane-1", "camera.opencv"),
    ]
    reader, camera = config.devices[1].model_dump(), config.devices[4].model_dump()
    assert (reader["crc_init"], reader["layout"], reader["reader"]) == (0xFFFF, "hgt", 1)
    assert [r["name"] for r in camera["ocr_regions"]] == ["door", "cab-plate"]
    assert camera["ocr_on_weighing"] == ("scale-1",)


def test_the_shipped_examples_commented_out_keys_work_when_uncommented(tmp_path: Path) -> None:
    """What a technician does: uncomment the TLS and login lines of ``[mqtt]``, and the
    e-locks' source networks."""
    lines = SHIPPED.read_text().splitlines()
    uncommented = [re.sub(r"^# (\w+ = )", r"\1", line) for line in lines]
    assert sum(a != b for a, b in zip(lines, uncommented, strict=True)) == 7
    config = load_config(write(tmp_path, "\n".join(uncommented)))
    mqtt = config.mqtt
    assert mqtt.tls_ca == Path("/etc/edge-gateway/tls/ca.pem")
    assert (mqtt.tls_cert, mqtt.tls_key) == (
        Path("/etc/edge-gateway/tls/gate-3.crt"),
        Path("/etc/edge-gateway/tls/gate-3.key"),
    )
    assert mqtt.username == "gate-3"
    assert mqtt.password_file == Path("/etc/edge-gateway/mqtt-password")
    assert mqtt.keepalive == 30
    elocks = config.devices[2].model_dump()
    assert [str(n) for n in elocks["allowed_networks"]] == ["10.20.0.0/16"]


def test_a_typo_in_a_device_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    typo = {**SCALE, "baudrat": 9600}
    del typo["baudrate"]
    path = write(tmp_path, config_text(tmp_path, 1883, [typo]))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    # one line names the file, the key and the fix
    assert f"{path}: devices[0].baudrat: unknown key (did you mean 'baudrate'?)" in message


def test_a_typo_in_a_section_key(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 1883).replace("port =", "prot ="))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: mqtt.prot: unknown key (did you mean 'port'?)" in str(err.value)


def test_wrong_types_and_values_say_what_is_expected(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 99999))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: mqtt.port: " in str(err.value)
    assert "less than or equal to 65535 (got 99999)" in str(err.value)


def test_an_unknown_driver_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 1883, [{**SCALE, "driver": "scale.toldeo"}]))
    with pytest.raises(
        ConfigError,
        match=r"devices\[0\]\.driver: unknown driver 'scale.toldeo'.*"
        r"scale\.toledo",
    ):
        load_config(path)


def test_missing_required_keys_and_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\nsite = 'a'\nid = 'b'\n[mqtt]\nhost = 'h'\n")
    with pytest.raises(ConfigError, match=r"gateway\.data_dir: required key is missing"):
        load_config(path)
    path = write(tmp_path, config_text(tmp_path, 1883, [SCALE, SCALE]))
    with pytest.raises(ConfigError, match="duplicate id 'scale-1'"):
        load_config(path)


def test_tls_half_configured_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 8883, extra='tls_cert = "/x.pem"'))
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_config(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[gateway\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_gatewayctl_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, config_text(tmp_path, 1883, [SCALE]))
    assert gatewayctl(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: OK"
    assert [" ".join(line.split()) for line in out[1:]] == [
        "topic root customs/haiphong-dinhvu/gate-3",
        "broker 127.0.0.1:1883",
        f"outbox {tmp_path / 'outbox.sqlite3'} (max {256 * 1024 * 1024} bytes)",
        f"control {tmp_path / 'control.sock'}",
        "device scale-1: scale.toledo",
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(tmp_path, 1883, [{**SCALE, "parity": "E"}]))
    assert gatewayctl(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: devices[0].parity: unknown key" in err


def test_gatewayctl_says_clearly_when_the_daemon_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, config_text(tmp_path, 1883, [SCALE]))
    assert gatewayctl(["--config", str(config), "status"]) == 3
    err = capsys.readouterr().err
    assert "the gateway daemon is not running" in err
    assert "systemctl start edge-gateway" in err
