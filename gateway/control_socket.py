"""The local control socket ``gatewayctl`` talks to.

A Unix stream socket owned by the daemon, mode 0660 (the daemon's group may use it),
one JSON object per line in each direction — no pickle, nothing executable. A client
sends one request line: ``{"cmd": "status"}`` gets one answer line;
``{"cmd": "tail"}`` gets a line per record as the broker acknowledges it, until the
client disconnects. A slow tail client gets ``{"dropped": N}`` lines instead of
making the daemon buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import ControlError
from gateway.records import Record

log = structlog.get_logger(__name__)

TAIL_QUEUE = 1000
MAX_REQUEST = 4096


def _record_line(record: Record) -> dict[str, Any]:
    if record.content_type is not None:  # media: say what went, not the bytes
        media = {"content_type": record.content_type, "bytes": len(record.payload)}
        return {"topic": record.topic, "seq": None, "media": media}
    return {"topic": record.topic, "seq": record.seq, "record": json.loads(record.payload)}


class ControlServer:
    """Serves status and tail requests; an async context manager."""

    def __init__(self, path: Path, status: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._status = status
        self._server: asyncio.AbstractServer | None = None
        self._tails: set[asyncio.Queue[dict[str, Any]]] = set()
        self._clients: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ControlServer:
        if self.path.exists() or self.path.is_symlink():
            if await _answers(self.path):
                raise ControlError(
                    f"another gateway is already running (its control socket {self.path} answers)"
                )
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o117)  # socket created as 0660 with no window of wider access
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o660)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, record: Record) -> None:
        """Hand an acknowledged record to every tail client."""
        if not self._tails:
            return
        line = _record_line(record)
        for queue in self._tails:
            if queue.full():
                queue.get_nowait()
                queue.put_nowait({"dropped": 1})
            queue.put_nowait(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            raw = await reader.readline()
            try:
                request = json.loads(raw[:MAX_REQUEST] or b"{}")
                cmd = request.get("cmd")
            except (json.JSONDecodeError, AttributeError):
                cmd = None
            if cmd == "status":
                await _send(writer, self._status())
            elif cmd == "tail":
                await self._tail(reader, writer)
            else:
                await _send(writer, {"error": f"unknown command {cmd!r}; use status or tail"})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            log.exception("control request failed")
            with contextlib.suppress(ConnectionError):
                await _send(writer, {"error": f"internal error: {exc!r}"})
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tail(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(TAIL_QUEUE)
        self._tails.add(queue)
        gone = asyncio.ensure_future(reader.read())  # EOF when the client leaves
        try:
            while not gone.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await _send(writer, getter.result())
        finally:
            gone.cancel()
            self._tails.discard(queue)


async def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
    await writer.drain()


async def _answers(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise ControlError(
            f"the gateway daemon is not running (no control socket at {path}).\n"
            "  Start it:   systemctl start edge-gateway\n"
            "  Why not?:   journalctl -u edge-gateway -n 50"
        ) from None
    except PermissionError:
        sock.close()
        raise ControlError(
            f"permission denied on {path}: run as root or as a member of the daemon's group"
        ) from None
    except ConnectionRefusedError:
        sock.close()
        raise ControlError(
            f"the gateway daemon is not running ({path} is left over from a previous run)"
        ) from None
    return sock


def request(path: Path, cmd: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Blocking one-shot request used by ``gatewayctl``."""
    sock = _connect(path)
    with sock, sock.makefile("rwb") as stream:
        sock.settimeout(timeout_s)
        stream.write(json.dumps({"cmd": cmd}).encode() + b"\n")
        stream.flush()
        line = stream.readline()
    if not line:
        raise ControlError(f"the daemon closed {path} without answering")
    answer: dict[str, Any] = json.loads(line)
    return answer


def follow(path: Path) -> Iterator[dict[str, Any]]:
    """Blocking iterator over tail lines used by ``gatewayctl tail``."""
    sock = _connect(path)
    with sock, sock.makefile("rwb") as stream:
        stream.write(b'{"cmd": "tail"}\n')
        stream.flush()
        for line in stream:
            yield json.loads(line)
