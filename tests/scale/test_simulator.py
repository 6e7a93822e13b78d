"""The scale simulator over a real pty, read with pyserial and decoded by the real codecs.

Each test opens the simulator's link as the gateway would open a serial port, sends
the codec's start/poll commands, and checks that the stable plateaus seen are the
trucks the simulator says it played. Waiting is on events (fd readable, simulator
finished, link ready), bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.codec_mtsics import MtSicsCodec
from drivers.scale.codec_sma import SmaCodec
from drivers.scale.protocols import CODECS
from drivers.scale.readings import WeightMeasured
from gateway.errors import FrameError
from gateway.readings import Stamp
from simulators.scale import ScaleSimulator
from simulators.trucks import MAX_KG, MIN_KG, STEP_KG, ScaleState

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.05  # how often the test polls command/response protocols
RUN_LIMIT_S = 20.0  # no run here takes more than a few seconds


@dataclass
class Heard:
    """What a client decoded from the link."""

    items: list[Decoded] = field(default_factory=list)
    reconnects: int = 0
    items_after_reconnect: int = 0

    @property
    def readings(self) -> list[WeightMeasured]:
        return [i for i in self.items if isinstance(i, WeightMeasured)]

    @property
    def errors(self) -> list[FrameError]:
        return [i for i in self.items if isinstance(i, FrameError)]


def open_link(sim: ScaleSimulator) -> serial.Serial:
    port = serial.serial_for_url(str(sim.link), timeout=0)
    assert isinstance(port, serial.Serial)
    return port


@contextlib.asynccontextmanager
async def wake_on_finish(sim: ScaleSimulator, wake: asyncio.Event) -> AsyncIterator[None]:
    """Set ``wake`` when the simulator finishes, for as long as the block runs."""

    async def watch() -> None:
        await sim.finished.wait()
        wake.set()

    watcher = asyncio.create_task(watch(), name="watch-finished")
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.wait([watcher])


async def listen(
    sim: ScaleSimulator,
    codec: ScaleCodec,
    *,
    poll: bytes | None = None,
    start: bytes | None = None,
    extra: bytes | None = None,
) -> Heard:
    """Read and decode the link until the simulator finishes.

    Sends ``start`` once per connection and ``poll`` every POLL_S (default: the codec's
    own commands), and ``extra`` once. Reopens the link after a disconnect fault.
    """
    poll = poll if poll is not None else codec.poll_command
    start = start if start is not None else codec.start_command
    loop = asyncio.get_running_loop()
    heard = Heard()
    wake = asyncio.Event()
    port = open_link(sim)
    loop.add_reader(port.fileno(), wake.set)
    if start:
        port.write(start)
    if extra:
        port.write(extra)
    next_poll = loop.time()
    try:
        async with asyncio.timeout(RUN_LIMIT_S), wake_on_finish(sim, wake):
            while True:
                wake.clear()
                done = sim.finished.is_set()
                try:
                    data = port.read(4096)
                except serial.SerialException:  # the simulator closed the pty
                    loop.remove_reader(port.fileno())
                    port.close()
                    await sim.link_ready.wait()
                    port = open_link(sim)
                    loop.add_reader(port.fileno(), wake.set)
                    heard.reconnects += 1
                    if start:
                        port.write(start)
                    continue
                if data:
                    new = codec.feed(data, Stamp.now())
                    heard.items += new
                    if heard.reconnects:
                        heard.items_after_reconnect += len(new)
                if done:
                    return heard
                timeout = None
                if poll:
                    if loop.time() >= next_poll:
                        port.write(poll)
                        next_poll = loop.time() + POLL_S
                    timeout = next_poll - loop.time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()
    finally:
        loop.remove_reader(port.fileno())
        port.close()


def plateaus(readings: list[WeightMeasured], min_frames: int = 3) -> list[float]:
    """Non-zero values held, not in motion, for ``min_frames`` readings in a row.

    Protocols with a stability flag count only stable frames; for XK3190 (no flag) a
    value repeated is the plateau, as the ramps never repeat a value. A run split by a
    corrupted frame gives the same value twice, which is merged.
    """
    found: list[float] = []
    value: float | None = None
    length = 0

    def close_run() -> None:
        if value is not None and length >= min_frames and (not found or found[-1] != value):
            found.append(value)

    for r in readings:
        if r.stable is False or r.weight is None or not r.in_range:
            close_run()
            value, length = None, 0
        elif r.weight == value:
            length += 1
        else:
            close_run()
            value, length = r.weight, 1
    close_run()
    return [v for v in found if v != 0]


def gone(path: Path) -> bool:
    """Nothing at ``path``, not even a dangling symlink."""
    return not os.path.lexists(path)


def open_fds() -> set[str]:
    """The pty fds this process holds (what a simulator opens).

    Only ptys: other fds come and go as earlier tests' objects are garbage-collected,
    which made a whole-process comparison depend on test order.
    """
    gc.collect()
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target == "/dev/ptmx" or target.startswith("/dev/pts/"):
                out.add(f"{fd}:{target}")
    return out


@dataclass
class Played:
    """One protocol's run in the shared scenario."""

    sim: ScaleSimulator
    heard: Heard
    link_pointed_at_slave: bool


@dataclass
class Scenario:
    """Every protocol played at once, and what was left afterwards."""

    runs: dict[str, Played]
    fds_before: set[str]
    fds_after: set[str]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """Two trucks at speed 4 on every protocol, concurrently, in an event loop of its own.

    Playing takes real time (about 3.7 s), so the four run side by side once and the
    tests below check one protocol each.
    """
    base = tmp_path_factory.mktemp("links")

    async def play(protocol: str) -> Played:
        link = base / protocol
        async with ScaleSimulator(protocol=protocol, link=link, trucks=2, speed=4, seed=11) as sim:
            pointed = link.is_symlink() and os.readlink(link) == sim.slave_name
            heard = await listen(sim, CODECS[protocol]())
        return Played(sim=sim, heard=heard, link_pointed_at_slave=pointed)

    async def play_all() -> dict[str, Played]:
        async with asyncio.TaskGroup() as group:
            tasks = {p: group.create_task(play(p), name=f"play-{p}") for p in sorted(CODECS)}
        return {p: t.result() for p, t in tasks.items()}

    fds_before = open_fds()
    runs = asyncio.run(play_all())
    return Scenario(runs=runs, fds_before=fds_before, fds_after=open_fds())


@pytest.mark.parametrize("protocol", sorted(CODECS))
def test_stable_weights_are_the_trucks_played(protocol: str, scenario: Scenario) -> None:
    run = scenario.runs[protocol]
    sim, heard = run.sim, run.heard
    assert run.link_pointed_at_slave
    assert len(set(sim.truck_weights_kg)) == 2
    assert plateaus(heard.readings) == sim.truck_weights_kg
    assert heard.errors == []
    assert all(r.unit == "kg" for r in heard.readings)
    assert sim.stats.frames_dropped == 0
    assert sim.stats.frames_sent > 0


def test_scenario_leaves_no_link_and_no_fd(scenario: Scenario) -> None:
    for run in scenario.runs.values():
        assert gone(run.sim.link)
    assert scenario.fds_after == scenario.fds_before


async def test_faults_are_frame_errors_and_weights_survive(tmp_path: Path) -> None:
    """Noise, truncated and corrupted frames, every protocol at once."""
    faults = {"noise", "truncate", "checksum"}
    rates = dict.fromkeys(faults, 0.1)

    async def run(protocol: str) -> tuple[ScaleSimulator, Heard]:
        async with ScaleSimulator(
            protocol=protocol, link=tmp_path / protocol, trucks=2, speed=4, seed=5,
            faults=faults, fault_rates=rates,
        ) as sim:  # fmt: skip
            return sim, await listen(sim, CODECS[protocol]())

    async with asyncio.TaskGroup() as group:
        runs = [group.create_task(run(p), name=f"listen-{p}") for p in sorted(CODECS)]
    for task in runs:
        sim, heard = task.result()
        stats = sim.stats
        assert set(stats.faults) == faults, (sim.protocol, stats)
        # Each fault spoils at most a frame or two; an undetectable corruption (SMA and
        # MT-SICS have no checksum) or noise that only precedes a frame may cost none.
        assert 0 < len(heard.errors) <= 2 * stats.faults.total(), (sim.protocol, stats)
        assert plateaus(heard.readings) == sim.truck_weights_kg, (sim.protocol, stats)


async def test_disconnect_and_silence_then_the_client_reconnects(tmp_path: Path) -> None:
    link = tmp_path / "scale"
    async with ScaleSimulator(
        protocol="toledo", link=link, trucks=1, speed=4, seed=3,
        faults={"disconnect", "silence"}, fault_rates={"disconnect": 0.1, "silence": 0.1},
    ) as sim:  # fmt: skip
        heard = await listen(sim, CODECS["toledo"]())
        assert sim.stats.faults["disconnect"] >= 1
        assert sim.stats.faults["silence"] >= 1
        assert sim.stats.frames_silenced > 0
        assert heard.reconnects >= 1
        assert heard.items_after_reconnect > 0
        assert os.readlink(link) == sim.slave_name
    assert gone(link)


async def test_sma_repeat_mode_streams_and_unknown_command_gets_a_question_mark(
    tmp_path: Path,
) -> None:
    codec = SmaCodec()
    async with ScaleSimulator(
        protocol="sma", link=tmp_path / "sma", trucks=1, speed=8, seed=2
    ) as sim:
        heard = await listen(sim, codec, poll=b"", start=b"\nR\r", extra=b"\nX\r")
    assert plateaus(heard.readings) == sim.truck_weights_kg
    assert [str(e) for e in heard.errors] == [
        "sma: indicator answered '?' (command not understood)"
    ]
    assert sim.stats.commands == 2  # R and X: the stream came without polling


async def test_mtsics_s_command_answers_busy_while_in_motion(tmp_path: Path) -> None:
    codec = MtSicsCodec()
    async with ScaleSimulator(
        protocol="mtsics", link=tmp_path / "sics", trucks=1, speed=8, seed=4
    ) as sim:
        heard = await listen(sim, codec, poll=b"S\r\n", extra=b"XYZ\r\n")
    assert codec.busy_count > 0  # S answers "S I" while the truck moves
    assert all(r.stable for r in heard.readings)
    assert plateaus(heard.readings, min_frames=2) == sim.truck_weights_kg
    assert [str(e) for e in heard.errors] == [
        "mtsics: indicator answered ES: syntax error (command not understood)"
    ]


def test_plateau_weights_come_from_the_seed(tmp_path: Path) -> None:
    a = ScaleSimulator(protocol="toledo", link=tmp_path / "a", trucks=5, seed=42)
    b = ScaleSimulator(protocol="xk3190", link=tmp_path / "b", trucks=5, seed=42)
    assert a.truck_weights_kg == b.truck_weights_kg
    assert all(MIN_KG <= w <= MAX_KG and w % STEP_KG == 0 for w in a.truck_weights_kg)
    c = ScaleSimulator(protocol="toledo", link=tmp_path / "c", trucks=5, seed=43)
    assert c.truck_weights_kg != a.truck_weights_kg


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown scale protocol"):
        ScaleSimulator(protocol="rice", link=tmp_path / "x")
    with pytest.raises(ValueError, match="unknown faults"):
        ScaleSimulator(protocol="sma", link=tmp_path / "x", faults=["fire"])


async def test_a_regular_file_at_the_link_is_not_replaced(tmp_path: Path) -> None:
    fds_before = open_fds()
    link = tmp_path / "scale"
    link.write_text("precious")
    with pytest.raises(FileExistsError):
        async with ScaleSimulator(protocol="toledo", link=link, trucks=0):
            pass
    assert link.read_text() == "precious"
    assert open_fds() == fds_before


async def test_an_existing_symlink_is_replaced_and_removed(tmp_path: Path) -> None:
    link = tmp_path / "scale"
    link.symlink_to("/dev/null")
    async with ScaleSimulator(protocol="toledo", link=link, trucks=0, speed=10) as sim:
        assert os.readlink(link) == sim.slave_name
        await sim.finished.wait()
    assert gone(link)


def test_command_line_plays_and_exits_zero(tmp_path: Path) -> None:
    link = tmp_path / "scale"
    cmd = [sys.executable, "-m", "simulators", "scale", "--protocol", "xk3190", "--link",
           str(link), "--trucks", "1", "--speed", "20", "--seed", "1"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"scale simulator xk3190 on {link} (slave /dev/pts/")
    assert gone(link)


def test_command_line_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "scale"
    cmd = [sys.executable, "-m", "simulators", "scale", "--protocol", "sma", "--link",
           str(link), "--faults", "noise,silence"]  # fmt: skip
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"scale simulator sma on {link} (slave ")
        assert link.is_symlink()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert gone(link)


def test_toledo_frames_are_what_an_indicator_sends(tmp_path: Path) -> None:
    """Space padded, decimal point code 001 with build x2 (the 20 kg increment)."""
    sim = ScaleSimulator(protocol="toledo", link=tmp_path / "t", trucks=1, seed=1)
    frame = sim._frame(ScaleState(weight_kg=12340, motion=False))
    assert frame[1] == 0x31  # A: bit 5, build code 10 (x2), decimal point code 001
    assert frame[4:16] == b" 12340     0"
    decoded = CODECS["toledo"]().feed(frame, Stamp.now())
    assert [(r.weight, r.unit) for r in decoded if isinstance(r, WeightMeasured)] == [
        (12340.0, "kg")
    ]


async def test_mtsics_zero_commands_get_the_manual_replies(tmp_path: Path) -> None:
    codec = MtSicsCodec()
    async with ScaleSimulator(
        protocol="mtsics", link=tmp_path / "sics", trucks=1, speed=8, seed=4
    ) as sim:
        heard = await listen(sim, codec, extra=b"ZI\r\nZ\r\n")
    assert heard.errors == []
    assert sum(codec.command_replies[r] for r in ("ZI S", "ZI D")) == 1
    assert sum(codec.command_replies[r] for r in ("Z A", "Z I")) == 1
