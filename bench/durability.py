"""Durability under load, counted at central: kill -9, a broker outage, a full disk.

Run from the repository root::

    .venv/bin/python bench/durability.py [--scenarios sigkill,outage,disk_full]
        [--kills 20] [--outage-s 60] [--seed 1] [--keep]

(needs ``/usr/sbin/mosquitto``; ``disk_full`` also needs root and ``mount -t tmpfs``).
Each scenario has its own mosquitto (stock in-flight quota, Receive Maximum 20), a
central subscriber with a persistent session, and the daemon as a real process with
ten Modbus sensors (one simulator, units 1-10 over TCP, ~20 records/s), configured as
in ``tests/core/test_outage_under_load.py``:

- ``sigkill``: the daemon is SIGKILLed after a random 1-4 s of running and started
  again, ``--kills`` times, then runs until drained. Every ``seq`` central received
  must have one record id (a seq given twice would be a reused seq), and the ``prev``
  hash chain must continue across the restarts.
- ``outage``: the broker is stopped for ``--outage-s`` under load, then started again;
  also timed: from the broker's return until the first record committed during the
  outage reaches central.
- ``disk_full``: the data dir on a 24 MiB tmpfs, the broker down, a filler file
  written until ENOSPC, ~20 s more load, then the filler is deleted and the broker
  started; also shown: whether ``gatewayctl status --json`` said ``outbox.disk_full``
  while full, and how many seconds after the deletion it said false again.

At the end of each, the daemon is stopped with SIGTERM and central is given time to
receive everything: every seq up to the outbox's ``last_seq`` (its ``meta`` table)
either arrived or is listed in a received ``event/outbox_evicted`` report's
``seq_ranges``. Printed: committed, arrived (distinct seqs), covered (reported as
evicted, not arrived), lost (the rest: must be 0), and the run time. A lost seq that is
still in the outbox's ``records`` table after the stop is said so (queued for the next
start, not gone). The daemon's warning and error log lines are counted per message.
A measurement: it exits 0 unless it crashes; the work dir (daemon logs, outboxes) is
removed unless something was lost or ``--keep`` is given (then its path is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers

from simulators.modbus import ModbusSimulator
from tests.broker import Central, Mosquitto
from tests.core.test_daemon import run_ctl
from tests.core.test_outage_under_load import (
    SENSORS,
    committed_seq,
    load_config,
    loaded_gateway,
    outage,
)
from tests.core.test_outbox_pressure import covered, fill
from tests.process import GatewayProcess
from tests.records import assert_chain, payloads_by_id

DISK_FULL_LOAD_S = 20.0
"""How long the load goes on with the disk full (and the broker down)."""
RUNNING_S = (1.0, 4.0)
"""sigkill: how long the daemon runs (uniformly drawn) before each SIGKILL."""
SETTLE_S = 60.0
"""Longest wait for central to have every committed seq, before the SIGTERM."""
AFTER_STOP_S = 30.0
"""Longest wait for what the SIGTERM's drain sent last."""
RECOVERY_WAIT_S = 30.0
"""disk_full: longest wait for ``outbox.disk_full`` to be false again."""


@dataclass
class Tally:
    """What central received, parsed once per message (not again at every wake)."""

    ids_by_seq: dict[int, set[str]] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    deliveries: int = 0
    """Enveloped record messages, redeliveries included."""
    _read: int = 0
    _covered: set[int] = field(default_factory=set)

    def update(self, central: Central) -> Tally:
        """Parse the messages that arrived since the last call."""
        new = central.messages[self._read :]
        self._read += len(new)
        for message in new:
            if message.topic.endswith("/status") or "/media/" in message.topic:
                continue
            body = message.json()
            if not isinstance(body, dict) or body.get("seq") is None:
                continue
            self.deliveries += 1
            self.ids_by_seq.setdefault(int(body["seq"]), set()).add(str(body["id"]))
            if body.get("schema") == "outbox_evicted/1":
                self.reports.append(body)
                self._covered = covered(self.reports)
        return self

    def missing(self, last: int) -> set[int]:
        """Seqs up to ``last`` neither received nor reported as evicted."""
        return set(range(1, last + 1)) - self.ids_by_seq.keys() - self._covered

    def covered_only(self, last: int) -> set[int]:
        """Seqs up to ``last`` that a report covers and that did not arrive."""
        return {s for s in self._covered if s <= last} - self.ids_by_seq.keys()


@dataclass
class Result:
    """One scenario's figures."""

    name: str
    committed: int = 0
    arrived: int = 0
    covered: int = 0
    lost: list[int] = field(default_factory=list)
    still_queued: int = 0
    """Lost seqs that are still rows of the outbox after the stop (not gone)."""
    reused: dict[int, set[str]] = field(default_factory=dict)
    """Seqs received with more than one record id."""
    redeliveries: int = 0
    chain: str = "n/a"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    failed: str | None = None
    """The scenario raised (an assertion of a tests/ helper, a timeout): what."""


async def settle(central: Central, tally: Tally, data: Path, timeout_s: float) -> int:
    """Wait until central has (or was told it never gets) every seq committed so far."""
    last = committed_seq(data)
    with contextlib.suppress(TimeoutError):
        await central.wait_for(lambda c: not tally.update(c).missing(last), timeout_s)
    return last


def queued_seqs(data: Path, seqs: list[int]) -> int:
    """How many of ``seqs`` are still rows of the outbox (to be sent at the next start)."""
    if not seqs:
        return 0
    with sqlite3.connect(data / "outbox.sqlite3") as db:
        rows = db.execute("SELECT env_seq FROM records WHERE env_seq IS NOT NULL").fetchall()
    return len({int(r[0]) for r in rows} & set(seqs))


async def finish(result: Result, central: Central, tally: Tally, data: Path) -> None:
    """After the SIGTERM: the last records arrive, then count (central's view)."""
    last = await settle(central, tally, data, AFTER_STOP_S)
    tally.update(central)
    result.committed = last
    result.arrived = len({s for s in tally.ids_by_seq if s <= last})
    result.covered = len(tally.covered_only(last))
    result.lost = sorted(tally.missing(last))
    result.still_queued = queued_seqs(data, result.lost)
    result.reused = {s: ids for s, ids in tally.ids_by_seq.items() if len(ids) > 1}
    result.redeliveries = tally.deliveries - sum(map(len, tally.ids_by_seq.values()))


def chain_verdict(central: Central) -> str:
    """``ok`` when seqs are gap-free and every ``prev`` is the previous payload's hash."""
    try:
        assert_chain(central.records(), payloads_by_id(central.snapshot()))
    except AssertionError as exc:
        return f"BROKEN ({str(exc)[:120]})"
    return "ok"


@contextlib.asynccontextmanager
async def broker_and_central(workdir: Path) -> AsyncIterator[tuple[Mosquitto, Central]]:
    """A stock-quota mosquitto and central's persistent subscriber on it."""
    broker = Mosquitto(workdir, stock_inflight=True)
    central = Central(port=broker.port, client_id="central-bench")
    central.attach(asyncio.get_running_loop())
    async with contextlib.AsyncExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        await asyncio.to_thread(central.start)
        stack.push_async_callback(asyncio.to_thread, central.stop)
        yield broker, central


async def run_sigkill(workdir: Path, args: argparse.Namespace) -> Result:
    result = Result("sigkill")
    rng = random.Random(args.seed)
    data = workdir / "data"
    async with (
        broker_and_central(workdir) as (broker, central),
        ModbusSimulator(profile="sensors", tcp_port=0, units=range(1, SENSORS + 1), seed=3) as sim,
    ):
        assert sim.port is not None
        config = workdir / "gateway.toml"
        config.write_text(load_config(data, broker.port, sim.port))
        gateway = GatewayProcess(config, workdir)
        tally = Tally()
        try:
            for _ in range(args.kills):
                await gateway.start()
                await asyncio.sleep(rng.uniform(*RUNNING_S))  # the run the kill cuts short
                await gateway.stop(signal.SIGKILL)
            await gateway.start()
            await settle(central, tally, data, SETTLE_S)
            code = await gateway.stop(signal.SIGTERM)
            if code != 0:
                result.notes.append(f"exit code {code} after SIGTERM")
        finally:
            await gateway.ensure_stopped()
        await finish(result, central, tally, data)
        result.chain = chain_verdict(central)
    return result


async def run_outage(workdir: Path, args: argparse.Namespace) -> Result:
    result = Result("outage")
    async with broker_and_central(workdir) as (broker, central):
        tally = Tally()
        async with loaded_gateway(workdir, broker, central) as data:
            first_s = await outage(broker, central, data, args.outage_s)
            result.notes.append(f"backlog at central {first_s:.2f} s after the broker's return")
            await settle(central, tally, data, SETTLE_S)
        await finish(result, central, tally, data)
        result.chain = chain_verdict(central)
    return result


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str = "24m") -> Iterator[str | None]:
    """A tmpfs of ``size`` mounted at ``mount`` while in the block; yields why not, or None."""
    if os.geteuid() != 0:
        yield "mounting a tmpfs needs root"
        return
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        yield f"mount -t tmpfs failed: {done.stderr.strip()}"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def disk_full_now(config: Path) -> bool | None:
    """``outbox.disk_full`` as ``gatewayctl status --json`` shows it (None: no answer)."""
    _, out = await run_ctl(config, "status", "--json")
    try:
        return bool(json.loads(out)["outbox"]["disk_full"])
    except (ValueError, KeyError, TypeError):
        return None


async def fill_and_free(broker: Mosquitto, data: Path, config: Path, result: Result) -> None:
    """Broker down, disk full, load for a while; then room again and the broker back."""
    broker.stop()
    await asyncio.to_thread(fill, data / "filler")
    shown: list[bool | None] = []
    until = time.monotonic() + DISK_FULL_LOAD_S
    while time.monotonic() < until:  # the load goes on, the disk full
        shown.append(await disk_full_now(config))
        await asyncio.sleep(1.0)
    full = sum(s is True for s in shown)
    result.notes.append(
        f"disk_full true while full: {'yes' if full else 'NO'} ({full} of {len(shown)} polls)"
    )
    (data / "filler").unlink()
    deleted = time.monotonic()
    broker.start()
    while time.monotonic() - deleted < RECOVERY_WAIT_S:
        if await disk_full_now(config) is False:
            took = time.monotonic() - deleted
            result.notes.append(f"disk_full false {took:.2f} s after the filler was deleted")
            return
        await asyncio.sleep(0.2)
    result.notes.append(f"disk_full still true {RECOVERY_WAIT_S:.0f} s after the deletion")


async def run_disk_full(workdir: Path, _args: argparse.Namespace) -> Result:
    result = Result("disk_full")
    data = workdir / "data"  # where loaded_gateway puts the daemon's data dir
    with small_tmpfs(data) as why:
        if why is not None:
            result.skipped = why
            return result
        async with broker_and_central(workdir) as (broker, central):
            tally = Tally()
            async with loaded_gateway(workdir, broker, central):
                await fill_and_free(broker, data, workdir / "gateway.toml", result)
                await settle(central, tally, data, SETTLE_S)
            await finish(result, central, tally, data)
        result.notes.append(f"eviction reports received: {len(tally.reports)}")
    return result


SCENARIOS: dict[str, Callable[[Path, argparse.Namespace], Awaitable[Result]]] = {
    "sigkill": run_sigkill,
    "outage": run_outage,
    "disk_full": run_disk_full,
}


def log_problems(log: Path, most: int = 4) -> list[str]:
    """The daemon's warning and error lines, counted by message, most frequent first."""
    counts: Counter[str] = Counter()
    for line in log.read_text().splitlines() if log.exists() else []:
        with contextlib.suppress(ValueError):  # a line cut short by SIGKILL, a traceback
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
                error = f" ({str(entry['error'])[:70]})" if "error" in entry else ""
                counts[f"{entry['level']} {entry.get('event')!r}{error}"] += 1
    first = [f"{n} x {what}" for what, n in counts.most_common(most)]
    return first + ([f"... {len(counts) - most} other kinds"] if len(counts) > most else [])


def outcome(result: Result) -> str:
    """Why a scenario has no figures."""
    return (
        f"skipped: {result.skipped}" if result.skipped is not None else f"FAILED: {result.failed}"
    )


def describe(result: Result, workdir: Path) -> list[str]:
    """The scenario's lines, printed as soon as it ends."""
    if result.skipped is not None:
        return [f"{result.name}: {outcome(result)}"]
    lines = [
        f"{result.name}: {outcome(result)} (log: {workdir / 'gateway.log'})"
        if result.failed is not None
        else f"{result.name}: committed {result.committed}, arrived {result.arrived},"
        f" covered {result.covered}, lost {len(result.lost)}"
        f" ({result.seconds:.0f} s; {result.redeliveries} redeliveries, chain {result.chain})"
    ]
    lines += [f"  {note}" for note in result.notes]
    if result.reused:
        lines.append(f"  seqs with more than one id: {len(result.reused)}")
        lines += [f"    seq {s}: {sorted(ids)}" for s, ids in sorted(result.reused.items())[:10]]
    if result.lost:
        lines.append(f"  lost seqs (first 20): {result.lost[:20]}")
        lines.append(f"  of them still queued in the outbox: {result.still_queued}")
        lines.append(f"  daemon log: {workdir / 'gateway.log'}")
    return lines


def table(results: list[Result]) -> list[str]:
    """The compact summary at the end."""
    head = f"{'scenario':<10} {'committed':>9} {'arrived':>8} {'covered':>8} {'lost':>5}"
    head += f" {'dup-ids':>7} {'time':>6}  chain"
    rows = [head, "-" * len(head)]
    for r in results:
        if r.skipped is not None or r.failed is not None:
            rows.append(f"{r.name:<10} {outcome(r)}")
            continue
        rows.append(
            f"{r.name:<10} {r.committed:>9} {r.arrived:>8} {r.covered:>8} {len(r.lost):>5}"
            f" {len(r.reused):>7} {r.seconds:>5.0f}s  {r.chain}"
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--kills", type=int, default=20, help="sigkill: how many SIGKILLs")
    parser.add_argument("--outage-s", type=float, default=60.0, help="outage: broker away, s")
    parser.add_argument("--seed", type=int, default=1, help="sigkill: seeds the run times")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and its logs")
    args = parser.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(names) - SCENARIOS.keys())
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
    root = Path(tempfile.mkdtemp(prefix="durability-"))
    results: list[Result] = []
    for name in names:
        workdir = root / name
        workdir.mkdir()
        started = time.monotonic()
        try:
            result = await SCENARIOS[name](workdir, args)
        except Exception as exc:  # one scenario failing does not hide the others' figures
            result = Result(name, failed=f"{type(exc).__name__}: {str(exc)[:200]}")
        result.seconds = time.monotonic() - started
        result.notes += [f"daemon log: {p}" for p in log_problems(workdir / "gateway.log")]
        results.append(result)
        print("\n".join(describe(result, workdir)), flush=True)
    print()
    print("\n".join(table(results)))
    if args.keep or any(r.lost or r.reused or r.failed for r in results):
        print(f"work dir kept for inspection: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
