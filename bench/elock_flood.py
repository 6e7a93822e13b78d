"""A connection flood on the JT/T 808 e-lock listener: what it costs the daemon.

Run from the repository root:
``.venv/bin/python bench/elock_flood.py [--idle 1100] [--unknown 3000] [--addresses 138]``
(needs ``/usr/sbin/mosquitto``; it starts its own broker on a free loopback port).

The gateway daemon runs as a process (``edge-gateway run``) with its descriptors
limited to 1024, systemd's default ``LimitNOFILE``, one ``eseal.jt808`` listener with
the default bounds and one listed terminal, through a real mosquitto to a central
subscriber. The bench opens ``--idle`` idle connections spread over ``--addresses``
loopback addresses (127.0.0.2, ...: so the total cap, not only the per-address one,
is what holds), then ``--unknown`` made-up terminals, 100 at a time, each
authenticating (0x0102) or sending an alarm report (0x0200) under its own id, and then
the listed terminal authenticates and sends an alarm report. While it runs, the
daemon's descriptors and RSS are sampled every 10 ms. It prints the peak descriptor
count (bound: ``max_connections``, 128, plus up to 100 sockets asyncio accepts in one
turn before their handlers close the ones they evict) and RSS growth over the idle
daemon, what the listener counted, how many records of the made-up terminals reached
central (target: 0), what the outbox stored, and whether the listed terminal's alarm
got through (answered, and at central). A measurement: it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ helpers

from drivers.eseal.codec_jt808 import Jt808Codec, encode_authentication
from tests.broker import Central, Mosquitto, free_port
from tests.eseal.test_durability import AUTH_CODE, TERMINAL, Terminal, jt808_config
from tests.process import GatewayProcess

NOFILE = 1024
"""The daemon's descriptor limit (systemd's default soft ``LimitNOFILE``)."""


class Sampler:
    """Peak descriptors and RSS of a process, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fds = self.fd_count()
        self.rss_kb = self.rss()
        self.base_fds, self.base_rss_kb = self.fds, self.rss_kb

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def run(self) -> None:
        while True:
            self.fds = max(self.fds, self.fd_count())
            self.rss_kb = max(self.rss_kb, self.rss())
            await asyncio.sleep(0.01)


async def drained(reader: asyncio.StreamReader) -> None:
    """Until the daemon closes the connection (at once, now; or 2 s: it never did before)."""
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(2):
            while await reader.read(4096):
                pass


async def dial(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from ``source``; raises OSError or TimeoutError (2 s) when refused."""
    async with asyncio.timeout(2):
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def unknown_terminals(port: int, count: int) -> int:
    """``count`` made-up terminals, 100 at a time: half authenticate, half report alarms.
    Returns how many could not connect."""
    codec = Jt808Codec()
    failed = 0
    for start in range(0, count, 100):
        dialled = []
        for n in range(start, min(start + 100, count)):
            try:
                reader, writer = await dial(port, f"127.0.1.{n % 200 + 1}")
            except (OSError, TimeoutError):
                failed += 1
                continue
            phone = f"{500000 + n:012d}"
            writer.write(
                encode_authentication(phone, 0, AUTH_CODE)
                if n % 2
                else codec.encode_location(terminal=phone, serial=1, lat=41.3, lon=69.2,
                                           device_time=None, flags={"illegal_door_open"})
            )  # fmt: skip
            dialled.append((reader, writer))
        await asyncio.gather(*(drained(reader) for reader, _ in dialled))
        for _, writer in dialled:
            writer.close()
    return failed


def listed_alarm(alarms: list[dict[str, Any]]) -> bool:
    return any(r["data"]["seal_id"] == TERMINAL for r in alarms)


async def status(config: Path) -> dict[str, Any]:
    """``gatewayctl status --json``; empty when the daemon does not answer (a daemon out
    of descriptors cannot accept on its control socket either)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.gatewayctl", "--config", str(config), "status", "--json",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    try:
        return dict(json.loads(out))
    except ValueError:
        return {}


async def flood(workdir: Path, idle: int, unknown: int, addresses: int) -> None:
    broker = Mosquitto(workdir)
    broker.start()
    central = Central(port=broker.port, client_id="central-bench")
    central.attach(asyncio.get_running_loop())
    await asyncio.to_thread(central.start)
    port = free_port()
    gateway = GatewayProcess(jt808_config(workdir, broker, port), workdir)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    sockets: list[asyncio.StreamWriter] = []
    elock = Terminal(port)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))  # inherited by the daemon
        try:
            await gateway.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # the bench needs more
        assert gateway.proc is not None
        probe = Terminal(port)
        await probe.connect()  # listening; the daemon as it idles with one e-lock seen
        await probe.close()
        sampler = Sampler(gateway.proc.pid)
        sampling = asyncio.create_task(sampler.run(), name="sampler")
        started = time.monotonic()
        per = max(1, -(-idle // addresses))
        idle_failed = 0
        for n in range(idle):
            try:
                _, writer = await dial(port, f"127.0.{2 + n // per // 250}.{2 + n // per % 250}")
            except (OSError, TimeoutError):  # a daemon out of descriptors accepts no more
                idle_failed += 1
                continue
            sockets.append(writer)
        idle_s = time.monotonic() - started
        started = time.monotonic()
        unknown_failed = await unknown_terminals(port, unknown)
        unknown_s = time.monotonic() - started
        authenticated = answered = False
        sent = time.monotonic()
        with contextlib.suppress(OSError, TimeoutError):
            await elock.connect()
            authenticated = elock.auth_results == [0]
            sent = time.monotonic()
            elock.send(elock.report(1, door_open=True))
            await elock.until(lambda: 1 in elock.answered)
            answered = True
        answered_s = time.monotonic() - sent
        with contextlib.suppress(TimeoutError):
            await central.wait_for(lambda c: listed_alarm(c.records("event/seal_alarm")), 30)
        state = await status(gateway.config)
        answered_status = bool(state)
        counters = state.get("devices", {}).get("elock-gw", {}).get("counters", {})
        outbox = state.get("outbox", {"appended_total": "?", "bytes": "?"})
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
        await elock.close()
        for writer in sockets:
            writer.close()
        await gateway.stop()
    finally:
        for writer in sockets:
            writer.close()
        await elock.close()
        await gateway.ensure_stopped()
        await asyncio.to_thread(central.stop)
        broker.stop()
    alarms = central.records("event/seal_alarm")
    strangers = [r for r in alarms if r["data"]["seal_id"] != TERMINAL]
    strangers += [
        r for r in central.records("elock-gw/position") if r["data"]["terminal"] != TERMINAL
    ]
    print(f"daemon: LimitNOFILE {NOFILE}; {idle} idle connections from {addresses} addresses"
          f" in {idle_s:.1f} s ({idle_failed} could not connect); {unknown} unknown terminals"
          f" in {unknown_s:.1f} s ({unknown_failed} could not connect)")  # fmt: skip
    print(f"descriptors: {sampler.base_fds} idle daemon, peak {sampler.fds}"
          f" (+{sampler.fds - sampler.base_fds})")  # fmt: skip
    base_mb, peak_mb = sampler.base_rss_kb / 1024, sampler.rss_kb / 1024
    print(f"RSS: {base_mb:.1f} MB idle daemon, peak {peak_mb:.1f} MB (+{peak_mb - base_mb:.1f} MB)")
    listener = ("connections", "terminals_", "frames_", "last_unknown", "authentications")
    shown = {k: v for k, v in counters.items() if k.startswith(listener)}
    print(f"gatewayctl status answered: {answered_status}; listener counters:"
          f" {json.dumps(shown, sort_keys=True)}")  # fmt: skip
    stored, queued = outbox["appended_total"], outbox["bytes"]
    print(f"records of unknown terminals at central: {len(strangers)} (target 0); the outbox"
          f" stored {stored} records in all, {queued} bytes queued")  # fmt: skip
    at_central = len(alarms) - len(strangers) >= 1
    print(f"listed terminal: authenticated {authenticated}, alarm answered {answered}"
          f" ({answered_s * 1000:.0f} ms), at central {at_central}")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1100, help="idle connections")
    parser.add_argument("--unknown", type=int, default=3000, help="made-up terminals")
    parser.add_argument("--addresses", type=int, default=138, help="loopback sources of --idle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="elock-flood-") as tmp:
        await flood(Path(tmp), args.idle, args.unknown, args.addresses)


if __name__ == "__main__":
    asyncio.run(main())
