"""IP/USB/file cameras through OpenCV: motion events with snapshots, idle-wall stills, health.

A checkpoint has 4-40 cameras and an uplink that cannot carry their streams, so each
camera is watched here and only what matters leaves the box. The modules:

- :mod:`drivers.camera.config`: the ``[[devices]]`` keys (``driver = "camera.opencv"``);
- :mod:`drivers.camera.capture`: one reader thread per stream keeping only the latest frame;
- :mod:`drivers.camera.motion`: the pure motion detector (numpy frames in, events out);
- :mod:`drivers.camera.worker`: the per-camera analysis thread (detector, JPEG, stills);
- :mod:`drivers.camera.readings`: what the driver yields;
- :mod:`drivers.camera.snapshot`: JPEG encoding, only when a picture is sent;
- :mod:`drivers.camera.driver`: :class:`~drivers.camera.driver.CameraDriver`;
- :mod:`drivers.camera.diagnose`: why a stream does not open (unreachable, 401, 404, ...);
- :mod:`drivers.camera.tools`: ``gatewayctl camera check|snapshot`` helpers.

OpenCV and numpy come with the ``video`` extra; of these modules only ``config`` and
``readings`` import without them.
"""
