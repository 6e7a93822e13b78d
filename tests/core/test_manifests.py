"""Pre-arrival manifests pushed by the centre on cmd/manifest (issue 14, item 3)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.manifests import ManifestStore
from tests.broker import Central, Mosquitto, mqtt_request
from tests.core.test_asyncapi import message_errors
from tests.core.test_daemon import run_ctl
from tests.helpers import config_text
from tests.process import GatewayProcess

ROOT = "customs/haiphong-dinhvu/gate-3"
COMMAND = f"{ROOT}/cmd/manifest"


def manifest(manifest_id: str, **changes: Any) -> dict[str, Any]:
    until = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    return {"id": manifest_id, "plate": "15C-123.45", "containers": ["MSKU4135329"],
            "seals": ["HGT0001234"], "declared_gross_kg": 32140, "scan_required": True,
            "valid_until": until, **changes}  # fmt: skip


async def ask(broker: Mosquitto, request: dict[str, Any]) -> dict[str, Any]:
    """The final reply of one cmd/manifest request; both must fit docs/asyncapi.yaml
    (the invalid manifests this test sends on purpose are checked by the gateway)."""
    if request["op"] != "put" or all("plate" in m for m in request["manifests"]):
        assert message_errors("manifestRequest", request) == []
    parts = await mqtt_request(broker.port, COMMAND, request)
    body: dict[str, Any] = json.loads(parts[-1].payload)
    assert message_errors("manifestReply", body) == []
    return body


def online(central: Central) -> bool:
    """The gateway's last status is online (it subscribes to cmd/ before saying so)."""
    states = [m.json()["state"] for m in central.snapshot() if m.topic == f"{ROOT}/status"]
    return bool(states) and states[-1] == "online"


async def test_manifests_are_validated_kept_across_kill_9_and_listed(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path / "data", broker.port))
    gateway = GatewayProcess(config, tmp_path)
    try:
        await gateway.start()
        await central.wait_for(online, 20)
        bad = [manifest("M-1"), manifest("M-2", containers=["MSKU4135328"])]
        refused = await ask(broker, {"op": "put", "manifests": bad})
        no_field = await ask(broker, {"op": "put", "manifests": [{"id": "M-3"}]})
        good = [manifest("M-1"), manifest("M-2", plate="29H-456.78", containers=[])]
        put = await ask(broker, {"op": "put", "manifests": good})
        deleted = await ask(broker, {"op": "delete", "ids": ["M-2", "M-9"]})
        assert await gateway.stop(signal.SIGKILL) != 0
        central.messages.clear()  # the broker now says offline (the will), then online again
        await gateway.start()
        await central.wait_for(online, 20)
        listed = await ask(broker, {"op": "list"})
        code, shown = await run_ctl(config, "manifests")
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    assert refused["status"] == "error"
    assert refused["error"].startswith("manifests[1].containers[0]:"), refused
    assert "MSKU4135328" in refused["error"]
    assert no_field["error"].startswith("manifests[0].plate: Field required"), no_field
    assert put == {"status": "ok", "op": "put", "put": ["M-1", "M-2"], "held": 2}
    assert deleted["deleted"] == ["M-2"]
    assert listed["ids"] == ["M-1"], "kept across kill -9, the refused request changed nothing"
    assert code == 0 and "M-1" in shown and "MSKU4135329" in shown and "M-2" not in shown


def test_expired_manifests_are_dropped_when_read_and_on_every_change(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 4, 8, 0, tzinfo=UTC)]
    store = ManifestStore(tmp_path, clock=lambda: now[0])
    soon = (now[0] + timedelta(minutes=5)).isoformat()
    later = (now[0] + timedelta(hours=5)).isoformat()
    store.put([manifest("M-1", valid_until=soon), manifest("M-2", valid_until=later)])
    now[0] += timedelta(minutes=10)
    assert [m.id for m in ManifestStore(tmp_path, clock=lambda: now[0]).manifests.values()] == [
        "M-2"
    ]
    assert [m.id for m in store.current()] == ["M-2"]
    assert "M-1" not in (tmp_path / "manifests.json").read_text(), "dropped from the file too"
