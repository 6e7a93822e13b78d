"""What other local users can read: the data dir, the outbox, the secrets (issue 13).

The daemon runs as a real process started with umask 022 (what a shell or an init
script without ``UMask=`` gives it): it must set its own umask, create ``data_dir``
0750 and leave the outbox files unreadable to others; a secret file that its group can
read is warned about once at start.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The test process (and so the daemon it starts) with the permissive umask 022."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def log_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    out = []
    for line in gateway.log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


async def run_until_online(config: Path, tmp_path: Path, central: Central) -> GatewayProcess:
    gateway = GatewayProcess(config, tmp_path)
    await gateway.start()
    await central.wait_for(
        lambda c: any(m.topic.endswith("/status") and m.json()["state"] == "online"
                      for m in c.snapshot()),
        20,
    )  # fmt: skip
    return gateway


@pytest.mark.usefixtures("umask_022")
async def test_daemon_started_with_umask_022_keeps_data_dir_and_outbox_private(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(data, broker.port))
    gateway = await run_until_online(config, tmp_path, central)
    try:
        code, out = await run_ctl(config, "status", "--json")
        assert code == 0, out
        modes = {p.name: mode(p) for p in [data, *data.iterdir()]}
        sockets = {p.name for p in data.iterdir() if p.is_socket()}
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert modes["data"] == 0o750, f"{modes['data']:o}"
    outbox = {n: m for n, m in modes.items() if n.startswith("outbox.sqlite3")}
    assert {"outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"} <= set(outbox), modes
    assert sockets == {"control.sock"}
    assert modes["control.sock"] == 0o660  # the group (technicians) connects to it
    wide = {
        n: f"{m:04o}" for n, m in modes.items() if m & 0o007 or (m & 0o020 and n not in sockets)
    }
    assert wide == {}, f"open to others, or group-writable: {wide}"


@pytest.mark.usefixtures("umask_022")
async def test_a_wide_data_dir_and_outbox_from_before_are_tightened_at_start(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    db = sqlite3.connect(data / "outbox.sqlite3")  # as an older version left it: 0644
    db.execute("CREATE TABLE t (x)")
    db.close()
    assert mode(data / "outbox.sqlite3") == 0o644
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(data, broker.port))
    gateway = await run_until_online(config, tmp_path, central)
    try:
        assert mode(data) == 0o750
        assert mode(data / "outbox.sqlite3") == 0o640
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    tightened = [e for e in log_lines(gateway) if e.get("event", "").startswith("tightened")]
    assert {Path(e["path"]).name for e in tightened} == {"data", "outbox.sqlite3"}, tightened


@pytest.mark.usefixtures("umask_022")
async def test_a_secret_file_its_group_can_read_is_warned_about_once(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    password = tmp_path / "mqtt.password"
    password.write_text("secret\n")
    os.chmod(password, 0o640)  # root:edge-gateway 0640, as the old README said
    key = tmp_path / "client.key"
    key.write_text("not read: no TLS here\n")
    os.chmod(key, 0o600)
    extra = f'username = "gate-3"\npassword_file = "{password}"'
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", broker.port, extra=extra))
    gateway = await run_until_online(config, tmp_path, central)
    try:
        await gateway.stop()
    finally:
        await gateway.ensure_stopped()
    warned = [e for e in log_lines(gateway) if e.get("event", "").startswith("secret file")]
    assert [(e["key"], e["path"], e["mode"]) for e in warned] == [
        ("mqtt.password_file", str(password), "0640")
    ]
    assert warned[0]["level"] == "warning"


def test_credential_names_resolve_to_the_systemd_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = config_text(
        tmp_path, 8883, extra='username = "gate-3"\npassword_file = "credential:mqtt-password"'
    )
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="LoadCredential=mqtt-password:PATH"):
        parse_config(text, tmp_path / "gateway.toml")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    config = parse_config(text, tmp_path / "gateway.toml")
    assert config.mqtt.password_file == tmp_path / "creds" / "mqtt-password"
    bad = text.replace("credential:mqtt-password", "credential:../etc/passwd")
    with pytest.raises(ConfigError, match="plain file name"):
        parse_config(bad, tmp_path / "gateway.toml")
