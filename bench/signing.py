"""What signing costs a record: envelope alone, envelope + Ed25519 signature, and the
outbox's append path with and without a signer, all in this run.

Run from the repository root: ``.venv/bin/python bench/signing.py [--records 20000]``.

Drafts are telemetry of the size a scale sends every second. Pinned to one CPU; CPU
time per record (``time.process_time``), medians of ``--rounds``. Also what central pays
to check one record (:func:`gateway.verify.check_record`). A measurement: it prints
figures and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.outbox import Outbox
from gateway.records import GENESIS, Draft, Priority, envelope, uuid7
from gateway.signing import RecordSigner
from gateway.verify import check_record


def drafts(count: int) -> list[Draft]:
    """Scale telemetry, one per second of a lane."""
    now = datetime.now(UTC)
    return [
        Draft(
            topic="reading/scale-1/weight",
            schema="weight/1",
            device="scale-1",
            ts=now,
            data={"weight_kg": 24_000 + n % 500, "stable": n % 3 == 0, "status": "ok"},
            priority=Priority.TELEMETRY,
        )
        for n in range(count)
    ]


def cpu_us_per(count: int, work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return 1e6 * (time.process_time() - start) / count


def outbox_us_per(items: list[Draft], signer: RecordSigner | None) -> float:
    """CPU per record of appending ``items`` in batches of 50 to a fresh outbox."""

    async def run() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            box = Outbox(
                Path(tmp) / "o.sqlite3", site="s", gateway="g", max_bytes=1 << 30, signer=signer
            )
            async with box:
                start = time.process_time()
                for i in range(0, len(items), 50):
                    await box.append(items[i : i + 50])
                return 1e6 * (time.process_time() - start) / len(items)

    return asyncio.run(run())


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    signer = RecordSigner(Ed25519PrivateKey.generate(), Path("bench.pem"))
    public = signer.private.public_key()
    items = drafts(args.records)

    def serialise() -> None:
        for d in items:
            envelope(d, seq=1, record_id=uuid7(), prev=GENESIS, site="s", gateway="g")

    def serialise_and_sign() -> None:
        for d in items:
            signer.sign(envelope(d, seq=1, record_id=uuid7(), prev=GENESIS, site="s", gateway="g"))

    signed = [
        signer.sign(envelope(d, seq=1, record_id=uuid7(), prev=GENESIS, site="s", gateway="g"))
        for d in items
    ]

    def check() -> None:
        for payload in signed:
            check_record(payload, public)

    figures: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, work in (("envelope", serialise), ("envelope+sign", serialise_and_sign),
                           ("central check", check)):  # fmt: skip
            figures.setdefault(name, []).append(cpu_us_per(args.records, work))
        figures.setdefault("outbox unsigned", []).append(outbox_us_per(items, None))
        figures.setdefault("outbox signed", []).append(outbox_us_per(items, signer))
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{args.records} telemetry records, {len(signed[0])} bytes signed, one CPU, "
          f"median of {args.rounds}")  # fmt: skip
    for name, value in med.items():
        print(f"{name:16s} {value:7.1f} µs CPU per record")
    print(f"signature alone  {med['envelope+sign'] - med['envelope']:7.1f} µs per record")
    ratio = med["outbox signed"] / med["outbox unsigned"]
    print(f"outbox signed / unsigned CPU per record: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
