"""Electronic seals: a gate reader (pty or TCP server) or a JT/T 808 e-lock (TCP client).

Two devices from HARDWARE.md ("Electronic seals"), each speaking its real wire format
through the same codecs the gateway decodes with, so the bytes are exactly what the
gateway must handle:

* ``protocol="reader"``: a Hi-G-Tek DataReader (:mod:`drivers.eseal.codec_reader`, the
  manual's RS-485/232 layout) on a pty (``link``, like the scale simulator) or as a TCP
  server on 127.0.0.1 (``tcp_port``; the gateway connects as client). Trucks pass the
  gate: their seals' Verify results (short status) come as Get Results answers, on the
  simulator's schedule and whenever the host sends Get Results (a simplification: a
  real reader answers only when asked); sometimes a seal bursts (opened with or without
  approval, wire changed, closed, a suspended or soft set, low battery), passed on as an
  Unsynchronized Reader Message. Like the reader, it has one such message outstanding
  at a time, repeated every :data:`REPEAT_S` seconds until the host's Message Command
  Ack (:meth:`SealReaderCodec.ack_for`, which names no message), then the next one.
  Playing starts when the first client opens the port (pty) or connects (TCP), so a
  client sees every event.

  Alert form (``alert_form``, :data:`ALERT_FORMS`): ``"plain"`` (default) is the
  manual's record ([P] 6.5.5.11.1: #B 9, TF, TID, command code, short status): no
  event code, no event time, no EV#, so the event follows from the burst type and the
  status and its time is unknown. Only the bursts a plain record can name are played
  (openings, a changed wire, closings and suspended sets; a forced burst's low battery
  or soft set names no event without an event record), and a seal never bursts the
  same event twice in a row (it must be closed before it can open again), so each
  alert is told from a repeat of the one before. ``"extended"`` is the gateway's own
  15-byte record (EV#, event code, event time: ADJUSTED in
  :mod:`drivers.eseal.codec_reader`), not a real reader's form: use it to test that
  extension, and ``out_of_order``, which needs alert times.
* ``protocol="jt808"``: an e-lock terminal that connects to a TCP server on
  127.0.0.1:``tcp_port`` (the gateway listens; JT/T 808 terminals are clients):
  optional registration 0x0100, then a 0x0200 location report every :data:`REPORT_S`
  seconds along a road, with lock state and, sometimes, alarm bits (door opened without
  approval, GNSS fault, low voltage), and a heartbeat 0x0002 every few reports. A
  report the codec counts as an alarm is resent (same serial) every :data:`REPEAT_S`
  seconds until a 0x8001 general response for its serial arrives. With ``auth_code``
  (or a code the registration answer gave) it authenticates (0x0102, JT/T 808-2019 §8.8)
  on every connection before anything else, as the standard has terminals do; a
  refused code (0x8001 result 1) ends the play (``auth_refused``).

Faults (``faults``), each drawn per frame from the seeded fault stream:

* ``crc``: the frame's check is spoiled (reader: CRC-16 flipped; jt808: XOR check code).
* ``noise``: 1-12 random bytes are written before the frame.
* ``duplicate``: the frame is written twice in a row.
* ``out_of_order``: reader (``alert_form="extended"`` only: a plain alert has no time):
  an alert's event time is earlier than the previous alert's; jt808: a report's device
  time is earlier than the previous report's (a buffered report sent late).
* ``no_seal`` (reader only): some reads become ``#B=0`` no-seal-detected answers.

Every duration is divided by ``speed``. The scenario (seal ids, events, times, route)
comes from ``seed`` and ``start_time`` alone: simulated time advances one second per
event whatever the speed, so ``sent`` is the same for the same seed and start time
(except for ``at``, the moment the object was first written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Self

from drivers.eseal.codec_jt808 import (
    AUTHENTICATION,
    HEARTBEAT,
    PLATFORM_GENERAL_RESPONSE,
    PROTOCOL_VERSION_2019,
    REGISTRATION,
    REGISTRATION_OK,
    REGISTRATION_RESPONSE,
    REGISTRATION_TERMINAL_REGISTERED,
    RESULT_OK,
    Jt808Codec,
    encode,
    encode_authentication,
    escape,
    unescape,
)
from drivers.eseal.codec_reader import (
    CLOSE_BURST,
    EXECUTE_RF,
    FORCED_BURST,
    REPLY,
    Layout,
    SealReaderCodec,
)
from drivers.eseal.readings import (
    ALERT_BURST,
    LOCATION_REPORT,
    AlertAcked,
    HostCommand,
    Jt808Message,
    NoSealInRange,
    PositionReported,
    ReadRequested,
    SealAlert,
    SealEvent,
    SealRead,
)
from gateway.readings import Stamp
from simulators.lifecycle import PlayingSimulator
from simulators.pty import PtyPort

log = logging.getLogger(__name__)

Protocol = Literal["reader", "jt808"]
PROTOCOLS: tuple[Protocol, ...] = ("reader", "jt808")

FAULTS = ("crc", "noise", "duplicate", "out_of_order", "no_seal")
"""Fault kinds ``--faults`` accepts."""

AlertForm = Literal["plain", "extended"]
ALERT_FORMS: tuple[AlertForm, ...] = ("plain", "extended")
"""Reader alert records: the manual's plain one (default), or the gateway's own 15-byte
extension with EV#, event code and event time (not a real reader's form)."""
TIMED_FAULTS = frozenset({"out_of_order"})
"""Reader faults that need alert times, so ``alert_form="extended"``."""

PROTOCOL_FAULTS: dict[Protocol, frozenset[str]] = {
    "reader": frozenset(FAULTS),
    "jt808": frozenset({"crc", "noise", "duplicate", "out_of_order"}),
}
"""Faults meaningful for each protocol (an e-lock has no "no seal in range")."""

DEFAULT_FAULT_RATES: dict[str, float] = {
    "crc": 0.1,  # per frame written
    "noise": 0.1,  # per frame written
    "duplicate": 0.1,  # per frame written
    "out_of_order": 0.2,  # per alert (reader) or report (jt808)
    "no_seal": 0.15,  # per reader event
}
"""Probability of each fault."""

EVENT_S = 1.0
"""Seconds between reader events (speed 1)."""
REPORT_S = 1.0
"""Seconds between jt808 location reports (speed 1)."""
REPEAT_S = 1.0
"""Seconds between repeats of an unacknowledged alert or alarm report (speed 1)."""
ACK_WAIT_S = 30.0
"""After the last event, how long (speed 1) unacknowledged alerts are still repeated
before the simulator gives up on them and finishes."""
HEARTBEAT_EVERY = 5
"""jt808: a heartbeat after every this many location reports."""
CONNECT_RETRY_S = 0.5
"""jt808: seconds between connection attempts (speed 1)."""
POLL_S = 0.05
"""Reader on a pty: how often (real seconds) to look whether a client opened the port."""

DEFAULT_TERMINAL = "013800138000"
DEFAULT_READER = 1
_ROUTE_START = (41.311081, 69.279737)  # degrees: a road out of a checkpoint
_ALERT_KINDS = (
    "opened_approved", "opened", "wire_tampered", "low_battery", "closed", "soft_set",
    "suspended_set",
)  # fmt: skip
_PLAIN_ALERT_KINDS = ("opened_approved", "opened", "wire_tampered", "closed", "suspended_set")
"""The bursts a plain record names ([U] 8.5): alert bursts (opened, wire changed) and
close bursts (closed, a suspended set run); a forced burst needs its event record."""
_BURSTS: dict[str, tuple[int, int, SealEvent]] = {
    "opened_approved": (ALERT_BURST, 4, "opened"),
    "opened": (ALERT_BURST, 4, "opened"),
    "wire_tampered": (ALERT_BURST, 2, "wire_tampered"),
    "low_battery": (FORCED_BURST, 3, "low_battery"),
    "closed": (CLOSE_BURST, 5, "closed"),
    "soft_set": (FORCED_BURST, 7, "sealed"),
    "suspended_set": (CLOSE_BURST, 0x0C, "sealed"),
}
"""Alert kind -> burst command code, event code ([U] 8.3) and event."""
_SEAL_TFS = (0x4848, 0x4847, 0x1D2A)  # reader: TF halves of the seal ids


@dataclass(slots=True)
class EsealStats:
    """What the simulator did.

    Attributes:
        frames_written: frames written (repeats and duplicates included).
        frames_unheard: frames not written because no client was connected.
        repeats: alert / alarm-report repeats written.
        answers: reader: read requests answered (the seal in range, or ``#B=0``).
        acks: acknowledgements received that matched something pending.
        faults: faults injected, by kind.
    """

    frames_written: int = 0
    frames_unheard: int = 0
    repeats: int = 0
    answers: int = 0
    acks: int = 0
    faults: dict[str, int] = field(default_factory=dict)


def _jt808_header(version: str, terminal: str) -> tuple[int | None, str]:
    """jt808: the header's protocol version byte (``None``: 2013) and the padded phone."""
    if version not in ("2013", "2019"):
        raise ValueError(f"jt808_version {version!r} is not '2013' or '2019'")
    if version == "2013":
        return None, terminal.rjust(12, "0")
    return PROTOCOL_VERSION_2019, terminal.rjust(20, "0")


def _alert_form(form: str, protocol: Protocol, faults: frozenset[str]) -> AlertForm:
    """``form`` checked (a known one, ``extended`` if a fault needs alert times), and
    ``faults`` (all meaningful for ``protocol``)."""
    if unknown := faults - PROTOCOL_FAULTS[protocol]:
        known = sorted(PROTOCOL_FAULTS[protocol])
        raise ValueError(f"faults {sorted(unknown)} do not apply to {protocol}; known: {known}")
    if form not in ALERT_FORMS:
        raise ValueError(f"unknown alert form {form!r}; known: {list(ALERT_FORMS)}")
    if protocol == "reader" and form == "plain" and faults & TIMED_FAULTS:
        raise ValueError("out_of_order needs alert_form='extended': a plain alert has no time")
    return "plain" if form == "plain" else "extended"


@dataclass(slots=True)
class _Pending:
    """An alert or alarm report waiting for its acknowledgement."""

    item: SealAlert | PositionReported
    frame: bytes
    next_repeat: float


class EsealSimulator(PlayingSimulator):
    """An electronic-seal device, as an async context manager.

    Args:
        protocol: ``"reader"`` or ``"jt808"``.
        link: reader only: where to put the symlink to the pty slave.
        tcp_port: reader: port to listen on at 127.0.0.1 (0 picks a free one, see
            :attr:`port`); jt808: port of the server to connect to at 127.0.0.1.
        events: how many events to play (reader: reads, alerts, no-seal reports;
            jt808: location reports); ``None`` plays forever.
        faults: fault kinds from :data:`PROTOCOL_FAULTS` for the protocol.
        seed: seeds the scenario and the faults; ``None`` picks one (see :attr:`seed`).
        speed: time compression; every duration is divided by it.
        start_time: simulated UTC time of the first event; default: now, whole seconds.
        register: jt808: send a registration 0x0100 first and wait for 0x8100 (its code,
            with result 0, replaces ``auth_code``).
        auth_code: jt808: authenticate (0x0102) with this code on every connection;
            ``None``: only with a code a registration answer gave.
        reader: the reader's number on the bus.
        terminal: the jt808 terminal phone number (12 digits).
        crc_init: the reader's CRC start value.
        layout: the reader's CRC coverage (:data:`drivers.eseal.codec_reader.LAYOUTS`).
        alert_form: reader: ``"plain"`` (default), the manual's alert record without
            event time or EV#; ``"extended"``, the gateway's own 15-byte record with
            them (see the module docstring; not a real reader's form).
        fault_rates: overrides of :data:`DEFAULT_FAULT_RATES`.
        clock: jt808: False for an e-lock that never had a time fix, whose reports
            carry an all-zero device time.
        jt808_version: jt808: ``"2013"`` (6-byte BCD phone) or ``"2019"`` (version flag,
            protocol version 1, 10-byte BCD phone; :attr:`terminal` is then padded to
            20 digits and the registration body has the 2019 field sizes).

    Attributes:
        sent: the decoded objects (:class:`SealRead`, :class:`SealAlert`,
            :class:`NoSealInRange`, :class:`PositionReported`) the simulator meant to
            send, once each, in order; ``at`` is when each was first written. Repeats,
            duplicates, faults, heartbeats and registration are not in it.
        acked: the sent alerts (reader) or reports (jt808) acknowledged, in ack order.
        ack_arrived: set at each acknowledgement (clear it to wait for the next one).
        finished: set when every event was played and every alert acknowledged (or
            :data:`ACK_WAIT_S` passed), or the player failed.
        link: the symlink path (reader on a pty), else ``None``.
        port: the TCP port (reader: the one listened on), else ``None``.
        slave_name: the pty slave while open.
        connected: set while a client (reader) or the server connection (jt808) is up.
        stats: counters, see :class:`EsealStats`.
    """

    def __init__(
        self,
        *,
        protocol: Protocol | str,
        link: Path | str | None = None,
        tcp_port: int | None = None,
        events: int | None = None,
        faults: Iterable[str] = (),
        seed: int | None = None,
        speed: float = 1.0,
        start_time: datetime | None = None,
        register: bool = False,
        auth_code: str | None = None,
        reader: int = DEFAULT_READER,
        terminal: str = DEFAULT_TERMINAL,
        crc_init: int = 0xFFFF,
        layout: Layout = "hgt",
        alert_form: AlertForm = "plain",
        fault_rates: dict[str, float] | None = None,
        clock: bool = True,
        jt808_version: Literal["2013", "2019"] = "2013",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown e-seal protocol {protocol!r}; known: {list(PROTOCOLS)}")
        self.protocol: Protocol = "reader" if protocol == "reader" else "jt808"
        self.faults = frozenset(faults)
        self.alert_form = _alert_form(alert_form, self.protocol, self.faults)
        if self.protocol == "jt808" and (link is not None or tcp_port is None):
            raise ValueError("jt808 connects to a TCP server: give tcp_port, not link")
        if self.protocol == "reader" and (link is None) == (tcp_port is None):
            raise ValueError("the reader needs exactly one of link (pty) and tcp_port")
        if speed <= 0 or (events is not None and events < 0):
            raise ValueError("speed must be positive and events not negative")
        self.link = Path(link) if link is not None else None
        self.port = tcp_port
        self.events = events
        self.speed = speed
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.start_time = (start_time or datetime.now(UTC)).replace(microsecond=0)
        self.register = register
        self.auth_code, self.auth_refused = auth_code, False
        self.reader = reader
        self._version, self.terminal = _jt808_header(jt808_version, terminal)
        self.fault_rates = {**DEFAULT_FAULT_RATES, **(fault_rates or {})}
        self.clock = clock
        self.sent: list[SealRead | SealAlert | NoSealInRange | PositionReported] = []
        self.acked: list[SealAlert | PositionReported] = []
        self.ack_arrived = asyncio.Event()
        self.finished = asyncio.Event()
        self.connected = asyncio.Event()
        self.stats = EsealStats()
        self._rng = random.Random(f"{self.seed}:scenario")
        self._fault_rng = random.Random(f"{self.seed}:faults")
        self._reader_codec = SealReaderCodec(crc_init=crc_init, layout=layout)
        self._jt808 = Jt808Codec()
        self._pending: dict[tuple[object, ...], _Pending] = {}
        self._registered = asyncio.Event()
        self._auth_result: asyncio.Future[int] | None = None
        self._serial = 0  # jt808 terminal message serial
        self._sequence = 0  # reader: the seals' event record numbers (EV#)
        self._in_range: SealRead | None = None  # reader: the last seal read, for requests
        self._lat, self._lon = _ROUTE_START  # jt808 position
        self._heading = self._rng.randint(0, 359)
        self._door_open_left = 0  # jt808: further reports with the door open
        self._last_time: datetime | None = None  # jt808: previous report's device time
        self._port = (
            PtyPort(self.link, self._on_bytes, "e-seal simulator", self._on_presence)
            if self.link is not None
            else None
        )
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._conn_writers: set[asyncio.StreamWriter] = set()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("simulator already running")
        if self.link is not None:
            self._open_pty()
        elif self.protocol == "reader":
            assert self.port is not None
            self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])
        play = self._play_reader() if self.protocol == "reader" else self._play_jt808()
        self._task = asyncio.create_task(play, name=f"eseal-simulator-{self.protocol}")
        return self

    async def _teardown(self) -> None:
        self.connected.clear()
        self._close_pty()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._writer = None
        for writer in self._conn_writers:  # the receivers then read EOF and return
            writer.close()
        tasks = list(self._conn_tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:  # not expected; cancelling a stream handler logs noise
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        if server is not None:
            await server.wait_closed()

    # -- the pty (reader) ---------------------------------------------------------------

    def _open_pty(self) -> None:
        assert self._port is not None
        self._port.open()

    def _close_pty(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port.unlink()

    def _on_presence(self, present: bool) -> None:
        if present:
            self.connected.set()
        else:
            self.connected.clear()

    def _pty_client_present(self) -> bool:
        return self._port is not None and self._port.client_present()

    @property
    def slave_name(self) -> str | None:
        """The pty slave the link points at while open."""
        return self._port.slave_name if self._port is not None else None

    # -- TCP -----------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Reader as TCP server: the newest client replaces any previous one."""
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        self._conn_writers.add(writer)
        old, self._writer = self._writer, writer
        if old is not None:
            old.close()
        self.connected.set()
        try:
            await self._receive(reader)
        finally:
            self._conn_tasks.discard(task)
            self._conn_writers.discard(writer)
            writer.close()
            if self._writer is writer:
                self._writer = None
                self.connected.clear()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                self._on_bytes(data)

    async def _connect(self) -> None:
        """jt808: connect to the platform, retrying until it listens."""
        assert self.port is not None
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(CONNECT_RETRY_S / self.speed)
                continue
            self._writer = writer
            self._conn_writers.add(writer)
            self._jt808 = Jt808Codec()  # a fresh stream: no half frame from before
            task = asyncio.create_task(self._receive_jt808(reader, writer), name="eseal-jt808-rx")
            self._conn_tasks.add(task)
            task.add_done_callback(self._conn_tasks.discard)
            self.connected.set()
            return

    async def _receive_jt808(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._receive(reader)
        finally:
            self._conn_writers.discard(writer)
            writer.close()
            if self._writer is writer:
                self._writer = None
                self.connected.clear()
                self._registered.clear()

    # -- bytes in -------------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        at = Stamp.now()
        if self.protocol == "reader":
            for item in self._reader_codec.feed(data, at):
                if isinstance(item, AlertAcked):
                    self._acknowledge_head()
                elif isinstance(item, ReadRequested):
                    self._answer_read()
                elif isinstance(item, HostCommand) and item.command == EXECUTE_RF:
                    # The Execute RF command's answer: R_status only (the seals come
                    # with the next Get Results).
                    reply = self._reader_codec.frame(self.reader, REPLY | EXECUTE_RF, b"")
                    self._write(reply, faults=False)
            return
        for msg in self._jt808.feed(data, at):
            if not isinstance(msg, Jt808Message):
                continue
            if msg.msg_id == PLATFORM_GENERAL_RESPONSE and len(msg.body) >= 5:
                reply_serial, reply_id, result = struct.unpack_from(">HHB", msg.body)
                if reply_id == LOCATION_REPORT:
                    self._acknowledge(("report", reply_serial))
                elif reply_id == AUTHENTICATION and self._waiting_auth():
                    assert self._auth_result is not None
                    self._auth_result.set_result(result)
            elif msg.msg_id == REGISTRATION_RESPONSE and len(msg.body) >= 3:
                result = msg.body[2]  # §8.6: reply serial WORD, result BYTE, code STRING
                if result == REGISTRATION_OK:
                    self.auth_code = msg.body[3:].decode("gbk")
                elif result != REGISTRATION_TERMINAL_REGISTERED:
                    self.auth_refused = True
                self._registered.set()

    def _answer_read(self) -> None:
        """A read request: the seal in range now, or ``#B=0`` (not in :attr:`sent`)."""
        codec = self._reader_codec
        current = self._in_range
        if current is None:
            frame = codec.encode_no_seal(NoSealInRange(reader=self.reader, at=Stamp.now()))
        else:
            frame = codec.encode_read(current)
        if self._write(frame, faults=False):
            self.stats.answers += 1

    def _acknowledge_head(self) -> None:
        """reader: the ack names no message, so it is for the one outstanding."""
        head = next(iter(self._pending), None)
        if head is None:
            return
        self._acknowledge(head)
        following = next(iter(self._pending.values()), None)
        if following is not None:  # the next message goes out now
            loop = asyncio.get_running_loop()
            following.next_repeat = loop.time() + REPEAT_S / self.speed
            self._write(following.frame)

    def _acknowledge(self, key: tuple[object, ...]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            self.stats.acks += 1
            self.acked.append(pending.item)
            self.ack_arrived.set()
        elif self.protocol == "jt808":
            # Non-alarm reports are not kept pending, but their ack still counts.
            serial = key[1]
            for item in reversed(self.sent):
                if isinstance(item, PositionReported) and item.serial == serial:
                    if item not in self.acked:
                        self.stats.acks += 1
                        self.acked.append(item)
                    break

    # -- bytes out ------------------------------------------------------------------------

    def _write(self, frame: bytes, *, faults: bool = True) -> bool:
        """Write one frame with the configured faults; False when nobody listens."""
        out = bytearray()
        rng = self._fault_rng
        if faults and self._fault("noise"):
            out += rng.randbytes(rng.randint(1, 12))
        if faults and self._fault("crc"):
            bad = bytearray(frame)
            if self.protocol == "reader":
                bad[-2] ^= rng.randint(1, 0xFF)  # the CRC's low byte
            else:
                bad = bytearray(self._bad_check(frame))
            out += bad
        else:
            out += frame
        if faults and self._fault("duplicate"):
            out += frame
        return self._raw_write(bytes(out))

    def _fault(self, kind: str, rng: random.Random | None = None) -> bool:
        """Whether to inject ``kind`` now. Scenario faults (``no_seal``, ``out_of_order``)
        draw from the scenario stream, so ``sent`` does not depend on repeat timing."""
        rng = rng or self._fault_rng
        if kind not in self.faults or rng.random() >= self.fault_rates[kind]:
            return False
        self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
        return True

    def _bad_check(self, frame: bytes) -> bytes:
        """The jt808 frame with a wrong XOR check (re-framed, so escaping stays valid)."""
        content = bytearray(unescape(frame[1:-1]))
        content[-1] ^= self._fault_rng.randint(1, 0xFF)
        return bytes([0x7E]) + escape(bytes(content)) + bytes([0x7E])

    def _raw_write(self, data: bytes) -> bool:
        if self.link is not None:
            if not self._pty_client_present():
                self.stats.frames_unheard += 1
                return False
            assert self._port is not None
            assert self._port.master is not None
            try:
                os.write(self._port.master, data)
            except OSError:  # EAGAIN: the client does not read and the buffer is full
                self.stats.frames_unheard += 1
                return False
        else:
            writer = self._writer
            if writer is None or writer.is_closing():
                self.stats.frames_unheard += 1
                return False
            writer.write(data)
        self.stats.frames_written += 1
        return True

    def _repeat_pending(self, now: float) -> None:
        pendings = list(self._pending.values())
        if self.protocol == "reader":
            pendings = pendings[:1]  # one unsynchronized message outstanding at a time
        for pending in pendings:
            if now >= pending.next_repeat:
                pending.next_repeat = now + REPEAT_S / self.speed
                if self._write(pending.frame):
                    self.stats.repeats += 1

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """After the last event: repeat what is pending until acknowledged, or give up."""
        give_up = loop.time() + ACK_WAIT_S / self.speed
        while self._pending and loop.time() < give_up:
            self._repeat_pending(loop.time())
            await asyncio.sleep(min(POLL_S, REPEAT_S / self.speed))
        if self._pending:
            log.warning("e-seal simulator: %d alerts never acknowledged", len(self._pending))

    # -- reader scenario --------------------------------------------------------------------

    async def _wait_for_client(self) -> None:
        if self.link is None:
            await self.connected.wait()
            return
        while True:  # a pty says nothing when a client opens it: look now and then
            if self._pty_client_present():
                return
            await asyncio.sleep(POLL_S)

    async def _play_reader(self) -> None:
        loop = asyncio.get_running_loop()
        with self._capture_crash(log, "e-seal simulator failed"):
            await self._wait_for_client()
            played = 0
            truck_reads = 0
            seal_id, battery = self._new_truck()
            last_alert_time: datetime | None = None
            next_event = loop.time()
            while self.events is None or played < self.events:
                now = loop.time()
                if now >= next_event:
                    sim_time = self.start_time + timedelta(seconds=played)
                    if truck_reads <= 0:
                        seal_id, battery = self._new_truck()
                        truck_reads = self._rng.randint(2, 4)
                    truck_reads -= 1
                    queued = False
                    if self._fault("no_seal", self._rng):
                        no_seal = NoSealInRange(reader=self.reader, at=Stamp.now())
                        item: SealRead | SealAlert | NoSealInRange = no_seal
                        frame = self._reader_codec.encode_no_seal(no_seal)
                    elif self._rng.random() < 0.3:
                        when = sim_time
                        if last_alert_time is not None and self._fault("out_of_order", self._rng):
                            when = last_alert_time - timedelta(seconds=self._rng.randint(1, 30))
                        item = self._new_alert(seal_id, when)
                        last_alert_time = when
                        frame = self._reader_codec.encode_alert(item)
                        key = ("alert", item.seal_id, item.event, item.sequence)
                        queued = bool(self._pending)  # sent once those before it are acked
                        self._pending[key] = _Pending(item, frame, now + REPEAT_S / self.speed)
                    else:
                        battery = max(0, battery - self._rng.randint(0, 2))
                        item = SealRead(
                            seal_id=seal_id,
                            opened=False,
                            tampered=False,
                            low_battery=battery < 20,
                            reader=self.reader,
                            at=Stamp.now(),
                        )
                        frame = self._reader_codec.encode_read(item)
                        self._in_range = item
                    if isinstance(item, NoSealInRange):
                        self._in_range = None
                    self.sent.append(item)
                    if not queued:
                        self._write(frame)
                    played += 1
                    next_event = max(next_event + EVENT_S / self.speed, now)
                self._repeat_pending(now)
                await asyncio.sleep(min(POLL_S, EVENT_S / self.speed))
            await self._drain(loop)
        self.finished.set()

    def _new_truck(self) -> tuple[str, int]:
        rng = self._rng
        seal_id = f"{rng.choice(_SEAL_TFS):04X}{rng.getrandbits(32):08X}"  # TF + TID
        return seal_id, rng.randint(15, 100)

    def _new_alert(self, seal_id: str, when: datetime) -> SealAlert:
        """A seal's burst (Hi-G-Tek UM4710 8.3, 8.5), plain or with its newest event
        record per :attr:`alert_form`: an opening always sets tampered; approved open
        marks it allowed."""
        if self.alert_form == "extended":
            kind = self._rng.choice(_ALERT_KINDS)
        else:
            kind = self._rng.choice(_PLAIN_ALERT_KINDS)
            previous = next(
                (
                    s.event
                    for s in reversed(self.sent)
                    if isinstance(s, SealAlert) and s.seal_id == seal_id
                ),
                None,
            )
            if _BURSTS[kind][2] == previous:
                # The seal's last event again would be its repeat: a seal must be closed
                # before it opens again, so it bursts something else.
                others = [k for k in _PLAIN_ALERT_KINDS if _BURSTS[k][2] != previous]
                kind = self._rng.choice(others)
        burst, code, event = _BURSTS[kind]
        if self.alert_form == "plain":
            return self._alert(kind, seal_id, event, burst)
        # Unique dedup key (seal id, event, time).
        while any(
            isinstance(s, SealAlert) and s.dedup_key == (seal_id, event, when) for s in self.sent
        ):
            when -= timedelta(seconds=1)
        self._sequence = (self._sequence + 1) & 0xFF
        return self._alert(
            kind, seal_id, event, burst, when=when, sequence=self._sequence, code=code
        )

    def _alert(
        self,
        kind: str,
        seal_id: str,
        event: SealEvent,
        burst: int,
        *,
        when: datetime | None = None,
        sequence: int | None = None,
        code: int | None = None,
    ) -> SealAlert:
        """The alert of ``kind``; without ``when``, ``sequence`` and ``code``, the
        plain record's (exactly what the codec decodes it to)."""
        return SealAlert(
            seal_id=seal_id,
            event=event,
            opened=kind in ("opened", "opened_approved"),
            tampered=kind in ("opened", "opened_approved", "wire_tampered"),
            wire_changed=kind == "wire_tampered",
            low_battery=kind == "low_battery",
            approved_open=kind == "opened_approved",
            suspended_set=kind == "suspended_set",
            event_time=when,
            sequence=sequence,
            event_code=code,
            burst=burst,
            reader=self.reader,
            at=Stamp.now(),
        )

    # -- jt808 scenario ----------------------------------------------------------------------

    @property
    def jt808_version(self) -> Literal["2013", "2019"]:
        """jt808: the header version the e-lock speaks."""
        return "2013" if self._version is None else "2019"

    def _next_serial(self) -> int:
        serial = self._serial
        self._serial = (serial + 1) & 0xFFFF
        return serial

    async def _ensure_connected(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            return
        await self._connect()
        if self.register:
            await self._register()
        if self.auth_code is not None and not self.auth_refused:
            await self._authenticate()
        for pending in self._pending.values():  # resend what the old connection lost
            pending.next_repeat = 0.0

    async def _register(self) -> None:
        # §8.5: province, city, manufacturer, model, terminal id, plate colour, plate;
        # 2019 widens manufacturer / model / terminal id to 11 / 30 / 30 bytes.
        sizes = "5s20s7s" if self._version is None else "11s30s30s"
        body = struct.pack(f">HH{sizes}B", 0, 0, b"SIMLK", b"ESEAL-SIM", b"LOCK001", 0)
        body += b"SIM-0001"
        while not self._registered.is_set() and not self.auth_refused:
            frame = encode(
                REGISTRATION, self.terminal, self._next_serial(), body, version=self._version
            )
            self._raw_write(frame)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPEAT_S / self.speed):
                    await self._registered.wait()
            if self._writer is None:
                await self._connect()

    def _waiting_auth(self) -> bool:
        return self._auth_result is not None and not self._auth_result.done()

    async def _authenticate(self) -> None:
        """0x0102 with :attr:`auth_code`, repeated until the platform answers (0x8001,
        §8.2: result 0 ok, else refused) or hangs up (the next round reconnects)."""
        assert self.auth_code is not None
        while self._writer is not None:
            self._auth_result = asyncio.get_running_loop().create_future()
            frame = encode_authentication(
                self.terminal, self._next_serial(), self.auth_code, version=self._version
            )
            self._raw_write(frame)
            try:
                async with asyncio.timeout(REPEAT_S / self.speed):
                    result = await self._auth_result
            except TimeoutError:
                continue
            finally:
                self._auth_result = None
            if result != RESULT_OK:
                self.auth_refused = True
                log.warning("e-seal simulator: authentication refused (result %d)", result)
            return

    async def _play_jt808(self) -> None:
        loop = asyncio.get_running_loop()
        with self._capture_crash(log, "e-seal simulator failed"):
            played = 0
            next_report = loop.time()
            while self.events is None or played < self.events:
                await self._ensure_connected()
                if self.auth_refused:  # a refused e-lock gives up
                    break
                now = loop.time()
                if now >= next_report:
                    frame, report = self._next_report(self.start_time + timedelta(seconds=played))
                    self.sent.append(report)
                    if report.alarm:
                        key = ("report", report.serial)
                        self._pending[key] = _Pending(report, frame, now + REPEAT_S / self.speed)
                    self._write(frame)
                    played += 1
                    if played % HEARTBEAT_EVERY == 0:
                        serial = self._next_serial()
                        beat = encode(HEARTBEAT, self.terminal, serial, b"", version=self._version)
                        self._raw_write(beat)
                    next_report = max(next_report + REPORT_S / self.speed, now)
                self._repeat_pending(now)
                await asyncio.sleep(min(POLL_S, REPORT_S / self.speed))
            if not self.auth_refused:
                await self._drain(loop)
        self.finished.set()

    def _next_report(self, sim_time: datetime) -> tuple[bytes, PositionReported]:
        """One simulated second further along the road: the 0x0200 frame and its report."""
        rng = self._rng
        self._heading = (self._heading + rng.randint(-10, 10)) % 360
        speed_kmh = round(rng.uniform(40, 80), 1)
        step_km = speed_kmh / 3600
        heading = math.radians(self._heading)
        self._lat += step_km / 111.32 * math.cos(heading)
        self._lon += step_km / (111.32 * math.cos(math.radians(self._lat))) * math.sin(heading)
        flags = {"acc_on"}
        located = True
        roll = rng.random()
        if self._door_open_left > 0:  # still open where it must not be
            self._door_open_left -= 1
            flags |= {"door_open", "illegal_door_open"}
        elif roll < 0.08:  # opened where it must not be, for 1-3 reports
            self._door_open_left = rng.randint(0, 2)
            flags |= {"door_open", "illegal_door_open"}
        elif roll < 0.14:
            flags.add("gnss_fault")
            located = False
        elif roll < 0.2:
            flags.add("low_voltage")
        if "door_open" not in flags:
            flags.add("locked")
        when = sim_time
        if self._last_time is not None and self._fault("out_of_order", self._rng):
            when = self._last_time - timedelta(seconds=rng.randint(1, 30))
        self._last_time = when
        frame = self._jt808.encode_location(
            terminal=self.terminal,
            serial=self._next_serial(),
            lat=self._lat,
            lon=self._lon,
            device_time=when if self.clock else None,
            altitude_m=rng.randint(400, 460),
            speed_kmh=speed_kmh if located else 0.0,
            heading_deg=self._heading,
            located=located,
            flags=flags,
            version=self._version,
        )
        return frame, self._decode_own(frame)

    def _decode_own(self, frame: bytes) -> PositionReported:
        """The report exactly as the gateway's codec will decode ``frame``."""
        (report,) = Jt808Codec().feed(frame, Stamp.now())
        assert isinstance(report, PositionReported)
        return report
