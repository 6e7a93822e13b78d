"""The MQTT uplink: drains the outbox to the central broker, QoS 1, in order.

One paho-mqtt client per connection. Each connection runs paho's network loop on its
own thread (``loop_start``) with paho's own reconnection turned off: the uplink decides
when to connect again. Callbacks only hand events to the asyncio loop
(``call_soon_threadsafe``) and carry the client they came from, so a late event of a
dead connection is ignored. All uplink state lives on the event loop.

Delivery rules (what "an outage loses nothing" rests on):

- a record leaves the outbox only on a PUBACK with a success reason code;
- on every connection the uplink starts again from the oldest record still in the
  outbox: everything not acknowledged before the link dropped (in flight, handed to a
  client whose socket was already dead, refused) goes again, in queue order, before
  anything newer. Nothing depends on a client library's resend queue; consumers
  de-duplicate the repeats by record ``id``;
- at most ``inflight`` records are unacknowledged at once;
- a broker that is unreachable (connection refused, no route, timeout) is tried again
  every :data:`PROBE_INTERVAL_S`, whatever the outage length, so the backlog starts
  to flow about a second after the broker is back; a broker that answers but refuses
  (TLS verification, credentials, a CONNACK error, a session that drops at once) is
  tried again with capped exponential backoff (``reconnect_min_s`` ..
  ``reconnect_max_s``);
- a record the broker refuses in its PUBACK (a failure reason code, e.g. not
  authorised) stays in the outbox, is reported (``rejected_total``, ``last_error``, a
  log line once per record) and is sent again, oldest first, after a backoff delay;
- ``{root}/status`` carries ``online`` (retained) after every connect and ``offline``
  as the Last Will and on orderly shutdown;
- TLS, when configured, always verifies the server certificate and host name; there
  is no fallback to plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import select
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.central_commands import (
    REPLY_WINDOW,
    Handler,
    Reply,
    check_request,
    error_reply,
    parse_request,
)
from gateway.command_guard import CommandGuard, excerpt
from gateway.config import GatewayConfig
from gateway.errors import CommandError, ConfigError, GatewayError
from gateway.outbox import Outbox
from gateway.records import Record, rfc3339

log = structlog.get_logger(__name__)


class UplinkStats:
    """What ``gatewayctl status`` shows about the link."""

    def __init__(self) -> None:
        self.connected = False
        self.since: str | None = None
        self.connects_total = 0
        self.disconnects_total = 0
        self.published_total = 0
        self.acked_total = 0
        self.commands_total = 0
        self.commands_failed = 0
        self.commands_refused = 0
        """Commands with no reply at all: no response topic, or one outside the prefix."""
        self.rejected_total = 0
        self.resent_total = 0
        self.last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return dict(vars(self))


def _status_payload(state: str, config: GatewayConfig, **extra: Any) -> bytes:
    return json.dumps(
        {
            "schema": "status/1",
            "state": state,
            "ts": rfc3339(datetime.now(UTC)),
            "site": config.gateway.site,
            "gateway": config.gateway.id,
            **extra,
        },
        separators=(",", ":"),
    ).encode()


class _FixedProperties(Properties):
    """Properties that never change, encoded once instead of at every publish.

    paho re-encodes a message's properties on each publish; for the one fixed
    content type every record carries that was ~15% of the uplink's CPU time
    (measured with bench/outbox.py under cProfile).
    """

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = bytes(super().pack())  # type: ignore[no-untyped-call]
            object.__setattr__(self, "_packed", packed)  # Properties.__setattr__ is strict
        return packed


def _json_properties(packet: int = PacketTypes.PUBLISH) -> Properties:
    return _content_properties("application/json", packet)


def _content_properties(content_type: str, packet: int = PacketTypes.PUBLISH) -> Properties:
    props = _FixedProperties(packet)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    return props


def build_client(config: GatewayConfig) -> mqtt.Client:
    """A configured (not yet connected) paho client: MQTT 5, Last Will, TLS, credentials.

    One client serves one connection; paho's own reconnection is off.
    """
    cfg = config.mqtt
    client_id = cfg.client_id or f"edge-gateway-{config.gateway.site}-{config.gateway.id}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,  # the uplink reconnects (a fresh client each time)
    )
    client.max_inflight_messages_set(cfg.inflight)
    client.will_set(
        f"{config.gateway.root}/status",
        _status_payload("offline", config),
        qos=1,
        retain=True,
        properties=_json_properties(PacketTypes.WILLMESSAGE),
    )
    if cfg.username is not None:
        password = None
        if cfg.password_file is not None:
            try:
                password = cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {cfg.password_file}: {exc}"
                ) from exc
        client.username_pw_set(cfg.username, password)
    if cfg.tls_ca is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host
        context.sslsocket_class = _ClosingSSLSocket
        try:
            context.load_verify_locations(cafile=str(cfg.tls_ca))
            if cfg.tls_cert is not None:
                key = str(cfg.tls_key) if cfg.tls_key else None
                context.load_cert_chain(str(cfg.tls_cert), keyfile=key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"mqtt TLS files unusable (tls_ca/tls_cert/tls_key): {exc}") from exc
        client.tls_set_context(context)
        client.tls_insecure_set(False)
    return client


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails (a wrong CA, a certificate for another host).

    paho-mqtt 2.2 drops the socket of a failed handshake without closing it; it would
    stay open until collected, once per retry.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise

    failure: ssl.SSLError | None = None
    """The TLS error that ended the connection after its handshake, if one did.

    With TLS 1.3 the client's handshake is over before the broker checks the client's
    certificate, so a broker that wants one (and did not get it, or does not trust it)
    answers with an alert that shows up as the next read's ``SSLError``. paho logs it
    and reports only "Unspecified error"; the uplink reads it from here.
    """

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            self.failure = self.failure or exc  # the first: what follows is its echo
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            if isinstance(exc, ssl.SSLEOFError) and self.failure is None:
                self._read_alert()
            self.failure = self.failure or exc
            raise

    def _read_alert(self) -> None:
        """A write that met the end often hides the alert the broker sent before closing
        (CONNECT is written before anything is read): read it if it is there, never wait."""
        with contextlib.suppress(OSError, ValueError):
            if self.pending() or select.select([self], [], [], 0)[0]:
                self.recv(1)  # raises the alert's SSLError, which recv() keeps


PROBE_INTERVAL_S = 1.0
"""How often an unreachable broker is tried again, whatever the outage length.

A refused TCP connect costs one SYN and its RST: trying every second is cheaper than
the records an exponential backoff would leave waiting after the broker is back."""
CONNECT_TIMEOUT_S = 10.0
"""From starting a connection attempt to its CONNACK."""
STABLE_SESSION_S = 10.0
"""A session that lasted this long resets the refusal backoff."""
READ_BATCH = 512
"""Records read from the outbox at once (a backlog is read in large slices)."""


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """What happened to one connection attempt (for ``on_link`` observers).

    ``kind`` is ``connected``, ``unreachable`` (no transport or TLS session: ``detail``
    is the exception), ``refused`` (the broker's CONNACK refused: ``detail`` is the
    reason code) or ``lost`` (an established session ended: ``detail`` is the reason).
    """

    kind: str
    detail: Any = None


class _Connection:
    """One paho client and the events of its one connection, delivered on the loop."""

    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink
        self.client = build_client(uplink.config)
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.end: LinkEvent | None = None
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False
        self.window = uplink.config.mqtt.inflight
        """Unacknowledged records at once: ``mqtt.inflight``, or less if the broker says."""
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = uplink._on_publish_from(self.client)
        self.client.on_message = uplink._on_message
        self.client.on_socket_close = self._on_socket_close
        self.tls_failure: ssl.SSLError | None = None

    def open(self) -> None:
        """Connect (blocking: run in a thread) and start the network thread."""
        cfg = self.uplink.config.mqtt
        self.client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive)
        with self._lock:  # a shutdown may have closed us while connect() blocked
            if self._closed:
                self.client.disconnect()
                raise OSError("uplink closed while connecting")
            self.client.loop_start()

    def close(self) -> None:
        """Disconnect and join the network thread (blocking: run in a thread)."""
        with self._lock:
            self._closed = True
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, props: Properties | None
    ) -> None:
        if reason.is_failure:
            self.uplink._call(self._ended, LinkEvent("refused", reason))
            return
        up = self.uplink
        # MQTT 5 §3.2.2.3.3: the broker's Receive Maximum caps our unacknowledged QoS 1
        # publishes (mosquitto announces max_inflight_messages, 20 as shipped, and answers
        # the excess with PUBACK 0x97 "quota exceeded"). paho does not apply it itself.
        # Records leave room for the status and key messages and a command's reply window.
        announced = getattr(props, "ReceiveMaximum", None) if props is not None else None
        if isinstance(announced, int) and announced > 0:
            self.window = max(1, min(self.window, announced - 2 - REPLY_WINDOW))
        # Subscribed before `online` is published: the broker handles one connection's
        # packets in order, so a requester that waits for `online` is never missed.
        if up.commands:
            client.subscribe(f"{up.root}/cmd/+", qos=1)
        client.publish(
            f"{up.root}/status",
            _status_payload("online", up.config, **up.status_extra),
            qos=1,
            retain=True,
            properties=_json_properties(),
        )
        if up.key_message is not None:
            client.publish(
                f"{up.root}/key", up.key_message, qos=1, retain=True, properties=_json_properties()
            )
        up._call(self.connected.set)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        failure = getattr(sock, "failure", None)  # paho closes before on_disconnect
        if isinstance(failure, ssl.SSLError):
            self.tls_failure = failure

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.tls_failure is not None:  # the real reason, not paho's "Unspecified error"
            # No CONNACK yet: no session was ever up, like a failed handshake.
            kind = "lost" if self.connected.is_set() else "unreachable"
            self.uplink._call(self._ended, LinkEvent(kind, self.tls_failure))
            return
        self.uplink._call(self._ended, LinkEvent("lost", reason))

    def _ended(self, event: LinkEvent) -> None:
        if self.end is None:  # a refusal is followed by a disconnect: keep the first
            self.end = event
        self.ended.set()


class Uplink:
    """Publishes outbox records in queue order with a bounded in-flight window."""

    def __init__(self, config: GatewayConfig, outbox: Outbox) -> None:
        self.config = config
        self.outbox = outbox
        self.root = config.gateway.root
        self.stats = UplinkStats()
        self.on_acked: list[Callable[[Record], None]] = []
        """Called with every record the broker acknowledged (``gatewayctl tail``)."""
        self.status_extra: dict[str, Any] = {"disk_full": False}
        """Fields the retained ``online`` status carries besides the required ones."""
        self.on_rejected: list[Callable[[Record, str], None]] = []
        """Called with every record the broker refused in its PUBACK, and the reason."""
        self.on_link: list[Callable[[LinkEvent], None]] = []
        """Called with every connection event (tests, diagnostics)."""
        self.commands: dict[str, Handler] = {}
        """Command name -> handler; ``{root}/cmd/+`` is subscribed when there is one."""
        self.key_message: bytes | None = None
        """Published retained on ``{root}/key`` after every connect (the signing key)."""
        self.guard = CommandGuard(config.commands, self.root)
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._reply_acks: dict[int, asyncio.Future[bool]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: _Connection | None = None
        self._connected = asyncio.Event()
        self._window_open = asyncio.Event()
        self._inflight: dict[int, Record] = {}
        self._queue: deque[Record] = deque()
        """Read from the outbox, not yet handed to the client (this connection)."""
        self._cursor = 0
        """Queue position of the newest record read from the outbox (this connection)."""
        self._rejected: dict[int, Record] = {}
        """Refused in a PUBACK: position -> record, sent again after ``_retry_at``."""
        self._retry_at = 0.0
        self._retry_due = asyncio.Event()
        self._rejected_backoff = Backoff(
            base_s=config.mqtt.reconnect_min_s,
            cap_s=max(config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s),
        )
        self._conn_lasted = 0.0
        self._task: asyncio.Task[None] | None = None
        self._status_mid: int | None = None
        self._offline_acked = asyncio.Event()
        self._closing = False
        self._acks: list[tuple[mqtt.Client, int, bool, str]] = []
        self._acks_lock = threading.Lock()
        self._acks_scheduled = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Uplink:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="uplink")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._command_tasks):
            task.cancel()
        await asyncio.gather(*self._command_tasks, return_exceptions=True)
        conn = self._conn
        if conn is None:
            return
        if self._connected.is_set():
            info = conn.client.publish(
                f"{self.root}/status",
                _status_payload("offline", self.config),
                qos=1,
                retain=True,
                properties=_json_properties(),
            )
            self._status_mid = info.mid
            try:
                async with asyncio.timeout(3):
                    await self._offline_acked.wait()
            except TimeoutError:
                log.warning("broker did not acknowledge 'offline' in time")
        self._closing = True
        self._conn = None
        await asyncio.to_thread(conn.close)

    async def drained(self, timeout_s: float) -> bool:
        """Wait until every committed record was acknowledged (or timeout); True if so."""
        try:
            async with asyncio.timeout(timeout_s):
                while (
                    self._inflight
                    or self._queue
                    or self._rejected
                    or self._cursor < self.outbox.stats.last_pos
                ):
                    if not self._connected.is_set():
                        return False
                    self._window_open.clear()
                    await self._window_open.wait()
        except TimeoutError:
            return False
        return True

    def update_status(self, **extra: Any) -> None:
        """Change fields of the retained ``online`` status; sent at once if connected."""
        self.status_extra.update(extra)
        conn = self._conn
        if conn is not None and self._connected.is_set():
            conn.client.publish(
                f"{self.root}/status",
                _status_payload("online", self.config, **self.status_extra),
                qos=1,
                retain=True,
                properties=_json_properties(),
            )

    @property
    def inflight(self) -> int:
        """Records handed to the broker and not yet acknowledged."""
        return len(self._inflight)

    # -- connections (event loop) ------------------------------------------------------

    async def _run(self) -> None:
        """Connect, publish until the session ends, and connect again; forever."""
        backoff = Backoff(
            base_s=self.config.mqtt.reconnect_min_s,
            cap_s=max(self.config.mqtt.reconnect_min_s, self.config.mqtt.reconnect_max_s),
        )
        while True:
            event = await self._session()
            self._event(event)
            if event.kind == "unreachable" and not isinstance(event.detail, ssl.SSLError):
                # Nobody listens: knocking again is cheap, waiting longer only delays
                # the backlog once the broker is back.
                delay = random.uniform(0.5, 1.0) * PROBE_INTERVAL_S
            elif event.kind == "lost" and self._conn_lasted >= STABLE_SESSION_S:
                backoff.reset()
                delay = random.uniform(0.1, 0.5) * PROBE_INTERVAL_S
            else:  # refused, a TLS failure, or a session that dropped at once
                delay = backoff.next_delay()
            await asyncio.sleep(delay)

    async def _session(self) -> LinkEvent:
        """One connection from attempt to end; returns how it ended.

        On cancellation (shutdown) the connection is left to :meth:`__aexit__`, which
        says ``offline`` on it before closing it.
        """
        conn = _Connection(self)
        self._conn = conn
        self._conn_lasted = 0.0
        try:
            end = await self._attempt(conn)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await self._teardown(conn)
            raise
        await self._teardown(conn)
        return end

    async def _attempt(self, conn: _Connection) -> LinkEvent:
        try:
            await asyncio.to_thread(conn.open)
        except (OSError, ssl.SSLError, ValueError) as exc:
            return LinkEvent("unreachable", exc)
        connected = asyncio.ensure_future(conn.connected.wait())
        ended = asyncio.ensure_future(conn.ended.wait())
        try:
            await asyncio.wait(
                {connected, ended}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            connected.cancel()
            ended.cancel()
        if not conn.connected.is_set() or conn.ended.is_set():
            return conn.end or LinkEvent("unreachable", TimeoutError("no CONNACK in time"))
        self._up()
        publisher = asyncio.ensure_future(self._publish_loop(conn))
        try:
            await conn.ended.wait()
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
            self._conn_lasted = time.monotonic() - conn.started
        return conn.end or LinkEvent("lost", "disconnected")

    async def _teardown(self, conn: _Connection) -> None:
        self._connected.clear()
        self.outbox.link(False)
        self._window_open.set()
        self.stats.resent_total += len(self._inflight)
        if self._conn is conn:
            self._conn = None
        await asyncio.to_thread(conn.close)

    def _up(self) -> None:
        self.stats.connects_total += 1
        if self.stats.connects_total > 1:
            log.info(
                "uplink reconnected",
                host=self.config.mqtt.host,
                down_since=self.stats.since,
                pending=self.outbox.stats.depth,
            )
        else:
            log.info("uplink connected", host=self.config.mqtt.host, port=self.config.mqtt.port)
        self.stats.connected = True
        self.stats.since = rfc3339(datetime.now(UTC))
        self.stats.last_error = None
        # Start again from the oldest record in the outbox: whatever the last
        # connection had not had acknowledged goes again, in order.
        self._inflight.clear()
        self._queue.clear()
        self._rejected.clear()
        self._cursor = 0
        self._connected.set()
        self.outbox.link(True)
        self._notify(LinkEvent("connected"))

    def _event(self, event: LinkEvent) -> None:
        """A connection attempt or session ended: log once per change, keep the reason."""
        detail = event.detail
        cfg = self.config.mqtt
        if event.kind == "unreachable":
            reason = f"cannot connect to {cfg.host}:{cfg.port}: {detail}"
        elif event.kind == "refused":
            reason = f"broker refused connection: {detail}"
        else:
            reason = str(detail)
        if event.kind == "lost" and self.stats.connected:
            self.stats.disconnects_total += 1
            log.warning(
                "uplink lost; records stay in the outbox until it returns",
                reason=reason,
                inflight=len(self._inflight),
            )
            self.stats.since = rfc3339(datetime.now(UTC))
        elif self.stats.last_error != reason:
            log.error("uplink connection failed", reason=reason)
        self.stats.connected = False
        self.stats.last_error = reason
        self._notify(event)

    def _notify(self, event: LinkEvent) -> None:
        for callback in self.on_link:
            callback(event)

    # -- publishing (event loop) -------------------------------------------------------

    async def _publish_loop(self, conn: _Connection) -> None:
        window = conn.window
        json_props = _json_properties()
        media_props: dict[str, Properties] = {}
        while True:
            if len(self._inflight) >= window:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            record = await self._next_record()
            if record is None:
                continue
            props = json_props
            if record.content_type is not None:
                props = media_props.get(record.content_type) or media_props.setdefault(
                    record.content_type, _content_properties(record.content_type)
                )
            info = conn.client.publish(
                f"{self.root}/{record.topic}",
                record.payload,
                qos=1,
                retain=record.retain,
                properties=props,
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # The socket is already gone: the record goes again on the next connection.
                await conn.ended.wait()
                return
            self._inflight[info.mid] = record
            self.stats.published_total += 1

    async def _next_record(self) -> Record | None:
        """The next record to hand over: refused ones when due (oldest first), then new.

        Returns None after waiting for something to change (the caller loops).
        """
        if self._rejected and time.monotonic() >= self._retry_at:
            pos = min(self._rejected)
            return self._rejected.pop(pos)
        if not self._queue:
            self.outbox.changed.clear()
            batch = await self.outbox.read_after(self._cursor, READ_BATCH)
            if batch:
                self._queue.extend(batch)
                self._cursor = batch[-1].pos
        if self._queue:
            return self._queue.popleft()
        self._retry_due.clear()
        waits = [
            asyncio.ensure_future(self.outbox.changed.wait()),
            asyncio.ensure_future(self._retry_due.wait()),
        ]
        timeout = max(0.0, self._retry_at - time.monotonic()) if self._rejected else None
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return None

    # -- paho callbacks (paho's thread) -> event loop ----------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_publish_from(self, client: mqtt.Client) -> Callable[..., None]:
        def on_publish(_c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            # PUBACKs arrive in bursts: hand them over in batches, one loop wake-up each.
            with self._acks_lock:
                failed = reason.is_failure
                self._acks.append((client, mid, failed, str(reason) if failed else ""))
                if self._acks_scheduled:
                    return
                self._acks_scheduled = True
            self._call(self._drain_acks)

        return on_publish

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        response = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        user = dict(getattr(props, "UserProperty", None) or []) if props else {}
        self._call(self._command, msg.topic, bytes(msg.payload), response, correlation, user)

    def _drain_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
            self._acks_scheduled = False
        conn = self._conn
        for client, mid, failed, reason in acks:
            if conn is not None and client is conn.client:  # else: a dead connection's
                self._acked(mid, failed, reason)
        self._window_open.set()

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        """One PUBACK; the caller opens the window once for its whole batch."""
        if mid == self._status_mid:
            self._offline_acked.set()
        reply = self._reply_acks.pop(mid, None)
        if reply is not None:
            if not reply.done():
                reply.set_result(not failed)
            return
        record = self._inflight.pop(mid, None)
        if record is None:
            return
        if failed:
            # Kept in the outbox and sent again, oldest first, after a backoff delay.
            self.stats.rejected_total += 1
            self.stats.last_error = f"broker rejected {record.topic} (seq {record.seq}): {reason}"
            if record.pos not in self._rejected:
                log.error(
                    "broker rejected a record; it stays queued and is retried",
                    seq=record.seq,
                    topic=record.topic,
                    reason=reason,
                )
            self._rejected[record.pos] = record
            self._retry_at = time.monotonic() + self._rejected_backoff.next_delay()
            self._retry_due.set()  # the publisher may be waiting with no timeout
            for on_rejected in self.on_rejected:
                on_rejected(record, reason)
            return
        if not self._rejected:
            self._rejected_backoff.reset()
        self.stats.acked_total += 1
        self.outbox.ack(record.pos)
        for callback in self.on_acked:
            callback(record)

    # -- commands (event loop) -------------------------------------------------------------

    def _command(
        self,
        topic: str,
        payload: bytes,
        response: str | None,
        correlation: bytes | None,
        properties: dict[str, str],
    ) -> None:
        self.stats.commands_total += 1
        name = excerpt(topic.rsplit("/", 1)[-1], 40)
        refusal = self.guard.reply_topic_refusal(response)
        if refusal is not None or response is None:
            self.stats.commands_refused += 1
            log.warning("command refused without a reply", command=name, reason=refusal)
            return
        try:
            self.guard.admit(topic, payload, response, correlation, properties)
        except CommandError as exc:
            self.stats.commands_failed += 1
            log.warning("command refused", command=name, reason=str(exc))
            self._reply(response, correlation, error_reply(str(exc)), 0, last=True)
            return
        self.guard.active += 1
        task = asyncio.get_running_loop().create_task(
            self._answer(name, payload, response, correlation), name=f"cmd-{name}"
        )
        self._command_tasks.add(task)
        task.add_done_callback(self._command_done)

    def _command_done(self, task: asyncio.Task[None]) -> None:
        self._command_tasks.discard(task)
        self.guard.active -= 1

    async def _answer(
        self, name: str, payload: bytes, response: str, correlation: bytes | None
    ) -> None:
        handler = self.commands.get(name)
        part = 0  # parts already sent; an error reply continues the numbering
        try:
            if handler is None:
                raise CommandError(f"unknown command {name!r}; known: {sorted(self.commands)}")
            try:
                request = parse_request(payload)
                check_request(request, handler.schema)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            log.info("command", command=name, request=excerpt(payload))
            pending: list[asyncio.Future[bool]] = []
            held: Reply | None = None  # sent when the next arrives: the last is marked so
            async for reply in handler(request):
                if held is not None:
                    pending.append(self._reply(response, correlation, held, part, last=False))
                    part += 1
                held = reply
                if len(pending) >= REPLY_WINDOW and not await pending.pop(0):
                    raise CommandError("the broker refused a reply part")
            if held is None:
                raise CommandError(f"command {name!r} gave no answer")
        except (GatewayError, OSError) as exc:
            self.stats.commands_failed += 1
            log.warning("command failed", command=name, error=excerpt(exc))
            # Parts sent before the error stand; the one held back is replaced by the error.
            self._reply(response, correlation, error_reply(excerpt(exc)), part, last=True)
            return
        except Exception:  # a bug in a handler: the requester still gets an answer
            self.stats.commands_failed += 1
            log.exception("command handler failed", command=name)
            self._reply(response, correlation, error_reply("internal error (logged)"), part,
                        last=True)  # fmt: skip
            return
        self._reply(response, correlation, held, part, last=True)
        await asyncio.gather(*pending)

    def _reply(
        self, topic: str, correlation: bytes | None, reply: Reply, part: int, *, last: bool
    ) -> asyncio.Future[bool]:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = reply.content_type
        if correlation is not None:
            props.CorrelationData = correlation
        props.UserProperty = [("part", str(part)), ("last", "true" if last else "false")]
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        conn = self._conn
        if conn is None:
            future.set_result(False)
            return future
        info = conn.client.publish(topic, reply.body, qos=1, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            future.set_result(False)
            return future
        self._reply_acks[info.mid] = future
        return future
