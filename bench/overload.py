"""Offered load against delivered load: does the gateway plateau past saturation?

Run from the repository root: ``.venv/bin/python bench/overload.py
[--rates 1000,2000,4000,6000,8000] [--seconds 15] [--per-device-hz 5]``.

The gateway path runs in this process as the daemon runs it: one coroutine per device
appends its telemetry draft and awaits it (as a supervisor awaits ``emit``), the
``Outbox`` commits in groups and the ``Uplink`` publishes at QoS 1 to a real mosquitto.
Central is ``mosquitto_sub`` in its own process, writing one line per message to a
file: what counts is what reaches it. For each offered rate (devices x per-device rate)
it prints what was offered, what central received per second over the phase's second
half and as a share of the best rate seen (the peak: a plateau stays near 1.00), the
telemetry shed while saturated, the outbox backlog, evictions, and CPU. The same rates
run twice in one invocation: with the outbox's saturation thinning, and without it
(the baseline: every draft stored, the old behaviour).

A measurement, not a test: it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers

from gateway.outbox import Outbox
from gateway.records import Draft, Priority
from gateway.uplink import Uplink
from tests.broker import Mosquitto
from tests.helpers import make_config


def lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


async def device(box: Outbox, name: str, period_s: float, counter: list[int]) -> None:
    n = 0
    next_at = time.monotonic()
    while True:
        n += 1
        await box.append(
            [
                Draft(
                    topic=f"reading/{name}/points",
                    schema="points/1",
                    device=name,
                    ts=datetime.now(UTC),
                    data={"values": {"heartbeat": n, "temperature": 21.5}, "changed": []},
                    priority=Priority.TELEMETRY,
                )
            ]
        )
        counter[0] += 1
        next_at += period_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def phase(
    box: Outbox, out: Path, rate: int, per_device_hz: float, seconds: float
) -> dict[str, float]:
    devices = max(1, round(rate / per_device_hz))
    appended = [0]
    cpu0 = time.process_time()
    tasks = [
        asyncio.create_task(device(box, f"dev-{rate}-{i}", 1 / per_device_hz, appended))
        for i in range(devices)
    ]
    await asyncio.sleep(seconds / 2)
    got0, t0, app0 = lines(out), time.monotonic(), appended[0]
    ev0, shed0 = box.stats.evicted_total, box.stats.shed_total
    await asyncio.sleep(seconds / 2)
    got1, t1, app1 = lines(out), time.monotonic(), appended[0]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    span = t1 - t0
    return {
        "devices": devices,
        "offered": rate,
        "appended": (app1 - app0) / span,
        "delivered": (got1 - got0) / span,
        "backlog": box.stats.depth,
        "evicted": (box.stats.evicted_total - ev0) / span,
        "shed": (box.stats.shed_total - shed0) / span,
        "cpu": (time.process_time() - cpu0) / seconds,
    }


async def run_mode(mode: str, work: Path, port: int, out: Path, args: argparse.Namespace) -> None:
    """Every rate with a fresh outbox; 'no thinning' is the code path without shedding."""
    config = make_config(work / mode.replace(" ", "-"), port)
    box = Outbox(config.outbox_path, site="bench", gateway="gw", max_bytes=args.max_bytes)
    if mode == "no thinning":
        box._shed = lambda drafts: False  # type: ignore[method-assign]  # the baseline
    print(f"-- {mode}")
    print(
        f"{'devices':>7} {'offered/s':>9} {'central/s':>9} {'of peak':>7}"
        f" {'shed/s':>7} {'backlog':>8} {'evicted/s':>9} {'cpu':>5}"
    )
    peak = 0.0
    async with box, Uplink(config, box):
        for rate in (int(r) for r in args.rates.split(",")):
            r = await phase(box, out, rate, args.per_device_hz, args.seconds)
            peak = max(peak, r["delivered"])
            print(
                f"{r['devices']:>7.0f} {r['offered']:>9.0f} {r['delivered']:>9.0f}"
                f" {r['delivered'] / peak:>7.2f} {r['shed']:>7.0f} {r['backlog']:>8.0f}"
                f" {r['evicted']:>9.0f} {r['cpu']:>5.2f}",
                flush=True,
            )
            await box_drained(box)


async def box_drained(box: Outbox, timeout_s: float = 120) -> None:
    """Let the backlog of one phase go before the next starts."""
    deadline = time.monotonic() + timeout_s
    while box.stats.depth > 100 and time.monotonic() < deadline:  # noqa: ASYNC110 - a bench polls a counter
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,2000,4000,6000,8000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--per-device-hz", type=float, default=5.0)
    parser.add_argument("--max-bytes", type=int, default=256 * 1024 * 1024)
    args = parser.parse_args()
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        raise SystemExit("mosquitto_sub is needed: apt-get install mosquitto-clients")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        broker.start()
        out = work / "central.txt"
        with out.open("wb") as sink:
            central = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
                [sub, "-p", str(broker.port), "-h", "127.0.0.1", "-q", "1", "-t", "customs/#"],
                stdout=sink,
            )
        try:
            for mode in ("thinning", "no thinning"):
                await run_mode(mode, work, broker.port, out, args)
        finally:
            central.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                central.wait(5)
            broker.stop()
    print(f"(pid {os.getpid()}, one process: producers + outbox + uplink; central apart)")


if __name__ == "__main__":
    asyncio.run(main())
