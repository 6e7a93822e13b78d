"""How soon a scale that was away is read again: simulator back -> reading at central.

Run from the repository root:
``.venv/bin/python bench/device_return.py [--absences 2,8,20] [--rounds 1]``
(needs ``/usr/sbin/mosquitto``; it starts its own broker on a free loopback port).

The gateway daemon runs as a process (``edge-gateway run``, default backoff: 1 s
doubling to 60 s) with one Toledo scale on a pty (``simulators.scale``), through a
real mosquitto to a central subscriber. The simulator is stopped (its pty and link
vanish, as when a USB adapter is pulled) and started again after each absence; the
figure is the time from its link existing again to the first ``reading/scale-1/weight``
taken after it went away arriving at central (target: under 2 s, whatever the backoff
had reached). The daemon's "device is back" log lines show which returns the presence
watch caught and how much backoff it cut short. A measurement: it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers

from tests.broker import Central, Mosquitto
from tests.device_return import Returns, time_returns


async def one_round(workdir: Path, absences: list[float]) -> Returns:
    """One daemon, one broker, one central."""
    broker = Mosquitto(workdir)
    broker.start()
    try:
        central = Central(port=broker.port, client_id="central-bench")
        central.attach(asyncio.get_running_loop())
        await asyncio.to_thread(central.start)
        try:
            return await time_returns(workdir, broker.port, central, absences)
        finally:
            await asyncio.to_thread(central.stop)
    finally:
        broker.stop()


def early_retries(log: Path) -> list[dict[str, object]]:
    """The daemon's "device is back" lines: returns the presence watch caught."""
    entries = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return [e for e in entries if e.get("event") == "device is back; retrying now"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--absences", default="2,8,20", help="seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    absences = [float(a) for a in args.absences.split(",")]
    results: list[list[float]] = []
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="device-return-") as tmp:
            returns = await one_round(Path(tmp), absences)
            early = early_retries(returns.log)
        results.append(returns.seconds)
        print(f"round {n}:")
        for absence, took in zip(absences, returns.seconds, strict=True):
            print(f"  away {absence:5.1f} s -> reading at central {took:5.2f} s after it was back")
        for entry in early:
            print(
                f"  presence watch: retried {entry['early_by_s']} s before a"
                f" {entry['backoff_s']} s backoff ran out"
            )
    worst = max(max(r) for r in results)
    print(f"worst {worst:.2f} s; median {statistics.median(t for r in results for t in r):.2f} s")
    print(f"target < 2 s: {'met' if worst < 2.0 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
