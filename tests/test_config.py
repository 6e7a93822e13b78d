"""Config errors name the file, the key path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.ctl import main as gatewayctl
from gateway.errors import ConfigError
from tests.helpers import config_text

SCALE = {"id": "scale-1", "driver": "scale.toledo", "port": "/dev/ttyUSB0", "baudrate": 9600}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_the_documented_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, config_text(tmp_path, 1883, [SCALE])))
    assert config.gateway.root == "customs/haiphong-dinhvu/gate-3"
    assert config.devices[0].id == "scale-1"
    assert config.outbox_path == tmp_path / "outbox.sqlite3"


def test_the_shipped_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "systemd" / "gateway.toml")
    assert config.devices


def test_a_typo_in_a_device_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    typo = {**SCALE, "baudrat": 9600}
    del typo["baudrate"]
    path = write(tmp_path, config_text(tmp_path, 1883, [typo]))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "devices[0].baudrat: unknown key (did you mean 'baudrate'?)" in message


def test_a_typo_in_a_section_key(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 1883).replace("port =", "prot ="))
    with pytest.raises(ConfigError, match=r"mqtt\.prot: unknown key \(did you mean 'port'\?\)"):
        load_config(path)


def test_wrong_types_and_values_say_what_is_expected(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(tmp_path, 99999))
    with pytest.raises(ConfigError, match=r"mqtt\.port: .*less than or equal to 65535"):
        load_config(path)


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
    assert "scale-1: scale.toledo" in capsys.readouterr().out
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
