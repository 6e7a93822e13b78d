"""``kill -9`` with trucks on the scale: does every truck still give one weighing?

Run from the repository root::

    .venv/bin/python bench/weighing_kill.py [--trucks 20] [--speed 1] [--seed 1]

A Toledo scale simulator on a pty plays ``--trucks`` trucks (drive on 1.5 s, stand
3 s, drive off 1 s at speed 1); the daemon runs as a real process (``edge-gateway
run``) against a private mosquitto, with ``stable_window_s = 1`` and telemetry at
every frame. Once per truck, at a random moment while the truck is on the scale
(driving on, standing or driving off: within 5.4 s at speed 1 of the first telemetry
above ``min_weight_kg`` that central receives), the daemon gets SIGKILL and is
started again. Then the weighings central received are compared with the
simulator's true weights:

- complete: trucks with exactly one ``complete`` weighing of their true weight;
- fragments: records (any status) whose start is not the frame a truck drove on
  (the scale turning loaded in the telemetry): a passage split by a restart;
- no_stable_weight: records without a weight (a fragment, or a passage the gateway
  did not see stand still for ``stable_window_s``);
- duplicates: ``complete`` records beyond one per truck;
- missing: trucks without a ``complete`` record.

A measurement, not a test: it exits 0 unless it crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import signal
import statistics
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.scale import ScaleSimulator
from simulators.trucks import DRIVE_OFF_S, DRIVE_ON_S, PLATEAU_S
from tests.broker import Central, Mosquitto
from tests.helpers import config_text
from tests.process import GatewayProcess

MIN_KG = 200
TELEMETRY = "reading/scale-1/weight"
FRAME_S = 0.1  # telemetry is every frame (10 Hz): central sees a truck arrive at once


def arrivals(central: Central) -> list[str]:
    """When trucks drove on: telemetry times where an empty scale turned loaded."""
    times, loaded = [], False
    for r in central.records(TELEMETRY):
        now = (r["data"]["weight_kg"] or 0) >= MIN_KG
        if now and not loaded:
            times.append(r["ts"])
        loaded = now
    return times


def arrived(trucks: int, central: Central) -> bool:
    """At least ``trucks`` trucks have driven on."""
    return len(arrivals(central)) >= trucks


def verdict(
    weighings: list[dict[str, Any]], truth: list[int], arrived_at: list[str]
) -> dict[str, int]:
    """The counts printed; ``arrived_at``: :func:`arrivals`."""
    expected = Counter(float(kg) for kg in truth)
    got = Counter(w["data"]["weight"] for w in weighings if w["data"]["status"] == "complete")
    return {
        "expected": len(truth),
        "complete": sum(n for kg, n in expected.items() if got[kg] == n),
        "fragments": sum(w["data"]["start"] not in arrived_at for w in weighings),
        "no_stable_weight": sum(w["data"]["status"] != "complete" for w in weighings),
        "duplicates": sum(max(0, got[kg] - n) for kg, n in expected.items()),
        "missing": sum(max(0, n - got[kg]) for kg, n in expected.items()),
    }


async def run(trucks: int, speed: float, seed: int, workdir: Path) -> None:
    rng = random.Random(f"{seed}:kills")
    broker = Mosquitto(workdir)
    broker.start()
    central = Central(port=broker.port, client_id="central-bench")
    central.attach(asyncio.get_running_loop())
    await asyncio.to_thread(central.start)
    link, data, config = workdir / "scale-1", workdir / "data", workdir / "gateway.toml"
    device = {
        "id": "scale-1",
        "driver": "scale.toledo",
        "port": str(link),
        "telemetry_interval_s": 0,
        "stable_window_s": 1.0,
        "silence_timeout_s": 3.0,
    }
    config.write_text(config_text(data, broker.port, [device]))
    gateway = GatewayProcess(config, workdir)
    on_scale_s = (DRIVE_ON_S + PLATEAU_S + DRIVE_OFF_S) / speed - FRAME_S  # seen a frame late
    downtimes: list[tuple[datetime, datetime]] = []
    try:
        async with ScaleSimulator(
            protocol="toledo", link=link, trucks=trucks, speed=speed, seed=seed
        ) as sim:
            await gateway.start()
            for truck in range(trucks):
                try:
                    await central.wait_for(functools.partial(arrived, truck + 1), 60)
                except TimeoutError:
                    print(f"truck {truck + 1} not seen driving on; no more kills", flush=True)
                    break
                await asyncio.sleep(rng.uniform(0, on_scale_s))  # the random moment is the point
                killed = datetime.now(UTC)
                await gateway.stop(signal.SIGKILL)
                await gateway.start()
                downtimes.append((killed, datetime.now(UTC)))
                print(f"truck {truck + 1:2}/{trucks}: killed, ready again", flush=True)
            await sim.finished.wait()
        await gateway.stop()  # SIGTERM: drained
        weighings = central.records("event/weighing")
        arrived_at = arrivals(central)
        numbers = verdict(weighings, sim.truck_weights_kg, arrived_at)
    finally:
        await gateway.ensure_stopped()
        await asyncio.to_thread(central.stop)
        broker.stop()
    down = statistics.median((ready - killed).total_seconds() for killed, ready in downtimes)
    print(f"kills: {len(downtimes)}, kill -> READY=1 median {down:.2f} s")
    for w in weighings:
        d = w["data"]
        split = "" if d["start"] in arrived_at else "  <- not where a truck drove on: a fragment"
        print(f"  {d['start']} {d['status']:16} {d['weight']}{split}")
    print(f"true weights: {sim.truck_weights_kg}")
    print(json.dumps(numbers))
    print(" / ".join(f"{k} {v}" for k, v in numbers.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trucks", type=int, default=20, help="trucks, one kill each")
    parser.add_argument("--speed", type=float, default=1.0, help="simulator time compression")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-weighing-kill-") as tmp:
        asyncio.run(run(args.trucks, args.speed, args.seed, Path(tmp)))


if __name__ == "__main__":
    main()
