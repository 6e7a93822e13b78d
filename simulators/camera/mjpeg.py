"""MJPEG over HTTP, the way many IP cameras serve it: ``multipart/x-mixed-replace``.

``GET /main.mjpg`` and ``GET /sub.mjpg`` answer with an endless multipart body, one
JPEG per part (each part also carries ``X-Frame: <frame number>`` so that a test can
line frames up with the ground truth); ``GET /snapshot.jpg`` answers the latest main
frame (``?stream=sub`` for the substream). Plain asyncio streams, HTTP/1.0 semantics:
the connection closes after the response.

Every client keeps only the latest frame (a slot of one): a slow client loses frames
(counted in :attr:`MjpegServer.dropped`) instead of building up latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BOUNDARY = "camsimframe"
STREAMS = {"/main.mjpg": "main", "/sub.mjpg": "sub"}
REQUEST_TIMEOUT_S = 5.0


@dataclass(slots=True, eq=False)
class _Client:
    stream: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    latest: tuple[int, bytes] | None = None
    closed: bool = False


class MjpegServer:
    """The HTTP side of the camera; the simulator calls :meth:`publish` per frame.

    Args:
        host: address to listen on.
        port: port; 0 picks a free one (kept across :meth:`refuse`/:meth:`accept`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.dropped = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._clients: set[_Client] = set()
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._snapshots: dict[str, tuple[int, bytes]] = {}

    @property
    def accepting(self) -> bool:
        """Whether the listening socket is open."""
        return self._server is not None

    def clients(self, stream: str | None = None) -> int:
        """How many streaming clients are connected (to ``stream``, or to any)."""
        return sum(1 for c in self._clients if stream is None or c.stream == stream)

    async def accept(self) -> None:
        """Open the listening socket (again, on the same port)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        """Close the listening socket and drop every client: a camera gone off the net."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        # Handlers end by themselves once their socket is gone: cancelling the task of a
        # start_server callback makes Python 3.11 log a spurious traceback.
        for writer in self._handlers.values():
            writer.transport.abort()
        for client in self._clients:
            client.closed = True
            client.ready.set()
        if handlers := list(self._handlers):
            _, stuck = await asyncio.wait(handlers, timeout=REQUEST_TIMEOUT_S)
            for task in stuck:
                task.cancel()

    def publish(self, stream: str, frame: int, jpeg: bytes) -> None:
        """Hand frame ``frame`` of ``stream`` to every client of that stream."""
        self._snapshots[stream] = (frame, jpeg)
        for client in self._clients:
            if client.stream == stream:
                if client.latest is not None:
                    self.dropped += 1
                client.latest = (frame, jpeg)
                client.ready.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        self.connections += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.decode("latin-1").partition(" ")
            target = rest.split(" ", 1)[0]
            path, _, query = target.partition("?")
            if method not in ("GET", "HEAD"):
                await self._respond(writer, "405 Method Not Allowed", "text/plain", b"GET only\n")
            elif path in STREAMS:
                await self._stream(writer, STREAMS[path])
            elif path == "/snapshot.jpg":
                await self._snapshot(writer, "sub" if "stream=sub" in query else "main")
            else:
                body = b"try /main.mjpg, /sub.mjpg or /snapshot.jpg\n"
                await self._respond(writer, "404 Not Found", "text/plain", body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or never asked properly
        finally:
            self._handlers.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @staticmethod
    async def _respond(
        writer: asyncio.StreamWriter, status: str, content_type: str, body: bytes
    ) -> None:
        head = (
            f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

    async def _snapshot(self, writer: asyncio.StreamWriter, stream: str) -> None:
        latest = self._snapshots.get(stream)
        if latest is None:
            await self._respond(writer, "503 Service Unavailable", "text/plain", b"no frame yet\n")
        else:
            await self._respond(writer, "200 OK", "image/jpeg", latest[1])

    async def _stream(self, writer: asyncio.StreamWriter, stream: str) -> None:
        head = (
            "HTTP/1.0 200 OK\r\n"
            f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n"
            "Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        client = _Client(stream)
        self._clients.add(client)
        try:
            while True:
                await client.ready.wait()
                client.ready.clear()
                if client.closed or client.latest is None:
                    return
                (frame, jpeg), client.latest = client.latest, None
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\nX-Frame: {frame}\r\n\r\n"
                )
                writer.write(part.encode() + jpeg + b"\r\n")
                await writer.drain()
        finally:
            self._clients.discard(client)
