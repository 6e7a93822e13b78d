"""Throughput of the durable gateway path against a raw paho-mqtt baseline.

Run from the repository root::

    .venv/bin/python bench/outbox.py [--records N] [--payload-bytes B] [--inflight W]

Gateway path (timed, in this process): Toledo wire bytes in 4096-byte chunks are
decoded by ``ToledoCodec.feed`` in a few concurrent producer tasks (one per simulated
scale), turned into telemetry drafts and handed to ``Outbox.append`` (SQLite WAL,
``synchronous=FULL``, real fsync, group commit); the ``Uplink`` publishes them QoS 1
with an in-flight window of W. The clock stops when every record was PUBACKed.

Baseline (same run, same broker): a bare paho-mqtt 2.x client (MQTTv5, loop_start)
publishing the exact payload bytes the outbox produced, QoS 1, same window W.

The runs alternate (baseline, gateway, ...) and the median of each is reported.
This is a measurement: the exit code is 0 unless something crashed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Run as a script (``bench/outbox.py``): make the repository's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.scale.codec_toledo import ToledoCodec
from drivers.scale.readings import WeightMeasured
from gateway.config import GatewayConfig
from gateway.outbox import Outbox
from gateway.readings import Stamp
from gateway.records import GENESIS, Draft, Priority, Record, envelope, uuid7
from gateway.uplink import Uplink
from simulators.broker import Mosquitto

SITE = "bench-site"
GATEWAY = "gw-1"
DEVICE = "scale-1"
TOPIC = f"reading/{DEVICE}/weight"
ROOT = f"customs/{SITE}/{GATEWAY}"
CHUNK_BYTES = 4096
PRODUCERS = 4
ROUNDS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RATIO = 0.70
TIMEOUT_S = 600.0


# -- broker ------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto() -> Iterator[tuple[int, int]]:
    """A private mosquitto on a free loopback port (no persistence); yields (port, pid)."""
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
        broker = Mosquitto(Path(tmp), persistence=False, max_queued_messages=10_000_000)
        broker.start()
        assert broker.proc is not None
        try:
            yield broker.port, broker.proc.pid
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed instead
                broker.stop()


# -- CPU accounting ----------------------------------------------------------------------


def _machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat, idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def _pid_cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Usage:
    """Wall and CPU time of one timed region."""

    wall_s: float = 0.0
    self_cpu_s: float = 0.0  # this process, all threads
    broker_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # everything else on the machine (other people's work)


class Probe:
    """Measures a timed region: wall clock, our CPU, the broker's, everyone else's."""

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid
        self.usage = Usage()
        self._t = self._cpu = self._broker = self._busy = 0.0

    def start(self) -> None:
        self._busy, self._broker = _machine_busy_s(), _pid_cpu_s(self.broker_pid)
        self._cpu, self._t = time.process_time(), time.perf_counter()

    def stop(self) -> Usage:
        wall, cpu = time.perf_counter() - self._t, time.process_time() - self._cpu
        broker = _pid_cpu_s(self.broker_pid) - self._broker
        busy = _machine_busy_s() - self._busy
        self.usage = Usage(wall, cpu, broker, max(0.0, busy - cpu - broker))
        return self.usage


# -- driver output -----------------------------------------------------------------------


def device_streams(n: int, producers: int, seed: int = 1) -> list[list[bytes]]:
    """N Toledo frames split over ``producers`` scales, each as 4096-byte serial chunks."""
    rng = random.Random(seed)
    streams: list[list[bytes]] = []
    at = Stamp.now()
    for p in range(producers):
        share = n // producers + (1 if p < n % producers else 0)
        wire = b"".join(
            ToledoCodec.encode(
                WeightMeasured(
                    weight=float(rng.randrange(0, 60_000, 20)),
                    unit="kg",
                    stable=rng.random() > 0.2,
                    at=at,
                )
            )
            for _ in range(share)
        )
        streams.append([wire[i : i + CHUNK_BYTES] for i in range(0, len(wire), CHUNK_BYTES)])
    return streams


def padding(payload_bytes: int | None) -> tuple[dict[str, Any], int]:
    """Extra data fields that pad an envelope to ``payload_bytes``; and the natural size."""
    sample = Draft(
        topic=TOPIC,
        schema="weight/1",
        device=DEVICE,
        ts=Stamp.now().utc,
        data={"weight": 12345.0, "unit": "kg", "stable": True},
        priority=Priority.TELEMETRY,
    )
    natural = len(
        envelope(sample, seq=10_000, record_id=uuid7(), prev=GENESIS, site=SITE, gateway=GATEWAY)
    )
    if payload_bytes is None or payload_bytes <= natural + len(',"pad":""'):
        return {}, natural
    return {"pad": "x" * (payload_bytes - natural - len(',"pad":""'))}, natural


# -- gateway path ------------------------------------------------------------------------


@dataclass
class GatewayResult:
    usage: Usage
    commits: int
    appended: int
    payloads: list[bytes]


def _config(data_dir: Path, port: int, inflight: int) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway": {"site": SITE, "id": GATEWAY, "data_dir": data_dir},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "inflight": inflight,
                "client_id": "bench-gateway",
            },
            "outbox": {"max_bytes": 1 << 34},
        }
    )


def _seq(record: Record) -> int:
    """A telemetry record's sequence number (only media records have none)."""
    assert record.seq is not None, f"telemetry record {record.topic} has no seq"
    return record.seq


async def run_gateway(
    port: int,
    broker_pid: int,
    n: int,
    inflight: int,
    streams: list[list[bytes]],
    pad: dict[str, Any],
    keep_payloads: bool,
) -> GatewayResult:
    """One timed run: decode + draft + append in concurrent producers, until all PUBACKed."""
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        config = _config(Path(tmp), port, inflight)
        acked: list[Record] = []
        async with Outbox(
            config.outbox_path, site=SITE, gateway=GATEWAY, max_bytes=config.outbox.max_bytes
        ) as outbox:
            async with Uplink(config, outbox) as uplink:
                if keep_payloads:
                    uplink.on_acked.append(acked.append)
                async with asyncio.timeout(10):
                    while not uplink.stats.connected:  # noqa: ASYNC110 - no public event
                        await asyncio.sleep(0.005)

                async def produce(chunks: list[bytes]) -> int:
                    codec = ToledoCodec()
                    count = 0
                    for chunk in chunks:
                        drafts: list[Draft] = []
                        for reading in codec.feed(chunk, Stamp.now()):
                            if not isinstance(reading, WeightMeasured):
                                raise RuntimeError(f"codec error in bench stream: {reading}")
                            drafts.append(
                                Draft(
                                    topic=TOPIC,
                                    schema="weight/1",
                                    device=DEVICE,
                                    ts=reading.at.utc,
                                    data={
                                        "weight": reading.weight,
                                        "unit": reading.unit,
                                        "stable": reading.stable,
                                        **pad,
                                    },
                                    priority=Priority.TELEMETRY,
                                )
                            )
                        await outbox.append(drafts)
                        count += len(drafts)
                    return count

                probe = Probe(broker_pid)
                gc.collect()
                probe.start()
                async with asyncio.timeout(TIMEOUT_S):
                    counts = await asyncio.gather(*(produce(s) for s in streams))
                    # Every record is committed now; wait until each one was PUBACKed.
                    await uplink.drained(TIMEOUT_S)
                usage = probe.stop()
                if sum(counts) != n or uplink.stats.acked_total != n:
                    raise RuntimeError(
                        f"gateway: decoded {sum(counts)}, acked "
                        f"{uplink.stats.acked_total}, expected {n}"
                    )
            commits, appended = outbox.stats.commits_total, outbox.stats.appended_total
        acked.sort(key=_seq)
        return GatewayResult(usage, commits, appended, [r.payload for r in acked])


# -- baseline ----------------------------------------------------------------------------


def run_baseline(port: int, broker_pid: int, payloads: list[bytes], inflight: int) -> Usage:
    """Raw paho: publish the payloads QoS 1, at most ``inflight`` outstanding; seconds."""
    n = len(payloads)
    window = threading.BoundedSemaphore(inflight)
    connected = threading.Event()
    done = threading.Event()
    acked = 0
    failed: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            connected.set()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        nonlocal acked
        if reason.is_failure:
            failed.append(str(reason))
        acked += 1
        window.release()
        if acked == n:
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-baseline", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(inflight)
    client.on_connect = on_connect
    client.on_publish = on_publish
    # The uplink sends the same property; paho's Properties.__init__ is unannotated.
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    topic = f"{ROOT}/{TOPIC}"
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("baseline client could not connect")
        probe = Probe(broker_pid)
        gc.collect()
        probe.start()
        for payload in payloads:
            window.acquire()
            client.publish(topic, payload, qos=1, properties=props)
        if not done.wait(TIMEOUT_S):
            raise RuntimeError(f"baseline: only {acked} of {n} acknowledged")
        usage = probe.stop()
    finally:
        client.disconnect()
        client.loop_stop()
    if failed:
        raise RuntimeError(f"baseline: broker rejected {len(failed)}: {failed[0]}")
    return usage


# -- report ------------------------------------------------------------------------------


def rss_mib() -> tuple[float, float]:
    """(peak RSS, current RSS) of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = float("nan")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return peak, current


def _line(label: str, n: int, u: Usage, extra: str = "") -> str:
    return (
        f"{label:<8} {n / u.wall_s:>7,.0f} rec/s  cpu {u.self_cpu_s / n * 1e6:>4.0f} us/rec"
        f"  broker {u.broker_cpu_s / u.wall_s:>4.0%}  other load {u.other_cpu_s / u.wall_s:>4.0%}"
        f"{extra}"
    )


async def main_async(args: argparse.Namespace) -> None:
    n, window, rounds = args.records, args.inflight, args.rounds
    pad, natural = padding(args.payload_bytes)
    streams = device_streams(n, PRODUCERS)
    chunks = sum(len(s) for s in streams)
    print(
        f"outbox bench: {n} records, {PRODUCERS} producers, {chunks} chunks of "
        f"<= {CHUNK_BYTES} B, inflight window {window}, {rounds} rounds, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"loadavg {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    with mosquitto() as (port, broker_pid):
        # Warm-up gateway run (untimed): warms the broker and yields the exact payloads
        # the outbox produces, which the baseline then publishes byte for byte.
        warm = await run_gateway(port, broker_pid, n, window, streams, pad, keep_payloads=True)
        payloads = warm.payloads
        if len(payloads) != n:
            raise RuntimeError(f"warm-up captured {len(payloads)} payloads, expected {n}")
        sizes = [len(p) for p in payloads]
        print(
            f"warm-up gateway run: {n / warm.usage.wall_s:,.0f} rec/s (not counted); "
            f"payload {statistics.median(sizes):.0f} B median "
            f"(natural envelope ~{natural} B)",
            flush=True,
        )
        print("cpu = this process, all threads; broker and other load in % of one CPU")

        base: list[Usage] = []
        gw: list[GatewayResult] = []
        for i in range(rounds):
            usage = await asyncio.to_thread(run_baseline, port, broker_pid, payloads, window)
            base.append(usage)
            print(f"  round {i + 1}: " + _line("baseline", n, usage), flush=True)
            result = await run_gateway(
                port, broker_pid, n, window, streams, pad, keep_payloads=False
            )
            gw.append(result)
            extra = f"  {result.commits} commits"
            print(f"  round {i + 1}: " + _line("gateway", n, result.usage, extra), flush=True)
        peak, current = rss_mib()

    base_rate = statistics.median(n / u.wall_s for u in base)
    gw_rate = statistics.median(n / r.usage.wall_s for r in gw)
    ratio = gw_rate / base_rate
    base_cpu = statistics.median(u.self_cpu_s / n * 1e6 for u in base)
    gw_cpu = statistics.median(r.usage.self_cpu_s / n * 1e6 for r in gw)
    other = max(u.other_cpu_s / u.wall_s for u in [*base, *(r.usage for r in gw)])
    commits = statistics.median(r.commits for r in gw)
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    rows = [
        ("records", f"{n}"),
        ("payload bytes (median)", f"{statistics.median(sizes):.0f}"),
        ("inflight window", f"{window}"),
        (f"baseline rec/s (median of {rounds})", f"{base_rate:,.0f}"),
        (f"gateway rec/s (median of {rounds})", f"{gw_rate:,.0f}"),
        ("ratio gateway/baseline", f"{ratio:.2f}"),
        (f"target >= {TARGET_RATIO:.2f}", verdict),
        ("process CPU per record", f"baseline {base_cpu:.0f} us, gateway {gw_cpu:.0f} us"),
        (
            "outbox commits_total (median run)",
            f"{commits:.0f} (appends + ack deletions; {n / commits:.1f} records/commit)",
        ),
        ("gateway process RSS, peak", f"{peak:.1f} MiB (ru_maxrss)"),
        ("gateway process RSS, now", f"{current:.1f} MiB (VmRSS)"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print("The gateway path runs inside this benchmark process, so its RSS is this process's.")
    print("-" * (width + 50))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 50))
    if other > 0.25:
        print(
            f"note: other processes used up to {other:.0%} of a CPU during timed runs "
            f"({os.cpu_count()} CPUs here); rates are noisy, compare CPU per record."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per run")
    parser.add_argument(
        "--payload-bytes",
        type=int,
        default=None,
        help="pad each envelope to about this many bytes (default: natural)",
    )
    parser.add_argument("--inflight", type=int, default=32, help="QoS 1 in-flight window")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds per path")
    args = parser.parse_args()
    if args.records < PRODUCERS or args.inflight < 1 or args.rounds < 1:
        parser.error(f"--records must be >= {PRODUCERS}, --inflight and --rounds >= 1")
    # Keep the gateway's info logs (connect/disconnect per run) out of the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
