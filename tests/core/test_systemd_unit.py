"""The systemd unit and the example config in ``systemd/``.

- ``systemd-analyze verify`` must have nothing to say about the unit. The real
  ExecStart binary (/opt/edge-gateway/venv/bin/edge-gateway) does not exist on a
  development machine, so the unit is verified twice: as shipped, where the *only*
  allowed complaint is that missing binary, and as a copy with ExecStart pointed at an
  existing executable, which must verify with no output at all.
- ``systemd-analyze security --offline=yes`` must rate the unit 1.5 or better.
- The example ``gateway.toml`` must match the unit's directories and the config schema.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from gateway.config import GatewayConfig

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD_DIR / "edge-gateway.service"
EXAMPLE_CONFIG = SYSTEMD_DIR / "gateway.toml"
REAL_EXEC = "/opt/edge-gateway/venv/bin/edge-gateway"
MAX_EXPOSURE = 1.5

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package 'systemd')"
)

# A line naming some other unit file (a dependency loaded from the host's unit
# directories) is about the host, not about our unit.
_UNIT_LINE = re.compile(
    r"^(?P<path>\S+?\.(?:service|socket|target|timer|mount|automount|path|slice|scope|swap|device))"
    r"(?::\d+)?:"
)
_EXPOSURE = re.compile(r"Overall exposure level for (?P<unit>\S+): (?P<level>\d+(?:\.\d+)?)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
        check=False,
    )


def _complaints(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Output lines of ``verify`` that concern our unit (everything but host noise)."""
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    out = []
    for line in lines:
        m = _UNIT_LINE.match(line)
        if m and Path(m["path"]).name != UNIT.name:
            continue
        out.append(line)
    return out


def _directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (all sections), every value of a repeated key."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _with_exec(tmp_path: Path, executable: str) -> Path:
    """A copy of the unit, same file name, with ExecStart's binary replaced."""
    text = UNIT.read_text(encoding="utf-8")
    new, count = re.subn(
        r"^ExecStart=" + re.escape(REAL_EXEC) + r"(?=\s|$)",
        "ExecStart=" + executable,
        text,
        flags=re.MULTILINE,
    )
    assert count == 1, f"expected exactly one ExecStart={REAL_EXEC} line in {UNIT}"
    copy = tmp_path / UNIT.name
    copy.write_text(new, encoding="utf-8")
    return copy


@needs_analyze
def test_verify_is_silent_with_an_existing_executable(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    proc = _run("verify", str(_with_exec(tmp_path, true)))
    complaints = _complaints(proc)
    assert proc.returncode == 0, f"verify exited {proc.returncode}: {complaints}"
    assert complaints == [], "systemd-analyze verify complained:\n" + "\n".join(complaints)


@needs_analyze
def test_verify_as_shipped_only_misses_the_installed_binary() -> None:
    proc = _run("verify", str(UNIT))
    complaints = _complaints(proc)
    if Path(REAL_EXEC).exists():  # an installed gateway box: must be fully clean
        assert proc.returncode == 0, complaints
        assert complaints == []
        return
    unexpected = [c for c in complaints if f"Command {REAL_EXEC} is not executable" not in c]
    assert unexpected == [], "systemd-analyze verify complained:\n" + "\n".join(unexpected)
    assert len(complaints) == 1, complaints  # the missing binary is reported, exactly once


@needs_analyze
def test_security_exposure_is_at_most_1_5() -> None:
    help_text = _run("security", "--help")
    if "--offline" not in help_text.stdout + help_text.stderr:
        pytest.skip("this systemd-analyze has no 'security --offline' (needs systemd >= 250)")
    proc = _run("security", "--offline=yes", str(UNIT))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    found = _EXPOSURE.search(output)
    assert found is not None, f"no 'Overall exposure level' line in:\n{output}"
    assert found["unit"] == UNIT.name
    level = float(found["level"])
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}:\n{output}"


def test_unit_keeps_the_required_settings() -> None:
    d = _directives(UNIT.read_text(encoding="utf-8"))
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "30"
    assert one["Restart"] == "on-failure"
    assert one["ExecStart"] == f"{REAL_EXEC} run --config /etc/edge-gateway/gateway.toml"
    assert one["User"] == one["Group"] == "edge-gateway"
    assert "dialout" in one["SupplementaryGroups"].split()
    # static user: the outbox keeps its owner; PrivateDevices would hide /dev/tty*
    assert "DynamicUser" not in d
    assert "PrivateDevices" not in d
    assert one["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert {"char-ttyS", "char-ttyUSB", "char-ttyACM", "char-ttyAMA"} <= allowed
    assert one["CapabilityBoundingSet"] == ""
    assert one["AmbientCapabilities"] == ""
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def test_unit_bounds_memory_descriptors_and_tasks_and_keeps_files_private() -> None:
    # issue 13: a flood of connections, a decompression bomb or a leak must hit the
    # unit's limits, not the box's; nothing the daemon writes is open to others.
    text = UNIT.read_text(encoding="utf-8")
    one = {k: v[-1] for k, v in _directives(text).items()}
    daemon_and_ocr = (112 + 300) << 20  # measured RSS of the daemon and its OCR worker
    assert daemon_and_ocr < _bytes(one["MemoryHigh"]) < _bytes(one["MemoryMax"])
    assert 1024 < int(one["LimitNOFILE"]) <= 65536  # above the default soft limit, bounded
    assert 64 <= int(one["TasksMax"]) <= 1024
    assert one["PrivateIPC"] == "yes"
    assert one["PrivateMounts"] == "yes"
    assert one["UMask"] == "0027"
    # the secrets' credentials are documented in the unit (commented: sites choose)
    credentials = re.findall(r"^#?LoadCredential=([\w-]+):/etc/edge-gateway/", text, re.M)
    assert {"mqtt-password", "mqtt-tls-key", "signing-key"} <= set(credentials), credentials


def test_example_config_matches_the_unit_and_the_schema() -> None:
    d = _directives(UNIT.read_text(encoding="utf-8"))
    raw = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    # the daemon may write only where the unit lets it (ProtectSystem=strict)
    assert raw["gateway"]["data_dir"] == "/var/lib/" + d["StateDirectory"][-1]
    socket = Path(raw["control"]["socket"])
    assert socket.parent == Path("/run") / d["RuntimeDirectory"][-1]
    assert f"--config /etc/{d['ConfigurationDirectory'][-1]}/gateway.toml" in d["ExecStart"][-1]
    assert raw["outbox"]["max_bytes"] == 268435456
    drivers = [dev["driver"] for dev in raw["devices"]]
    assert drivers == ["scale.toledo", "eseal.reader", "eseal.jt808", "xray.folder",
                       "camera.opencv"]  # fmt: skip
    # the X-ray manifest is state the daemon writes: inside the unit's StateDirectory
    xray = next(dev for dev in raw["devices"] if dev["driver"] == "xray.folder")
    assert Path(xray["manifest"]).parent == Path("/var/lib") / d["StateDirectory"][-1]
    # [[devices]] are validated by their driver's model; the rest by the core schema
    core = {k: v for k, v in raw.items() if k != "devices"}
    config = GatewayConfig.model_validate(core)
    assert config.control_socket == socket
