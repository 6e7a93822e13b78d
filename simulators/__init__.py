"""Fake checkpoint devices that speak the real wire formats over real transports.

Each simulator is importable (an async context manager for tests) and runnable:
``python -m simulators scale --protocol toledo --link /tmp/scale0``.
"""
