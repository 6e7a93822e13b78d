"""Electronic seals: pure wire codecs for gate readers (Hi-G-Tek style) and GPS e-locks (JT/T 808).

Both codecs follow the house pattern of ``drivers/scale``: bytes go in with the
:class:`~gateway.readings.Stamp` they arrived at, readings and
:class:`~gateway.errors.FrameError` values come out, and the same modules encode
frames for the simulator. No I/O and no clock here.
"""
