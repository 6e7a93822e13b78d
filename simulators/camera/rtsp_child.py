"""The RTSP server child: GStreamer's gst-rtsp-server, run by the SYSTEM Python.

Started by :mod:`simulators.camera.rtsp` as ``/usr/bin/python3 rtsp_child.py ...``
(python3-gi lives there, not in the venv); it imports nothing from the project.
It serves ``/main`` and ``/sub`` as H.264 (x264enc, zero-latency tuning) over RTP, one
shared pipeline per path, so that any number of clients watch the same encoder.

Frames come on stdin as records: one kind byte, a little-endian uint32 length, the
payload. ``M``/``S``: a raw BGR frame for the main/sub stream. ``D``: drop every
client and stop listening; ``A``: listen again. The child dies with its parent:
``PR_SET_PDEATHSIG`` covers a SIGKILLed parent, end of file on stdin everything else.
It prints ``PORT <n>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import struct
import sys
import threading

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
HEADER = struct.Struct("<cI")


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _launch(width: int, height: int, fps: str) -> str:
    """The pipeline behind one path: raw frames in, H.264 RTP out, a key frame a second.

    A late-joining client of the shared pipeline waits for the next key frame, so a
    short GOP keeps joining fast; zero-latency tuning drops B-frames and lookahead.
    """
    caps = f"video/x-raw,format=BGR,width={width},height={height},framerate={fps}"
    num, den = (int(v) for v in fps.split("/"))
    return (
        f"( appsrc name=src is-live=true do-timestamp=true format=time caps={caps} "
        "max-buffers=2 leaky-type=downstream ! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(1, num // den)} "
        "bitrate=2000 ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


class Relay:
    """Pushes frames from stdin into whichever appsrc elements are playing."""

    def __init__(self, server: GstRtspServer.RTSPServer, loop: GLib.MainLoop) -> None:
        self.server = server
        self.loop = loop
        self.sources: dict[str, list[Gst.Element]] = {"M": [], "S": []}
        self.lock = threading.Lock()
        self.source_id: int | None = None

    def configured(self, kind: str, media: GstRtspServer.RTSPMedia) -> None:
        """A path's shared pipeline was built for its first client: feed its appsrc."""
        src = media.get_element().get_by_name("src")
        with self.lock:
            self.sources[kind].append(src)
        media.connect("unprepared", lambda _m: self._forget(kind, src))

    def _forget(self, kind: str, src: Gst.Element) -> None:
        with self.lock:
            if src in self.sources[kind]:
                self.sources[kind].remove(src)

    def listen(self) -> bool:
        """Open the listening socket (a GLib idle callback: returns False, runs once)."""
        if self.source_id is None:
            self.source_id = self.server.attach(None)
            # Port 0 picked a free port: keep it, so that clients find us again.
            self.server.set_service(str(self.server.get_bound_port()))
        return False

    def refuse(self) -> bool:
        """Close the listening socket and drop every session: the camera went away."""
        if self.source_id is not None:
            GLib.Source.remove(self.source_id)
            self.source_id = None
        self.server.client_filter(lambda _s, _c: GstRtspServer.RTSPFilterResult.REMOVE)
        return False

    def read(self) -> None:
        """The reader thread: records from stdin until end of file, then quit.

        Plain ``os.read`` on fd 0: a buffered ``sys.stdin`` would hold a lock that
        the interpreter's shutdown then waits for, if a signal ended the main loop.
        """
        try:
            while len(head := _read_exactly(HEADER.size)) == HEADER.size:
                kind_b, length = HEADER.unpack(head)
                payload = _read_exactly(length)
                if len(payload) != length:
                    break
                kind = kind_b.decode()
                if kind == "D":
                    GLib.idle_add(self.refuse)
                elif kind == "A":
                    GLib.idle_add(self.listen)
                else:
                    with self.lock:
                        sources = list(self.sources.get(kind, ()))
                    for src in sources:
                        src.emit("push-buffer", Gst.Buffer.new_wrapped(payload))
        finally:
            GLib.idle_add(self.loop.quit)


def _read_exactly(size: int) -> bytes:
    """``size`` bytes from stdin, fewer only at end of file."""
    chunks = []
    while size > 0 and (chunk := os.read(0, min(size, 1 << 20))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fps", default="5/1", help="a GStreamer fraction")
    parser.add_argument("--main", default="1280x720")
    parser.add_argument("--sub", default="640x360")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    _die_with_parent(args.parent)
    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    relay = Relay(server, loop)
    mounts = server.get_mount_points()
    for kind, path, size in (("M", "/main", args.main), ("S", "/sub", args.sub)):
        width, height = (int(v) for v in size.split("x"))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(_launch(width, height, args.fps))
        factory.set_shared(True)
        factory.connect("media-configure", lambda _f, media, k=kind: relay.configured(k, media))
        mounts.add_factory(path, factory)
    relay.listen()
    print(f"PORT {server.get_bound_port()}", flush=True)
    reader = threading.Thread(target=relay.read, daemon=True)
    reader.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
