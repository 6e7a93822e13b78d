"""How far the outbox goes over its byte cap while the broker is away.

Run from the repository root: ``.venv/bin/python bench/outbox_cap.py [--cap 65536]
[--seconds 60] [--rate 20]``.

A broker outage of ``--seconds`` at ``--rate`` records a second (telemetry, with an
event every 25th record and an alarm every 200th, ~400-byte payloads) is replayed into
a real outbox on disk with nobody draining it, as fast as the outbox takes it. After
every append the payload bytes held are compared with the cap; at the end the database
itself is summed. Prints the largest overshoot in bytes (target: at most one commit's
worth, i.e. the largest single append), the eviction report rows left (target: 1) and
whether every ``seq`` is either still queued or covered by the report.

A measurement, not a test: it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from gateway.outbox import EVICTION_TOPIC, Outbox
from gateway.records import Draft, Priority


def priority_of(n: int) -> Priority:
    if n % 200 == 0:
        return Priority.ALARM
    return Priority.EVENT if n % 25 == 0 else Priority.TELEMETRY


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=64 * 1024)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    records = int(args.seconds * args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outbox.sqlite3"
        overshoot, biggest = 0, 0
        async with Outbox(path, site="bench", gateway="gw", max_bytes=args.cap) as box:
            for n in range(records):
                draft = Draft(
                    topic=f"reading/dev-{n % 10}/points",
                    schema="points/1",
                    device=f"dev-{n % 10}",
                    ts=datetime.now(UTC),
                    data={"n": n, "values": {"pad": "x" * 300}},
                    priority=priority_of(n),
                )
                appended = await box.append([draft])
                biggest = max(biggest, sum(len(r.payload) for r in appended))
                overshoot = max(overshoot, box.stats.bytes - args.cap)
            last_seq, evicted = box.stats.last_seq, box.stats.evicted_total
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT env_seq, topic, payload FROM records").fetchall()
    held = sum(len(p) for _, _, p in rows)
    reports = [json.loads(p)["data"] for _, t, p in rows if t == EVICTION_TOPIC]
    covered = {s for r in reports for a, b in r["seq_ranges"] for s in range(a, b + 1)}
    uncovered = set(range(1, last_seq + 1)) - {s for s, _, _ in rows} - covered
    print(f"records appended      {records} ({args.seconds:.0f} s at {args.rate:.0f}/s)")
    print(f"cap                   {args.cap} bytes")
    print(f"largest overshoot     {max(overshoot, 0)} bytes (largest append {biggest} bytes)")
    print(f"held at the end       {held} bytes in {len(rows)} rows (evicted {evicted})")
    print(f"eviction report rows  {len(reports)}")
    print(f"seqs neither queued nor reported: {len(uncovered)}")


if __name__ == "__main__":
    asyncio.run(main())
