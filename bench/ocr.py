"""OCR accuracy and cost on the generated test set: containers and plates, per passage.

Run from the repository root: ``.venv/bin/python bench/ocr.py [--passages 100 --frames 3]``.

Generates ``--passages`` container passages and as many plate passages (each
``--frames`` frames of the same truck, degraded afresh; ``simulators/ocr_set.py``),
reads every frame through :class:`drivers.camera.ocr.worker.OcrReader` (one worker process,
pinned with the bench to one CPU) and prints:

- containers per image: share of frames whose verified codes are exactly the truth;
  false-verified: verified codes that are wrong, per verified code;
- containers per passage, after voting (``string`` and ``char`` methods);
- plates per image and per passage (format-valid and exactly the truth);
- engine time per crop in the worker (median, p95) and round trip through the queue;
- peak RSS (VmHWM) of the worker process.

Targets (issue 6): per passage >= 98 % containers and plates, false-verified <= 0.5 %,
p95 <= 250 ms per crop on one core, worker RSS <= 400 MB. A measurement: exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from drivers.camera.ocr.container import ContainerReading
from drivers.camera.ocr.engine import Image
from drivers.camera.ocr.plate import PlateReading
from drivers.camera.ocr.voting import Method, container_passage, plate_passage
from drivers.camera.ocr.worker import Kind, OcrReader, OcrResult
from simulators.ocr_set import passages

METHODS: tuple[Method, ...] = ("string", "char")


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f} % ({n}/{d})" if d else "  n/a"


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Timings:
    """Per-crop times: wall and CPU in the worker per kind, round trip through the queue."""

    engine_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"container": [], "plate": []}
    )
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {"container": [], "plate": []})
    trip_ms: list[float] = field(default_factory=list)

    async def read(self, reader: OcrReader, kind: Kind, frame: Image) -> OcrResult:
        started = time.perf_counter()
        result = await reader.read("bench", kind, frame)
        self.trip_ms.append(1000 * (time.perf_counter() - started))
        self.engine_ms[kind].append(1000 * result.elapsed_s)
        self.cpu_ms[kind].append(1000 * result.cpu_s)
        return result


async def run(args: argparse.Namespace) -> None:
    timings = Timings()
    engine_ms, cpu_ms, trip_ms = timings.engine_ms, timings.cpu_ms, timings.trip_ms
    async with OcrReader(cpu=args.cpu, max_side=args.max_side) as reader:
        # Containers
        img_ok = img_n = verified_n = wrong_verified = 0
        by_method = {"string": 0, "char": 0}
        wrong_passage = {"string": 0, "char": 0}
        verified_passage_codes = {"string": 0, "char": 0}
        missed: Counter[str] = Counter()
        n_pass = 0
        for p in passages(
            "container", args.passages, frames=args.frames, seed=args.seed, hard=args.hard
        ):
            readings: list[ContainerReading] = []
            for frame in p.frames:
                result = await timings.read(reader, "container", frame)
                assert result.container is not None
                readings.append(result.container)
                got = [c.code for c in result.container.verified]
                img_n += 1
                img_ok += sorted(got) == sorted(p.truth)
                verified_n += len(got)
                wrong_verified += sum(1 for c in got if c not in p.truth)
            n_pass += 1
            for method in METHODS:
                voted = container_passage(readings, method=method)
                codes = [v.code for v in voted if v.verified]
                verified_passage_codes[method] += len(codes)
                wrong_passage[method] += sum(1 for c in codes if c not in p.truth)
                ok = sorted(codes) == sorted(p.truth)
                by_method[method] += ok
                if not ok and method == "string":
                    missed[p.style] += 1
        print(f"containers: {img_n} images in {n_pass} passages of {args.frames} frames")
        print(f"  per image exact (verified codes == truth): {_pct(img_ok, img_n)}")
        print(f"  false-verified per verified code (image):  {_pct(wrong_verified, verified_n)}")
        for method in ("string", "char"):
            print(
                f"  per passage exact, {method:6s} vote:        {_pct(by_method[method], n_pass)}"
                f"; false-verified {_pct(wrong_passage[method], verified_passage_codes[method])}"
            )
        print(f"  passages missed by layout (string vote): {dict(missed)}")

        # Plates
        img_ok = img_n = 0
        plate_ok = {"string": 0, "char": 0}
        plate_wrong = {"string": 0, "char": 0}
        missed = Counter()
        n_pass = 0
        for p in passages(
            "plate", args.passages, frames=args.frames, seed=args.seed, hard=args.hard
        ):
            plates: list[PlateReading | None] = []
            for frame in p.frames:
                result = await timings.read(reader, "plate", frame)
                plates.append(result.plate)
                img_n += 1
                img_ok += (
                    result.plate is not None
                    and result.plate.valid
                    and (result.plate.text == p.truth[0])
                )
            n_pass += 1
            for method in METHODS:
                plate = plate_passage(plates, method=method)
                ok = plate is not None and plate.text == p.truth[0]
                plate_ok[method] += ok
                plate_wrong[method] += plate is not None and not ok
                if not ok and method == "string":
                    missed[p.style] += 1
        print(f"plates: {img_n} images in {n_pass} passages")
        print(f"  per image exact: {_pct(img_ok, img_n)}")
        for method in ("string", "char"):
            print(
                f"  per passage exact, {method:6s} vote: {_pct(plate_ok[method], n_pass)};"
                f" wrong valid plate {_pct(plate_wrong[method], n_pass)}"
            )
        print(f"  passages missed by style (string vote): {dict(missed)}")

        for kind in ("container", "plate", "all"):
            wall = engine_ms.get(kind, engine_ms["container"] + engine_ms["plate"])
            cpu = cpu_ms.get(kind, cpu_ms["container"] + cpu_ms["plate"])
            print(
                f"{kind:9s} per crop in the worker (1 core): wall median"
                f" {statistics.median(wall):.0f} ms, p95 {_p95(wall):.0f} ms, max {max(wall):.0f};"
                f" CPU median {statistics.median(cpu):.0f} ms, p95 {_p95(cpu):.0f} ms"
            )
        print(
            f"round trip per crop: median {statistics.median(trip_ms):.0f} ms,"
            f" p95 {_p95(trip_ms):.0f} ms"
        )
        for pid in reader.pids:
            print(f"worker {pid} peak RSS (VmHWM): {_peak_rss_mb(pid):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hard", type=float, default=1.0, help="degradation strength")
    parser.add_argument("--max-side", type=int, default=960, help="detection size limit")
    parser.add_argument("--cpu", type=int, default=1, help="the one CPU to run on")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    os.sched_setaffinity(0, {args.cpu})
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
