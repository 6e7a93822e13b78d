"""Issue 13 V5-V7: hostile TCP clients of the JT/T 808 listener change nothing.

Real sockets to the real listener: in this process under its supervisor with a real
outbox (to read the device counters), or the daemon as a process with a real
mosquitto and central (to count the daemon's descriptors and see what central gets).
Flood connections come from other loopback addresses (127.0.0.2, ...) so that both the
per-address and the total cap are exercised; the allowed terminal is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from drivers.eseal import driver_jt808
from drivers.eseal.cli import REFUSALS
from drivers.eseal.codec_jt808 import (
    HEARTBEAT,
    PLATFORM_GENERAL_RESPONSE,
    REGISTRATION,
    REGISTRATION_RESPONSE,
    Jt808Codec,
    encode,
    encode_authentication,
)
from drivers.eseal.driver_jt808 import Jt808Driver, Jt808Section
from drivers.eseal.processor import ALARM_TOPIC, TERMINAL_MEMORY, SealProcessor
from drivers.eseal.readings import Jt808Message, PositionReported
from gateway.outbox import Outbox
from gateway.readings import Stamp
from gateway.supervisor import DeviceSupervisor
from tests.broker import Central, Mosquitto, free_port
from tests.eseal.test_durability import (
    AUTH_CODE,
    ELOCK_CODES,
    TERMINAL,
    Terminal,
    jt808_config,
    supervised,
)
from tests.process import GatewayProcess

WHEN = datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC)


def section(port: int, **extra: Any) -> Jt808Section:
    keys: dict[str, Any] = {"listen_host": "127.0.0.1", "listen_port": port,
                            "seal_interval_s": 0, "terminals": ELOCK_CODES, **extra}  # fmt: skip
    return Jt808Section(id="elock-gw", driver="eseal.jt808", **keys)


@contextlib.asynccontextmanager
async def listener(tmp_path: Path, config: Jt808Section) -> AsyncIterator[DeviceSupervisor]:
    """The listener under its supervisor, its records going to a real outbox."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", site="s", gateway="g", max_bytes=1 << 24)
    async with outbox, supervised(config, outbox.append) as supervisor:
        supervisor.outbox = outbox  # type: ignore[attr-defined]  # for records()
        async with asyncio.timeout(10):  # retry while it does not listen yet, as terminals do
            while True:
                try:
                    _, probe = await asyncio.open_connection("127.0.0.1", config.listen_port)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
        probe.close()  # an end of file at once: nothing refused, nothing counted but this
        yield supervisor


async def records(supervisor: DeviceSupervisor) -> list[tuple[str, dict[str, Any]]]:
    """(topic, data) of every record the listener's device stored."""
    outbox: Outbox = supervisor.outbox  # type: ignore[attr-defined]
    stored = await outbox.read_after(0, 100_000)
    return [(r.topic, json.loads(r.payload)["data"]) for r in stored]


def driver_of(supervisor: DeviceSupervisor) -> Jt808Driver:
    """The running driver (call once a connection was accepted: it is listening)."""
    assert isinstance(supervisor.driver, Jt808Driver)
    return supervisor.driver


def counters(supervisor: DeviceSupervisor) -> dict[str, Any]:
    return driver_of(supervisor).counters.as_dict()


async def until(supervisor: DeviceSupervisor, done: Callable[[], bool]) -> None:
    """Wait on the listener's changes (counters, connections) until ``done()``."""
    driver = driver_of(supervisor)
    async with asyncio.timeout(20):
        while not done():
            driver.changed.clear()
            await driver.changed.wait()


async def dial(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def hung_up(reader: asyncio.StreamReader, timeout_s: float = 20) -> list[Jt808Message]:
    """Wait until the gateway closes the connection; the messages it sent before."""
    data = bytearray()
    async with asyncio.timeout(timeout_s):
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                data += chunk
    return [m for m in Jt808Codec().feed(bytes(data), Stamp.now()) if isinstance(m, Jt808Message)]


def result_of(answer: Jt808Message) -> tuple[int, int]:
    """(reply id, result) of a 0x8001 general response (§8.2)."""
    assert answer.msg_id == PLATFORM_GENERAL_RESPONSE
    _, reply_id, result = struct.unpack_from(">HHB", answer.body)
    return reply_id, result


def alarm_report(terminal: str, serial: int) -> bytes:
    flags = {"door_open", "illegal_door_open"}
    return Jt808Codec().encode_location(terminal=terminal, serial=serial, lat=41.3, lon=69.2,
                                        device_time=WHEN, flags=flags)  # fmt: skip


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Warnings:
    """Stands in for the driver's logger: the warnings it would have logged."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_: object) -> None:
        self.events.append(event)


async def test_a_flood_of_idle_connections_leaves_the_daemon_bounded_and_answering(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    """1,100 idle connections (8 from each of 138 addresses) against the default caps
    (128 in all, 8 per address): the daemon's descriptors stay bounded, and an allowed
    terminal connecting afterwards still gets its alarm to central."""
    port = free_port()
    gateway = GatewayProcess(jt808_config(tmp_path, broker, port), tmp_path)
    flood: list[Any] = []
    terminal = Terminal(port)
    try:
        await gateway.start()
        assert gateway.proc is not None
        pid = gateway.proc.pid
        await terminal.connect()  # listening, and one allowed terminal known to work
        await terminal.close()
        before = peak = fd_count(pid)
        for n in range(1100):
            _, writer = await dial(port, f"127.0.0.{2 + n // 8}")
            flood.append(writer)
            if n % 25 == 0:
                peak = max(peak, fd_count(pid))
        terminal = Terminal(port)
        await terminal.connect()
        assert terminal.auth_results == [0] and terminal.connected
        terminal.send(terminal.report(7, door_open=True, when=WHEN))
        await terminal.until(lambda: 7 in terminal.answered)
        peak = max(peak, fd_count(pid))
        await central.wait_for(lambda c: len(c.records("event/seal_alarm")) == 1, 30)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.gatewayctl", "--config", str(gateway.config),
            "status", "--json", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert await gateway.stop() == 0
    finally:
        for writer in flood:
            writer.close()
        await terminal.close()
        await gateway.ensure_stopped()
    # max_connections, and the sockets asyncio accepts (up to its backlog, 100, per
    # turn) before their handlers close the ones they evict: on a loaded box a few turns
    # of accepts can run first. Bounded far below the 1024 the old listener exhausted.
    assert peak - before <= 128 + 3 * 100, f"{peak - before} more descriptors for 1,100 connections"
    state = json.loads(out)["devices"]["elock-gw"]["counters"]
    assert state["connections_evicted"] >= 1100 - 128, state
    (alarm,) = central.records("event/seal_alarm")
    assert (alarm["data"]["seal_id"], alarm["data"]["serial"]) == (TERMINAL, 7)


async def test_over_the_caps_a_connection_is_closed_at_once_when_none_can_make_room(
    tmp_path: Path,
) -> None:
    """Connections that authenticated are never evicted: at a cap, new ones are refused
    (accepted and closed at once, counted); sources outside allowed_networks too."""
    port = free_port()
    codes = {f"1390000000{n}": SecretStr(AUTH_CODE) for n in range(4)}
    config = section(port, max_connections=3, max_connections_per_address=2, terminals=codes)
    async with listener(tmp_path, config) as supervisor:
        elocks = [Terminal(port, f"1390000000{n}") for n in range(2)]
        try:
            await elocks[0].connect()
            await elocks[1].connect()
            assert [e.auth_results for e in elocks[:2]] == [[0], [0]]
            reader, writer = await dial(port)  # a third from 127.0.0.1: over its cap
            assert await hung_up(reader) == []
            writer.close()
            assert counters(supervisor)["connections_refused_address"] == 1
            source = "127.0.0.2"
            _, idle = await dial(port, source)  # the third in all, not authenticated
            reader, writer = await dial(port, source)  # the oldest unauthenticated goes
            await until(supervisor, lambda: counters(supervisor).get("connections_evicted") == 1)
            writer.close()
            idle.close()
            await until(supervisor, lambda: len(driver_of(supervisor)._terminals) == 2)
            _, third = await dial(port, source)
            third.write(encode_authentication("13900000002", 0, AUTH_CODE))
            await until(supervisor, lambda: counters(supervisor).get("authentications") == 3)
            reader, writer = await dial(port, "127.0.0.3")  # all three authenticated
            assert await hung_up(reader) == []
            writer.close()
            assert counters(supervisor)["connections_refused"] == 1
            third.close()
        finally:
            for elock in elocks:
                await elock.close()
    narrow = section(free_port(), allowed_networks=["10.20.0.0/16", "fd00::/8"])
    async with listener(tmp_path / "narrow", narrow) as supervisor:
        reader, writer = await dial(narrow.listen_port)
        assert await hung_up(reader) == []
        writer.close()
        # listener()'s own probe from 127.0.0.1 was the first one refused
        assert counters(supervisor)["connections_refused_network"] == 2


async def test_a_terminal_that_never_reads_is_closed_once_its_answers_pass_the_cap(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = section(port, max_write_buffer_bytes=1024, max_frames_per_s=1e6, frame_burst=10**6)
    async with listener(tmp_path, config) as supervisor:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        _, writer = await asyncio.open_connection(sock=sock)
        beats = b"".join(encode(HEARTBEAT, TERMINAL, n & 0xFFFF, b"") for n in range(1000))
        writer.write(encode_authentication(TERMINAL, 0, AUTH_CODE))
        try:
            async with asyncio.timeout(30):
                with contextlib.suppress(ConnectionError):
                    for _ in range(400):  # at most 400k heartbeats, each answered
                        writer.write(beats)
                        await writer.drain()
                        if counters(supervisor).get("connections_closed_write_buffer"):
                            break
        finally:
            writer.close()
        assert counters(supervisor)["connections_closed_write_buffer"] == 1
        await until(supervisor, lambda: not driver_of(supervisor)._terminals)


async def test_a_wrong_code_gets_failure_and_close_and_no_report_of_nobody_is_used(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    """A wrong code, no authentication at all, an unknown terminal and a connection that
    authenticated as one terminal reporting for another: none of their alarms reaches
    central; the allowed terminal's alarm sent after them does."""
    port = free_port()
    gateway = GatewayProcess(jt808_config(tmp_path, broker, port), tmp_path)
    wrong, silent, stranger, liar = (Terminal(port), Terminal(port), Terminal(port, "99"),
                                     Terminal(port))  # fmt: skip
    honest = Terminal(port)
    try:
        await gateway.start()
        await wrong.connect(auth_code="guess")
        assert wrong.auth_results == [1], "0x8001 result 1: failure (§8.2)"
        await wrong.until(lambda: not wrong.connected)
        await silent.connect(auth_code=None)
        silent.send(silent.report(1, door_open=True, when=WHEN))
        await silent.until(lambda: not silent.connected)
        await stranger.connect(auth_code=AUTH_CODE)
        assert stranger.auth_results == [1]
        await stranger.until(lambda: not stranger.connected)
        await liar.connect()
        assert liar.auth_results == [0]
        liar.send(alarm_report("13900139000", 2))  # another listed terminal's id
        await liar.until(lambda: not liar.connected)
        await honest.connect()
        honest.send(honest.report(3, door_open=True, when=WHEN))
        await honest.until(lambda: 3 in honest.answered)
        await central.wait_for(lambda c: len(c.records("event/seal_alarm")) >= 1, 30)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.gatewayctl", "--config", str(gateway.config),
            "status", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        text = (await proc.communicate())[0].decode()
        assert await gateway.stop() == 0
    finally:
        for t in (wrong, silent, stranger, liar, honest):
            await t.close()
        await gateway.ensure_stopped()
    assert [r["data"]["serial"] for r in central.records("event/seal_alarm")] == [3]
    assert not (wrong.answered or silent.answered or stranger.answered or liar.answered)
    line = next(x for x in text.splitlines() if "refused:" in x)
    for counter in ("terminals_auth_failed=1", "frames_unauthenticated=1",
                    "frames_wrong_terminal=1", "terminals_unknown=1"):  # fmt: skip
        assert counter in line, text
    assert "last unknown terminal 000000000099" in line


async def test_3000_unknown_terminals_are_one_log_line_no_record_and_bounded_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each authenticates (half of them) or sends an alarm report (the other half) under
    its own made-up id: each is closed, nothing of theirs is stored, one warning says so."""
    port = free_port()
    async with listener(tmp_path, section(port)) as supervisor:
        elock = Terminal(port)
        await elock.connect()
        driver = driver_of(supervisor)
        logs = Warnings()
        monkeypatch.setattr(driver_jt808, "log", logs)
        for start in range(0, 3000, 100):
            dialled = [await dial(port, f"127.0.1.{n % 200 + 1}") for n in range(100)]
            for n, (_, writer) in enumerate(dialled, start=start):
                phone = f"{500000 + n:012d}"
                writer.write(encode_authentication(phone, 0, AUTH_CODE) if n % 2
                             else alarm_report(phone, 1))  # fmt: skip
            answers = await asyncio.gather(*(hung_up(reader) for reader, _ in dialled))
            for (_, writer), answer in zip(dialled, answers, strict=True):
                writer.close()
                assert [result_of(a)[1] for a in answer] in ([], [1])
        elock.send(elock.report(8, door_open=True, when=WHEN))
        await elock.until(lambda: 8 in elock.answered)
        await elock.close()
        await until(supervisor, lambda: not driver._terminals)
        stored = await records(supervisor)
        state = counters(supervisor)
        assert logs.events.count("unknown terminal refused") == 1, "reported once"
        assert state["terminals_unknown"] == 3000
        assert state["last_unknown_terminal"] == f"{500000 + 2999:012d}"
        assert [d["serial"] for t, d in stored if t == ALARM_TOPIC] == [8]
        assert {d["terminal"] for t, d in stored if t.endswith("/position")} == {TERMINAL}
        assert not driver._per_address and driver._logged <= set(REFUSALS)


def test_the_processor_remembers_a_bounded_number_of_terminals() -> None:
    """Made-up ids that did reach the processor (say, thousands of listed terminals over
    months) are forgotten least recently seen first."""
    processor = SealProcessor("elock-gw", interval_s=60)
    codec = Jt808Codec()
    for n in range(TERMINAL_MEMORY + 500):
        frame = codec.encode_location(terminal=f"{n:012d}", serial=1, lat=41.3, lon=69.2,
                                      device_time=WHEN, flags={"illegal_door_open"})  # fmt: skip
        (report,) = codec.feed(frame, Stamp.now())
        assert isinstance(report, PositionReported)
        processor.stored(processor.feed(report))
    assert len(processor._last) == TERMINAL_MEMORY
    assert len(processor._alarms) == TERMINAL_MEMORY
    assert f"{TERMINAL_MEMORY + 499:012d}" in processor._alarms, "the newest kept"
    assert f"{0:012d}" not in processor._alarms, "the oldest forgotten"


async def test_idle_and_unauthenticated_connections_are_closed_after_their_timeouts(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = section(port, idle_timeout_s=0.6, auth_timeout_s=0.3)
    async with listener(tmp_path, config) as supervisor:
        elock = Terminal(port)
        await elock.connect()
        loop = asyncio.get_running_loop()
        reader, writer = await dial(port)  # says nothing
        slow_reader, slow = await dial(port)  # a frame that never ends: one byte at a time
        slow.write(b"\x7e\x00")
        opened = loop.time()
        assert await hung_up(reader, 5) == []
        assert 0.25 <= loop.time() - opened < 3
        assert await hung_up(slow_reader, 5) == []
        writer.close()
        slow.close()
        await elock.until(lambda: not elock.connected)  # authenticated, then silent
        state = counters(supervisor)
        assert state["connections_closed_unauthenticated"] == 2
        assert state["connections_closed_idle"] == 1


async def test_frames_over_the_rate_are_dropped_and_counted(tmp_path: Path) -> None:
    port = free_port()
    config = section(port, max_frames_per_s=0.01, frame_burst=20)
    async with listener(tmp_path, config) as supervisor:
        elock = Terminal(port)
        await elock.connect()  # 1 token
        beats = [encode(HEARTBEAT, TERMINAL, n, b"") for n in range(1, 201)]
        elock.send(*beats, elock.report(500, door_open=False, when=WHEN))
        await until(supervisor, lambda: counters(supervisor).get("frames_rate_limited", 0) >= 182)
        await elock.close()
        assert counters(supervisor)["frames_rate_limited"] == 182
        assert 500 not in elock.answered, "the report was past the burst: dropped"


async def test_registration_answers_only_listed_terminals_and_hands_out_no_code_by_default(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with listener(tmp_path, section(port)):
        for phone, result in ((TERMINAL, 3), ("77", 4)):  # §8.6: 3 registered, 4 no such
            reader, writer = await dial(port)
            writer.write(encode(REGISTRATION, phone, 0, bytes(37)))
            if result == 4:
                (answer,) = await hung_up(reader)
            else:
                async with asyncio.timeout(10):
                    answer, *_ = await anext_message(reader)
            writer.close()
            assert answer.msg_id == REGISTRATION_RESPONSE
            assert (answer.body[2], answer.body[3:]) == (result, b""), "no code handed out"
    port = free_port()
    async with listener(tmp_path / "open", section(port, registration_gives_auth_code=True)):
        reader, writer = await dial(port)
        writer.write(encode(REGISTRATION, TERMINAL, 0, bytes(37)))
        async with asyncio.timeout(10):
            answer, *_ = await anext_message(reader)
        writer.close()
        assert (answer.body[2], answer.body[3:]) == (0, AUTH_CODE.encode())


async def anext_message(reader: asyncio.StreamReader) -> list[Jt808Message]:
    """The next messages the gateway sends (at least one)."""
    codec = Jt808Codec()
    while True:
        chunk = await reader.read(4096)
        assert chunk, "closed"
        if found := [m for m in codec.feed(chunk, Stamp.now()) if isinstance(m, Jt808Message)]:
            return found


def test_config_refuses_what_is_not_a_terminal_or_a_network() -> None:
    for bad in ({"12a": "x"}, {"1" * 21: "x"}, {"1": ""}, {"01": "x", "1": "y"}):
        with pytest.raises(ValueError, match="terminal"):
            section(7018, terminals={k: SecretStr(v) for k, v in bad.items()})
    with pytest.raises(ValueError, match="allowed_networks"):
        section(7018, allowed_networks=["10.0.0.1/8"])
    default = Jt808Section(id="x", driver="eseal.jt808", listen_port=7018)
    assert default.terminals == {} and default.max_connections == 128
    assert "lane3" not in repr(section(7018)), "codes are secrets"
