"""Why a camera stream did not open, in words a technician can act on.

OpenCV only says "not opened". When that happens the driver asks the server itself:
one TCP connection and one request (HTTP ``GET`` or RTSP ``DESCRIBE``), reading the
status line, to tell "unreachable" from "401: check the password" from "404: check the
path" from "answers but sends no video". No threads: plain asyncio streams.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from drivers.camera.capture import source_kind

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}
HINTS = {
    401: "check the user and password in the URL",
    403: "the camera refuses this user",
    404: "check the stream path in the URL",
    454: "check the stream path in the URL",  # RTSP 454 Session Not Found
    503: "the camera is busy (too many clients?)",
}


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _request(url: str) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if parts.scheme.startswith("rtsp"):
        bare = urlunsplit(parts._replace(netloc=parts.hostname or ""))
        return f"DESCRIBE {bare} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode()
    return f"GET {path} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode()


async def _status_line(url: str, wait_s: float) -> str:
    """The server's first response line; raises ``OSError``/``TimeoutError``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
    context = ssl.create_default_context() if parts.scheme in ("https", "rtsps") else None
    async with asyncio.timeout(wait_s):
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            writer.write(_request(url))
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
    return line.decode("latin-1").strip()


def local_reason(url: str) -> str | None:
    """Why a file or V4L2 source gives no frames; ``None`` for network URLs."""
    kind = source_kind(url)
    if kind == "network":
        return None
    if not url.isdigit() and not Path(url).exists():
        return f"no such {kind}: {url}"
    return f"the {kind} opens but gives no frames OpenCV can decode (not a video?)"


async def diagnose(url: str, wait_s: float = 5.0) -> str:
    """A short reason why ``url`` gives no frames (best effort, never raises)."""
    reason = local_reason(url)
    if reason is not None:
        return reason
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        return f"unsupported scheme {parts.scheme!r}"
    try:
        line = await _status_line(url, wait_s)
    except TimeoutError:
        return f"unreachable: {parts.hostname} did not answer within {wait_s:g} s"
    except OSError as exc:
        return f"unreachable: {exc.strerror or exc}"
    fields = line.split(maxsplit=2)
    if len(fields) < 2 or not fields[1].isdigit():
        return f"the server does not speak {parts.scheme.upper()} (answered {line[:60]!r})"
    code = int(fields[1])
    if code >= 300:
        hint = HINTS.get(code, "")
        return f"the camera answered {line}" + (f": {hint}" if hint else "")
    return f"the camera answered {line} but sent no decodable video (stalled or not a video)"
