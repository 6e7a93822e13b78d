"""A scale configured with the wrong protocol is named at once (issue 17).

A technician planted an XK3190 indicator configured as ``scale.toledo``: 1,800 bad
frames and no good one in three minutes, the device ``starting`` forever, nothing in
the log. Now it is ``degraded`` within seconds with the last bad frame as its error,
logged once, and plain ``gatewayctl status`` shows it. Real pty, real daemon, real
mosquitto.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulators.scale import ScaleSimulator
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess


def states(central: Central) -> list[dict[str, Any]]:
    return [r["data"] for r in central.records("device/scale-1/state")]


async def test_bytes_that_never_decode_make_the_device_degraded_with_the_cause(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    link = tmp_path / "ttyS-scale"
    config = tmp_path / "gateway.toml"
    device = {"id": "scale-1", "driver": "scale.toledo", "port": str(link)}
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    gateway = GatewayProcess(config, tmp_path)
    async with ScaleSimulator(protocol="xk3190", link=link, trucks=None, speed=4.0, seed=3):
        try:
            await gateway.start()
            await central.wait_for(lambda c: any(s["state"] == "degraded" for s in states(c)), 20)
            code, shown = await run_ctl(config, "status")
            _, as_json = await run_ctl(config, "status", "--json")
            assert await gateway.stop() == 0
        finally:
            await gateway.ensure_stopped()
    degraded = next(s for s in states(central) if s["state"] == "degraded")
    assert "no frame decodes" in degraded["last_error"]
    assert "toledo" in degraded["last_error"], "the codec's own words for the bad frame"
    assert degraded["counters"]["readings"] == 0
    assert code == 1 and "DEGRADED" in shown and "no frame decodes" in shown
    assert json.loads(as_json)["devices"]["scale-1"]["counters"]["bad_frames"] >= 5
    warnings = [
        line for line in gateway.log.read_text().splitlines()
        if "device sends nothing that decodes" in line
    ]  # fmt: skip
    assert len(warnings) == 1, "logged once"
