"""Modbus polling throughput: the gateway's driver against bare pymodbus reads.

Run from the repository root: ``.venv/bin/python bench/modbus.py [--rounds-per-run 2000]``.

A Modbus TCP simulator (``python -m simulators modbus --profile sensors``) runs in its
own process, so the server costs the same for both paths. Each path reads the same
three points (holding 0x0100 float32, holding 0x0102 uint16, input 0x0000 uint32)
as fast as it can, one request at a time:

- baseline: a bare ``AsyncModbusTcpClient`` issuing the three reads;
- gateway: ``ModbusDriver`` (shared line, lock, decoding, counters, ``PointsRead``)
  and its ``PointsProcessor``, as the supervisor drives them.

Paths alternate for three runs each; the medians and their ratio are printed
(target: gateway/baseline >= 0.80). A measurement, not a test: it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.codec import Point
from drivers.modbus.driver import ModbusDriver, ModbusSection
from drivers.modbus.processor import PointsProcessor
from drivers.modbus.readings import PointsRead

POINTS = (
    Point(name="temperature", address=0x0100, type="float32", interval_s=1e-6),
    Point(name="heartbeat", address=0x0102, type="uint16", interval_s=1e-6),
    Point(name="vehicles", address=0x0000, function="input", type="uint32", interval_s=1e-6),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def simulator() -> Iterator[int]:
    """The sensors simulator in a subprocess; yields its TCP port."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators",
            "modbus",
            "--tcp",
            str(port),
            "--profile",
            "sensors",
            "--seed",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def baseline(port: int, rounds: int) -> float:
    """Points per second with bare pymodbus reads."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    try:
        start = time.perf_counter()
        for _ in range(rounds):
            await client.read_holding_registers(0x0100, count=2, device_id=1)
            await client.read_holding_registers(0x0102, count=1, device_id=1)
            await client.read_input_registers(0x0000, count=2, device_id=1)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    return rounds * len(POINTS) / elapsed


async def gateway(port: int, rounds: int) -> float:
    """Points per second through the gateway's driver and points processor."""
    config = ModbusSection(
        id="io-1", driver="modbus", target=f"tcp://127.0.0.1:{port}", points=POINTS, timeout_s=1.0
    )
    driver = ModbusDriver(config)
    processor = PointsProcessor("io-1", config.telemetry_interval_s)
    done = 0
    async with driver:
        start = time.perf_counter()
        async for reading in driver.readings():
            assert isinstance(reading, PointsRead)
            if reading.errors:
                raise RuntimeError(f"read errors: {reading.errors}")
            processor.feed(reading)
            done += 1
            if done == rounds:
                break
        elapsed = time.perf_counter() - start
    return rounds * len(POINTS) / elapsed


async def main_async(rounds: int, runs: int) -> None:
    with simulator() as port:
        await baseline(port, 200)  # warm-up: connections, imports, the server's caches
        await gateway(port, 200)
        base, gate = [], []
        for i in range(runs):
            base.append(await baseline(port, rounds))
            gate.append(await gateway(port, rounds))
            print(
                f"  run {i + 1}: baseline {base[-1]:8,.0f} points/s   "
                f"gateway {gate[-1]:8,.0f} points/s"
            )
    b, g = statistics.median(base), statistics.median(gate)
    ratio = g / b
    print("-" * 60)
    print(f"points per round                 {len(POINTS)} (3 requests)")
    print(f"rounds per run                   {rounds}")
    print(f"baseline points/s (median of {runs})  {b:,.0f}")
    print(f"gateway points/s (median of {runs})   {g:,.0f}")
    print(f"ratio gateway/baseline           {ratio:.2f}")
    print(f"target >= 0.80                   {'PASS' if ratio >= 0.8 else 'FAIL'}")


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-per-run", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds_per_run, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
