"""Modbus slaves for tests and demos: scale transmitters or a sensor block, served by pymodbus.

The requests are answered by pymodbus's own server (``ModbusTcpServer`` or
``ModbusSerialServer`` with the RTU framer), so framing, function codes and exception
responses are a real stack's, not ours. What the simulator adds:

- **values that move**: a truck timeline (:class:`simulators.trucks.TruckTimeline`, the
  same one the serial scale simulator plays, so one seed gives the same trucks) written
  into the datastore at 10 Hz while pymodbus serves it. Registers are filled with
  :func:`drivers.modbus.codec.encode` on the same :class:`Point` maps the gateway
  decodes with (:data:`drivers.modbus.presets.PRESETS`), so the two cannot drift apart.
- **several unit ids** on one line, each its own datastore (a pymodbus ``SimDevice``),
  and :meth:`ModbusSimulator.silence_unit` to make one of them stop answering.
- **faults**: responses withheld (timeout), RTU responses with a wrong CRC, "server
  device busy" exceptions, and 32-bit values served in the other word order (swap).

RTU runs on pseudo-terminals. pymodbus's serial server opens a port by name, and a pty
master has no name, so the simulator makes two ptys and relays bytes between their
masters on the event loop (what ``socat PTY PTY`` would do): pymodbus opens the slave of
the first, the client opens the slave of the second through the symlink ``rtu_link``.
Like a serial wire, the client side carries bytes only while a client has it open:
responses written when nobody listens are dropped, never queued for the next client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import tty
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.codec import Function, Point, encode
from drivers.modbus.presets import PRESETS
from simulators.lifecycle import PlayingSimulator
from simulators.pty import PtyPort
from simulators.trucks import ScaleState, TruckTimeline

log = logging.getLogger(__name__)

PROFILES = ("scale-int32", "scale-float32", "sensors")
"""Register maps ``profile`` accepts."""

FAULTS = ("timeout", "crc", "exception", "swap")
"""Fault kinds ``faults`` accepts. ``crc`` needs RTU (TCP frames carry no CRC)."""

DEFAULT_FAULT_RATES: dict[str, float] = {
    "timeout": 0.05,  # per response: not sent at all
    "crc": 0.05,  # per RTU response: CRC spoiled
    "exception": 0.05,  # per register/bit access: answered 0x06 server device busy
}
"""Probability of each random fault (``swap`` is not random: it applies to every value)."""

SENSOR_POINTS: tuple[Point, ...] = (
    Point(name="temperature", address=0x0100, type="float32", unit="degC"),
    Point(name="heartbeat", address=0x0102, type="uint16"),  # +1 per tick, wraps
    Point(name="vehicles", address=0x0000, function="input", type="uint32"),  # trucks passed
    *(Point(name=f"barrier{i}", address=i, function="coil", type="bool") for i in range(4)),
    *(
        Point(name=f"barrier{i}_open", address=i, function="discrete", type="bool")
        for i in range(4)
    ),
)
"""The ``sensors`` profile: holding 0x0100 temperature (float32, high word first) and
0x0102 heartbeat; input 0x0000 vehicles (uint32); coils 0..3 barrier commands, written by
the client; discrete inputs 0..3 each barrier's feedback, following its coil one tick
later. The device has 16 coils and 16 discrete inputs (4..15 spare, always off)."""

BITS_PER_TABLE = 16
UNITS = range(1, 248)  # Modbus serial slave addresses; 0 is broadcast
MIN_RESPONSE = 4  # bytes: RTU address + function + CRC; a TCP header alone is 7

# Function code -> table; FC 5/15 and 6/16 are the writes.
TABLE: dict[int, Function] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    23: "holding",
    4: "input",
}
# The function code that addresses a table in pymodbus's datastore (for our own writes).
WRITE_CODE: dict[Function, int] = {"coil": 15, "discrete": 2, "holding": 16, "input": 4}


def profile_points(profile: str) -> tuple[Point, ...]:
    """The points a profile serves, in the profile's own word order (no ``swap``)."""
    if profile == "scale-int32":
        scale = PRESETS["generic-int32"]
    elif profile == "scale-float32":
        scale = PRESETS["indicator-float32"]
    elif profile == "sensors":
        return SENSOR_POINTS
    else:
        raise ValueError(f"unknown Modbus profile {profile!r}; known: {list(PROFILES)}")
    assert scale.status is not None
    return (scale.weight, scale.status)


def _swapped(point: Point) -> Point:
    if point.count != 2:
        return point
    return point.model_copy(update={"word_order": "little" if point.word_order == "big" else "big"})


@dataclass(slots=True)
class ModbusStats:
    """What the simulator did, for tests and for the operator.

    Attributes:
        ticks: datastore updates done.
        requests: requests decoded, by unit id (any unit, ours or not).
        responses: responses sent, by unit id (faulty ones included).
        exceptions: exception responses sent, by exception code.
        unanswered: responses withheld because the unit is silenced or not ours, by unit id.
        unheard: RTU responses dropped because no client had the port open.
        faults: faults injected, by kind.
    """

    ticks: int = 0
    requests: Counter[int] = field(default_factory=Counter)
    responses: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[int] = field(default_factory=Counter)
    unanswered: Counter[int] = field(default_factory=Counter)
    unheard: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class _PtyRelay:
    """Two ptys whose masters are joined: pymodbus opens one slave, the client the other.

    ``server_name`` is the slave pymodbus opens; we also keep it open, so its master
    never reads EIO while pymodbus reopens it. The client end is a :class:`PtyPort`
    linked at ``link`` (by :meth:`point`, once the server listens): its slave is not
    held open, so absence is seen, and responses are then dropped (a serial line does
    not store bytes for later).
    """

    def __init__(self, stats: ModbusStats, link: Path) -> None:
        self._stats = stats
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing: bytes pass as on a UART
            self.server_name = os.ttyname(slave)
        except OSError:
            os.close(master)
            os.close(slave)
            raise
        os.set_blocking(master, False)
        self._server_master, self._server_slave = master, slave
        self.client = PtyPort(link, self._to_server, "modbus simulator")
        try:
            self.client.open(link=False)
        except OSError:
            self.close()
            raise
        self._loop.add_reader(self._server_master, self._from_server)

    def point(self) -> None:
        """Point the link at the client end."""
        self.client.point()

    def close(self) -> None:
        """Stop relaying, close every fd and remove the link. Idempotent."""
        if self._server_master >= 0:
            self._loop.remove_reader(self._server_master)
            os.close(self._server_master)
            os.close(self._server_slave)
            self._server_master = self._server_slave = -1
        self.client.close()
        self.client.unlink()

    def client_present(self) -> bool:
        """Whether a client has its end open (a new client's first request waits a tick)."""
        return self.client.client_present()

    def _to_server(self, data: bytes) -> None:
        _write(self._server_master, data)

    def _from_server(self) -> None:
        try:
            data = os.read(self._server_master, 1024)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            return
        if self.client_present() and self.client.master is not None:
            _write(self.client.master, data)
        else:
            self._stats.unheard += 1


def _write(fd: int, data: bytes) -> None:
    # A few hundred bytes at most into an empty pty buffer: a short write only happens
    # when nobody reads, and then the bytes are lost, as on a wire.
    with contextlib.suppress(BlockingIOError):
        os.write(fd, data)


class ModbusSimulator(PlayingSimulator):
    """Modbus slaves on a TCP port or an RTU pty, as an async context manager.

    ``async with ModbusSimulator(...) as sim`` starts pymodbus's server, fills every
    unit's datastore and starts playing trucks; leaving the block stops playing, closes
    the server (and the ptys) and removes the link. :meth:`run` does the same and
    returns when the trucks are done.

    Args:
        profile: a name in :data:`PROFILES`.
        tcp_port: serve Modbus TCP on ``host:tcp_port`` (0 picks a free port, see
            :attr:`port`). Exactly one of ``tcp_port`` and ``rtu_link``.
        rtu_link: serve Modbus RTU on a pty whose client end this symlink points at
            (an existing symlink is replaced; any other file there is an error).
        units: the unit ids that answer (1..247), each with its own datastore; they all
            show the same trucks. Requests to other ids get no answer, as on RS-485.
        faults: fault kinds from :data:`FAULTS`.
        trucks: how many trucks to play; ``None`` plays forever.
        speed: time compression of the trucks; the datastore is still updated at
            ``rate_hz``.
        seed: seeds the trucks, the sensor noise and the faults; ``None`` picks one.
        rate_hz: datastore updates per second.
        fault_rates: overrides of :data:`DEFAULT_FAULT_RATES`.
        host: the TCP address to listen on.
        baudrate: what pymodbus sets on its end of the pty (a pty ignores it).

    Attributes:
        points: the points as served, by name (``swap`` applied): decode with these to
            read the values, with :func:`profile_points` to see the swap.
        port: the TCP port listened on (``None`` for RTU).
        link: the RTU symlink (``None`` for TCP).
        slave_name: the pty the link points at while running (``None`` otherwise).
        seed: the seed in use.
        truck_weights_kg: the plateau weights, known from the seed before they are played.
        state: what the scale shows now.
        values: every register point's current value (before encoding), by name.
        finished: set when the last truck has left and the trailing zero was served (or
            the player failed: leaving the block then raises). The slaves keep
            answering, with the scale at zero, until the block is left.
        stats: counters, see :class:`ModbusStats`.
    """

    def __init__(
        self,
        *,
        profile: str,
        tcp_port: int | None = None,
        rtu_link: Path | str | None = None,
        units: Iterable[int] = (1,),
        faults: Iterable[str] = (),
        trucks: int | None = None,
        speed: float = 1.0,
        seed: int | None = None,
        rate_hz: float = 10.0,
        fault_rates: Mapping[str, float] | None = None,
        host: str = "127.0.0.1",
        baudrate: int = 9600,
    ) -> None:
        if (tcp_port is None) == (rtu_link is None):
            raise ValueError("give exactly one of tcp_port and rtu_link")
        self.faults = frozenset(faults)
        if unknown := self.faults - set(FAULTS):
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {list(FAULTS)}")
        if "crc" in self.faults and rtu_link is None:
            raise ValueError("the crc fault needs RTU: Modbus TCP frames carry no CRC")
        self.units = tuple(dict.fromkeys(units))
        if not self.units or any(u not in UNITS for u in self.units):
            raise ValueError(f"units must be 1..247, not {list(units)}")
        if speed <= 0 or rate_hz <= 0 or (trucks is not None and trucks < 0):
            raise ValueError("speed and rate_hz must be positive and trucks not negative")
        if tcp_port is not None and not 0 <= tcp_port <= 0xFFFF:
            raise ValueError(f"tcp_port must be 0..65535, not {tcp_port}")
        self.profile = profile
        served = profile_points(profile)
        if "swap" in self.faults:
            served = tuple(_swapped(p) for p in served)
        self.points: dict[str, Point] = {p.name: p for p in served}
        self.tables = frozenset(p.function for p in served)
        self.host = host
        self.port = tcp_port
        self.link = Path(rtu_link) if rtu_link is not None else None
        self.baudrate = baudrate
        self.rate_hz = rate_hz
        self.fault_rates = {**DEFAULT_FAULT_RATES, **(fault_rates or {})}
        self.seed = seed if seed is not None else random.randrange(2**32)
        # Separate streams, so that faults (whose draws depend on request timing) never
        # change the trucks or the sensor values.
        self._timeline = TruckTimeline(trucks=trucks, speed=speed, rate_hz=rate_hz, seed=self.seed)
        self._sensor_rng = random.Random(f"{self.seed}:sensors")
        self._fault_rng = random.Random(f"{self.seed}:faults")
        self.truck_weights_kg: list[int] = self._timeline.weights_kg  # the same list
        self.state = ScaleState(weight_kg=0, motion=False)
        self.values: dict[str, float | int | bool] = {}
        self.finished = asyncio.Event()
        self.stats = ModbusStats()
        self.slave_name: str | None = None
        self._vehicles = 0
        self._loaded = False  # a truck is on the scale (for the vehicles counter)
        self._silenced: set[int] = set()
        self._internal = False  # our own datastore writes are under way: no faults, no checks
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._relay: _PtyRelay | None = None
        self._tick = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    # -- control ----------------------------------------------------------------------

    def silence_unit(self, unit: int) -> None:
        """Make ``unit`` stop answering (a dead slave): its requests get no response."""
        if unit not in self.units:
            raise ValueError(f"unit {unit} is not one of {list(self.units)}")
        self._silenced.add(unit)

    def revive_unit(self, unit: int) -> None:
        """Undo :meth:`silence_unit`."""
        self._silenced.discard(unit)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return as soon as ``predicate()`` is true, checking after every datastore update.

        The datastore already holds the values of the tick that made it true, e.g.
        ``await sim.wait_until(lambda: sim.state.weight_kg > 0 and not sim.state.motion)``
        returns at the start of a plateau, which lasts ``PLATEAU_S / speed`` seconds.
        Bound it with ``asyncio.timeout``: a predicate that never holds waits forever.
        """
        async with self._tick:
            await self._tick.wait_for(predicate)

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None or self._server is not None:
            raise RuntimeError("simulator already running")
        try:
            self._step(self.state)  # the datastore is built with these values
            await self._start_server()
            self._task = asyncio.create_task(self._play(), name=f"modbus-simulator-{self.profile}")
        except BaseException:
            await self._stop_server()
            raise
        return self

    async def _teardown(self) -> None:
        await self._stop_server()

    async def _start_server(self) -> None:
        devices = [self._device(unit) for unit in self.units]
        # Requests to ids that are not ours land on a catch-all id 0 device (instead of
        # a KeyError logged by pymodbus); their answers are withheld in _on_packet.
        devices.append(SimDevice(id=0, simdata=[SimData(0, datatype=DataType.INVALID)]))
        server: ModbusTcpServer | ModbusSerialServer
        if self.link is not None:
            _check_link(self.link)  # before anything is opened: nothing to undo
            self._relay = _PtyRelay(self.stats, self.link)
            server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=self._relay.server_name,
                baudrate=self.baudrate,
                trace_packet=self._on_packet,
                trace_pdu=self._on_pdu,
            )
        else:
            assert self.port is not None
            server = ModbusTcpServer(
                devices,
                address=(self.host, self.port),
                trace_packet=self._on_packet,
                trace_pdu=self._on_pdu,
            )
        self._server = server
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logs the OSError and raises this
            where = self._relay.server_name if self._relay else f"{self.host}:{self.port}"
            raise OSError(f"cannot listen on {where}") from exc
        # pymodbus sets a serial port up in a call_soon callback, which fails if the port
        # was closed first: let it run before anything can fail and close it.
        await asyncio.sleep(0)
        if self._relay is not None:
            assert self.link is not None
            self._relay.point()
            self.slave_name = self._relay.client.slave_name
        else:
            # For TCP, pymodbus keeps the asyncio.Server in ``transport``.
            listener = cast(asyncio.Server, server.transport)
            self.port = int(listener.sockets[0].getsockname()[1])

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # unannotated in 3.16
            await asyncio.sleep(0)  # let the closed connections' callbacks run
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()  # removes the link too
        self.slave_name = None

    # -- the datastore ------------------------------------------------------------------

    def _device(self, unit: int) -> SimDevice:
        """One unit's datastore: four separate tables, filled with the current values."""
        tables: dict[Function, list[SimData]] = {
            "coil": [],
            "discrete": [],
            "holding": [],
            "input": [],
        }
        for point, words in self._encoded():
            tables[point.function].append(
                SimData(point.address, values=words, datatype=DataType.REGISTERS)
            )
        for bit_table in ("coil", "discrete"):
            # Absent tables still need a block; _on_access refuses them with 0x02.
            # Barrier commands start closed; from then on they are the clients' to write.
            bits = [False] * BITS_PER_TABLE
            tables[bit_table].append(SimData(0, values=bits, datatype=DataType.BITS))
        for register_table in ("holding", "input"):
            if not tables[register_table]:  # unmapped: every address answers 0x02
                tables[register_table].append(SimData(0, datatype=DataType.INVALID))
        return SimDevice(
            id=unit,
            simdata=(tables["coil"], tables["discrete"], tables["holding"], tables["input"]),
            action=self._on_access,
        )

    def _table_points(self, table: Function) -> list[Point]:
        return sorted((p for p in self.points.values() if p.function == table), key=_address)

    def _encoded(self) -> Iterator[tuple[Point, list[int]]]:
        """Registers of every register point (bits are handled as bits)."""
        for point in self.points.values():
            if point.type != "bool":
                yield point, encode(point, float(self.values[point.name]))

    async def _write_values(self) -> None:
        """Put the current values into every unit's datastore (what clients then read)."""
        assert self._server is not None
        server = self._server
        self._internal = True
        try:
            for unit in self.units:
                for point, words in self._encoded():
                    code = WRITE_CODE[point.function]
                    await server.async_setValues(unit, code, point.address, words)
                if "discrete" in self.tables:  # each barrier's feedback follows its command
                    coils = self._table_points("coil")
                    commanded = await server.async_getValues(unit, 1, 0, len(coils))
                    await server.async_setValues(unit, 2, 0, [bool(b) for b in commanded])
        finally:
            self._internal = False

    def _step(self, state: ScaleState) -> None:
        """Compute every register point's value for this tick (bits belong to clients)."""
        self.state = state
        tick = self.stats.ticks
        if state.weight_kg > 0:
            self._loaded = True
        elif self._loaded and not state.motion:
            self._loaded = False
            self._vehicles += 1
        flags = {
            "unstable": state.motion,
            "stable": not state.motion,
            "zero": state.weight_kg == 0 and not state.motion,
            "negative": state.weight_kg < 0,
        }
        for point in self.points.values():
            if point.name == "gross":
                self.values[point.name] = state.weight_kg
            elif point.name == "status":
                self.values[point.name] = sum(
                    1 << bit for name, bit in point.bits.items() if flags.get(name, False)
                )
            elif point.name == "temperature":
                swing = 3.0 * math.sin(2 * math.pi * tick / (600 * self.rate_hz))
                noise = self._sensor_rng.gauss(0.0, 0.05)
                self.values[point.name] = round(21.5 + swing + noise, 2)
            elif point.name == "heartbeat":
                self.values[point.name] = tick % 0x10000
            elif point.name == "vehicles":
                self.values[point.name] = self._vehicles

    # -- playing ----------------------------------------------------------------------

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        next_tick = loop.time()
        states = iter(self._timeline)
        with self._capture_crash(log, "modbus simulator failed"):
            while True:
                state = next(states, None)
                if state is None:  # the trucks are done: the scale stays at zero
                    state = self.state
                    self.finished.set()
                self._step(state)
                await self._write_values()
                self.stats.ticks += 1
                if self._relay is not None:
                    self._relay.client_present()
                async with self._tick:
                    self._tick.notify_all()
                # Keep the nominal rate, but do not burst to catch up after a stall.
                next_tick = max(next_tick + period, loop.time())
                await asyncio.sleep(next_tick - loop.time())
        self.finished.set()  # only after a crash: the loop above plays until cancelled

    # -- requests and responses ---------------------------------------------------------

    async def _on_access(  # noqa: PLR0917 - pymodbus's SimAction calls it positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this on every datastore access that is inside a block.

        Addresses outside the map were already answered 0x02 by pymodbus (gaps between
        points are marked invalid). Here: tables the profile does not have, writes to
        anything but coils, and the busy fault.
        """
        if self._internal:
            return None
        table = TABLE.get(function_code)
        if table is None or table not in self.tables:
            return ExcCodes.ILLEGAL_ADDRESS
        if set_values is not None and table != "coil":
            return ExcCodes.ILLEGAL_ADDRESS  # read-only registers
        if "exception" in self.faults and self._fault_rng.random() < self.fault_rates["exception"]:
            self.stats.faults["exception"] += 1
            return ExcCodes.DEVICE_BUSY
        return None

    def _on_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.stats.requests[pdu.dev_id] += 1
        return pdu

    def _on_packet(self, sending: bool, packet: bytes) -> bytes:
        """pymodbus calls this with every frame it received or is about to send.

        An empty result sends nothing: that is how a silenced unit, a unit that is not
        ours and the timeout fault withhold a response.
        """
        if not sending or len(packet) < MIN_RESPONSE:
            return packet
        rtu = self._relay is not None
        # RTU: address, PDU, CRC (low byte first). TCP: 7-byte MBAP header ending in the
        # unit id, then the PDU (Modbus Messaging on TCP/IP Implementation Guide 3.1.3).
        unit, pdu = (packet[0], packet[1:-2]) if rtu else (packet[6], packet[7:])
        if unit not in self.units or unit in self._silenced:
            self.stats.unanswered[unit] += 1
            return b""
        rng, rates = self._fault_rng, self.fault_rates
        if "timeout" in self.faults and rng.random() < rates["timeout"]:
            self.stats.faults["timeout"] += 1
            return b""
        if len(pdu) >= 2 and pdu[0] & 0x80:
            self.stats.exceptions[pdu[1]] += 1
        if rtu and "crc" in self.faults and rng.random() < rates["crc"]:
            self.stats.faults["crc"] += 1
            spoiled = bytearray(packet)
            spoiled[-2] ^= rng.randint(1, 0xFF)
            packet = bytes(spoiled)
        self.stats.responses[unit] += 1
        return packet


def _address(point: Point) -> int:
    return point.address


def _check_link(link: Path) -> None:
    if os.path.lexists(link) and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
