"""Log lines carry their syslog priority when stdout is the journal (issue 17).

Under systemd every line reached the journal at priority 6, so ``journalctl -p
warning`` showed none of the daemon's warnings. systemd sets ``JOURNAL_STREAM`` to the
device and inode of the stream it connected; the daemon then starts each line with
``<N>`` (sd-daemon(3)), which journald takes as the priority and strips. Here the
daemon's stdout is a real file named by ``JOURNAL_STREAM`` the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.broker import Central, Mosquitto, free_port
from tests.helpers import config_text
from tests.process import GatewayProcess


async def test_warnings_reach_the_journal_as_warnings(
    tmp_path: Path, broker: Mosquitto, central: Central, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = {"id": "sensor-1", "driver": "modbus", "target": f"tcp://127.0.0.1:{free_port()}",
            "unit": 1}  # fmt: skip
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(tmp_path / "data", broker.port, [dead])
        + '[[devices.points]]\nname = "t"\naddress = 0\nfunction = "holding"\ntype = "uint16"\n'
    )
    gateway = GatewayProcess(config, tmp_path)
    gateway.log.touch()
    st = gateway.log.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    try:
        await gateway.start()
        await central.wait_for(
            lambda c: any(r["data"].get("state") == "down" for r in c.records("sensor-1/state")),
            30,
        )
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    lines = [line for line in gateway.log.read_text().splitlines() if line.strip()]
    assert lines and all(line[0] == "<" and line[2] == ">" for line in lines), lines[:3]
    by_level = {json.loads(line[3:])["level"]: line[:3] for line in lines if line[3:4] == "{"}
    assert by_level["warning"] == "<4>", "device failed; retrying with backoff"
    assert by_level["info"] == "<6>"
