"""What the service manager and central see of the daemon itself (issue 17).

``STATUS=`` said "serving 4 device(s)" forever, also at shutdown; after a restart,
central kept the old retained ``stopped`` of a device until its first reading; a
watchdog kill (SIGABRT) left no traceback. Real daemon, real notify socket.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.broker import Central, Mosquitto, free_port
from tests.helpers import config_text
from tests.process import GatewayProcess

POINT = '[[devices.points]]\nname = "t"\naddress = 0\nfunction = "holding"\ntype = "uint16"\n'


def dead_sensor_config(tmp_path: Path, broker: Mosquitto) -> Path:
    device = {"id": "sensor-1", "driver": "modbus", "target": f"tcp://127.0.0.1:{free_port()}",
              "unit": 1}  # fmt: skip
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", broker.port, [device]) + POINT)
    return config


async def test_status_says_what_is_up_and_that_it_is_stopping(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    gateway = GatewayProcess(dead_sensor_config(tmp_path, broker), tmp_path)
    try:
        await gateway.start()
        down = await gateway.wait_note(lambda n: "STATUS=0/1 devices up, 1 down" in n)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert "uplink connected" in down and "outbox" in down
    assert any(n.startswith("STATUS=stopping;") for n in gateway.notes), gateway.notes


async def test_every_device_state_is_published_at_start(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = dead_sensor_config(tmp_path, broker)
    gateway = GatewayProcess(config, tmp_path)
    try:
        await gateway.start()
        await central.wait_for(lambda c: bool(c.records("sensor-1/state")), 20)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    first = central.records("sensor-1/state")[0]["data"]
    assert first["state"] == "starting", "central learns this run has begun at once"


async def test_a_watchdog_abort_leaves_the_stack_in_the_log(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    gateway = GatewayProcess(dead_sensor_config(tmp_path, broker), tmp_path)
    try:
        await gateway.start()
        code = await gateway.stop(signal.SIGABRT)
    finally:
        await gateway.ensure_stopped()
    assert code < 0, "ended by the signal, as systemd's watchdog expects"
    log = gateway.log.read_text()
    assert "Fatal Python error: Aborted" in log
    assert 'File "' in log and "in run" in log, "the main thread's stack, down to the loop"
