"""Logging: JSON lines for journald and log shippers, readable lines on a terminal.

When stdout is the journal (systemd sets ``JOURNAL_STREAM`` to its device and inode),
every line starts with its syslog priority, ``<4>`` for a warning (sd-daemon(3);
journald strips it, ``SyslogLevelPrefix=`` is on by default), so
``journalctl -u edge-gateway -p warning`` shows the daemon's warnings and errors.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2}
"""structlog level names to syslog priorities (RFC 5424 severity)."""


def stdout_is_journal() -> bool:
    """Whether stdout is the stream systemd connected to the journal."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        st = os.fstat(sys.stdout.fileno())
        return bool(inode) and (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def _priority_prefix(_logger: Any, method: str, rendered: Any) -> str:
    """Put the event's syslog priority in front of the line (the renderer ran before)."""
    return f"<{PRIORITIES.get(method, 6)}>{rendered}"


class _JournalFormatter(logging.Formatter):
    """Library log lines with their priority prefix too."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        level = record.levelname.lower()
        return f"<{PRIORITIES.get(level, 6)}>{line}"


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog (and stdlib logging underneath, for library messages).

    Args:
        level: minimum level name.
        json: force JSON (True) or console (False); default: console only on a TTY.
    """
    use_json = not sys.stdout.isatty() if json is None else json
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    journal = stdout_is_journal()
    tail: list[structlog.typing.Processor] = [_priority_prefix] if journal else []
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer, *tail]
        if use_json
        else [*shared, renderer, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    line_format = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(
        _JournalFormatter(line_format) if journal else logging.Formatter(line_format)
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler])
