"""GPS e-locks over JT/T 808 (``driver = "eseal.jt808"``): the gateway is the platform.

E-locks on arriving trucks (or a gate reader relaying them) connect to the gateway
as TCP clients; any number at once, each with its own decoder. Registration and
heartbeats are answered at once. A location report (0x0200) is answered with the
platform general response (0x8001) only after the daemon has stored its record: the
terminal re-sends an unanswered alarm report, and it clears "cleared on response"
alarms when the answer arrives, so answering first could lose one. Responses for a
batch go out at the start of the next :meth:`_read`, which the supervisor calls only
once the batch is in the outbox. Location reports the codec cannot decode (an
encrypted or split 0x0200, a 0x0704 batch) are never answered, since none of them can
be stored: they count as bad frames and the terminal keeps them.

JT/T 808-2013 and -2019 terminals share the listener: each connection's header
version is recorded when its first frame decodes (and again if it changes), counted
in the device counters (``terminals_2013``, ``terminals_2019``) and carried by the
last reading (``protocol``), so ``gatewayctl status`` shows it; replies go out in the
terminal's own version. Frames the codec tolerates are counted too:
``lone_escapes`` (an unescaped 0x7D check code), ``reserved_bit14`` (a 2013 header
with bit 14 set) and ``items_set_aside`` (an additional item overrunning the body;
the report itself is kept).

Flags: ``flags_preset`` picks a named map (``jt808``, the standard bits, by default;
``none``; ``example-elock``, an example of a vendor map) and ``flags`` adds vendor bits
to it. Vendor bits are never named by default.

Who may report (issue 13). Only terminals listed in ``terminals`` (phone number ->
authentication code) are accepted, and only from ``allowed_networks`` when that is
set; an empty ``terminals`` accepts no terminal at all. A connection must authenticate
(0x0102, JT/T 808-2019 §8.8) with its terminal's configured code before anything else
it sends is used: a wrong code is answered with a 0x8001 general response of result 1
(failure, §8.2) and the connection closed; any other message before authentication
(a report, a heartbeat) is refused and the connection closed, so no reading, record or
alarm ever comes from an unauthenticated connection; after authentication every frame
must carry the authenticated phone number. A registration (0x0100, §8.5) of a listed
terminal is answered "terminal already registered" (0x8100 result 3, §8.6), or with
its code when ``registration_gives_auth_code`` is set; an unlisted terminal gets "no
such terminal" (result 4) and is closed. An unknown terminal is logged once per
listener session and counted (``terminals_unknown``, ``last_unknown_terminal``):
never a record, so any number of made-up ids costs nothing in the outbox.

Bounds: at most ``max_connections`` connections, ``max_connections_per_address`` per
source address. A connection over a cap is accepted and, when the oldest connection in
that scope that has not authenticated yet exists, that one is closed to make room
(``connections_evicted``: a flood of idle sockets cannot keep a real terminal out);
else the new one is closed at once (``connections_refused``,
``connections_refused_address``). A connection must authenticate within
``auth_timeout_s``; after that, one that sends no complete frame for
``idle_timeout_s`` is closed; one whose unsent answers pass
``max_write_buffer_bytes`` (a terminal that never reads) is closed; frames beyond
``max_frames_per_s`` (a token bucket of ``frame_burst``) are dropped. A frame is at
most :data:`~drivers.eseal.codec_jt808.MAX_CONTENT` bytes (the codec's bound). Every
refusal is a device counter (named in :data:`drivers.eseal.cli.REFUSALS`), shown by
``gatewayctl status``.

A terminal disconnecting is not the device failing; the device is down only when the
server cannot listen.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from drivers.eseal.codec_jt808 import (
    AUTHENTICATION,
    BATCH_LOCATION_UPLOAD,
    HEARTBEAT,
    REGISTRATION,
    REGISTRATION_NO_SUCH_TERMINAL,
    REGISTRATION_OK,
    REGISTRATION_TERMINAL_REGISTERED,
    RESULT_FAILURE,
    Jt808Codec,
    authentication_code,
    preset_flags,
    terminal_key,
)
from drivers.eseal.processor import SealSection
from drivers.eseal.readings import LOCATION_REPORT, Jt808Message, PositionReported
from gateway.config import DeviceSection
from gateway.driver import Driver, DriverCounters
from gateway.errors import DeviceInitError, FrameError
from gateway.ratelimit import TokenBucket
from gateway.readings import Reading, Stamp

log = structlog.get_logger(__name__)

READ_CHUNK = 4096

MAX_TERMINALS = 1024
"""Most terminals one listener's ``terminals`` may list (the processor remembers up to
4096 ids, so a listed terminal's state is never evicted by another's)."""

_QUIRK_COUNTERS = {
    "lone_escape": "lone_escapes",
    "reserved_bit14": "reserved_bit14",
    "item_set_aside": "items_set_aside",
}
"""Codec quirk -> device counter."""


class Jt808Section(SealSection):
    """``[[devices]]`` keys of the JT/T 808 platform the e-locks report to."""

    driver: Literal["eseal.jt808"]
    listen_host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104
    listen_port: int = Field(ge=1, le=65535, description="TCP port the e-locks connect to")
    flags_preset: str = Field(
        default="jt808",
        description="named flag map: jt808 (standard bits), none, example-elock (an example)",
    )
    flags: dict[str, tuple[Literal["alarm", "status"], int]] | None = Field(
        default=None, description="vendor bits added to the preset: name = [word, bit]"
    )
    alarm_flags: list[str] | None = Field(
        default=None, description="flag names that make a report an alarm"
    )
    terminals: dict[str, SecretStr] = Field(
        default_factory=dict,
        max_length=MAX_TERMINALS,
        description="the e-locks allowed to report: terminal phone number (up to 20 digits;"
        " leading zeros do not matter) = its authentication code (0x0102). Empty: every"
        " terminal is refused",
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description='source networks connections may come from, as CIDR ("10.20.0.0/16");'
        " empty: any address",
    )
    registration_gives_auth_code: bool = Field(
        default=False,
        description="answer a listed terminal's registration (0x0100) with its code; else"
        " with 'terminal already registered' (the code must be set in the terminal)",
    )
    max_connections: int = Field(
        default=128, ge=1, description="connections at once; more are closed at once"
    )
    max_connections_per_address: int = Field(
        default=8, ge=1, description="connections at once from one source address"
    )
    idle_timeout_s: float = Field(
        default=180.0, gt=0, description="close a connection with no complete frame for this long"
    )
    auth_timeout_s: float = Field(
        default=30.0, gt=0, description="close a connection not authenticated within this long"
    )
    max_write_buffer_bytes: int = Field(
        default=65536,
        ge=1024,
        description="close a connection whose unsent answers pass this (it does not read)",
    )
    max_frames_per_s: float = Field(
        default=20.0, gt=0, description="frames a connection may send per second, sustained"
    )
    frame_burst: int = Field(
        default=100, ge=1, description="frames a connection may send at once above that rate"
    )

    @field_validator("terminals")
    @classmethod
    def _terminals_are_phone_numbers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for terminal, code in value.items():
            if not (terminal.isascii() and terminal.isdigit() and len(terminal) <= 20):
                raise ValueError(f"terminal {terminal!r} is not a phone number of 1-20 digits")
            try:
                raw = code.get_secret_value().encode("gbk")
            except UnicodeEncodeError:
                raise ValueError(f"terminal {terminal}: the code is not GBK text") from None
            if not 0 < len(raw) <= 0xFF:
                raise ValueError(f"terminal {terminal}: the code must be 1-255 bytes")
        keys = [terminal_key(t) for t in value]
        if len(set(keys)) != len(keys):
            raise ValueError("a terminal is listed twice (leading zeros do not matter)")
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks_are_cidr(cls, value: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(net)) for net in value]
        except ValueError as exc:
            raise ValueError(f"allowed_networks: {exc}") from None

    @model_validator(mode="after")
    def _flags_make_a_codec(self) -> Self:
        try:
            self.codec()
        except ValueError as exc:
            raise ValueError(f"flags_preset/flags/alarm_flags: {exc}") from None
        return self

    def codec(self) -> Jt808Codec:
        """A decoder with this device's flag map.

        Raises:
            ValueError: an unknown preset, a bad bit, an alarm name not in the map.
        """
        flags = preset_flags(self.flags_preset, self.flags)
        return Jt808Codec(flags=flags, alarm_flags=self.alarm_flags)

    def codes(self) -> dict[str, bytes]:
        """Terminal id (:func:`terminal_key`) -> its authentication code, GBK bytes."""
        return {
            terminal_key(t): code.get_secret_value().encode("gbk")
            for t, code in self.terminals.items()
        }

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The parsed ``allowed_networks``."""
        return [ipaddress.ip_network(net) for net in self.allowed_networks]


@dataclass(slots=True)
class Jt808Counters(DriverCounters):
    """The driver counters, and the last unknown terminal a technician should look at."""

    last_unknown_terminal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = DriverCounters.as_dict(self)
        if self.last_unknown_terminal is not None:
            out["last_unknown_terminal"] = self.last_unknown_terminal
        return out


@dataclass(slots=True, eq=False)
class _Terminal:
    """One connection: its stream, decoder, source, rate bucket and who it proved to be."""

    writer: asyncio.StreamWriter
    codec: Jt808Codec
    address: str
    bucket: TokenBucket
    protocol: str | None = None  # "2013" / "2019" once a frame decoded
    authenticated: str | None = None  # terminal_key of the terminal, once authenticated
    closed: bool = field(default=False)  # hung up by the gateway: ignore what follows


def _address(writer: asyncio.StreamWriter) -> str:
    """The peer's IP address as text ("" when the socket has none)."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _in_networks(
    address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    return any(ip in net for net in networks)


class Jt808Driver(Driver):
    """A JT/T 808 TCP server yielding the location reports of authenticated terminals."""

    config_model = Jt808Section

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, Jt808Section)
        super().__init__(config)
        self.jt_config = config
        self.counters: Jt808Counters = Jt808Counters()
        self._codes = config.codes()
        self._networks = config.networks()
        self._server: asyncio.Server | None = None
        self._queue: asyncio.Queue[tuple[PositionReported | FrameError, _Terminal]] = (
            asyncio.Queue()
        )
        self._to_answer: list[tuple[PositionReported, _Terminal]] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._terminals: dict[_Terminal, None] = {}  # in connection order
        self._per_address: dict[str, int] = {}  # bounded by max_connections
        self._logged: set[str] = set()  # refusals already logged this session
        self.changed = asyncio.Event()
        """Set whenever a counter or the set of connections changes (clear it to wait
        for the next change: tests, and anyone watching the listener)."""
        self._closing = False

    @property
    def port(self) -> int | None:
        """The port actually listened on (useful with ``listen_port = 0`` in tests)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def _open(self) -> None:
        cfg = self.jt_config
        self._closing = False
        self._logged.clear()
        if not self._codes:
            log.warning(
                "no terminals configured: every e-lock is refused until `terminals` lists them",
                device=cfg.id,
            )
        try:
            self._server = await asyncio.start_server(
                self._serve, cfg.listen_host, cfg.listen_port, reuse_address=True
            )
        except OSError as exc:
            raise DeviceInitError(
                f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: {exc.strerror or exc}"
            ) from exc

    async def _close(self) -> None:
        server, self._server = self._server, None
        self._closing = True
        if server is not None:
            server.close()
            # A connection accepted just before has a handler task not started yet: let
            # it start, see that we are closing and close its socket.
            await asyncio.sleep(0)
        for terminal in list(self._terminals):
            terminal.writer.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._to_answer.clear()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _refusal(self, address: str) -> str | None:
        """The counter of why a new connection from ``address`` is refused, if it is.

        At a cap, the oldest connection in its scope that has not authenticated is
        closed to make room instead, when there is one.
        """
        cfg = self.jt_config
        if self._networks and not _in_networks(address, self._networks):
            return "connections_refused_network"
        if self._per_address.get(address, 0) >= cfg.max_connections_per_address:
            if not self._evict(lambda t: t.address == address):
                return "connections_refused_address"
        elif len(self._terminals) >= cfg.max_connections and not self._evict(lambda t: True):
            return "connections_refused"
        return None

    def _evict(self, scope: Callable[[_Terminal], bool]) -> bool:
        """Close the oldest unauthenticated connection in ``scope``; whether there was one.
        It leaves the counts at once, so the new connection takes its place."""
        for t in self._terminals:
            if t.authenticated is None and scope(t):
                self._refused("connections_evicted", "unauthenticated connection evicted", t=t)
                self._hang_up(t)
                self._forget(t)
                return True
        return False

    def _forget(self, t: _Terminal) -> None:
        """``t`` no longer counts against the caps (idempotent)."""
        if self._terminals.pop(t, False) is None:
            left = self._per_address.pop(t.address, 1) - 1
            if left > 0:
                self._per_address[t.address] = left
            self.changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = _address(writer)
        refusal = None if self._closing else self._refusal(address)
        if self._closing or refusal is not None:
            if refusal is not None:
                self._refused(refusal, "connection refused", address=address)
            writer.transport.abort()  # the descriptor is free at once, nothing is sent
            return
        task = asyncio.current_task()
        assert task is not None
        cfg = self.jt_config
        loop = asyncio.get_running_loop()
        bucket = TokenBucket(cfg.max_frames_per_s, cfg.frame_burst, loop.time)
        terminal = _Terminal(writer, cfg.codec(), address, bucket)
        self._connections.add(task)
        self._terminals[terminal] = None
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self._count("connections")
        try:
            async with asyncio.timeout(min(cfg.auth_timeout_s, cfg.idle_timeout_s)) as idle:
                await self._receive(reader, terminal, idle)
        except TimeoutError:
            if not idle.expired():
                raise
            if terminal.authenticated is None:
                self._refused("connections_closed_unauthenticated", "no authentication", t=terminal)
            else:
                self._refused("connections_closed_idle", "idle connection closed", t=terminal)
        except ConnectionError:
            pass
        finally:
            self._forget(terminal)
            self._connections.discard(task)
            writer.close()

    async def _receive(
        self, reader: asyncio.StreamReader, terminal: _Terminal, idle: asyncio.Timeout
    ) -> None:
        """Read and dispatch until EOF or the gateway hangs up; once authenticated, a
        complete frame (not a bad one) pushes the idle deadline back."""
        loop = asyncio.get_running_loop()
        while not terminal.closed and (data := await reader.read(READ_CHUNK)):
            self.counters.bytes_in += len(data)
            for item in terminal.codec.feed(data, Stamp.now()):
                now = loop.time()
                if not terminal.bucket.take():
                    self._count("frames_rate_limited")
                    continue
                self._dispatch(item, terminal)
                if terminal.closed:
                    return
                if terminal.authenticated is not None and not isinstance(item, FrameError):
                    idle.reschedule(now + self.jt_config.idle_timeout_s)

    def _dispatch(self, item: PositionReported | Jt808Message | FrameError, t: _Terminal) -> None:
        if isinstance(item, FrameError):
            if t.authenticated is None:
                self._count("frames_unauthenticated")  # garbage from nobody: not a device fault
            else:
                self._queue.put_nowait((item, t))
            return
        if not self._admitted(item, t):
            return
        if item.protocol != t.protocol:  # recorded per terminal, counted per version
            t.protocol = item.protocol
            self._count(f"terminals_{item.protocol}")
        for quirk in item.quirks:
            self._count(_QUIRK_COUNTERS[quirk])
        if isinstance(item, PositionReported):
            self._queue.put_nowait((item, t))
        elif item.msg_id == HEARTBEAT:
            self._send(t, t.codec.general_response(item))
        elif item.msg_id in (LOCATION_REPORT, BATCH_LOCATION_UPLOAD):  # perhaps alarms
            error = FrameError(
                f"jt808: 0x{item.msg_id:04X} from {item.terminal} not decoded (encrypted,"
                " split or batch): not answered, so the terminal keeps its reports"
            )
            self._queue.put_nowait((error, t))
        else:  # the rest (a repeated authentication too): acknowledged, not otherwise used
            self._send(t, t.codec.general_response(item))
            self._count("other_messages")

    def _admitted(self, item: PositionReported | Jt808Message, t: _Terminal) -> bool:
        """Whether ``item`` may be used: from the terminal this connection authenticated
        as. Registration and authentication of a listed terminal are handled here."""
        key = terminal_key(item.terminal)
        if t.authenticated is not None:
            if key == t.authenticated:
                return True
            self._refused("frames_wrong_terminal", "frame for another terminal", t=t, item=item)
            self._hang_up(t)
            return False
        if key not in self._codes:
            self.counters.last_unknown_terminal = item.terminal
            self._refused("terminals_unknown", "unknown terminal refused", t=t, item=item)
            if isinstance(item, Jt808Message) and item.msg_id == REGISTRATION:
                self._send(t, t.codec.registration_response(item, REGISTRATION_NO_SUCH_TERMINAL))
            elif isinstance(item, Jt808Message) and item.msg_id == AUTHENTICATION:
                self._send(t, t.codec.general_response(item, RESULT_FAILURE))
            self._hang_up(t)
            return False
        if isinstance(item, Jt808Message) and item.msg_id == REGISTRATION:
            self._register(item, t, key)
        elif isinstance(item, Jt808Message) and item.msg_id == AUTHENTICATION:
            self._authenticate(item, t, key)
        else:  # a report or heartbeat before authentication: never used, not answered
            self._refused("frames_unauthenticated", "frame before authentication", t=t, item=item)
            self._hang_up(t)
        return False

    def _register(self, item: Jt808Message, t: _Terminal, key: str) -> None:
        """0x0100 of a listed terminal: 0x8100 (§8.6) with its code, or "registered"."""
        if self.jt_config.registration_gives_auth_code:
            code = self._codes[key].decode("gbk")
            self._send(t, t.codec.registration_response(item, REGISTRATION_OK, auth_code=code))
        else:
            self._send(t, t.codec.registration_response(item, REGISTRATION_TERMINAL_REGISTERED))
        self._count("registrations")

    def _authenticate(self, item: Jt808Message, t: _Terminal, key: str) -> None:
        """0x0102 (JT/T 808-2019 §8.8): the configured code -> 0x8001 result 0 (§8.2);
        anything else -> result 1, failure, and the connection is closed."""
        try:
            code = authentication_code(item.body, item.version)
        except FrameError:
            code = b""
        if not hmac.compare_digest(code, self._codes[key]):
            self._refused("terminals_auth_failed", "wrong authentication code", t=t, item=item)
            self._send(t, t.codec.general_response(item, RESULT_FAILURE))
            self._hang_up(t)
            return
        for other in list(self._terminals):  # its older connection is a dead one
            if other is not t and other.authenticated == key:
                self._count("connections_replaced")
                self._hang_up(other)
        t.authenticated = key
        self._count("authentications")
        self._send(t, t.codec.general_response(item))

    def _hang_up(self, t: _Terminal) -> None:
        """Close ``t`` once what was written to it is sent; ignore what it sends after."""
        t.closed = True
        t.writer.close()

    def _send(self, t: _Terminal, frame: bytes) -> None:
        """Write ``frame``; a terminal that lets answers pile up past the cap is cut off."""
        if t.writer.is_closing():
            return
        t.writer.write(frame)
        if t.writer.transport.get_write_buffer_size() > self.jt_config.max_write_buffer_bytes:
            self._refused("connections_closed_write_buffer", "terminal does not read: closed", t=t)
            t.closed = True
            t.writer.transport.abort()

    def _refused(
        self,
        counter: str,
        message: str,
        *,
        t: _Terminal | None = None,
        item: PositionReported | Jt808Message | None = None,
        address: str | None = None,
    ) -> None:
        """Count a refusal; log only the first of each kind per listener session (an
        attacker's thousands of attempts are one log line and a counter)."""
        self._count(counter)
        if counter in self._logged:
            return
        self._logged.add(counter)
        log.warning(
            message,
            device=self.jt_config.id,
            counter=counter,
            address=address if t is None else t.address,
            terminal=None if item is None else item.terminal,
            note="further ones are only counted",
        )

    def _count(self, name: str) -> None:
        self.counters.extra[name] = self.counters.extra.get(name, 0) + 1
        self.changed.set()

    def _answer(self) -> None:
        """Answer the reports of the batch the daemon has now stored."""
        for report, terminal in self._to_answer:
            if not terminal.writer.is_closing():  # else the terminal re-sends; de-duplicated
                self._send(terminal, terminal.codec.general_response(report))
                self._count("responses_sent")
        self._to_answer.clear()

    async def _read(self) -> list[Reading | FrameError]:
        self._answer()
        batch = [await self._queue.get()]
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        out: list[Reading | FrameError] = []
        for item, terminal in batch:
            if isinstance(item, PositionReported):
                self._to_answer.append((item, terminal))
            out.append(item)
        return out
