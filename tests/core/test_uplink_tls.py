"""The uplink over TLS against a real mosquitto: mTLS, verification, credentials.

Each broker has two listeners: a TLS one the gateway is pointed at, and a plain
loopback one for the test's central subscriber (so central sees exactly what the
gateway managed to publish, and nothing is configured on central's side to pass).

Connection attempts are observed through the uplink's ``on_link`` events (sent after
the uplink has handled each one): the tests wait for "the first attempt failed"
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.outbox import Outbox
from gateway.records import Draft, Priority
from gateway.uplink import LinkEvent, Uplink
from tests.broker import Central, Mosquitto, free_port, wait_port
from tests.helpers import make_config
from tests.tls import Leaf, Pki, make_pki

ROOT = "customs/haiphong-dinhvu/gate-3"
USER, PASSWORD = "gate-3", "correct horse battery staple"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One throwaway CA (plus a rogue one) and certificates for the whole session."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass(frozen=True)
class TlsListener:
    """How the broker's TLS listener is set up."""

    server: str = "server"
    """Which :class:`Pki` leaf the broker presents."""
    require_certificate: bool = False
    password: str | None = None
    """If set, the TLS listener needs ``USER`` with this password (no anonymous)."""


class TlsBroker(Mosquitto):
    """A mosquitto with a plain listener on ``port`` and a TLS one on ``tls_port``."""

    def __init__(self, workdir: Path, pki: Pki, listener: TlsListener) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.tls_port = free_port()
        server: Leaf = getattr(pki, listener.server)
        lines = [
            "per_listener_settings true",
            "log_dest none",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {pki.ca.cert}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
            f"require_certificate {str(listener.require_certificate).lower()}",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user 'mosquitto' before it reads the key files,
            # which live in a private temp dir: stay who we are.
            lines.insert(0, "user root")
        if listener.password is not None:
            passwd = workdir / "passwd"
            subprocess.run(
                [
                    shutil.which("mosquitto_passwd") or "mosquitto_passwd",
                    "-b",
                    "-c",
                    str(passwd),
                    USER,
                    listener.password,
                ],
                check=True,
                capture_output=True,
            )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start and wait until both listeners accept connections."""
        super().start()
        wait_port(self.tls_port)


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    """Overrides conftest's broker: central (conftest) subscribes on the plain listener.

    Parametrize indirectly with a :class:`TlsListener` to shape the TLS listener.
    """
    b = TlsBroker(tmp_path / "broker", pki, getattr(request, "param", TlsListener()))
    b.start()
    try:
        yield b
    finally:
        b.stop()


class LinkWatch:
    """What the uplink reports about each connection attempt, in order.

    Subscribes to the uplink's ``on_link`` events, which it sends after handling each
    one, so when :meth:`wait_for` returns the uplink's state already reflects it: the
    tests wait for "the first attempt failed" instead of sleeping.
    """

    def __init__(self, uplink: Uplink) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        uplink.on_link.append(self._record)

    def _record(self, event: LinkEvent) -> None:
        self.events.append((event.kind, event.detail))
        self._changed.set()

    def of(self, name: str) -> list[Any]:
        """Details of the events of one kind."""
        return [detail for kind, detail in self.events if kind == name]

    @property
    def refusals(self) -> int:
        """Attempts that ended without a session: transport/TLS failures and drops."""
        return sum(len(self.of(k)) for k in ("unreachable", "refused", "lost"))

    async def wait_for(self, predicate: Callable[[LinkWatch], bool], timeout_s: float) -> None:
        """Wait until ``predicate(self)`` holds, woken by each event."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()


def event(n: int) -> Draft:
    return Draft(
        topic="event/test",
        schema="test/1",
        device="dev",
        ts=datetime.now(UTC),
        data={"n": n},
        priority=Priority.EVENT,
    )


def tls_extra(
    pki: Pki, *, ca: Path | None = None, client: bool = False, password_file: Path | None = None
) -> str:
    """``[mqtt]`` lines for TLS (``ca`` defaults to the CA that signed the broker)."""
    lines = [f'tls_ca = "{ca or pki.ca.cert}"']
    if client:
        lines += [f'tls_cert = "{pki.client.cert}"', f'tls_key = "{pki.client.key}"']
    if password_file is not None:
        lines += [f'username = "{USER}"', f'password_file = "{password_file}"']
    return "\n".join(lines)


def from_gateway(central: Central) -> list[str]:
    """Topics central received from the gateway (all of them: the broker is fresh)."""
    return [m.topic for m in central.snapshot() if m.topic.startswith(ROOT)]


def statuses(central: Central) -> list[str]:
    return [m.json()["state"] for m in central.snapshot() if m.topic == f"{ROOT}/status"]


def outbox(config: Any) -> Outbox:
    return Outbox(config.outbox_path, site="haiphong-dinhvu", gateway="gate-3", max_bytes=10**7)


async def assert_never_delivers(
    tmp_path: Path, port: int, extra: str, central: Central, until: Callable[[LinkWatch], bool]
) -> LinkWatch:
    """Run an uplink with one queued record until ``until`` holds; nothing may get out."""
    config = make_config(tmp_path / "gw", port, extra=extra)
    async with outbox(config) as box:
        await box.append([event(0)])
        uplink = Uplink(config, box)
        watch = LinkWatch(uplink)
        async with uplink:
            await watch.wait_for(until, 10)
            assert not uplink.stats.connected
            assert uplink.stats.connects_total == 0
            assert not watch.of("connected"), watch.events
            assert uplink.stats.acked_total == 0
            assert box.stats.depth == 1, "the record must stay in the outbox"
        assert from_gateway(central) == [], "nothing may reach central, not even 'online'"
    return watch


# -- a working TLS link ------------------------------------------------------------------


@pytest.mark.parametrize("broker", [TlsListener(require_certificate=True)], indirect=True)
async def test_mutual_tls_delivers_records(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    config = make_config(tmp_path / "gw", broker.tls_port, extra=tls_extra(pki, client=True))
    async with outbox(config) as box, Uplink(config, box) as uplink:
        await box.append([event(n) for n in range(3)])
        await central.wait_for(lambda c: len(c.records("event/test")) == 3, 10)
        assert await uplink.drained(5)
        assert uplink.stats.connected
        assert uplink.stats.last_error is None
    assert box.stats.depth == 0, "acks are committed by the time the outbox closes"
    assert [r["data"]["n"] for r in central.records("event/test")] == [0, 1, 2]
    # The broker acknowledged `offline` before close returned; central gets it a moment later.
    await central.wait_for(lambda c: statuses(c)[-1:] == ["offline"], 10)
    assert statuses(central) == ["online", "offline"]


@pytest.mark.parametrize("broker", [TlsListener(require_certificate=True)], indirect=True)
async def test_broker_requiring_a_client_certificate_refuses_a_gateway_without_one(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    # TLS 1.3: the client's handshake completes, the broker rejects the (missing) client
    # certificate right after, so paho sees a drop, not a handshake failure.
    await assert_never_delivers(
        tmp_path, broker.tls_port, tls_extra(pki), central, until=lambda w: w.refusals >= 1
    )


@pytest.mark.parametrize("broker", [TlsListener(password=PASSWORD)], indirect=True)
async def test_username_and_password_file_over_tls(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    password_file = tmp_path / "mqtt.password"
    password_file.write_text(PASSWORD + "\n")  # the trailing newline is not part of it
    config = make_config(
        tmp_path / "gw", broker.tls_port, extra=tls_extra(pki, password_file=password_file)
    )
    async with outbox(config) as box, Uplink(config, box) as uplink:
        await box.append([event(0)])
        await central.wait_for(lambda c: len(c.records("event/test")) == 1, 10)
        assert await uplink.drained(5)
    assert box.stats.depth == 0
    # The broker acknowledged `offline` before close returned; central gets it a moment later.
    await central.wait_for(lambda c: statuses(c)[-1:] == ["offline"], 10)
    assert statuses(central) == ["online", "offline"]


@pytest.mark.parametrize("broker", [TlsListener(password=PASSWORD)], indirect=True)
async def test_password_from_a_systemd_credential(
    tmp_path: Path,
    pki: Pki,
    broker: TlsBroker,
    central: Central,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As LoadCredential=mqtt-password:... leaves it: a directory and file only we can read.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "mqtt-password").write_text(PASSWORD + "\n")
    (credentials / "mqtt-password").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    extra = tls_extra(pki) + f'\nusername = "{USER}"\npassword_file = "credential:mqtt-password"'
    config = make_config(tmp_path / "gw", broker.tls_port, extra=extra)
    assert config.mqtt.password_file == credentials / "mqtt-password"
    async with outbox(config) as box, Uplink(config, box) as uplink:
        await box.append([event(0)])
        await central.wait_for(lambda c: len(c.records("event/test")) == 1, 10)
        assert await uplink.drained(5)
    # The broker acknowledged `offline` before close returned; central gets it a moment later.
    await central.wait_for(lambda c: statuses(c)[-1:] == ["offline"], 10)
    assert statuses(central) == ["online", "offline"]


# -- refusals: nothing leaves the outbox, nothing in plaintext ------------------------------


async def test_server_certificate_from_an_untrusted_ca_is_refused(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    watch = await assert_never_delivers(
        tmp_path,
        broker.tls_port,
        tls_extra(pki, ca=pki.rogue_ca.cert),
        central,
        until=lambda w: w.refusals >= 1,
    )
    failure = watch.of("unreachable")[0]
    assert isinstance(failure, ssl.SSLCertVerificationError), watch.events
    assert "certificate verify failed" in str(failure)


@pytest.mark.parametrize("broker", [TlsListener(server="other_host")], indirect=True)
async def test_server_certificate_for_another_host_is_refused(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    # Signed by the trusted CA, but only valid for 'other.example', not 127.0.0.1.
    watch = await assert_never_delivers(
        tmp_path, broker.tls_port, tls_extra(pki), central, until=lambda w: w.refusals >= 1
    )
    failure = watch.of("unreachable")[0]
    assert isinstance(failure, ssl.SSLCertVerificationError), watch.events
    assert "mismatch" in failure.verify_message, failure.verify_message


async def test_no_plaintext_fallback_against_a_plain_listener(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    # The gateway is pointed at the *plain* listener: a plaintext fallback would connect
    # (anonymous is allowed there) and publish 'online'. Two attempts: the first and a
    # retry (paho retries about 3 s later) both stay TLS-only.
    watch = await assert_never_delivers(
        tmp_path,
        broker.port,
        tls_extra(pki),
        central,
        until=lambda w: len(w.of("unreachable")) >= 2,
    )
    assert all(isinstance(f, OSError) for f in watch.of("unreachable")), watch.events


@pytest.mark.parametrize("broker", [TlsListener(password=PASSWORD)], indirect=True)
async def test_wrong_password_is_refused_and_the_record_stays(
    tmp_path: Path, pki: Pki, broker: TlsBroker, central: Central
) -> None:
    password_file = tmp_path / "mqtt.password"
    password_file.write_text("not-the-password\n")
    watch = await assert_never_delivers(
        tmp_path,
        broker.tls_port,
        tls_extra(pki, password_file=password_file),
        central,
        until=lambda w: w.refusals >= 1,
    )
    assert str(watch.of("refused")[0]) == "Not authorized", watch.events


# -- what stats.last_error says about a refusal ------------------------------------------

REFUSALS = [
    pytest.param(TlsListener(), "rogue_ca", ("certificate verify failed",), id="untrusted-ca"),
    pytest.param(TlsListener(server="other_host"), None, ("mismatch",), id="other-host"),
    pytest.param(
        TlsListener(password=PASSWORD), "password", ("Not authorized",), id="wrong-password"
    ),
    # TLS 1.3: the broker's alert comes after the client's handshake is done, as the first
    # read fails; paho only reports "Unspecified error" for it (issue 13).
    pytest.param(
        TlsListener(require_certificate=True),
        None,
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "certificate required"),
        id="no-client-certificate",
    ),
]


@pytest.mark.parametrize(("broker", "variant", "words"), REFUSALS, indirect=["broker"])
async def test_refusal_reason_is_in_stats_after_the_first_attempt(
    tmp_path: Path, pki: Pki, broker: TlsBroker, variant: str | None, words: tuple[str, ...]
) -> None:
    password_file = tmp_path / "mqtt.password"
    password_file.write_text("not-the-password\n")
    extra = tls_extra(
        pki,
        ca=pki.rogue_ca.cert if variant == "rogue_ca" else None,
        password_file=password_file if variant == "password" else None,
    )
    config = make_config(tmp_path / "gw", broker.tls_port, extra=extra)
    async with outbox(config) as box:
        uplink = Uplink(config, box)
        watch = LinkWatch(uplink)
        async with uplink:
            await watch.wait_for(lambda w: w.refusals >= 1, 10)
            last_error = uplink.stats.last_error
    assert last_error is not None, watch.events
    assert all(w in last_error for w in words), last_error
