"""The Modbus simulator over real transports, read by Debian's mbpoll and by pymodbus.

mbpoll (libmodbus) is the independent witness: a master we did not write reads the
gross weight and status over TCP and over the RTU pty, with its own reference
numbering and word order options. pymodbus clients then cover every profile, the
error paths (out-of-map reads, a dead slave, each fault) and the lifecycle.

Waiting is on the simulator's own ticks (``sim.wait_until``), bounded by
``asyncio.timeout``; reads start at the beginning of a phase that lasts hundreds of
milliseconds, so they cannot straddle it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU, FramerType

from drivers.modbus.codec import Point, decode, encode, named_bits
from drivers.modbus.presets import PRESETS
from simulators.modbus import ModbusSimulator, profile_points
from simulators.scale import ScaleSimulator

REPO = Path(__file__).resolve().parents[2]
LIMIT_S = 15.0  # no wait here takes more than a few seconds
CLIENT_TIMEOUT_S = 0.3  # the simulator answers in well under a millisecond
MBPOLL = shutil.which("mbpoll")
needs_mbpoll = pytest.mark.skipif(
    MBPOLL is None, reason="mbpoll is not installed (Debian package mbpoll; .ci/setup installs it)"
)
INT32 = PRESETS["generic-int32"]
FLOAT32 = PRESETS["indicator-float32"]
SCALES = [("scale-int32", INT32), ("scale-float32", FLOAT32)]

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


def gone(path: Path) -> bool:
    """Nothing at ``path``, not even a dangling symlink."""
    return not os.path.lexists(path)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def simulator(transport: str, tmp_path: Path, **kwargs: Any) -> ModbusSimulator:
    where: dict[str, Any] = (
        {"tcp_port": 0} if transport == "tcp" else {"rtu_link": tmp_path / "modbus0"}
    )
    return ModbusSimulator(**where, **kwargs)


@asynccontextmanager
async def client_of(sim: ModbusSimulator, **kwargs: Any) -> AsyncIterator[Client]:
    """A connected pymodbus client with no retries (so a missing answer shows at once)."""
    options: dict[str, Any] = {
        "timeout": CLIENT_TIMEOUT_S,
        "retries": 0,
        "reconnect_delay": 0,
        **kwargs,
    }
    client: Client
    if sim.link is not None:
        client = AsyncModbusSerialClient(
            str(sim.link), framer=FramerType.RTU, baudrate=9600, **options
        )
    else:
        assert sim.port is not None
        client = AsyncModbusTcpClient(sim.host, port=sim.port, **options)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


async def on_plateau(sim: ModbusSimulator, truck: int = 0) -> int:
    """Wait for the first stable tick of a truck's plateau; its weight."""
    weight = sim.truck_weights_kg[truck]
    async with asyncio.timeout(LIMIT_S):
        await sim.wait_until(lambda: sim.state.weight_kg == weight and not sim.state.motion)
    return weight


async def read_point(client: Client, point: Point, unit: int = 1) -> Any:
    call = {
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }[point.function]
    response = await call(point.address, count=point.count, device_id=unit)
    assert not response.isError(), response
    if point.type == "bool":
        return response.bits[0]
    return decode(point, list(response.registers))


async def mbpoll(*args: str) -> dict[int, dict[int, str]]:
    """Run mbpoll once; {slave: {reference: value text}}."""
    assert MBPOLL is not None
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(LIMIT_S):
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    values: dict[int, dict[int, str]] = {}
    slave = 0
    for line in text.splitlines():
        if m := re.match(r"-- Polling slave (\d+)", line):
            slave = int(m[1])
        elif m := re.match(r"\[(\d+)\]:\s+(\S+)", line):
            values.setdefault(slave, {})[int(m[1])] = m[2]
    return values


# -- an independent master: mbpoll ---------------------------------------------------------


@needs_mbpoll
async def test_mbpoll_reads_int32_gross_and_status_over_tcp(tmp_path: Path) -> None:
    async with simulator("tcp", tmp_path, profile="scale-int32", trucks=1, seed=11) as sim:
        tcp = ["-m", "tcp", "-p", str(sim.port), "-a", "1", "-1"]
        async with asyncio.timeout(LIMIT_S):
            await sim.wait_until(lambda: sim.state.motion)  # driving on: 1.5 s of motion
        moving = await mbpoll(*tcp, "-r", "9", "-c", "1", "-t", "4", "127.0.0.1")
        weight = await on_plateau(sim)  # standing still: 3 s
        # -r is 1-based: reference 81 is wire address 0x0050. -B: high word first.
        gross = await mbpoll(*tcp, "-r", "81", "-c", "1", "-t", "4:int", "-B", "127.0.0.1")
        # -0 switches to 0-based (PDU) addresses: the same registers.
        gross0 = await mbpoll(*tcp, "-0", "-r", "80", "-t", "4:int", "-B", "127.0.0.1")
        status = await mbpoll(*tcp, "-r", "9", "-c", "1", "-t", "4", "127.0.0.1")
    assert int(moving[1][9]) & 1 << 5  # bit 5: unstable
    assert gross == {1: {81: str(weight)}}
    assert gross0 == {1: {80: str(weight)}}
    assert status == {1: {9: "0"}}  # stable, no overflow, no overload


@needs_mbpoll
async def test_mbpoll_reads_float32_from_three_slaves_over_the_rtu_pty(tmp_path: Path) -> None:
    async with simulator(
        "rtu", tmp_path, profile="scale-float32", units=(1, 2, 3), trucks=1, seed=12
    ) as sim:
        assert sim.link is not None
        weight = await on_plateau(sim)
        rtu = ["-m", "rtu", "-b", "9600", "-P", "none", "-a", "1:3", "-1"]
        # No -B: this indicator sends the low word first, mbpoll's default.
        gross = await mbpoll(*rtu, "-r", "1", "-c", "1", "-t", "4:float", str(sim.link))
        status = await mbpoll(*rtu, "-r", "5", "-c", "1", "-t", "4", str(sim.link))
    assert gross == {unit: {1: str(weight)} for unit in (1, 2, 3)}
    assert status == {unit: {5: "1"} for unit in (1, 2, 3)}  # bit 0: stable
    assert sim.stats.requests == {1: 2, 2: 2, 3: 2}


# -- pymodbus: every profile ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
@pytest.mark.parametrize(("profile", "scale"), SCALES, ids=["int32", "float32"])
async def test_scale_profiles_serve_the_trucks(
    transport: str, profile: str, scale: Any, tmp_path: Path
) -> None:
    assert scale.status is not None
    sim = simulator(transport, tmp_path, profile=profile, units=(1, 2), trucks=1, speed=4, seed=3)
    async with sim, client_of(sim) as client:
        empty = await read_point(client, scale.weight, unit=2)
        weight = await on_plateau(sim)
        gross = await read_point(client, scale.weight, unit=2)
        status = named_bits(scale.status, await read_point(client, scale.status))
    assert empty == 0
    assert gross == weight
    expected_stable = {"unstable": False} if profile == "scale-int32" else {"stable": True}
    assert status.items() >= expected_stable.items()
    assert not status["overload"]


async def test_sensors_profile_serves_registers_and_bits(tmp_path: Path) -> None:
    sim = simulator("tcp", tmp_path, profile="sensors", units=(1, 2), trucks=1, speed=20, seed=4)
    points = sim.points
    async with sim, client_of(sim) as client:
        async with asyncio.timeout(LIMIT_S):
            await sim.finished.wait()
        before = dict(sim.values)
        temperature = await read_point(client, points["temperature"])
        heartbeat = await read_point(client, points["heartbeat"])
        after = dict(sim.values)
        vehicles = await read_point(client, points["vehicles"], unit=2)

        commands = [True, False, True, False]
        written = await client.write_coils(0, commands, device_id=1)
        assert not written.isError(), written
        coils = await client.read_coils(0, count=4, device_id=1)
        ticks = sim.stats.ticks
        async with asyncio.timeout(LIMIT_S):
            await sim.wait_until(lambda: sim.stats.ticks > ticks)  # feedback follows a tick
        feedback = await client.read_discrete_inputs(0, count=4, device_id=1)
        other_unit = await client.read_coils(0, count=4, device_id=2)
    assert any(temperature == pytest.approx(v["temperature"], abs=1e-3) for v in (before, after))
    assert 15.0 < temperature < 28.0
    assert heartbeat in (before["heartbeat"], after["heartbeat"])
    assert vehicles == 1  # the one truck has driven off
    assert coils.bits[:4] == commands  # pymodbus pads bits to a whole byte: slice
    assert feedback.bits[:4] == commands
    assert other_unit.bits[:4] == [False] * 4  # each unit has its own datastore


@pytest.mark.parametrize(
    ("profile", "function", "address", "count"),
    [
        ("scale-int32", "holding", 0x0009, 1),  # between status and gross
        ("scale-int32", "holding", 0x004F, 2),  # straddles the start of gross
        ("scale-int32", "holding", 0x0052, 1),  # just past gross
        ("scale-int32", "holding", 0x0000, 1),
        ("scale-int32", "input", 0x0050, 2),  # the profile has no input registers
        ("scale-int32", "coil", 0, 1),  # nor coils
        ("scale-float32", "holding", 0x0005, 1),
        ("scale-float32", "discrete", 0, 1),
        ("sensors", "holding", 0x0103, 1),
        ("sensors", "input", 0x0002, 1),
        ("sensors", "coil", 16, 1),  # 16 coils: 0..15
        ("sensors", "discrete", 15, 2),
    ],
)
async def test_out_of_map_reads_give_illegal_data_address(
    profile: str, function: str, address: int, count: int, tmp_path: Path
) -> None:
    # Even with every in-map access answered "busy": out of map is always 0x02.
    sim = simulator(
        "tcp", tmp_path, profile=profile, faults={"exception"}, fault_rates={"exception": 1.0}
    )
    async with sim, client_of(sim) as client:
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[function]
        response = await call(address, count=count, device_id=1)
    assert response.isError()
    assert response.exception_code == 0x02
    assert sim.stats.exceptions == {0x02: 1}


async def test_registers_are_read_only_and_coils_writable(tmp_path: Path) -> None:
    sim = simulator("tcp", tmp_path, profile="sensors")
    async with sim, client_of(sim) as client:
        register = await client.write_register(0x0102, 7, device_id=1)
        coil = await client.write_coil(3, True, device_id=1)
    assert register.isError()
    assert register.exception_code == 0x02
    assert not coil.isError()


# -- dead slaves and faults ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_a_silenced_unit_times_out_while_the_others_answer(
    transport: str, tmp_path: Path
) -> None:
    sim = simulator(transport, tmp_path, profile="scale-int32", units=(1, 2, 3))
    async with sim, client_of(sim) as client:
        sim.silence_unit(2)
        answers = {}
        for unit in (1, 2, 3):
            try:
                answers[unit] = await read_point(client, INT32.weight, unit=unit)
            except ModbusIOException:  # pymodbus: no answer within timeout (x retries)
                answers[unit] = None
        sim.revive_unit(2)
        revived = await read_point(client, INT32.weight, unit=2)
    assert answers == {1: 0, 2: None, 3: 0}
    assert revived == 0
    assert sim.stats.unanswered == {2: 1}
    assert sim.stats.responses == {1: 1, 2: 1, 3: 1}


async def test_a_unit_that_is_not_configured_never_answers(tmp_path: Path) -> None:
    sim = simulator("rtu", tmp_path, profile="scale-int32", units=(1, 3))
    async with sim, client_of(sim) as client:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0x50, count=2, device_id=2)
        with pytest.raises(ValueError, match="unit 2"):
            sim.silence_unit(2)
    assert sim.stats.unanswered == {2: 1}


@pytest.mark.parametrize(("profile", "scale"), SCALES, ids=["int32", "float32"])
async def test_swap_serves_32_bit_values_in_the_other_word_order(
    profile: str, scale: Any, tmp_path: Path
) -> None:
    sim = simulator("tcp", tmp_path, profile=profile, faults={"swap"}, trucks=1, speed=4, seed=5)
    other = "little" if scale.weight.word_order == "big" else "big"
    reconfigured = scale.weight.model_copy(update={"word_order": other})
    async with sim, client_of(sim) as client:
        weight = await on_plateau(sim)
        response = await client.read_holding_registers(scale.weight.address, count=2, device_id=1)
    words = list(response.registers)
    assert words == list(reversed(encode(scale.weight, weight)))
    assert decode(reconfigured, words) == weight  # word_order in the config handles it
    assert decode(scale.weight, words) != weight
    assert sim.points["gross"] == reconfigured
    assert sim.points["status"] == scale.status  # 16-bit registers have no word order


async def test_exception_fault_answers_server_device_busy(tmp_path: Path) -> None:
    sim = simulator("tcp", tmp_path, profile="scale-int32", faults={"exception"})
    sim.fault_rates["exception"] = 1.0
    async with sim, client_of(sim) as client:
        busy = await client.read_holding_registers(0x50, count=2, device_id=1)
        sim.fault_rates["exception"] = 0.0
        fine = await client.read_holding_registers(0x50, count=2, device_id=1)
    assert busy.isError()
    assert busy.exception_code == 0x06
    assert busy.function_code == 0x83  # the request's function code with bit 7 set
    assert not fine.isError()
    assert sim.stats.faults == {"exception": 1}
    assert sim.stats.exceptions == {0x06: 1}


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_timeout_fault_sends_no_answer_at_all(transport: str, tmp_path: Path) -> None:
    sim = simulator(transport, tmp_path, profile="sensors", faults={"timeout"})
    sim.fault_rates["timeout"] = 1.0
    received: list[bytes] = []

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        return data

    async with sim, client_of(sim, trace_packet=trace) as client:
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0x0102, count=1, device_id=1)
        sim.fault_rates["timeout"] = 0.0
        assert not (await client.read_holding_registers(0x0102, count=1, device_id=1)).isError()
    assert len(received) == 1  # only the second answer
    assert sim.stats.faults == {"timeout": 1}


async def test_crc_fault_spoils_the_rtu_checksum_only(tmp_path: Path) -> None:
    sim = simulator("rtu", tmp_path, profile="scale-int32", faults={"crc"})
    sim.fault_rates["crc"] = 1.0
    received = bytearray()

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received[:] = data  # pymodbus passes its whole receive buffer
        return data

    async with sim, client_of(sim, trace_packet=trace) as client:
        with pytest.raises(ModbusIOException):  # pymodbus drops the frame, then times out
            await client.read_holding_registers(0x50, count=2, device_id=1)
    body, crc = bytes(received[:-2]), int.from_bytes(received[-2:], "big")
    assert body == bytes([1, 0x03, 4, 0, 0, 0, 0])  # unit 1, FC 3, 4 bytes: gross 0
    assert crc != FramerRTU.compute_CRC(body)
    assert sim.stats.faults == {"crc": 1}
    with pytest.raises(ValueError, match="needs RTU"):
        simulator("tcp", tmp_path, profile="scale-int32", faults={"crc"})


# -- seeds, arguments, lifecycle -----------------------------------------------------------


def test_trucks_come_from_the_seed_as_in_the_serial_simulator(tmp_path: Path) -> None:
    a = ModbusSimulator(profile="scale-int32", tcp_port=0, trucks=4, seed=42)
    b = ScaleSimulator(protocol="toledo", link=tmp_path / "b", trucks=4, seed=42)
    c = ModbusSimulator(profile="scale-int32", tcp_port=0, trucks=4, seed=43)
    assert a.truck_weights_kg == b.truck_weights_kg
    assert c.truck_weights_kg != a.truck_weights_kg


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "x"
    with pytest.raises(ValueError, match="exactly one"):
        ModbusSimulator(profile="sensors")
    with pytest.raises(ValueError, match="exactly one"):
        ModbusSimulator(profile="sensors", tcp_port=0, rtu_link=link)
    with pytest.raises(ValueError, match="unknown Modbus profile"):
        ModbusSimulator(profile="scale-int16", tcp_port=0)
    with pytest.raises(ValueError, match="unknown faults"):
        ModbusSimulator(profile="sensors", tcp_port=0, faults=["fire"])
    with pytest.raises(ValueError, match="units"):
        ModbusSimulator(profile="sensors", tcp_port=0, units=(0,))
    assert profile_points("scale-int32") == (INT32.weight, INT32.status)


async def test_nothing_is_left_after_the_block(tmp_path: Path) -> None:
    fds_before = open_fds()
    tcp = simulator("tcp", tmp_path, profile="sensors")
    rtu = simulator("rtu", tmp_path, profile="sensors")
    async with tcp, rtu, client_of(rtu) as client:
        assert rtu.link is not None
        assert os.readlink(rtu.link) == rtu.slave_name
        assert not (await client.read_coils(0, count=1, device_id=1)).isError()
        port = tcp.port
    # the RTU client still had the port open when the simulator closed
    assert rtu.link is not None
    assert gone(rtu.link)
    assert open_fds() == fds_before
    assert port is not None
    with pytest.raises(OSError):  # nobody listens any more
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_regular_file_at_the_link_is_not_replaced(tmp_path: Path) -> None:
    fds_before = open_fds()
    link = tmp_path / "modbus0"
    link.write_text("precious")
    with pytest.raises(FileExistsError):
        async with simulator("rtu", tmp_path, profile="sensors"):
            pass
    assert link.read_text() == "precious"
    assert open_fds() == fds_before


def test_command_line_plays_and_exits_zero(tmp_path: Path) -> None:
    link = tmp_path / "modbus0"
    cmd = [sys.executable, "-m", "simulators", "modbus", "--rtu", str(link), "--profile",
           "scale-float32", "--unit", "1", "--unit", "2", "--trucks", "1", "--speed", "20",
           "--seed", "1", "--faults", "crc,swap"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"modbus simulator scale-float32 on {link} (slave /dev/pts/")
    assert first.endswith("units 1,2")
    assert gone(link)


def test_command_line_stops_cleanly_on_sigterm() -> None:
    cmd = [sys.executable, "-m", "simulators", "modbus", "--tcp", "0", "--profile", "sensors"]
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.fullmatch(r"modbus simulator sensors on 127\.0\.0\.1:\d+, units 1\n", line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_command_line_refuses_crc_over_tcp() -> None:
    cmd = [sys.executable, "-m", "simulators", "modbus", "--tcp", "0", "--profile", "sensors",
           "--faults", "crc"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "crc fault needs RTU" in done.stderr
