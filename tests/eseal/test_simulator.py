"""The e-seal simulator, read and answered through the real codecs.

Reader: the test opens the pty link (or connects over TCP) as the gateway would, feeds
what arrives into :class:`SealReaderCodec` and acknowledges alerts with ``ack_for``.
JT/T 808: the test is the platform, a TCP server that decodes with :class:`Jt808Codec`
and answers every report with ``general_response``. Waiting is on events, bounded by
``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from drivers.eseal.codec_jt808 import AUTHENTICATION, REGISTRATION, Jt808Codec, authentication_code
from drivers.eseal.codec_reader import Decoded, SealReaderCodec
from drivers.eseal.probe import probe_reader, render
from drivers.eseal.readings import (
    Jt808Message,
    NoSealInRange,
    PositionReported,
    SealAlert,
    SealRead,
)
from gateway.errors import FrameError
from gateway.readings import Stamp
from simulators.__main__ import _parser
from simulators.eseal import REPEAT_S, EsealSimulator

SPEED = 20.0
LIMIT_S = 15.0
START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NO_TIME = Stamp(mono=0.0, utc=START)

T = TypeVar("T", bound=SealRead | SealAlert | NoSealInRange | PositionReported)


def bare(item: T) -> T:
    """``item`` without its arrival time, to compare what was sent with what arrived."""
    return replace(item, at=NO_TIME)


@dataclass
class AlertRun:
    """One alert message and how often it arrived (repeats, duplicates)."""

    alert: SealAlert
    arrivals: int = 0


@dataclass
class ReaderHost:
    """The gateway side of a gate reader: decodes, counts alerts, acknowledges them.

    A plain alert carries no time or EV#, so two alerts of one seal may look alike:
    the reader has one message outstanding, so an alert like the one before it is its
    repeat (the simulator never bursts a seal's last event again), anything else the
    next message. ``runs`` holds each message with how often it arrived.
    """

    ack_on: int  # acknowledge an alert when it has arrived this many times
    send: Callable[[bytes], None] = lambda _: None
    codec: SealReaderCodec = field(default_factory=SealReaderCodec)
    items: list[Decoded] = field(default_factory=list)
    runs: list[AlertRun] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        for item in self.codec.feed(data, Stamp.now()):
            self.items.append(item)
            if isinstance(item, SealAlert):
                alert = bare(item)
                if not self.runs or self.runs[-1].alert != alert:
                    self.runs.append(AlertRun(alert))
                run = self.runs[-1]
                run.arrivals += 1
                if run.arrivals == self.ack_on:
                    self.send(self.codec.ack_for(item))

    @property
    def alerts(self) -> list[SealAlert]:
        """The alert messages, each once, in order of arrival (repeats merged)."""
        return [run.alert for run in self.runs]

    def of(self, kind: type[T]) -> list[T]:
        return only(self.items, kind)

    @property
    def errors(self) -> list[FrameError]:
        return [i for i in self.items if isinstance(i, FrameError)]


def only(items: Iterable[object], kind: type[T]) -> list[T]:
    """The ``kind`` items, without arrival times."""
    return [bare(i) for i in items if isinstance(i, kind)]


def sent_of(sim: EsealSimulator, kind: type[T]) -> list[T]:
    return only(sim.sent, kind)


async def read_pty(sim: EsealSimulator, host: ReaderHost) -> None:
    """Open the link as the gateway opens a serial port; feed ``host`` until finished."""
    assert sim.link is not None
    fd = os.open(sim.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        host.feed(data)

    def send(frame: bytes) -> None:
        os.write(fd, frame)

    host.send = send
    loop.add_reader(fd, readable)
    try:
        async with asyncio.timeout(LIMIT_S):
            await sim.finished.wait()
        await asyncio.sleep(3 * REPEAT_S / sim.speed)  # repeats would show up by now
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_reader_pty_repeats_alerts_until_acked(tmp_path: Path) -> None:
    host = ReaderHost(ack_on=2)  # let each alert repeat once before acknowledging it
    sim = EsealSimulator(
        protocol="reader", link=tmp_path / "seal0", events=20, seed=7, speed=SPEED, start_time=START
    )
    async with sim:
        await read_pty(sim, host)
    assert not host.errors
    alerts = sent_of(sim, SealAlert)
    assert alerts, "the seed should play at least one alert"
    assert host.of(SealRead) == sent_of(sim, SealRead)
    # The manual's plain record by default: no event time, EV# or event code.
    assert all((a.event_time, a.sequence, a.event_code) == (None,) * 3 for a in alerts)
    seals = Counter(a.seal_id for a in alerts)
    assert seals.most_common(1)[0][1] >= 2, "the seed should burst one seal more than once"
    assert host.alerts == alerts, "each alert arrives exactly as sent, in order"
    for run in host.runs:  # repeated until the ACK, then at most one already under way
        assert 2 <= run.arrivals <= 3, run
    assert only(sim.acked, SealAlert) == alerts, (
        "one unsynchronized message outstanding at a time: acknowledged in order"
    )
    assert not (tmp_path / "seal0").exists()  # the link is removed on exit


async def test_reader_speaks_the_hi_g_tek_layout_and_the_probe_names_it() -> None:
    """The simulator frames as the Hi-G-Tek manual does (STX, 2-byte #B, R#, MSGT 8015h or
    800Ah, R_status); a reader whose CRC leaves R# out (layout ``hgt-no-address``) and
    starts at 0x0000 is identified by the probe, which acknowledges nothing."""
    async with EsealSimulator(
        protocol="reader", tcp_port=0, seed=4, speed=SPEED, crc_init=0x0000,
        layout="hgt-no-address",
    ) as sim:  # fmt: skip
        results = await probe_reader(f"socket://127.0.0.1:{sim.port}", seconds=1.0)
        text, found = render("tcp", results)
    assert found, text
    assert 'crc_init = 0x0000, layout = "hgt-no-address"' in text
    assert "crc_init 0xFFFF: layout hgt: " in text, "the defaults were tried first"
    assert not sim.acked
    heard = [item for r in results for item in r.good]
    assert all(item.reader == 1 for item in heard)


async def test_reader_pty_crc_and_noise_still_decode(tmp_path: Path) -> None:
    host = ReaderHost(ack_on=1)
    sim = EsealSimulator(
        protocol="reader",
        link=tmp_path / "seal0",
        events=30,
        seed=3,
        speed=SPEED,
        start_time=START,
        faults=["crc", "noise"],
        fault_rates={"crc": 0.25, "noise": 0.25},
    )
    async with sim:
        await read_pty(sim, host)
    assert sim.stats.faults["crc"] > 0 and sim.stats.faults["noise"] > 0
    assert host.errors  # the codec reports the damage as FrameError values
    reads = host.of(SealRead)
    assert reads, "good frames still decode"
    sent_reads = sent_of(sim, SealRead)
    assert all(r in sent_reads for r in reads)  # nothing invented
    # Alerts are repeated until acknowledged, so a corrupted one still gets through.
    sent_alerts = sent_of(sim, SealAlert)
    assert host.alerts == sent_alerts
    assert only(sim.acked, SealAlert) == sent_alerts


async def test_reader_tcp_duplicates_out_of_order_and_no_seal() -> None:
    """The gateway's own extended alert record (event time, EV#), asked for: with it,
    alert times can be out of order."""
    host = ReaderHost(ack_on=1)
    sim = EsealSimulator(
        protocol="reader",
        tcp_port=0,
        events=40,
        seed=11,
        speed=SPEED,
        start_time=START,
        alert_form="extended",
        faults=["duplicate", "out_of_order", "no_seal"],
        fault_rates={"duplicate": 0.3, "out_of_order": 0.5},
    )
    async with sim:
        assert sim.port
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        host.send = writer.write
        try:
            async with asyncio.timeout(LIMIT_S):
                receive = asyncio.create_task(_pump(reader, host))
                await sim.finished.wait()
            writer.close()
            await writer.wait_closed()
            await asyncio.wait([receive])
        finally:
            writer.close()
    assert not host.errors
    assert sim.stats.faults["duplicate"] > 0
    no_seal = sent_of(sim, NoSealInRange)
    assert no_seal and len(host.of(NoSealInRange)) >= len(no_seal)
    # After dedup by (seal id, event, time) every alert arrived once, and in order.
    seen: dict[tuple[object, ...], SealAlert] = {}
    for alert in host.of(SealAlert):
        seen.setdefault(alert.dedup_key, alert)
    alerts = sent_of(sim, SealAlert)
    assert list(seen) == [a.dedup_key for a in alerts]
    assert list(seen.values()) == alerts == host.alerts
    assert all(a.event_time and a.sequence is not None and a.event_code for a in alerts)
    times = [a.event_time for a in alerts if a.event_time is not None]  # all, as just checked
    assert any(later < earlier for earlier, later in itertools.pairwise(times))
    # Reads arrive in order, some twice.
    reads = host.of(SealRead)
    assert list(dict.fromkeys(reads)) == list(dict.fromkeys(sent_of(sim, SealRead)))


async def _pump(reader: asyncio.StreamReader, host: ReaderHost) -> None:
    while data := await reader.read(4096):
        host.feed(data)


@dataclass
class Platform:
    """The gateway's JT/T 808 server: decodes, answers every report (registration with the
    code "ok", and authentication)."""

    codec: Jt808Codec = field(default_factory=Jt808Codec)
    reports: list[PositionReported] = field(default_factory=list)
    others: list[Jt808Message] = field(default_factory=list)
    errors: list[FrameError] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while data := await reader.read(4096):
                for msg in self.codec.feed(data, Stamp.now()):
                    if isinstance(msg, FrameError):
                        self.errors.append(msg)
                    elif isinstance(msg, PositionReported):
                        self.reports.append(msg)
                        writer.write(self.codec.general_response(msg))
                    else:
                        self.others.append(msg)
                        if msg.msg_id == REGISTRATION:
                            writer.write(self.codec.registration_response(msg, auth_code="ok"))
                        elif msg.msg_id == AUTHENTICATION:
                            writer.write(self.codec.general_response(msg))
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


async def run_jt808(
    platform: Platform,
    *,
    events: int,
    seed: int,
    register: bool = False,
    faults: Iterable[str] = (),
    fault_rates: dict[str, float] | None = None,
    jt808_version: Literal["2013", "2019"] = "2013",
) -> EsealSimulator:
    server = await asyncio.start_server(platform.serve, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    sim = EsealSimulator(
        protocol="jt808",
        tcp_port=port,
        speed=SPEED,
        start_time=START,
        events=events,
        seed=seed,
        register=register,
        faults=faults,
        fault_rates=fault_rates,
        jt808_version=jt808_version,
    )
    try:
        async with sim:
            async with asyncio.timeout(LIMIT_S):
                await sim.finished.wait()
    finally:
        server.close()
        tasks = list(platform.tasks)
        if tasks:
            async with asyncio.timeout(LIMIT_S):
                await asyncio.wait(tasks)
        await server.wait_closed()
    return sim


@pytest.mark.parametrize("version", ["2013", "2019"])
async def test_jt808_reports_match_and_alarms_are_acked(version: Literal["2013", "2019"]) -> None:
    platform = Platform()
    sim = await run_jt808(platform, events=25, seed=5, register=True, jt808_version=version)
    assert not platform.errors
    assert any(m.msg_id == REGISTRATION for m in platform.others)
    auths = [m for m in platform.others if m.msg_id == AUTHENTICATION]
    assert auths and all(authentication_code(m.body, m.version) == b"ok" for m in auths), (
        "the e-lock authenticates with the code its registration was given"
    )
    protocols = {m.protocol for m in platform.others} | {m.protocol for m in platform.reports}
    assert protocols == {version}
    assert len(sim.terminal) == (12 if version == "2013" else 20)
    sent = sent_of(sim, PositionReported)
    assert len(sent) == 25
    # Alarm reports may be resent (same serial) before the response lands: dedup by serial.
    unique = list({r.serial: bare(r) for r in platform.reports}.values())
    assert unique == sent
    alarms = [r for r in sent if r.alarm]
    assert alarms, "the seed should play at least one alarm"
    assert {r.serial for r in only(sim.acked, PositionReported)} == {r.serial for r in sent}
    assert sim.stats.acks == len(sent)
    assert any(m.msg_id == 0x0002 for m in platform.others)  # heartbeats


async def test_jt808_faults_lose_no_alarm() -> None:
    platform = Platform()
    sim = await run_jt808(
        platform,
        events=30,
        seed=9,
        faults=["crc", "noise", "duplicate", "out_of_order"],
        fault_rates={"crc": 0.3, "noise": 0.3, "duplicate": 0.3, "out_of_order": 0.3},
    )
    assert platform.errors  # bad check codes and noise come out as FrameError values
    sent = {r.serial: r for r in sent_of(sim, PositionReported)}
    got = {r.serial: bare(r) for r in platform.reports}
    assert all(sent[s] == r for s, r in got.items())  # nothing invented or garbled
    assert {s for s, r in sent.items() if r.alarm} <= set(got)  # alarms are resent until acked
    times = [r.device_time for r in sent.values()]
    assert any(b < a for a, b in itertools.pairwise(times) if a and b)


async def test_same_seed_same_scenario(tmp_path: Path) -> None:
    sims = []
    for run in range(2):
        sim = EsealSimulator(
            protocol="reader",
            link=tmp_path / f"seal{run}",
            events=15,
            seed=42,
            speed=SPEED,
            start_time=START,
            faults=["no_seal", "out_of_order"],
            alert_form="extended",
        )
        async with sim:
            await read_pty(sim, ReaderHost(ack_on=1))
        sims.append([bare(i) for i in sim.sent])
    assert sims[0] == sims[1]


async def test_same_seed_same_plain_scenario(tmp_path: Path) -> None:
    sims = []
    for run in range(2):
        sim = EsealSimulator(
            protocol="reader", link=tmp_path / f"seal{run}", events=15, seed=42, speed=SPEED,
            start_time=START, faults=["no_seal"],
        )  # fmt: skip
        async with sim:
            await read_pty(sim, ReaderHost(ack_on=1))
        sims.append([bare(i) for i in sim.sent])
    assert sims[0] == sims[1]
    assert any(isinstance(i, SealAlert) for i in sims[0])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tcp_port"):
        EsealSimulator(protocol="jt808", link="/tmp/x")
    with pytest.raises(ValueError, match="exactly one"):
        EsealSimulator(protocol="reader")
    with pytest.raises(ValueError, match="no_seal"):
        EsealSimulator(protocol="jt808", tcp_port=1, faults=["no_seal"])
    args = _parser().parse_args(
        ["eseal", "--protocol", "reader", "--link", "/tmp/s", "--faults", "crc,noise"]
    )
    assert args.faults == {"crc", "noise"} and args.tcp is None
    assert args.alert_form == "plain", "the manual's alert record unless asked"
    args = _parser().parse_args(
        ["eseal", "--protocol", "reader", "--tcp", "1", "--alert-form", "extended"]
    )
    assert args.alert_form == "extended"
    with pytest.raises(ValueError, match="out_of_order needs alert_form='extended'"):
        EsealSimulator(protocol="reader", link="/tmp/x", faults=["out_of_order"])
    with pytest.raises(ValueError, match="unknown alert form"):
        EsealSimulator(protocol="reader", link="/tmp/x", alert_form="long")  # type: ignore[arg-type]
