"""Who may read what the daemon keeps: its data directory, its outbox, its secrets.

The outbox is evidence and the MQTT password and TLS key are the gateway's identity,
so none of them may be readable by other local users, and the secrets not even by the
daemon's group (technicians join it to use ``gatewayctl``). The daemon sets its own
umask (027, ``gateway.daemon_cli``) so this holds outside the systemd unit too, creates
``data_dir`` 0750 and, when it owns them, tightens a ``data_dir`` and outbox files left
wider by an older version or a hand-made directory (logged once, at start). Secret files
are only checked, never changed (they usually belong to root): one warning at start for
each that its group or others can read.

Under systemd the secrets come best from ``LoadCredential=``: the config names them as
``credential:NAME`` (see :func:`credential_path`), systemd copies them to a directory
only the service's user can read, and nothing else on the box needs to.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from gateway.errors import ConfigError

log = structlog.get_logger(__name__)

DATA_DIR_MODE = 0o750
NOT_FOR_OTHERS = 0o027
"""Bits that are cleared: group write and everything for others."""
SECRET_BITS = 0o077
"""A secret file with any of these set is readable (or worse) beyond its owner."""
CREDENTIAL_PREFIX = "credential:"
OUTBOX_SUFFIXES = ("", "-wal", "-shm", "-journal")
"""SQLite's database file and the files it keeps next to it."""


def credential_path(value: str) -> Path:
    """``credential:NAME`` -> ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``).

    Raises:
        ConfigError: the name is empty or not a plain file name, or the daemon was not
            started with credentials (``CREDENTIALS_DIRECTORY`` unset).
    """
    name = value.removeprefix(CREDENTIAL_PREFIX)
    if not name or "/" in name or name in {".", ".."}:
        raise ConfigError(f"{value!r}: a credential is named by a plain file name")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            f"{value!r}: CREDENTIALS_DIRECTORY is not set; add LoadCredential={name}:PATH"
            " to the unit (or give the file's path instead)"
        )
    return Path(directory) / name


def prepare_data_dir(data_dir: Path, outbox: Path) -> None:
    """Create ``data_dir`` 0750; tighten it and the outbox files if they are ours and wider."""
    try:
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"gateway.data_dir: cannot create {data_dir}: {exc}") from exc
    for path in (data_dir, *(outbox.with_name(outbox.name + s) for s in OUTBOX_SUFFIXES)):
        _tighten(path)


def _tighten(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid() or not mode & NOT_FOR_OTHERS or stat.S_ISLNK(st.st_mode):
        return  # not ours to change (then it is the owner's decision), or already tight
    tight = mode & ~NOT_FOR_OTHERS
    os.chmod(path, tight)
    log.warning(
        "tightened the mode of a file holding evidence",
        path=str(path),
        was=f"{mode:04o}",
        now=f"{tight:04o}",
    )


def check_secrets(paths: dict[str, Path | None]) -> list[str]:
    """Warn once per secret file its group or others can read; return those keys.

    ``paths`` maps the config key (``mqtt.password_file``) to the file. A file that
    cannot be examined is left to whoever reads it (with a clearer error there).
    """
    wide = []
    for key, path in paths.items():
        if path is None:
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & SECRET_BITS:
            wide.append(key)
            log.warning(
                "secret file is open to the daemon's group or others; chmod 0600 (or 0400),"
                " or pass it with systemd LoadCredential= (see systemd/README.md)",
                key=key,
                path=str(path),
                mode=f"{mode:04o}",
            )
    return wide
