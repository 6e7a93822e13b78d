"""A weighbridge indicator on a pseudo-terminal, speaking a real scale wire format.

The simulator plays trucks over the scale: empty and stable at zero, driving on (the
value rising, motion flagged), standing still on a plateau, driving off, back to
zero. It encodes every state with the same codec classes the gateway decodes with
(:mod:`drivers.scale.protocols`), so the bytes are exactly what the gateway must
handle, and injects the faults real serial links have.

The device side is a pty: the gateway (or a test) opens the slave through a symlink
at ``link``, exactly as it would open ``/dev/ttyUSB0``. Everything runs on the event
loop: the master fd is non-blocking, read with ``loop.add_reader`` and written with
``os.write``; a full buffer drops the frame (a real indicator does not wait either).

Like a serial wire, the pty only carries bytes while a client has the port open:
when nobody does, the master reads EIO and frames are not written (otherwise the
kernel would queue kilobytes of stale frames for the next client to read as new).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from drivers.scale.codec_toledo import ToledoCodec
from drivers.scale.protocols import CODECS
from drivers.scale.readings import WeightMeasured
from gateway.readings import Stamp

# F401: the weight range moved to simulators.trucks; callers still import it from here.
from simulators.lifecycle import PlayingSimulator
from simulators.pty import PtyPort
from simulators.trucks import MAX_KG, MIN_KG, STEP_KG, ScaleState, TruckTimeline  # noqa: F401

log = logging.getLogger(__name__)

FAULTS = ("noise", "truncate", "checksum", "silence", "disconnect")
"""Fault kinds ``--faults`` accepts."""

DEFAULT_FAULT_RATES: dict[str, float] = {
    "noise": 0.05,  # per frame: random bytes before it
    "truncate": 0.03,  # per frame: cut short
    "checksum": 0.03,  # per frame: checksum (or, without one, a character) corrupted
    "silence": 0.01,  # per tick: stop sending for SILENCE_S (about every 10 s at 10 Hz)
    "disconnect": 0.005,  # per tick: close the pty for DISCONNECT_S (about every 20 s)
}
"""Probability of each fault; frame faults per frame sent, outages per tick."""

# Outages, in seconds at speed 1 (divided by ``speed``). The trucks' timeline (how long
# each phase lasts, the weights) is :class:`simulators.trucks.TruckTimeline`.
SILENCE_S = 2.0
DISCONNECT_S = 1.0

STREAMING = frozenset({"toledo", "xk3190"})  # protocols that send without being asked
ESC = 0x1B
MAX_COMMAND = 64  # bytes of an unfinished command kept before it is thrown away


@dataclass(slots=True)
class SimulatorStats:
    """What the simulator did, for tests and for the operator.

    Attributes:
        frames_sent: frames written whole.
        frames_dropped: frames dropped or cut because the pty buffer was full (EAGAIN).
        frames_unheard: frames not written because no client had the port open.
        frames_silenced: frames not written during a silence or disconnect fault.
        commands: commands received (SMA, MT-SICS).
        faults: faults injected, by kind.
    """

    frames_sent: int = 0
    frames_dropped: int = 0
    frames_unheard: int = 0
    frames_silenced: int = 0
    commands: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class ScaleSimulator(PlayingSimulator):
    """A weighbridge indicator on a pty, as an async context manager.

    ``async with ScaleSimulator(...) as sim`` opens the pty, points ``link`` at its
    slave and starts playing; leaving the block stops playing, closes the pty and
    removes the link. :meth:`run` does the same and returns when the trucks are done.

    Args:
        protocol: a name in :data:`drivers.scale.protocols.CODECS`.
        link: where to put the symlink to the pty slave (an existing symlink is
            replaced atomically; any other file there is an error).
        trucks: how many trucks to play; ``None`` plays forever.
        speed: time compression; every duration is divided by it.
        faults: fault kinds from :data:`FAULTS` to inject.
        seed: seeds the plateau weights, the motion wobble and the faults; ``None``
            picks one (see :attr:`seed`).
        rate_hz: frames per second of continuous output (and of the simulation tick).
        fault_rates: overrides of :data:`DEFAULT_FAULT_RATES`.

    Attributes:
        link: the symlink path.
        slave_name: the current pty slave (``/dev/pts/N``), ``None`` while closed.
        seed: the seed in use.
        truck_weights_kg: the plateau weights, known from the seed before they are
            played (when playing forever: drawn as trucks arrive, the last 100 kept).
        finished: set when the last truck has left and the trailing zero was sent
            (or the player failed; :meth:`run` and leaving the block then raise).
        link_ready: set while the pty is open; cleared during a disconnect fault.
        stats: counters, see :class:`SimulatorStats`.
    """

    def __init__(
        self,
        *,
        protocol: str,
        link: Path | str,
        trucks: int | None = None,
        speed: float = 1.0,
        faults: Iterable[str] = (),
        seed: int | None = None,
        rate_hz: float = 10.0,
        fault_rates: Mapping[str, float] | None = None,
    ) -> None:
        if protocol not in CODECS:
            raise ValueError(f"unknown scale protocol {protocol!r}; known: {sorted(CODECS)}")
        self.faults = frozenset(faults)
        if unknown := self.faults - set(FAULTS):
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {list(FAULTS)}")
        if speed <= 0 or rate_hz <= 0 or (trucks is not None and trucks < 0):
            raise ValueError("speed and rate_hz must be positive and trucks not negative")
        self.protocol = protocol
        self.link = Path(link)
        self.trucks = trucks
        self.speed = speed
        self.rate_hz = rate_hz
        self.fault_rates = {**DEFAULT_FAULT_RATES, **(fault_rates or {})}
        self.seed = seed if seed is not None else random.randrange(2**32)
        # Separate streams, so that faults (whose draws depend on polling timing) never
        # change the weights or the ramps.
        self._timeline = TruckTimeline(trucks=trucks, speed=speed, rate_hz=rate_hz, seed=self.seed)
        self._fault_rng = random.Random(f"{self.seed}:faults")
        self.truck_weights_kg: list[int] = self._timeline.weights_kg  # the same list
        self.finished = asyncio.Event()
        self.link_ready = asyncio.Event()
        self.stats = SimulatorStats()
        self._codec = CODECS[protocol]
        self._port = PtyPort(self.link, self._on_commands, "scale simulator")
        self._state = ScaleState(weight_kg=0, motion=False)
        self._rx = bytearray()  # command bytes not yet acted on
        self._repeat = False  # SMA: continuous output requested with <LF>R<CR>
        self._silent_until = 0.0
        self._reopen_at: float | None = None  # disconnect fault: when to open a new pty
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("simulator already running")
        self._open_pty()
        self._task = asyncio.create_task(self._play(), name=f"scale-simulator-{self.protocol}")
        return self

    async def _teardown(self) -> None:
        self._close_pty()
        self._unlink()

    # -- the pty ----------------------------------------------------------------------

    def _open_pty(self) -> None:
        self._port.open()
        self.link_ready.set()

    def _close_pty(self) -> None:
        # The indicator's own state (SMA repeat mode) survives: this is a cable pulled,
        # not a power cycle.
        self.link_ready.clear()
        self._port.close()
        self._rx.clear()

    def _unlink(self) -> None:
        self._port.unlink()

    @property
    def slave_name(self) -> str | None:
        """The pty slave the link points at while open."""
        return self._port.slave_name

    # -- playing ----------------------------------------------------------------------

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate_hz
        next_tick = loop.time()
        with self._capture_crash(log, "scale simulator failed"):
            for state in self._timeline:
                self._state = state
                self._tick(loop.time())
                # Keep the nominal rate, but do not burst to catch up after a stall.
                next_tick = max(next_tick + period, loop.time())
                await asyncio.sleep(next_tick - loop.time())
        self.finished.set()

    def _tick(self, now: float) -> None:
        """One simulation step: outages, then a frame for continuous protocols."""
        if self._reopen_at is not None:
            if now < self._reopen_at:
                self.stats.frames_silenced += int(self._streaming)
                return
            self._reopen_at = None
            self._open_pty()
            log.info("scale simulator: reconnected, %s -> %s", self.link, self.slave_name)
        if now >= self._silent_until:
            self._maybe_start_outage(now)
            if self._reopen_at is not None:
                self.stats.frames_silenced += int(self._streaming)
                return
        if not self._port.client_present():
            self.stats.frames_unheard += int(self._streaming)
            return
        if self._streaming:
            self._send(self._frame(self._state), now)

    @property
    def _streaming(self) -> bool:
        return self.protocol in STREAMING or self._repeat

    def _maybe_start_outage(self, now: float) -> None:
        rng = self._fault_rng
        if "silence" in self.faults and rng.random() < self.fault_rates["silence"]:
            self.stats.faults["silence"] += 1
            self._silent_until = now + SILENCE_S / self.speed
        elif "disconnect" in self.faults and rng.random() < self.fault_rates["disconnect"]:
            self.stats.faults["disconnect"] += 1
            self._close_pty()
            self._reopen_at = now + DISCONNECT_S / self.speed
            log.info("scale simulator: disconnected %s", self.link)

    # -- bytes out --------------------------------------------------------------------

    def _frame(self, state: ScaleState) -> bytes:
        """The frame a real indicator sends for ``state``.

        Toledo: the weighbridge's 20 kg increment, so status A has decimal point code
        001 (dummy zero) and build code x2, and the weight is space padded, as an
        IND245 or IND231 sends it (see :mod:`drivers.scale.codec_toledo`).
        """
        reading = WeightMeasured(
            weight=float(state.weight_kg), unit="kg", stable=not state.motion, at=Stamp.now()
        )
        if self.protocol == "toledo":
            return ToledoCodec.encode(reading, increment=STEP_KG)
        return self._codec.encode(reading)

    def _send(self, frame: bytes, now: float) -> None:
        """Write one frame, with the configured faults, without ever blocking."""
        if now < self._silent_until or self._port.master is None:
            self.stats.frames_silenced += 1
            return
        rng = self._fault_rng
        rates = self.fault_rates
        out = bytearray()
        if "noise" in self.faults and rng.random() < rates["noise"]:
            self.stats.faults["noise"] += 1
            out += rng.randbytes(rng.randint(1, 12))
        if "checksum" in self.faults and rng.random() < rates["checksum"]:
            self.stats.faults["checksum"] += 1
            frame = self._corrupt(frame)
        if "truncate" in self.faults and rng.random() < rates["truncate"]:
            self.stats.faults["truncate"] += 1
            frame = frame[: rng.randrange(1, len(frame))]
        out += frame
        try:
            written = os.write(self._port.master, out)
        except OSError:  # EAGAIN: nobody reads and the buffer is full
            written = 0
        if written < len(out):
            self.stats.frames_dropped += 1
        else:
            self.stats.frames_sent += 1

    def _corrupt(self, frame: bytes) -> bytes:
        """Spoil the checksum, or for protocols without one a character of the payload."""
        rng = self._fault_rng
        data = bytearray(frame)
        if self.protocol == "toledo":  # last byte: the checksum (compared 7-bit)
            data[-1] ^= rng.randint(1, 0x7F)
        elif self.protocol == "xk3190":  # bytes 9-10: the XOR as two hex digits
            pos = rng.choice((9, 10))
            data[pos] = rng.choice([c for c in b"0123456789ABCDEF" if c != data[pos]])
        else:  # SMA: between LF and CR; MT-SICS: before CR LF
            lo, hi = (1, len(data) - 1) if self.protocol == "sma" else (0, len(data) - 2)
            pos = rng.randrange(lo, hi)
            data[pos] = rng.choice([c for c in range(0x20, 0x7F) if c != data[pos]])
        return bytes(data)

    # -- commands in ------------------------------------------------------------------

    def _on_commands(self, data: bytes) -> None:
        if self.protocol in STREAMING:
            return  # continuous output ignores the host
        self._rx += data
        if self.protocol == "sma":
            self._sma_commands()
        else:
            self._mtsics_commands()
        if len(self._rx) > MAX_COMMAND:
            self._rx.clear()

    def _sma_commands(self) -> None:
        """SCP-0499: ``<LF>x<CR>`` commands; ``<ESC>`` alone stops continuous output."""
        rx = self._rx
        while True:
            cr, esc = rx.find(b"\r"), rx.find(ESC)
            if esc >= 0 and (cr < 0 or esc < cr):
                del rx[: esc + 1]
                self.stats.commands += 1
                self._repeat = False
                continue
            if cr < 0:
                return
            command = bytes(rx[:cr]).rpartition(b"\n")[2]
            del rx[: cr + 1]
            self.stats.commands += 1
            now = asyncio.get_running_loop().time()
            if command == b"R":
                self._repeat = True  # the next ticks stream
            elif command in (b"W", b"Z", b"T"):
                # Zero and tare are acknowledged with the weight, but not modelled.
                self._send(self._frame(self._state), now)
            else:
                self._send(b"\n?\r", now)

    def _mtsics_commands(self) -> None:
        """MT-SICS: one command per CR LF line; ``SI`` now, ``S`` stable only.

        ``Z`` waits for stability (``Z A``, or ``Z I`` while in motion); ``ZI`` zeroes
        at once and says whether it was stable (``ZI S``) or not (``ZI D``). Zeroing is
        acknowledged, not modelled.
        """
        rx = self._rx
        while (end := rx.find(b"\n")) >= 0:
            command = bytes(rx[:end]).strip()
            del rx[: end + 1]
            if not command:
                continue
            self.stats.commands += 1
            now = asyncio.get_running_loop().time()
            state = self._state
            if command == b"SI" or (command == b"S" and not state.motion):
                self._send(self._frame(state), now)
            elif command == b"S":
                self._send(b"S I\r\n", now)  # not stable in time
            elif command == b"Z":
                self._send(b"Z I\r\n" if state.motion else b"Z A\r\n", now)
            elif command == b"ZI":
                self._send(b"ZI D\r\n" if state.motion else b"ZI S\r\n", now)
            else:
                self._send(b"ES\r\n", now)
