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

A terminal disconnecting is not the device failing; the device is down only when the
server cannot listen.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import Field, model_validator

from drivers.eseal.codec_jt808 import (
    BATCH_LOCATION_UPLOAD,
    HEARTBEAT,
    REGISTRATION,
    Jt808Codec,
    preset_flags,
)
from drivers.eseal.processor import SealSection
from drivers.eseal.readings import LOCATION_REPORT, Jt808Message, PositionReported
from gateway.config import DeviceSection
from gateway.driver import Driver
from gateway.errors import DeviceInitError, FrameError
from gateway.readings import Reading, Stamp

READ_CHUNK = 4096

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


@dataclass(slots=True, eq=False)
class _Terminal:
    """One connected e-lock: its stream, its decoder and its header version."""

    writer: asyncio.StreamWriter
    codec: Jt808Codec
    protocol: str | None = None  # "2013" / "2019" once a frame decoded


class Jt808Driver(Driver):
    """A JT/T 808 TCP server yielding location reports."""

    config_model = Jt808Section

    def __init__(self, config: DeviceSection) -> None:
        assert isinstance(config, Jt808Section)
        super().__init__(config)
        self.jt_config = config
        self._server: asyncio.Server | None = None
        self._queue: asyncio.Queue[tuple[PositionReported | FrameError, _Terminal]] = (
            asyncio.Queue()
        )
        self._to_answer: list[tuple[PositionReported, _Terminal]] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._terminals: set[_Terminal] = set()
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        terminal = _Terminal(writer, self.jt_config.codec())
        self._terminals.add(terminal)
        self._count("connections")
        try:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(READ_CHUNK):
                    self.counters.bytes_in += len(data)
                    for item in terminal.codec.feed(data, Stamp.now()):
                        self._dispatch(item, terminal)
        finally:
            self._terminals.discard(terminal)
            self._connections.discard(task)
            writer.close()

    def _dispatch(self, item: PositionReported | Jt808Message | FrameError, t: _Terminal) -> None:
        if not isinstance(item, FrameError):
            if item.protocol != t.protocol:  # recorded per terminal, counted per version
                t.protocol = item.protocol
                self._count(f"terminals_{item.protocol}")
            for quirk in item.quirks:
                self._count(_QUIRK_COUNTERS[quirk])
        if isinstance(item, PositionReported | FrameError):
            self._queue.put_nowait((item, t))
        elif item.msg_id == REGISTRATION:
            t.writer.write(t.codec.registration_response(item, auth_code=item.terminal))
            self._count("registrations")
        elif item.msg_id == HEARTBEAT:
            t.writer.write(t.codec.general_response(item))
        elif item.msg_id in (LOCATION_REPORT, BATCH_LOCATION_UPLOAD):  # perhaps alarms
            error = FrameError(
                f"jt808: 0x{item.msg_id:04X} from {item.terminal} not decoded (encrypted,"
                " split or batch): not answered, so the terminal keeps its reports"
            )
            self._queue.put_nowait((error, t))
        else:  # authentication and the rest: acknowledged, not otherwise used
            t.writer.write(t.codec.general_response(item))
            self._count("other_messages")

    def _count(self, name: str) -> None:
        self.counters.extra[name] = self.counters.extra.get(name, 0) + 1

    def _answer(self) -> None:
        """Answer the reports of the batch the daemon has now stored."""
        for report, terminal in self._to_answer:
            if not terminal.writer.is_closing():  # else the terminal re-sends; de-duplicated
                terminal.writer.write(terminal.codec.general_response(report))
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
