"""Issue 10: a seal alarm is never lost, and never acknowledged before it is durable.

A refused append (the outbox full) must leave the alarm unacknowledged, so the reader
or e-lock repeats it and the repeat is stored; an e-lock without a clock (all-zero
device time), or a reader sending the manual's plain alert records (no event time, no
EV#), still gets one record per opening. Devices are the simulators on their
real transports (a pty, TCP) or a scripted JT/T 808 terminal speaking through the
real codec; the outbox is a real one, central a real mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from drivers.eseal.codec_jt808 import (
    AUTHENTICATION,
    PLATFORM_GENERAL_RESPONSE,
    Jt808Codec,
    encode,
    encode_authentication,
)
from drivers.eseal.codec_reader import (
    CLOSE_BURST,
    OPENED,
    TAMPERED,
    UNSYNC_MESSAGE,
    SealReaderCodec,
    seal_id_bytes,
)
from drivers.eseal.driver_jt808 import Jt808Section
from drivers.eseal.driver_reader import SealReaderSection
from drivers.eseal.processor import ALARM_TOPIC, JT808_ALARM_EVENTS, alert_event
from drivers.eseal.readings import (
    ALERT_BURST,
    LOCATION_REPORT,
    AlertAcked,
    Jt808Message,
    PositionReported,
    SealAlert,
)
from gateway.backoff import Backoff
from gateway.config import DeviceSection
from gateway.errors import OutboxFullError
from gateway.outbox import Outbox
from gateway.readings import Stamp
from gateway.records import Draft, Outgoing, Record, rfc3339
from gateway.supervisor import DeviceSupervisor, Emit
from simulators.eseal import EsealSimulator
from tests.broker import Central, Mosquitto, free_port
from tests.helpers import config_text
from tests.process import GatewayProcess

TERMINAL = "013800138000"
AUTH_CODE = "lane3-elock"
ELOCKS = {TERMINAL: AUTH_CODE, "13900139000": AUTH_CODE}
"""The e-locks the tests' listeners admit (the simulators' 2013 and 2019 terminals)."""
ELOCK_CODES = {terminal: SecretStr(code) for terminal, code in ELOCKS.items()}
"""The same, as a :class:`Jt808Section` holds them."""

AlarmKey = tuple[str, str, str | None]


def alert_key(alert: SealAlert) -> AlarmKey:
    """(seal id, the record's event, event time or ``None``: a plain alert has none)."""
    when = None if alert.event_time is None else rfc3339(alert.event_time)
    return alert.seal_id, alert_event(alert), when


def record_key(data: dict[str, Any]) -> AlarmKey:
    """:func:`alert_key` of the alert a record's ``data`` stands for."""
    return data["seal_id"], data["event"], data["event_time"]


class RefusingEmit:
    """The daemon's emit around a real outbox, refusing the first alarm once (outbox full).

    ``on_durable`` is called with each alarm's data as soon as the outbox committed it
    (what it raises, the supervisor would take for a crash: it only takes notes).
    """

    def __init__(self, outbox: Outbox, on_durable: Callable[[dict[str, Any]], None]) -> None:
        self.outbox = outbox
        self.on_durable = on_durable
        self.refused: dict[str, Any] | None = None

    async def __call__(self, drafts: Sequence[Outgoing]) -> list[Record]:
        alarms = [d for d in drafts if isinstance(d, Draft) and d.topic == ALARM_TOPIC]
        if alarms and self.refused is None:
            self.refused = alarms[0].data
            raise OutboxFullError("test: only protected records remain")
        records = await self.outbox.append(drafts)
        for alarm in alarms:
            self.on_durable(alarm.data)
        return records

    async def alarms(self) -> list[dict[str, Any]]:
        """The ``data`` of every alarm record in the outbox."""
        records = await self.outbox.read_after(0, 100_000)
        return [json.loads(r.payload)["data"] for r in records if r.topic.endswith(ALARM_TOPIC)]


@contextlib.asynccontextmanager
async def supervised(config: DeviceSection, emit: Emit) -> AsyncIterator[DeviceSupervisor]:
    """The device under its supervisor (quick retries) while the block runs."""
    supervisor = DeviceSupervisor(config, emit, backoff=Backoff(base_s=0.05, cap_s=0.1))
    task = asyncio.create_task(supervisor.run(), name=f"device-{config.id}")
    try:
        yield supervisor
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_refused_reader_alarm_is_acknowledged_only_once_its_repeat_is_stored(
    tmp_path: Path,
) -> None:
    link = tmp_path / "seal-gate-1"
    config = SealReaderSection(id="seal-gate-1", driver="eseal.reader", port=str(link),
                              poll_interval_s=0.5, silence_timeout_s=0)  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.sqlite3", site="s", gateway="g", max_bytes=1 << 24)
    async with outbox, EsealSimulator(protocol="reader", link=link, events=30, seed=7,
                                      speed=8) as sim:  # fmt: skip

        def acked(key: AlarmKey) -> int:
            """How many alerts like this the reader has an ACK for (a plain alert has no
            time: two openings of a seal look alike, and are acknowledged in order)."""
            return sum(alert_key(a) == key for a in sim.acked if isinstance(a, SealAlert))

        durable_count: Counter[AlarmKey] = Counter()
        acked_early: list[str] = []  # alarms the reader had an ACK for when they were stored

        def durable(data: dict[str, Any]) -> None:
            key = record_key(data)
            durable_count[key] += 1
            if acked(key) >= durable_count[key]:  # this one's ACK came before it was stored
                acked_early.append(data["dedup_key"])

        emit = RefusingEmit(outbox, on_durable=durable)
        async with supervised(config, emit):
            await asyncio.wait_for(sim.finished.wait(), 60)
        stored = await emit.alarms()
    alerts = [s for s in sim.sent if isinstance(s, SealAlert) and s.alarm]
    assert emit.refused is not None, "the seed must produce an alarm"
    assert emit.refused["event_time"] is None, "the manual's plain alert record"
    assert not acked_early, "an alert is acknowledged only after its record is durable"
    refused = record_key(emit.refused)
    assert acked(refused) == durable_count[refused], "its repeat was stored, then acknowledged"
    assert {id(a) for a in alerts} <= {id(a) for a in sim.acked}
    sent = Counter(alert_key(a) for a in alerts)
    assert Counter(record_key(d) for d in stored) == sent, (
        "every alarm in the outbox exactly once, the refused one included"
    )


class PlainReader:
    """A scripted Hi-G-Tek reader on TCP sending the manual's plain alert records
    (#B 9: TF, TID, burst, short status; no event time, no EV#), as the test says."""

    SEAL = "48481010102F"

    def __init__(self) -> None:
        self.codec = SealReaderCodec()
        self.acks = 0
        self.acked = asyncio.Event()
        self.port = 0
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> PlainReader:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer  # the driver reconnects after a refused append
        try:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(4096):
                    for item in self.codec.feed(data, Stamp.now()):
                        if isinstance(item, AlertAcked):
                            self.acks += 1
                            self.acked.set()
        finally:
            writer.close()

    def alert(self, burst: int, status: int) -> bytes:
        record = seal_id_bytes(self.SEAL) + bytes([burst, status])
        return self.codec.frame(1, UNSYNC_MESSAGE, bytes([1, len(record) + 1]) + record)

    def send(self, *frames: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"".join(frames))

    async def until_acked(self, frame: bytes) -> int:
        """Send ``frame`` as the reader does, repeated until acknowledged; how often."""
        acks, sent = self.acks, 0
        async with asyncio.timeout(20):
            while self.acks == acks:
                self.send(frame)
                sent += 1
                self.acked.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await self.acked.wait()
        return sent


async def test_a_plain_reader_gets_one_alarm_per_opening(tmp_path: Path) -> None:
    """The manual's records carry no time: one opening repeated until acknowledged (its
    first record refused) is one alarm; a second opening after the close is another."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", site="s", gateway="g", max_bytes=1 << 24)
    async with outbox, PlainReader() as reader:
        config = SealReaderSection(id="seal-gate-1", driver="eseal.reader",
                                  port=f"socket://127.0.0.1:{reader.port}", poll_interval_s=0,
                                  silence_timeout_s=0)  # fmt: skip
        opened = reader.alert(ALERT_BURST, OPENED | TAMPERED)
        closed = reader.alert(CLOSE_BURST, TAMPERED)  # tampered stays latched: an alarm too
        emit = RefusingEmit(outbox, on_durable=lambda _: None)
        stored_at_ack: list[int] = []  # alarms durable when each ACK arrived
        async with supervised(config, emit):
            assert await reader.until_acked(opened) >= 2, "refused, so repeated"
            stored_at_ack.append(len(await emit.alarms()))
            reader.send(opened)  # a repeat already on the wire when the ACK went out
            for frame in (closed, opened):  # the second opening, after the close
                await reader.until_acked(frame)
                stored_at_ack.append(len(await emit.alarms()))
            reader.send(opened, opened)  # duplicated, then repeated: the ACK was lost
            await reader.until_acked(opened)
            await reader.until_acked(closed)
            stored_at_ack.append(len(await emit.alarms()))
        stored = await emit.alarms()
    assert emit.refused is not None and emit.refused["event"] == "opened_without_approval"
    assert [d["event"] for d in stored] == [
        "opened_without_approval", "closed", "opened_without_approval", "closed"
    ], "one alarm per opening: repeats merged, separate openings not"  # fmt: skip
    assert all((d["event_time"], d["sequence"]) == (None, None) for d in stored)
    assert len({d["dedup_key"] for d in stored}) == 4
    assert stored_at_ack == [1, 2, 3, 4], "each ACK only once its alarm was durable"


class Terminal:
    """A scripted JT/T 808 e-lock on TCP: sends what the test says, notes the answers."""

    def __init__(self, port: int, terminal: str = TERMINAL) -> None:
        self.port = port
        self.terminal = terminal
        self.codec = Jt808Codec()
        self.answered: list[int] = []  # serials of the location reports answered
        self.auth_results: list[int] = []  # 0x8001 results to our authentications
        self.changed = asyncio.Event()  # an answer arrived, or the platform hung up
        self.connected = False
        self._writer: asyncio.StreamWriter | None = None
        self._rx: asyncio.Task[None] | None = None

    async def connect(self, auth_code: str | None = AUTH_CODE) -> None:
        """Connect, retrying while the platform does not listen (as terminals do), and
        authenticate with ``auth_code`` (``None``: do not)."""
        async with asyncio.timeout(10):
            while True:
                try:
                    reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
        self.connected = True
        self._rx = asyncio.create_task(self._receive(reader, self._writer), name="jt808-rx")
        if auth_code is not None:
            answers = len(self.auth_results)
            self.send(encode_authentication(self.terminal, 0, auth_code))
            await self.until(lambda: len(self.auth_results) > answers or not self.connected)

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(4096):
                    for msg in self.codec.feed(data, Stamp.now()):
                        if (
                            isinstance(msg, Jt808Message)
                            and msg.msg_id == PLATFORM_GENERAL_RESPONSE
                        ):
                            serial, msg_id, result = struct.unpack_from(">HHB", msg.body)
                            if msg_id == LOCATION_REPORT:
                                self.answered.append(serial)
                            elif msg_id == AUTHENTICATION:
                                self.auth_results.append(result)
                            self.changed.set()
        finally:
            writer.close()
            self.connected = False
            self.changed.set()

    def send(self, *frames: bytes) -> None:
        assert self._writer is not None
        self._writer.write(b"".join(frames))

    def report(self, serial: int, *, door_open: bool, when: datetime | None = None) -> bytes:
        """A 0x0200 frame: the door opened without approval, or locked."""
        flags = {"door_open", "illegal_door_open"} if door_open else {"locked"}
        return self.codec.encode_location(terminal=self.terminal, serial=serial, lat=41.3,
                                          lon=69.2, device_time=when, flags=flags)  # fmt: skip

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait (on answers and hang-ups, no polling) until ``done()``."""
        async with asyncio.timeout(20):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._rx is not None:
            await self._rx


async def test_a_refused_jt808_alarm_report_is_answered_only_once_its_resend_is_stored(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = Jt808Section(id="elock-gw", driver="eseal.jt808", listen_host="127.0.0.1",
                         listen_port=port, seal_interval_s=0, terminals=ELOCK_CODES)  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.sqlite3", site="s", gateway="g", max_bytes=1 << 24)
    terminal = Terminal(port)
    answered_early: list[int] = []  # reports the terminal had an answer for when stored

    def durable(data: dict[str, Any]) -> None:
        if data["serial"] in terminal.answered:
            answered_early.append(data["serial"])

    async with outbox:
        emit = RefusingEmit(outbox, on_durable=durable)
        when = datetime(2026, 3, 1, 8, 0, 5, tzinfo=UTC)
        opened = terminal.report(7, door_open=True, when=when)
        async with supervised(config, emit):
            try:
                await terminal.connect()
                terminal.send(opened)
                await terminal.until(lambda: not terminal.connected)
                assert emit.refused is not None and emit.refused["serial"] == 7
                assert 7 not in terminal.answered, "a refused alarm report is not answered"
                await terminal.connect()  # a terminal re-sends an unanswered report
                terminal.send(opened)
                await terminal.until(lambda: 7 in terminal.answered)
            finally:
                await terminal.close()
        stored = await emit.alarms()
    assert [(d["event"], d["event_time"], d["serial"]) for d in stored] == [
        ("opened", rfc3339(when), 7)
    ]
    assert not answered_early, "answered only after its record was durable"


def jt808_config(tmp_path: Path, broker: Mosquitto, port: int, **extra: Any) -> Path:
    """A gateway with one JT/T 808 listener admitting :data:`ELOCKS` (``extra`` keys)."""
    config = tmp_path / "gateway.toml"
    device = {"id": "elock-gw", "driver": "eseal.jt808", "listen_host": "127.0.0.1",
              "listen_port": port, "seal_interval_s": 0, "terminals": ELOCKS,
              **extra}  # fmt: skip
    config.write_text(config_text(tmp_path / "data", broker.port, [device]))
    return config


async def test_an_elock_without_a_clock_gets_one_alarm_per_opening(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    port = free_port()
    gateway = GatewayProcess(jt808_config(tmp_path, broker, port), tmp_path)
    terminal = Terminal(port)
    try:
        await gateway.start()
        await terminal.connect()
        first, closed, second, still_open = (
            terminal.report(1, door_open=True),
            terminal.report(2, door_open=False),
            terminal.report(3, door_open=True),
            terminal.report(4, door_open=True),
        )
        # Quick repeats of the first opening: a frame sent twice, and the report re-sent
        # after a later one (its answer was late), all with an all-zero device time.
        terminal.send(first, first, closed, first)
        await terminal.until(lambda: {1, 2} <= set(terminal.answered))
        terminal.send(second, still_open)  # a later, separate opening
        await terminal.until(lambda: {3, 4} <= set(terminal.answered))
        await central.wait_for(lambda c: len(c.records("reading/elock-gw/position")) >= 6, 30)
        assert await gateway.stop() == 0
    finally:
        await terminal.close()
        await gateway.ensure_stopped()
    alarms = central.records("event/seal_alarm")
    assert [(r["data"]["event"], r["data"]["serial"]) for r in alarms] == [
        ("opened", 1),
        ("opened", 3),
    ], "one alarm per opening: repeats merged, separate openings not"
    assert all(r["data"]["event_time"] is None for r in alarms)
    assert len({r["data"]["dedup_key"] for r in alarms}) == 2


async def test_an_elock_simulator_without_a_clock_gets_every_rising_alarm(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    port = free_port()
    gateway = GatewayProcess(jt808_config(tmp_path, broker, port), tmp_path)
    try:
        await gateway.start()
        async with EsealSimulator(protocol="jt808", tcp_port=port, events=40, seed=9, speed=8,
                                  faults=["duplicate"], clock=False,
                                  auth_code=AUTH_CODE) as sim:  # fmt: skip
            await asyncio.wait_for(sim.finished.wait(), 60)
        expected: Counter[str] = Counter()
        before = frozenset[str]()
        for report in sim.sent:
            assert isinstance(report, PositionReported)
            now = frozenset(JT808_ALARM_EVENTS[f] for f in report.alarms)
            expected.update(now - before)
            before = now
        assert expected["opened"] >= 2, "the seed must open the door more than once"
        reports = len(sim.sent)  # each gives a position reading, after its alarms
        await central.wait_for(lambda c: len(c.records("elock-gw/position")) >= reports, 30)
        assert await gateway.stop() == 0
    finally:
        await gateway.ensure_stopped()
    alarms = central.records("event/seal_alarm")
    assert Counter(r["data"]["event"] for r in alarms) == expected
    assert all(r["data"]["event_time"] is None for r in alarms)


async def test_location_reports_the_codec_cannot_decode_are_not_answered(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = Jt808Section(id="elock-gw", driver="eseal.jt808", listen_host="127.0.0.1",
                         listen_port=port, terminals=ELOCK_CODES)  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.sqlite3", site="s", gateway="g", max_bytes=1 << 24)
    terminal = Terminal(port)
    async with outbox, supervised(config, outbox.append):
        try:
            await terminal.connect()
            body = bytes(28)
            terminal.send(
                encode(LOCATION_REPORT, TERMINAL, 20, body, encryption=1),  # RSA
                encode(LOCATION_REPORT, TERMINAL, 21, body, packet=(2, 1)),  # split
                terminal.report(22, door_open=False),
            )
            await terminal.until(lambda: 22 in terminal.answered)
        finally:
            await terminal.close()
    assert terminal.answered == [22], "perhaps alarms, not stored: never answered"
