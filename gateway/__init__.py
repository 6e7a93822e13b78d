"""Checkpoint edge gateway: reads border-gate hardware and forwards condensed records over MQTT."""

__version__ = "0.1.0"
