"""A fake IP camera over a checkpoint lane: MJPEG over HTTP, RTSP/H.264, or a clip file.

``python -m simulators camera --serve mjpeg --port 8080`` serves ``/main.mjpg``,
``/sub.mjpg`` and ``/snapshot.jpg``; see :mod:`simulators.camera.cli` for the options,
:class:`simulators.camera.simulator.CameraSimulator` for the API tests and the demo use
and :class:`simulators.camera.scene.Scene` for the frames and their ground truth.

This package's top level imports neither numpy nor OpenCV (the ``video`` extra), so
that the other simulators' command line works without them.
"""

from simulators.camera.timeline import FAULTS

SERVE_MODES = ("mjpeg", "rtsp", "file")
"""How the camera is reached: its own HTTP server, an RTSP server, or a clip file."""

__all__ = ["FAULTS", "SERVE_MODES"]
